"""Numeric precision of training (and of benchmarks): the float32 matmul mode and the autocast context."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from solo.errors import SoloError

PRECISIONS = ("fp32", "tf32", "bf16")


def apply_precision(precision: str, device: torch.device) -> Callable[[], AbstractContextManager]:
    """Set the float32 matmul mode for `precision` and return a factory of forward contexts.

    fp32 keeps IEEE float32 matmuls; tf32 lets float32 matmuls use the tensor cores (10-bit
    mantissa inputs, float32 accumulation); bf16 autocasts the forward pass. The matmul mode is a
    process-wide torch setting: one process trains with one precision.
    """
    if precision not in PRECISIONS:
        raise SoloError(f"trainer.precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    if precision == "bf16":
        # The weight-cast cache must be off under CUDA graphs: cached casts would be freed
        # between capture and replay.
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext

