"""`load_split` for both setups: folders, the dev-set stand-in, limits, download and offline errors."""

from __future__ import annotations

import shutil
import socket
import types
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from solo.data import group_by_mr, load_split, read_lora_txt, setup_description
from solo.errors import SoloError
from solo.paths import REPO_ROOT


def _cfg(**overrides):
    """The project's data config (configs/data/e2e.yaml), struct-locked like a composed Hydra config."""
    cfg = OmegaConf.merge(OmegaConf.load(REPO_ROOT / "configs" / "data" / "e2e.yaml"), overrides)
    OmegaConf.set_struct(cfg, True)  # unknown keys are errors, as after Hydra composition
    return cfg


@pytest.fixture()
def lora_cfg(shared_data: Path):
    return _cfg(setup="lora", lora_dir=str(shared_data / "lora-format"), train_split="valid")


@pytest.fixture()
def official_cfg(shared_data: Path):
    return _cfg(setup="official", official_dir=str(shared_data / "e2e"), train_split="valid")


def _free_port_url() -> str:
    with socket.socket() as sock:  # a port nobody listens on: connection refused, like offline
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- both setups on the shared data ------------------------------------------------------------


def test_lora_setup_counts_and_first_group(lora_cfg, shared_data: Path):
    valid, test = load_split(lora_cfg, "valid"), load_split(lora_cfg, "test")
    assert (len(valid), len(group_by_mr(valid))) == (4672, 547)
    assert (len(test), len(group_by_mr(test))) == (4693, 630)
    # the lora setup scores against LoRA's own references: the first group is exactly its lines
    lines = (shared_data / "lora-format" / "test.txt").read_text(encoding="utf-8").split("\n")
    first_mr = lines[0].split("||")[0]
    expected = [line.split("||")[1].strip() for line in lines if line.startswith(first_mr + "||")]
    first = group_by_mr(test)[0]
    assert first.mr == first_mr and list(first.refs) == expected and len(expected) >= 2


def test_official_setup_counts_and_raw_references(official_cfg):
    valid, test = load_split(official_cfg, "valid"), load_split(official_cfg, "test")
    assert (len(valid), len(group_by_mr(valid))) == (4672, 547)
    assert (len(test), len(group_by_mr(test))) == (4693, 630)
    assert test[0].mr.startswith("name[Blue Spice]") and test[0].ref.endswith("Blue Spice.")


@pytest.mark.parametrize("setup", ["lora", "official"])
def test_dev_set_stands_in_for_training(setup, lora_cfg, official_cfg):
    cfg = lora_cfg if setup == "lora" else official_cfg
    assert load_split(cfg, "train") == load_split(cfg, "valid")


def test_missing_train_file_names_path_and_keys(lora_cfg, shared_data: Path):
    cfg = OmegaConf.merge(lora_cfg, {"train_split": "train"})
    with pytest.raises(SoloError) as info:
        load_split(cfg, "train")
    message = str(info.value)
    assert str(shared_data / "lora-format" / "train.txt") in message
    assert "data.lora_dir" in message and "data.train_split=valid" in message


def test_a_missing_folder_with_the_dev_set_standing_in_does_not_suggest_it_again(lora_cfg, tmp_path):
    cfg = OmegaConf.merge(lora_cfg, {"lora_dir": str(tmp_path / "nowhere")})  # train_split=valid
    with pytest.raises(SoloError) as info:
        load_split(cfg, "train")
    message = str(info.value)
    assert "valid.txt not found" in message and "data.lora_dir" in message
    assert "train_split" not in message


def test_limits(lora_cfg):
    cfg = OmegaConf.merge(lora_cfg, {"max_train_examples": 7, "max_valid_examples": 5, "max_test_mrs": 3})
    full_test = load_split(lora_cfg, "test")
    assert load_split(cfg, "train") == load_split(lora_cfg, "valid")[:7]
    assert load_split(cfg, "valid") == load_split(lora_cfg, "valid")[:5]
    groups = group_by_mr(load_split(cfg, "test"))
    assert groups == group_by_mr(full_test)[:3]  # whole reference sets of the first 3 MRs


@pytest.mark.parametrize("key, value", [("setup", "raw"), ("train_split", "test"), ("max_test_mrs", 0),
                                        ("max_train_examples", "ten")])
def test_bad_config_values_name_the_key(lora_cfg, key, value):
    cfg = OmegaConf.merge(lora_cfg, {key: value})
    with pytest.raises(SoloError, match=f"data.{key}="):
        load_split(cfg, "test" if key == "max_test_mrs" else "train")


def test_plain_dict_and_namespace_configs(lora_cfg):
    as_dict = OmegaConf.to_container(lora_cfg)
    expected = load_split(lora_cfg, "valid")
    assert load_split(as_dict, "valid") == expected
    assert load_split(types.SimpleNamespace(**as_dict), "valid") == expected


def test_setup_description_names_setup_and_folder(lora_cfg, official_cfg, shared_data: Path, tmp_path):
    assert setup_description(lora_cfg) == (
        f"lora: microsoft/LoRA e2e files at {shared_data / 'lora-format'} (dev set stands in for training)"
    )
    cached = _cfg(setup="official", cache_dir=str(tmp_path))
    assert setup_description(cached) == f"official: E2E release CSVs at {tmp_path / 'e2e-official'}"


# --- cache and download (local server only) ------------------------------------------------------


def test_lora_download_into_cache_then_reuse(http_root, tmp_path: Path, shared_data: Path):
    url, served = http_root
    shutil.copy(shared_data / "lora-format" / "test.txt", served / "test.txt")
    cfg = _cfg(setup="lora", cache_dir=str(tmp_path / "cache"), lora_url=url)
    pairs = load_split(cfg, "test")
    cached = tmp_path / "cache" / "e2e-lora" / "test.txt"
    assert cached.read_bytes() == (served / "test.txt").read_bytes()
    assert pairs == read_lora_txt(shared_data / "lora-format" / "test.txt")
    (served / "test.txt").unlink()  # a second load must read the cache, not the network
    assert load_split(cfg, "test") == pairs
    assert sorted(p.name for p in cached.parent.iterdir()) == ["test.txt"]  # no temp files left


def test_official_zip_download_and_extract(http_root, tmp_path: Path, shared_data: Path):
    url, served = http_root
    with zipfile.ZipFile(served / "e2e-dataset.zip", "w") as zf:  # nested, like the release zip
        zf.write(shared_data / "e2e" / "devset.csv", "e2e-dataset/devset.csv")
        zf.write(shared_data / "e2e" / "testset_w_refs.csv", "e2e-dataset/testset_w_refs.csv")
    cfg = _cfg(setup="official", cache_dir=str(tmp_path / "cache"), official_url=f"{url}/e2e-dataset.zip")
    test = load_split(cfg, "test")
    assert (len(test), len(group_by_mr(test))) == (4693, 630)
    (served / "e2e-dataset.zip").unlink()  # the cached zip serves the next file without network
    assert len(load_split(cfg, "valid")) == 4672
    folder = tmp_path / "cache" / "e2e-official"
    assert sorted(p.name for p in folder.iterdir()) == ["devset.csv", "e2e-dataset.zip", "testset_w_refs.csv"]


@pytest.mark.parametrize("setup", ["lora", "official"])
def test_offline_error_names_path_url_and_key(setup, tmp_path: Path):
    url = _free_port_url()
    cfg = _cfg(setup=setup, cache_dir=str(tmp_path), **{f"{setup}_url": url})
    with pytest.raises(SoloError) as info:
        load_split(cfg, "test")
    message = str(info.value)
    folder = tmp_path / f"e2e-{setup}"
    assert "\n" not in message
    assert f"is not in {folder}" in message
    assert (f"{url}/test.txt" if setup == "lora" else url) in message
    assert f"data.{setup}_dir" in message
    assert not any(folder.iterdir())  # nothing half-written


def test_truncated_download_is_rejected_and_not_cached(truncating_server, tmp_path: Path):
    url, _ = truncating_server
    cfg = _cfg(setup="lora", cache_dir=str(tmp_path / "cache"), lora_url=url)
    with pytest.raises(SoloError, match="downloading .*/test.txt failed"):
        load_split(cfg, "test")
    assert not any((tmp_path / "cache" / "e2e-lora").iterdir())


def test_default_urls_point_at_the_real_sources(monkeypatch, tmp_path: Path):
    # The shipped config must name the published locations; the fetch is stubbed (no network).
    from solo.data import download

    asked: list[str] = []

    def offline(url, destination, **_):
        asked.append(url)
        raise download.DownloadError("offline")

    monkeypatch.setattr(download, "download", offline)
    for setup in ("lora", "official"):
        shipped = _cfg(setup=setup, cache_dir=str(tmp_path))
        bare = {"setup": setup, "cache_dir": str(tmp_path)}  # a dict without the URL keys
        for cfg in (shipped, bare):
            with pytest.raises(SoloError):
                load_split(cfg, "train")
    lora_url = "https://raw.githubusercontent.com/microsoft/LoRA/main/examples/NLG/data/e2e/train.txt"
    zip_url = "https://github.com/tuetschek/e2e-dataset/releases/download/v1.0.0/e2e-dataset.zip"
    assert asked == [lora_url, lora_url, zip_url, zip_url]
