"""Fixtures for method tests; the builders live in methods_helpers.py so tests can import them."""

from __future__ import annotations

import pytest
import torch
from methods_helpers import make_gpt2


@pytest.fixture()
def gpt2():
    return make_gpt2()


@pytest.fixture()
def tokens():
    return torch.randint(1, 97, (2, 9), generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one intra-op thread than on contended ones."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
