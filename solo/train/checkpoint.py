"""Resumable training state: trainable weights, optimiser, scheduler, RNG states, data position.

Layout of `checkpoint/` (replaced atomically, see `atomic.py`):
- `trainable.safetensors`  the parameters the optimiser trains (the method's
                           `trainable_parameters()`), by their names in the model
- `state.pt`               optimiser, scheduler, RNG states, `DataPosition`
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from solo.atomic import atomic_directory, readable_directory
from solo.errors import SoloError
from solo.methods.base import named
from solo.train.rng import capture_rng_state, restore_rng_state

WEIGHTS_FILE = "trainable.safetensors"
STATE_FILE = "state.pt"


@dataclasses.dataclass(frozen=True)
class DataPosition:
    """Where training stands: `step` optimiser steps done; the next micro-batch is
    batch `batch` of epoch `epoch` (batch order is a pure function of (seed, epoch)).
    `window_losses`: the micro-batch losses since the last metrics record, which the next record
    averages with the ones that follow (a checkpoint need not fall on a log step)."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    window_losses: tuple[float, ...] = ()


def trainable_named_parameters(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, torch.nn.Parameter]:
    """What is trained: the optimiser's parameters (the method's list), named as in the model."""
    return named(model, (p for group in optimizer.param_groups for p in group["params"]))


def save_checkpoint(
    directory: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    position: DataPosition,
) -> None:
    """Write the full resumable state into `directory`, replacing the previous one atomically."""
    weights = {
        name: p.detach().to("cpu").contiguous()
        for name, p in trainable_named_parameters(model, optimizer).items()
    }
    state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": capture_rng_state(),
        "position": dataclasses.asdict(position),
    }
    with atomic_directory(directory) as staging:
        save_file(weights, str(staging / WEIGHTS_FILE))
        torch.save(state, staging / STATE_FILE)


def load_checkpoint(
    directory: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> DataPosition | None:
    """Restore the state saved by `save_checkpoint`, RNGs included; None if there is no checkpoint."""
    found = readable_directory(directory)
    if found is None:
        return None
    params = trainable_named_parameters(model, optimizer)
    weights = load_file(str(found / WEIGHTS_FILE))
    if set(weights) != set(params):
        missing = sorted(set(params) - set(weights))[:3]
        extra = sorted(set(weights) - set(params))[:3]
        raise SoloError(
            f"{found} does not match the model's trainable parameters (missing {missing}, "
            f"unexpected {extra}); delete that checkpoint folder to start the run afresh"
        )
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(weights[name])
    # Our own file, holding numpy RNG state and Python tuples: not loadable with weights_only.
    state = torch.load(found / STATE_FILE, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng_state(state["rng"])
    return DataPosition(**state["position"])
