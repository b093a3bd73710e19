"""Full fine-tuning: every backbone parameter trains (tied weights counted once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from solo.methods.base import Method, check_keys


@dataclass(frozen=True)
class FullFineTuneConfig:
    """Full fine-tuning has no settings of its own."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": "full_ft"}


class FullFineTune(Method):
    name = "full_ft"

    def __init__(self, model: nn.Module, cfg: dict[str, Any]) -> None:
        check_keys(cfg, set(), "full_ft")
        super().__init__(model, FullFineTuneConfig())
        for p in model.parameters():
            p.requires_grad_(True)

    def trainable_parameters(self) -> list[nn.Parameter]:
        # model.parameters() yields a tied tensor (GPT-2's wte / lm_head) once.
        return list(self.model.parameters())

    def detach(self) -> None:
        """Nothing was attached; the parameters simply stay trainable."""
