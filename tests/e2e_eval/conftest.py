"""Fixtures for the e2e_eval tests: the shared test set and system outputs, read once."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e_eval.readers import Inputs, load_inputs


@pytest.fixture(scope="session")
def testset_refs(shared_data: Path) -> Path:
    return shared_data / "e2e" / "testset_w_refs.csv"


@pytest.fixture(scope="session")
def system_inputs(shared_data: Path, testset_refs: Path) -> dict[str, Inputs]:
    outputs = shared_data / "system-outputs"
    return {name: load_inputs(testset_refs, outputs / f"{name}.run0.txt") for name in ("tgen-std", "tgen-minus")}


@pytest.fixture(scope="session")
def example_inputs(shared_data: Path) -> Inputs:
    folder = shared_data / "e2e-metrics-example"
    return load_inputs(folder / "devel-conc.txt", folder / "baseline-output.txt")
