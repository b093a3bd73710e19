"""Resumable training state: trainable weights, optimiser, scheduler, RNG states, data position.

Layout of `checkpoint/` (replaced atomically, see `atomic.py`):
- `trainable.safetensors`  the parameters the optimiser trains (the method's
                           `trainable_parameters()`), by their names in the model
- `state.pt`               optimiser, scheduler, RNG states, `DataPosition`
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from solo.atomic import atomic_directory, previous_path
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


def _write_bytes(path: Path, data: bytes) -> None:
    """Write through Python's file object, so a full disk is an OSError naming `path` (torch's
    own writer reports it as an `unexpected pos` RuntimeError)."""
    try:
        with open(path, "wb") as handle:
            handle.write(data)
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from None


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
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_directory(directory) as staging:
        _write_bytes(staging / WEIGHTS_FILE, save(weights))
        _write_bytes(staging / STATE_FILE, buffer.getvalue())


class _Unreadable(Exception):
    """One checkpoint copy cannot be used; the message says which file and why."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _read_copy(found: Path, params: dict[str, torch.nn.Parameter]) -> tuple[dict, dict]:
    """(weights, state) of one checkpoint copy, checked against the model's trainable parameters."""
    weights_path, state_path = found / WEIGHTS_FILE, found / STATE_FILE
    for path in (weights_path, state_path):
        if not path.is_file():
            raise _Unreadable(f"{path} is missing")
    try:
        weights = load_file(str(weights_path))
    except Exception as err:  # safetensors raises its own error types for cut or garbled files
        raise _Unreadable(f"{weights_path} is unreadable ({_first_line(err)})") from None
    if set(weights) != set(params):
        missing = sorted(set(params) - set(weights))[:3]
        extra = sorted(set(weights) - set(params))[:3]
        raise _Unreadable(
            f"{weights_path} does not match the model's trainable parameters (missing {missing}, "
            f"unexpected {extra})"
        )
    for name, param in params.items():
        if weights[name].shape != param.shape:
            raise _Unreadable(f"{weights_path}: {name} has shape {tuple(weights[name].shape)}, "
                              f"the model {tuple(param.shape)}")
    try:
        # Our own file, holding numpy RNG state and Python tuples: not loadable with weights_only.
        state = torch.load(state_path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated or random bytes: pickle, zip or torch errors
        raise _Unreadable(f"{state_path} is unreadable ({_first_line(err)})") from None
    keys = {"optimizer", "scheduler", "rng", "position"}
    if not isinstance(state, dict) or not keys <= set(state):
        raise _Unreadable(f"{state_path} is not a checkpoint state (expected the keys {sorted(keys)})")
    return weights, state


def _set_aside(directory: Path) -> Path:
    """Rename a damaged checkpoint copy out of the way (never deleted: the user decides)."""
    for n in range(1, 1000):
        target = directory.with_name(f"{directory.name}.damaged{'' if n == 1 else n}")
        if not target.exists():
            os.rename(directory, target)
            return target
    raise SoloError(f"too many damaged copies beside {directory}; remove the old *.damaged folders")


def intact_copy(
    directory: Path, params: dict[str, torch.nn.Parameter]
) -> tuple[Path, dict, dict] | None:
    """(copy, weights, state) of the checkpoint to resume from; None if there is none.

    Tries `checkpoint/`, then `checkpoint.old/` (what a crash between the two renames of
    `atomic_directory` leaves). A damaged `checkpoint/` is reported and renamed to
    `checkpoint.damaged` when the old copy is intact; with no intact copy, a SoloError names
    each damaged file and the choices. Nothing is ever deleted here.
    """
    copies = [d for d in (directory, previous_path(directory)) if d.is_dir()]
    problems: list[str] = []
    for found in copies:
        try:
            weights, state = _read_copy(found, params)
        except _Unreadable as err:
            problems.append(str(err))
            continue
        if problems:
            damaged = _set_aside(copies[0])
            print(f"checkpoint: {problems[0]}; kept it as {damaged.name} and used the intact "
                  f"{found.name} instead")
        return found, weights, state
    if not problems:
        return None
    raise SoloError(
        f"cannot resume: {'; '.join(problems)}; no intact checkpoint is left: restore it, "
        f"or move {directory} aside (mv {directory} {directory}.damaged) to train this run "
        "again from step 0"
    )


def load_checkpoint(
    directory: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> DataPosition | None:
    """Restore the state saved by `save_checkpoint`, RNGs included; None if there is no
    checkpoint. Which copy is used, and what a damaged one does: see `intact_copy`."""
    params = trainable_named_parameters(model, optimizer)
    intact = intact_copy(directory, params)
    if intact is None:
        return None
    found, weights, state = intact
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        position = DataPosition(**state["position"])
    except (KeyError, TypeError, ValueError) as err:  # unpickled, but not what we saved
        raise SoloError(
            f"cannot resume: {found / STATE_FILE} does not fit this run ({_first_line(err)}); "
            f"move {found} aside to train this run again from step 0"
        ) from None
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(weights[name])
    restore_rng_state(state["rng"])
    written = datetime.datetime.fromtimestamp(
        (found / STATE_FILE).stat().st_mtime, datetime.timezone.utc
    ).strftime("%Y-%m-%d %H:%M:%S UTC")
    source = "" if found == directory else f", from {found.name}"
    print(f"resumed from step {position.step} (checkpoint written {written}{source})")
    return position
