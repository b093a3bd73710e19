from pathlib import Path

from solo.paths import shared_data_dir


def test_shared_data_dir_honours_environment(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("SOLO_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path.resolve()


def test_shared_data_dir_defaults_beside_repo(monkeypatch):
    monkeypatch.delenv("SOLO_SHARED_DATA", raising=False)
    assert (shared_data_dir() / "e2e" / "testset_w_refs.csv").exists()
