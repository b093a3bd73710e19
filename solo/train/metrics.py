"""What the loop logs: `metrics.jsonl` (one JSON object a line, appended as training goes, trimmed
on resume) and the window of losses each training record averages."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from solo.atomic import write_text_atomic
from solo.errors import SoloError

if TYPE_CHECKING:
    from solo.train.step import TrainStep



class MetricsFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line torn by a crash mid-write: it and anything after are dropped
        return out

    def keep_until(self, step: int) -> None:
        """Drop records after `step`: a resumed run replays those steps and logs them again."""
        if not self.path.exists():
            return
        kept = [r for r in self.records() if r.get("step", 0) <= step]
        write_text_atomic(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))


class NonFiniteLoss(SoloError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


class LossWindow:
    """The micro-batch losses since the last log, kept on the device until read; `carried`: the
    losses of this window logged before a checkpoint this run resumed from (already checked)."""

    def __init__(self, step: TrainStep, carried: tuple[float, ...] = ()) -> None:
        self.step = step
        self.carried = list(carried)
        self.losses: list[torch.Tensor] = []
        self.origins: list[tuple[int, int, int]] = []  # (optimiser step, epoch, batch) per loss
        self.tokens = 0
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor, step: int, epoch: int, batch: int) -> None:
        self.losses.append(loss)
        self.origins.append((step, epoch, batch))

    def read(self, last_good: str) -> list[float]:
        """The losses as floats (one host sync); NonFiniteLoss naming the first non-finite one."""
        values = torch.stack(self.losses).tolist() if self.losses else []
        flag_ok = self.step.check_finite()
        for value, (step, epoch, batch) in zip(values, self.origins, strict=True):
            if not math.isfinite(value):
                raise NonFiniteLoss(
                    f"training stopped: loss is {value} at optimiser step {step} (epoch {epoch}, "
                    f"batch {batch}); last good checkpoint: {last_good}; "
                    "lower trainer.lr or set trainer.grad_clip"
                )
        if not flag_ok:  # every loss is in `values`, so this means a bug, not bad data
            raise NonFiniteLoss(
                f"training stopped: the step flagged a non-finite loss; last good checkpoint: "
                f"{last_good}; lower trainer.lr or set trainer.grad_clip"
            )
        return self.carried + values

    def record(self, step: int, epoch: float, lr: float, last_good: str) -> dict:
        """The training record of this window: mean loss (read as in `read`), rate, tokens/s."""
        values = self.read(last_good)
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return {"step": step, "epoch": round(epoch, 4), "loss": sum(values) / len(values), "lr": lr,
                "tokens_per_s": self.tokens / elapsed}
