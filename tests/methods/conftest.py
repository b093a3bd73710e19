"""Fixtures for method tests; the builders live in methods_helpers.py so tests can import them."""

from __future__ import annotations

import pytest
import torch

from tests.methods.methods_helpers import make_gpt2


@pytest.fixture()
def gpt2():
    return make_gpt2()


@pytest.fixture()
def tokens():
    return torch.randint(1, 97, (2, 9), generator=torch.Generator().manual_seed(1))
