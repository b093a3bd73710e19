"""One training step: `step(cpu_batch) -> loss`, owning backward, the optimiser, the scheduler and
the method's projection, so the loop only feeds batches and reads losses.

Two implementations of `TrainStep`, chosen by `trainer.fast_step` (`make_train_step`):
- `PlainStep` (here): eager forward, label-smoothed loss and backward per micro-batch; after
  `grad_accum` micro-batches: gradient clipping, AdamW, the scheduler, the projection.
- `GraphedStep` (graphed_step.py): one micro-batch per update, the whole step replayed as a CUDA
  graph per length bucket on CUDA, eager (same body) elsewhere.

Each step owns the optimiser's kernel (fused, for-each, capturable) and sets it when built, so a
step is built after the checkpoint is loaded into the optimiser (whose saved groups carry the
flags of whichever step wrote them). OmegaConf is imported for type hints only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import torch

from solo.data.buckets import DEFAULT_BUCKETS
from solo.train.graphed_step import GraphedStep
from solo.train.loss import label_smoothed_loss
from solo.train.precision import apply_precision
from solo.train.settings import trainer_settings

if TYPE_CHECKING:
    from omegaconf import DictConfig

Autocast = Callable[[], contextlib.AbstractContextManager]

# torch's AdamW defaults: the for-each kernel where torch picks it, nothing capturable.
_PLAIN_KERNEL = {"fused": None, "foreach": None, "capturable": False}


class TrainStep(Protocol):
    """What the loop drives: `micro_batches` calls of `step` make one optimiser update."""

    micro_batches: int
    # True: `step` only queues the batch and returns a loss tensor filled in later, when the
    # packed runs' joint step runs (solo.train.packed); the loop yields to let that happen.
    deferred: bool

    def step(self, cpu_batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Train on one collated CPU batch; its loss as a detached device tensor (no host sync)."""
        ...

    def check_finite(self) -> bool:
        """False if the step saw a non-finite loss it did not return (one host sync; resets)."""
        ...


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def forward_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).logits


class PlainStep:
    """The eager step with gradient accumulation over `micro_batches` micro-batches per update."""

    def __init__(
        self,
        model: torch.nn.Module,
        project: Callable[[], None],
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        *,
        label_smoothing: float,
        grad_clip: float | None = None,
        micro_batches: int = 1,
        autocast: Autocast = contextlib.nullcontext,
    ) -> None:
        self.model, self.project = model, project
        self.optimizer, self.scheduler = optimizer, scheduler
        self.label_smoothing = float(label_smoothing)
        self.grad_clip = grad_clip
        self.micro_batches = int(micro_batches)
        self.autocast = autocast
        self.device = next(model.parameters()).device
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self._pending = 0  # micro-batches whose gradients wait for the update
        for group in optimizer.param_groups:
            group.update(_PLAIN_KERNEL)

    deferred = False

    def step(self, cpu_batch: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = to_device(cpu_batch, self.device)
        with self.autocast():
            logits = forward_logits(self.model, batch)
        loss = self.loss(logits, batch)
        (loss * (1.0 / self.micro_batches)).backward()
        self._pending += 1
        if self._pending == self.micro_batches:
            self._pending = 0
            self.update()
        return loss.detach()

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss of one micro-batch (label-smoothed, mean over target tokens)."""
        return label_smoothed_loss(logits, batch["input_ids"], batch["loss_mask"], self.label_smoothing)

    def update(self) -> None:
        """The optimiser update over the accumulated gradients: clip, AdamW, scheduler, projection."""
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, float(self.grad_clip))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.project()

    def check_finite(self) -> bool:
        return True  # every loss is returned, and the loop checks those


def fast_step_setting(trainer_cfg: DictConfig) -> bool | str:
    """`trainer.fast_step` checked: "auto", True or False (absent = "auto")."""
    return trainer_settings(trainer_cfg).fast_step


def compile_setting(trainer_cfg: DictConfig) -> bool:
    """`trainer.compile` checked: torch.compile inside the fast step (absent = false)."""
    return trainer_settings(trainer_cfg).compile


def use_fast_step(trainer_cfg: DictConfig, device: torch.device) -> bool:
    """Whether the loop runs GraphedStep: `auto` means on CUDA without gradient accumulation.

    `true` on the CPU runs GraphedStep eagerly (no graphs): useful only to test it against the
    plain step, which `auto` keeps on the CPU.
    """
    value = fast_step_setting(trainer_cfg)
    if value == "auto":
        return device.type == "cuda" and int(trainer_cfg.get("grad_accum") or 1) == 1
    return bool(value)


def loss_settings(trainer_cfg: DictConfig) -> dict[str, float | None]:
    """`label_smoothing` and `grad_clip` as every step takes them (grad_clip null or 0: none)."""
    return {
        "label_smoothing": float(trainer_cfg.label_smoothing),
        "grad_clip": float(trainer_cfg.grad_clip) if trainer_cfg.get("grad_clip") else None,
    }


def step_buckets(bucket_lengths: Sequence[int] | None, device: torch.device) -> Sequence[int] | None:
    """The length buckets of a graphed step: on CUDA only (eager steps gain nothing from fixed
    shapes, so they skip the extra padding)."""
    return (bucket_lengths or DEFAULT_BUCKETS) if device.type == "cuda" else None


def make_train_step(
    model: torch.nn.Module,
    project: Callable[[], None],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    trainer_cfg: DictConfig,
    pad_id: int,
    bucket_lengths: list[int] | None,
    device: torch.device,
) -> TrainStep:
    """The step `trainer.fast_step` picks, over `optimizer` (its state already restored)."""
    if not use_fast_step(trainer_cfg, device):
        return PlainStep(
            model, project, optimizer, scheduler,
            **loss_settings(trainer_cfg),
            micro_batches=int(trainer_cfg.get("grad_accum") or 1),
            autocast=apply_precision(str(trainer_cfg.precision), device),
        )
    return GraphedStep(
        model, project, optimizer, scheduler,
        pad_id=pad_id,
        **loss_settings(trainer_cfg),
        buckets=step_buckets(bucket_lengths, device),
        precision=str(trainer_cfg.precision),
        cuda_graphs=device.type == "cuda",
        compile=compile_setting(trainer_cfg),
    )
