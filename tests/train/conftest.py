"""Trainer tests run torch on one thread: tiny models gain nothing from more, and on a shared
2-core machine competing OpenMP threads made them an order of magnitude slower."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
