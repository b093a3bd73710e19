"""The `trainer` config group's schema: every field, its default (microsoft/LoRA's E2E recipe,
as in configs/trainer/default.yaml) and its allowed values, checked before a run starts.

    settings = trainer_settings(cfg.trainer)   # SoloError naming trainer.<key> on a bad value

Free of OmegaConf (the GPU image has none): a DictConfig is read like any mapping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from solo.errors import SoloError
from solo.schema import Choice, Number, Sequence, Text, allowed, from_mapping
from solo.train.precision import PRECISIONS

# torch.finfo(torch.float32).max, written out: this module imports no torch.
FLOAT32_MAX = 3.4028234663852886e38
_POSITIVE_INT = Number(integer=True, low=1)
_POSITIVE_INT_OR_NULL = Number(integer=True, low=1, nullable=True)


@dataclass(frozen=True)
class TrainerSettings:
    epochs: int = field(default=5, metadata=allowed(_POSITIVE_INT))
    max_steps: int | None = field(default=None, metadata=allowed(_POSITIVE_INT_OR_NULL))
    batch_size: int = field(default=8, metadata=allowed(_POSITIVE_INT))
    lr: float = field(default=2e-4, metadata=allowed(Number(low=0, open_low=True)))
    weight_decay: float = field(default=0.01, metadata=allowed(Number(low=0)))
    betas: tuple[float, float] = field(
        default=(0.9, 0.999),
        metadata=allowed(Sequence(Number(low=0, high=1, open_high=True), length=2)),
    )
    eps: float = field(default=1e-6, metadata=allowed(Number(low=0, open_low=True)))
    warmup_steps: int = field(default=500, metadata=allowed(Number(integer=True, low=0)))
    label_smoothing: float = field(
        default=0.1, metadata=allowed(Number(low=0, high=1, open_high=True))
    )
    grad_clip: float | None = field(
        default=None, metadata=allowed(Number(low=0, open_low=True, nullable=True))
    )
    grad_accum: int = field(default=1, metadata=allowed(_POSITIVE_INT))
    fast_step: bool | str = field(default="auto", metadata=allowed(Choice(("auto", True, False))))
    compile: bool = field(default=False, metadata=allowed(Choice((True, False))))
    eval_every: int | None = field(default=1000, metadata=allowed(_POSITIVE_INT_OR_NULL))
    eval_max_batches: int | None = field(default=None, metadata=allowed(_POSITIVE_INT_OR_NULL))
    eval_batch_size: int | None = field(default=32, metadata=allowed(_POSITIVE_INT_OR_NULL))
    ckpt_every: int | None = field(default=500, metadata=allowed(_POSITIVE_INT_OR_NULL))
    log_every: int | None = field(default=10, metadata=allowed(_POSITIVE_INT_OR_NULL))  # null: 1
    precision: str = field(default="fp32", metadata=allowed(Choice(PRECISIONS)))
    device: str = field(default="auto", metadata=allowed(Text()))

    def check_combinations(self) -> None:
        """Rules between fields (each field alone is checked by its spec)."""
        if self.fast_step is True and self.grad_accum > 1:
            raise SoloError(
                f"trainer.fast_step=true needs trainer.grad_accum=1 (got {self.grad_accum}): "
                "the fast step is one micro-batch per update; set trainer.fast_step=false or auto"
            )
        if self.compile and self.fast_step is False:
            raise SoloError(
                "trainer.compile=true works inside the fast step; set trainer.fast_step=auto or true"
            )
        # AdamW's first update scales by lr / (1 - beta1) (its bias correction), which torch turns
        # into the parameters' float32: past its range the first step stops with a RuntimeError.
        first_step = self.lr / (1 - self.betas[0])
        if first_step > FLOAT32_MAX:
            raise SoloError(
                f"trainer.lr={self.lr:g} is too large: AdamW's first step, trainer.lr / "
                f"(1 - trainer.betas[0]) = {first_step:g}, is beyond float32's {FLOAT32_MAX:g}; "
                "lower trainer.lr"
            )
        if not is_device_name(self.device):
            raise SoloError(
                f"trainer.device={self.device!r} is not allowed; allowed: auto, cpu, cuda or cuda:N"
            )

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out


def is_device_name(name: str) -> bool:
    """auto, cpu, cuda or cuda:N (N a number): what trainer.device may be."""
    return name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())


def trainer_settings(trainer_cfg: Mapping[str, Any] | None) -> TrainerSettings:
    """The `trainer` group as checked TrainerSettings (absent keys take their defaults)."""
    settings = from_mapping(TrainerSettings, trainer_cfg, "trainer")
    settings.check_combinations()
    return settings

