"""The process's random number generators, saved and put back: Python's `random`, numpy's global
generator, torch's CPU generator and (where CUDA is up) the CUDA generators.

A checkpoint stores `capture_rng_state()` so a resumed run draws what the uninterrupted run would
have. `RunState` is what one of several runs in a process holds while another runs: lockstep
swaps it per run around every step, and a pack of runs (solo.train.packed) keeps one for its
joint step; its CUDA generators get state objects of their own, so graphs replay their own draws.
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


# torch >= 2.5: generators can point at a shared state object (graph-safe); older torch copies
# values, which is exact for eager steps but lets two runs' graph replays share one offset slot.
_GRAPHSAFE = hasattr(torch.Generator, "graphsafe_set_state")


class RunState:
    """The process-global state a run draws from or sets, held while the run is swapped out:
    `restore()` before advancing the run, `capture()` after. Starts as a copy of the current state.
    """

    def __init__(self, cuda: bool, own: bool = True) -> None:
        """`cuda`: also the CUDA generators; `own`: give them state objects of their own (a run),
        rather than keep the current ones (the caller's, restored after the runs)."""
        self.cuda_states: list[Any] = []
        self.capture()
        if cuda:
            torch.cuda.init()  # default_generators is empty until CUDA is initialised
            # Graph-safe states are objects, not values: a run's generators point at its own
            # objects, so the CUDA graphs it captures register (and replay with) those.
            self.cuda_states = [
                _clone_cuda_state(g) if own else _current_cuda_state(g)
                for g in torch.cuda.default_generators
            ]

    def capture(self) -> None:
        self.host = host_rng_state()
        self.tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        if self.cuda_states and not _GRAPHSAFE:
            self.cuda_states = [g.get_state() for g in torch.cuda.default_generators]

    def restore(self) -> None:
        set_host_rng_state(self.host)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.tf32
        for generator, state in zip(torch.cuda.default_generators, self.cuda_states, strict=False):
            if _GRAPHSAFE:
                generator.graphsafe_set_state(state)
            else:
                generator.set_state(state)


def _clone_cuda_state(generator: torch.Generator) -> Any:
    return generator.clone_state() if _GRAPHSAFE else generator.get_state()


def _current_cuda_state(generator: torch.Generator) -> Any:
    return generator.graphsafe_get_state() if _GRAPHSAFE else generator.get_state()
