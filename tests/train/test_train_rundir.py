"""Run directory naming by config hash, and the single-writer lock."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

import solo.config  # noqa: F401
from solo.errors import SoloError
from solo.paths import REPO_ROOT, shared_data_dir
from solo.train.rundir import claimed, config_hash, run_dir_for, seed_group


def _cfg(*overrides: str):
    with initialize_config_dir(str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=["model=tiny", *overrides])


def test_non_semantic_keys_do_not_change_the_hash(tmp_path) -> None:
    base = config_hash(_cfg())
    assert (
        config_hash(
            _cfg(
                "logger.mode=disabled",
                "logger.project=x",
                f"run_root={tmp_path}",
                "trainer.device=cpu",
                "decode.batch_size=3",
            )
        )
        == base
    )
    assert config_hash(_cfg("trainer.lr=0.1")) != base
    assert config_hash(_cfg("seed=2")) != base
    assert config_hash(_cfg("decode.num_beams=3")) != base


def test_runs_that_differ_in_the_seed_only_share_a_seed_group() -> None:
    one, two = _cfg("name=table2/x", "seed=1"), _cfg("name=table2/x", "seed=2")
    assert run_dir_for(one) != run_dir_for(two)
    assert seed_group(one) == seed_group(two) and seed_group(one).startswith("table2/x/lora-")
    assert seed_group(_cfg("name=table2/x", "trainer.lr=0.1")) != seed_group(one)
    assert seed_group(_cfg("name=table2/x", "logger.mode=disabled")) == seed_group(one)


def test_layout_is_root_name_setup_hash(tmp_path) -> None:
    cfg = _cfg(f"run_root={tmp_path}")
    path = run_dir_for(cfg)
    assert path.parent == tmp_path / "solo-tiny"
    assert path.name == f"lora-{config_hash(cfg)}" and len(config_hash(cfg)) == 10


def test_shared_data_paths_hash_the_same_on_any_machine(monkeypatch, tmp_path) -> None:
    here = config_hash(_cfg())
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("SOLO_SHARED_DATA", str(elsewhere))
    assert str(shared_data_dir()) == str(elsewhere)
    assert config_hash(_cfg()) == here


def test_second_writer_is_refused(tmp_path) -> None:
    with claimed(tmp_path / "run"), pytest.raises(SoloError, match="another process"):
        with claimed(tmp_path / "run"):
            pass
    with claimed(tmp_path / "run"):  # released after the first holder is done
        pass


def test_switching_data_setup_never_reuses_a_run_dir(tmp_path) -> None:
    lora = run_dir_for(_cfg(f"run_root={tmp_path}", "data.setup=lora"))
    official = run_dir_for(_cfg(f"run_root={tmp_path}", "data.setup=official"))
    assert lora.name.startswith("lora-") and official.name.startswith("official-")
    assert lora != official and config_hash(_cfg("data.setup=lora")) != config_hash(_cfg("data.setup=official"))
