"""The training loop: plain PyTorch, resumable at any checkpoint with bitwise-identical results on CPU.

`train_step` (forward, loss, backward on one micro-batch) and `optimizer_step` are separate
functions so faster variants can replace them: with `trainer.fast_step` on, the loop runs
`solo.accel.FastTrainStep` (the whole step CUDA-graphed per length bucket) instead of both.

Losses stay on the device and are read once per logging window (and before every evaluation and
checkpoint), so the loop never waits for the GPU between steps. A non-finite loss is therefore
noticed up to `log_every` steps late; it is still reported at the exact step it occurred, and a
checkpoint is written only after every loss before it was read and found finite.

OmegaConf and the tracker are imported for type hints only, so the GPU image (no Hydra) can
import this module.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import torch
from tqdm.auto import tqdm

from solo.accel.precision import PRECISIONS, apply_precision
from solo.errors import SoloError
from solo.train.checkpoint import DataPosition, load_checkpoint, save_checkpoint
from solo.train.loss import label_smoothed_loss, masked_token_loss
from solo.train.metrics import MetricsFile
from solo.train.optim import build_optimizer, build_scheduler

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from solo.accel import FastTrainStep
    from solo.train.tracking import Tracker

# Optimiser flags that say which AdamW kernel runs; a checkpoint carries the ones of the path that
# wrote it (FastTrainStep switches to fused/capturable), which the plain path must not inherit.
_KERNEL_FLAGS = ("fused", "foreach", "capturable")


class BatchSource(Protocol):
    """What the loop needs from `solo.data.TrainBatches` (pad_id and bucket_lengths: fast step)."""

    pad_id: int
    bucket_lengths: list[int] | None

    def __len__(self) -> int: ...
    def epoch(self, epoch: int) -> list[list[int]]: ...
    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]: ...


class NonFiniteLoss(SoloError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


def check_trainer_config(trainer_cfg: DictConfig) -> None:
    """Refuse bad trainer settings before a run directory is created for them."""
    precision = str(trainer_cfg.precision)
    if precision not in PRECISIONS:
        raise SoloError(f"trainer.precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    for key in ("batch_size", "grad_accum"):
        value = trainer_cfg.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise SoloError(f"trainer.{key}={value!r} must be a positive integer")
    for key in ("max_steps", "eval_every", "ckpt_every", "log_every", "eval_max_batches"):
        value = trainer_cfg.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise SoloError(f"trainer.{key}={value!r} must be a positive integer or null")
    if not 0.0 <= float(trainer_cfg.label_smoothing) < 1.0:
        raise SoloError(f"trainer.label_smoothing={trainer_cfg.label_smoothing} must be in [0, 1)")
    resolve_device(str(trainer_cfg.device))
    fast_step_setting(trainer_cfg)
    compile_setting(trainer_cfg)


def fast_step_setting(trainer_cfg: DictConfig) -> bool | str:
    """`trainer.fast_step` checked: "auto", True or False (absent = "auto")."""
    value = trainer_cfg.get("fast_step", "auto")
    if value != "auto" and not isinstance(value, bool):
        raise SoloError(f"trainer.fast_step={value!r} must be auto, true or false")
    if value is True and int(trainer_cfg.get("grad_accum") or 1) > 1:
        raise SoloError(
            f"trainer.fast_step=true needs trainer.grad_accum=1 (got {trainer_cfg.grad_accum}): "
            "the fast step is one micro-batch per update; set trainer.fast_step=false or auto"
        )
    return value


def compile_setting(trainer_cfg: DictConfig) -> bool:
    """`trainer.compile` checked: torch.compile inside the fast step (absent = false)."""
    value = trainer_cfg.get("compile", False)
    if not isinstance(value, bool):
        raise SoloError(f"trainer.compile={value!r} must be true or false")
    if value and trainer_cfg.get("fast_step", "auto") is False:
        raise SoloError(
            "trainer.compile=true works inside the fast step; set trainer.fast_step=auto or true"
        )
    return value


def use_fast_step(trainer_cfg: DictConfig, device: torch.device) -> bool:
    """Whether the loop runs FastTrainStep: `auto` means on CUDA without gradient accumulation.

    `true` on the CPU runs FastTrainStep eagerly (no graphs): useful only to test it against the
    plain path, which `auto` keeps on the CPU.
    """
    value = fast_step_setting(trainer_cfg)
    if value == "auto":
        return device.type == "cuda" and int(trainer_cfg.get("grad_accum") or 1) == 1
    return bool(value)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SoloError(
            f"trainer.device={name} but no CUDA device is visible; set trainer.device=auto or cpu"
        )
    if name != "cpu" and not name.startswith("cuda"):
        raise SoloError(
            f"trainer.device={name!r} is not auto, cpu or cuda[:N]; set trainer.device=auto"
        )
    return torch.device(name)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def forward_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).logits


def train_step(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    *,
    label_smoothing: float,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    loss_scale: float = 1.0,
) -> torch.Tensor:
    """Forward + label-smoothed loss + backward on one micro-batch; returns the detached loss."""
    with autocast():
        logits = forward_logits(model, batch)
    loss = label_smoothed_loss(logits, batch["input_ids"], batch["loss_mask"], label_smoothing)
    (loss * loss_scale).backward()
    return loss.detach()


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    params: list[torch.nn.Parameter],
    *,
    grad_clip: float | None,
    after_step: Callable[[], None],
) -> None:
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(params, float(grad_clip))
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    after_step()


@torch.no_grad()
def dev_loss(
    model: torch.nn.Module,
    batches: BatchSource,
    device: torch.device,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    max_batches: int | None = None,
) -> float:
    """Mean next-token NLL (no smoothing) per target token over the dev batches."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    order = batches.epoch(0)
    for indices in order[: max_batches if max_batches else None]:
        batch = to_device(batches.collate(indices), device)
        with autocast():
            logits = forward_logits(model, batch)
        batch_total, batch_count = masked_token_loss(
            logits, batch["input_ids"], batch["loss_mask"], 0.0
        )
        total += batch_total
        count += batch_count
    model.train(was_training)
    return float(total / count.clamp(min=1.0))


def micro_batches(
    batches: BatchSource, start: DataPosition
) -> Iterator[tuple[int, int, list[int]]]:
    """(epoch, batch index, example indices) from `start` on, across as many epochs as needed."""
    epoch, index = start.epoch, start.batch
    while True:
        order = batches.epoch(epoch)
        for i in range(index, len(order)):
            yield epoch, i, order[i]
        epoch, index = epoch + 1, 0


def planned_steps(trainer_cfg: DictConfig, batches_per_epoch: int) -> int:
    """Optimiser steps of the run: `max_steps` if set, else whole epochs (a trailing partial
    accumulation group is dropped)."""
    if trainer_cfg.get("max_steps"):
        return int(trainer_cfg.max_steps)
    steps = int(trainer_cfg.epochs) * batches_per_epoch // int(trainer_cfg.get("grad_accum") or 1)
    if steps < 1:
        raise SoloError(
            "the run has 0 optimiser steps; raise trainer.epochs or set trainer.max_steps"
        )
    return steps


@dataclass
class TrainOutcome:
    steps: int
    resumed_from: int | None
    final_dev_loss: float | None


def _fast_step(
    model: torch.nn.Module,
    after_optimizer_step: Callable[[], None],
    optimizer: torch.optim.Optimizer,
    train_batches: BatchSource,
    trainer_cfg: DictConfig,
    device: torch.device,
) -> FastTrainStep:
    from solo.accel import DEFAULT_BUCKETS, FastTrainStep

    graphs = device.type == "cuda"
    # Eager (CPU) steps gain nothing from fixed shapes, so they skip the extra bucket padding.
    buckets = (getattr(train_batches, "bucket_lengths", None) or DEFAULT_BUCKETS) if graphs else None
    return FastTrainStep(
        model,
        after_optimizer_step,
        optimizer,
        pad_id=int(train_batches.pad_id),
        label_smoothing=float(trainer_cfg.label_smoothing),
        grad_clip=float(trainer_cfg.grad_clip) if trainer_cfg.get("grad_clip") else None,
        buckets=buckets,
        precision=str(trainer_cfg.precision),
        cuda_graphs=graphs,
        compile=compile_setting(trainer_cfg),
    )


# The terminal line of this run's progress bar when several runs share a process (lockstep):
# None for a run alone.
PROGRESS_LINE: contextvars.ContextVar[int | None] = contextvars.ContextVar("progress_line", default=None)


class LossWindow:
    """The micro-batch losses since the last log, kept on the device until read; `carried`: the
    losses of this window logged before a checkpoint this run resumed from (already checked)."""

    def __init__(self, fast: FastTrainStep | None, carried: tuple[float, ...] = ()) -> None:
        self.fast = fast
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
        flag_ok = self.fast.check_finite() if self.fast is not None else True
        for value, (step, epoch, batch) in zip(values, self.origins, strict=True):
            if not math.isfinite(value):
                raise NonFiniteLoss(
                    f"training stopped: loss is {value} at optimiser step {step} (epoch {epoch}, "
                    f"batch {batch}); last good checkpoint: {last_good}; "
                    "lower trainer.lr or set trainer.grad_clip"
                )
        if not flag_ok:  # every loss is in `values`, so this means a bug, not bad data
            raise NonFiniteLoss(
                f"training stopped: the fast step flagged a non-finite loss; last good checkpoint: "
                f"{last_good}; lower trainer.lr or set trainer.grad_clip"
            )
        return self.carried + values


T = TypeVar("T")


def drain(steps: Generator[object, None, T]) -> T:
    """Run a step generator (`train_steps`, the pipeline's stages) to its end; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def train(**arguments: Any) -> TrainOutcome:
    """`train_steps(**arguments)` run to its end: trains `params` of `model` (already on
    `device`) per `trainer_cfg`, resuming from `run_dir/checkpoint` if present; logs to
    `run_dir/metrics.jsonl` and `tracker`."""
    return drain(train_steps(**arguments))


def train_steps(
    *,
    model: torch.nn.Module,
    params: list[torch.nn.Parameter],
    after_optimizer_step: Callable[[], None],
    train_batches: BatchSource,
    dev_batches: BatchSource | None,
    trainer_cfg: DictConfig,
    run_dir: Path,
    tracker: Tracker,
    device: torch.device,
    diagnostics: Callable[[], dict[str, float]] | None = None,
) -> Generator[int, None, TrainOutcome]:
    """`train` as a generator: yields the step count after every optimiser step (its logging,
    evaluation and checkpoint done) and returns the TrainOutcome, so a driver can interleave
    several runs (solo.train.together). Nothing runs before the first `next()`.
    `diagnostics` (e.g. `Method.diagnostics`): scalars added to every log record."""
    accum = int(trainer_cfg.get("grad_accum") or 1)
    fast_on = use_fast_step(trainer_cfg, device)
    total = planned_steps(trainer_cfg, len(train_batches))
    autocast = apply_precision(str(trainer_cfg.precision), device)
    optimizer = build_optimizer(params, trainer_cfg)
    scheduler = build_scheduler(optimizer, int(trainer_cfg.warmup_steps), total)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir = run_dir / "checkpoint"
    metrics = MetricsFile(run_dir / "metrics.jsonl")

    own_kernel = [{k: g.get(k) for k in _KERNEL_FLAGS} for g in optimizer.param_groups]
    restored = load_checkpoint(
        checkpoint_dir, model=model, optimizer=optimizer, scheduler=scheduler
    )
    for group, flags in zip(optimizer.param_groups, own_kernel, strict=True):
        group.update(flags)  # FastTrainStep below sets its own
    position = restored or DataPosition()
    # Records past the checkpoint are replayed by this process; with no checkpoint, all of them.
    metrics.keep_until(position.step if restored else -1)
    last_good = position.step if restored else None

    def kept() -> str:
        return f"step {last_good} in {checkpoint_dir}" if last_good is not None else "none written yet"

    log_every = int(trainer_cfg.get("log_every") or 1)
    eval_every = trainer_cfg.get("eval_every")
    ckpt_every = trainer_cfg.get("ckpt_every")
    eval_max = trainer_cfg.get("eval_max_batches")
    smoothing = float(trainer_cfg.label_smoothing)

    final_dev: float | None = None

    def evaluate(step: int) -> float | None:
        if dev_batches is None:
            return None
        value = dev_loss(model, dev_batches, device, autocast=autocast, max_batches=eval_max)
        metrics.append({"step": step, "dev_loss": value})
        tracker.log({"dev/loss": value}, step=step)
        return value

    if restored is None and eval_every:
        final_dev = evaluate(0)  # the untrained baseline, so every run's curve has a start
    # Built after the restore: it converts the restored optimiser state to its fused kernel.
    fast = (
        _fast_step(model, after_optimizer_step, optimizer, train_batches, trainer_cfg, device)
        if fast_on
        else None
    )
    model.train()
    stream = micro_batches(train_batches, position)
    line = PROGRESS_LINE.get()
    bar = tqdm(
        total=total, initial=position.step, desc="train" if line is None else f"train {line}",
        dynamic_ncols=True, mininterval=1.0, position=line,
    )
    window = LossWindow(fast, position.window_losses)
    step = position.step
    try:
        while step < total:
            lr = optimizer.param_groups[0]["lr"]
            for _ in range(accum):
                epoch, index, indices = next(stream)
                cpu_batch = train_batches.collate(indices)
                window.tokens += int(cpu_batch["attention_mask"].sum())  # before the copy: no sync
                if fast is not None:
                    loss = fast(cpu_batch)  # includes the update and the projection
                else:
                    loss = train_step(
                        model,
                        to_device(cpu_batch, device),
                        label_smoothing=smoothing,
                        autocast=autocast,
                        loss_scale=1.0 / accum,
                    )
                window.add(loss, step + 1, epoch, index)
            if fast is not None:
                scheduler.step()
            else:
                optimizer_step(
                    optimizer,
                    scheduler,
                    params,
                    grad_clip=trainer_cfg.get("grad_clip"),
                    after_step=after_optimizer_step,
                )
            step += 1
            next_epoch, next_index = (
                (epoch + 1, 0) if index + 1 == len(train_batches) else (epoch, index + 1)
            )
            position = DataPosition(step=step, epoch=next_epoch, batch=next_index)
            bar.update(1)

            if step % log_every == 0 or step == total:
                values = window.read(kept())
                elapsed = max(time.perf_counter() - window.started, 1e-9)
                record = {
                    "step": step,
                    "epoch": round(epoch + (index + 1) / len(train_batches), 4),
                    "loss": sum(values) / len(values),
                    "lr": lr,
                    "tokens_per_s": window.tokens / elapsed,
                }
                watched = diagnostics() if diagnostics is not None else {}
                metrics.append({**record, **watched})
                tracker.log(
                    {
                        "train/loss": record["loss"],
                        "train/lr": lr,
                        "train/tokens_per_s": record["tokens_per_s"],
                        "train/epoch": record["epoch"],
                        **watched,
                    },
                    step=step,
                )
                bar.set_postfix(
                    loss=f"{record['loss']:.4f}",
                    lr=f"{lr:.2e}",
                    tok_s=f"{record['tokens_per_s']:.0f}",
                )
                window = LossWindow(fast)
            if eval_every and (step % int(eval_every) == 0 or step == total):
                window.read(kept())  # no dev loss of a diverged model
                final_dev = evaluate(step)
            if ckpt_every and step % int(ckpt_every) == 0 and step < total:
                # Read first: the checkpoint must precede the first non-finite loss.
                position = dataclasses.replace(position, window_losses=tuple(window.read(kept())))
                if not all(bool(torch.isfinite(p).all()) for p in params):
                    raise NonFiniteLoss(
                        f"training stopped: parameters became NaN/inf at optimiser step {step}; last good "
                        f"checkpoint: {kept()}; lower trainer.lr or set trainer.grad_clip"
                    )
                save_checkpoint(
                    checkpoint_dir,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    position=position,
                )
                last_good = step
            yield step
    finally:
        bar.close()
    return TrainOutcome(
        steps=step, resumed_from=restored.step if restored else None, final_dev_loss=final_dev
    )
