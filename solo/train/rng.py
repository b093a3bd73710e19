"""The process's random number generators, saved and put back: Python's `random`, numpy's global
generator, torch's CPU generator and (where CUDA is up) the CUDA generators.

A checkpoint stores `capture_rng_state()` so a resumed run draws what the uninterrupted run would
have; lockstep swaps the host part per run around every step (its CUDA generators get state
objects of their own instead, see solo.train.lockstep.RunState).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def host_rng_state() -> dict[str, Any]:
    """Python's, numpy's and torch's CPU generator states."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_host_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def capture_rng_state() -> dict[str, Any]:
    """Every generator a training step may draw from (the host ones, plus CUDA's if available)."""
    state = host_rng_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    set_host_rng_state(state)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
