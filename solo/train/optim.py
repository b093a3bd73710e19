"""AdamW and the linear warm-up / linear decay schedule of microsoft/LoRA's E2E recipe."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from solo.errors import SoloError
from solo.train.settings import trainer_settings

if TYPE_CHECKING:  # type hints only: the GPU image has no OmegaConf
    from omegaconf import DictConfig


def build_optimizer(
    params: Sequence[torch.nn.Parameter], trainer_cfg: DictConfig | Mapping
) -> torch.optim.AdamW:
    """AdamW (decoupled weight decay) over exactly the trainable parameters.

    `trainer.weight_decay` applies to every trainable parameter, biases and scalars (e.g. Solo's
    lambda) included: microsoft/LoRA passes all trainable parameters in one group, and the paper's
    Solo runs state a single weight-decay value.
    """
    params = list(params)
    if not params:
        raise SoloError(
            "the method has no trainable parameters; check the method config (method=...)"
        )
    settings = trainer_settings(trainer_cfg)
    return torch.optim.AdamW(
        params,
        lr=float(settings.lr),
        betas=tuple(float(b) for b in settings.betas),  # type: ignore[arg-type]
        eps=float(settings.eps),
        weight_decay=float(settings.weight_decay),
    )


def linear_warmup_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR multiplier for optimiser step `step` (0-based), microsoft/LoRA's `linear` schedule.

    Rises linearly from 0 over `warmup_steps`, then falls linearly to reach 0 at `total_steps`
    (the step after the last one), so the last update uses a small positive rate.
    """
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    # A partial of a module-level function (not a lambda) keeps the scheduler picklable.
    schedule = functools.partial(
        linear_warmup_decay, warmup_steps=int(warmup_steps), total_steps=int(total_steps)
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
