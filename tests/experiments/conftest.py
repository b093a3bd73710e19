"""Fixtures of the experiments tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture()
def run_root(tmp_path: Path) -> Path:
    return tmp_path / "runs"
