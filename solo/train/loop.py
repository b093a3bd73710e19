"""The training loop: plain PyTorch, resumable at any checkpoint with bitwise-identical results on CPU.

The step itself (backward, optimiser, scheduler, the method's projection) is a
`solo.train.step.TrainStep`: plain with gradient accumulation, or CUDA-graphed per length bucket
with `trainer.fast_step` on. The loop feeds it batches, logs, evaluates and checkpoints.

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
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import torch
from tqdm.auto import tqdm

from solo.data.buckets import concatenate_batches
from solo.errors import SoloError
from solo.train import interrupt
from solo.train.checkpoint import DataPosition, load_checkpoint, save_checkpoint
from solo.train.loss import masked_token_loss
from solo.train.metrics import LossWindow, MetricsFile, NonFiniteLoss
from solo.train.optim import build_optimizer, build_scheduler
from solo.train.precision import apply_precision
from solo.train.settings import is_device_name, trainer_settings
from solo.train.step import TrainStep, forward_logits, make_train_step, to_device

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from solo.train.tracking import Tracker


class BatchSource(Protocol):
    """What the loop needs from `solo.data.TrainBatches` (pad_id and bucket_lengths: fast step)."""

    pad_id: int
    bucket_lengths: list[int] | None

    def __len__(self) -> int: ...
    def epoch(self, epoch: int) -> list[list[int]]: ...
    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]: ...


def check_trainer_config(trainer_cfg: DictConfig) -> None:
    """Refuse bad trainer settings before a run directory is created for them."""
    trainer_settings(trainer_cfg)  # every field's type and range (solo/train/settings.py)
    resolve_device(str(trainer_cfg.device))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SoloError(
            f"trainer.device={name} but no CUDA device is visible; set trainer.device=auto or cpu"
        )
    if not is_device_name(name):
        raise SoloError(
            f"trainer.device={name!r} is not auto, cpu or cuda[:N]; set trainer.device=auto"
        )
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise SoloError(f"trainer.device={name} but {count} CUDA device(s) are visible "
                            f"(cuda:0..cuda:{count - 1}); set trainer.device=auto or a visible one")
        # The run's device becomes the current one: CUDA streams, graph captures and replays,
        # and anything made with device="cuda", act on the current device.
        torch.cuda.set_device(device)
    return device


def dev_order(batches: BatchSource, *, max_examples: int | None = None) -> list[list[int]]:
    """The dev batches `dev_loss` evaluates, as example index lists (see there)."""
    order = batches.epoch(0)
    if max_examples:
        size = max(len(b) for b in order) if order else 1
        kept = [i for indices in order for i in indices][:max_examples]
        order = [kept[s:s + size] for s in range(0, len(kept), size)]
    return order


class PendingValue(Protocol):
    """A value another party computes later (a packed dev loss): read `value` after the yield."""

    value: float


def dev_loss(
    model: torch.nn.Module,
    batches: BatchSource,
    device: torch.device,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    max_examples: int | None = None,
) -> float:
    """Mean next-token NLL (no smoothing) per target token over the dev batches: all of them, or
    the first `max_examples` examples of their order in batches of the same size (so the
    examples do not depend on the batch size)."""
    with evaluating([model]):
        order = dev_order(batches, max_examples=max_examples)
        return joint_dev_losses(model, [(batches, order)], device, autocast=autocast)[0]


RowsContext = Callable[[list[int], list[int]], contextlib.AbstractContextManager]


@torch.no_grad()
def joint_dev_losses(
    model: torch.nn.Module,
    sources: Sequence[tuple[BatchSource, list[list[int]]]],
    device: torch.device,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    rows: RowsContext | None = None,
) -> list[float]:
    """`dev_loss` of each source (its batches and their order, `dev_order`), batch i of every
    source stacked into one forward of `model` (in the mode the caller set). `rows(present,
    counts)`: the context each such forward runs in, given which sources it holds and their rows
    (a pack puts each run's adapter on its own rows: solo.train.packed)."""
    totals = [torch.zeros((), dtype=torch.float64, device=device) for _ in sources]
    counts = [torch.zeros((), dtype=torch.float64, device=device) for _ in sources]
    for i in range(max((len(order) for _, order in sources), default=0)):
        present = [k for k, (_, order) in enumerate(sources) if i < len(order)]
        parts = [sources[k][0].collate(sources[k][1][i]) for k in present]
        batch = to_device(concatenate_batches(parts), device)
        sizes = [int(part["input_ids"].shape[0]) for part in parts]
        with rows(present, sizes) if rows is not None else contextlib.nullcontext(), autocast():
            logits = forward_logits(model, batch)
        start = 0
        for k, size in zip(present, sizes, strict=True):
            own = slice(start, start + size)
            total, tokens = masked_token_loss(
                logits[own], batch["input_ids"][own], batch["loss_mask"][own], 0.0)
            totals[k] += total
            counts[k] += tokens
            start += size
    return [float(total / count.clamp(min=1.0)) for total, count in zip(totals, counts, strict=True)]


@contextlib.contextmanager
def evaluating(models: Sequence[torch.nn.Module]) -> Iterator[None]:
    """The models in eval mode (dropout off), each back in its own mode afterwards."""
    modes = [model.training for model in models]
    for model in models:
        model.eval()
    try:
        yield
    finally:
        for model, training in zip(models, modes, strict=True):
            model.train(training)


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


# The terminal line of this run's progress bar when several runs share a process (lockstep):
# None for a run alone.
PROGRESS_LINE: contextvars.ContextVar[int | None] = contextvars.ContextVar("progress_line", default=None)


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
    make_step: Callable[..., TrainStep] = make_train_step,
    queue_dev_loss: Callable[[BatchSource, int | None], PendingValue] | None = None,
) -> Generator[int, None, TrainOutcome]:
    """`train` as a generator: yields the step count after every optimiser step (its logging,
    evaluation and checkpoint done) and returns the TrainOutcome, so a driver can interleave
    several runs (solo.train.lockstep). Nothing runs before the first `next()`.
    `diagnostics` (e.g. `Method.diagnostics`): scalars added to every log record.
    `make_step`: builds the TrainStep (default: the one `trainer.fast_step` picks); a deferred
    step (solo.train.packed) makes the loop also yield once its micro-batches are queued, before
    it reads anything the update changes, so the driver can run the packed update then.
    `queue_dev_loss(dev_batches, max_examples)`: the dev loss computed by the driver too (packed
    runs evaluate together); the loop yields once per evaluation and reads it after."""
    total = planned_steps(trainer_cfg, len(train_batches))
    autocast = apply_precision(str(trainer_cfg.precision), device)
    optimizer = build_optimizer(params, trainer_cfg)
    scheduler = build_scheduler(optimizer, int(trainer_cfg.warmup_steps), total)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir = run_dir / "checkpoint"
    metrics = MetricsFile(run_dir / "metrics.jsonl")
    restored = load_checkpoint(checkpoint_dir, model=model, optimizer=optimizer, scheduler=scheduler)
    position = restored or DataPosition()
    # Records past the checkpoint are replayed by this process; with no checkpoint, all of them.
    metrics.keep_until(position.step if restored else -1)
    last_good = position.step if restored else None

    def kept() -> str:
        return f"step {last_good} in {checkpoint_dir}" if last_good is not None else "none written yet"

    log_every = int(trainer_cfg.get("log_every") or 1)
    eval_every = trainer_cfg.get("eval_every")
    ckpt_every = trainer_cfg.get("ckpt_every")
    final_dev: float | None = None

    def evaluate(step: int) -> Generator[int, None, float | None]:
        if dev_batches is None:
            return None
        cap = trainer_cfg.get("eval_max_batches")
        # eval_max_batches counts batches of the training batch size, whatever eval_batch_size is.
        max_examples = int(cap) * int(trainer_cfg.batch_size) if cap else None
        if queue_dev_loss is not None:
            pending = queue_dev_loss(dev_batches, max_examples)
            yield step  # the driver computes every queued dev loss (solo.train.packed)
            value = pending.value
        else:
            value = dev_loss(model, dev_batches, device, autocast=autocast, max_examples=max_examples)
        metrics.append({"step": step, "dev_loss": value})
        tracker.log({"dev/loss": value}, step=step)
        return value

    if restored is None and eval_every:
        final_dev = yield from evaluate(0)  # the untrained baseline: every run's curve has a start
    # Built after the restore: the step sets the optimiser's kernel, whatever the checkpoint says.
    train_step = make_step(
        model, after_optimizer_step, optimizer, scheduler, trainer_cfg=trainer_cfg,
        pad_id=int(train_batches.pad_id), bucket_lengths=train_batches.bucket_lengths, device=device,
    )
    model.train()
    stream = micro_batches(train_batches, position)
    line = PROGRESS_LINE.get()
    bar = tqdm(
        total=total, initial=position.step, desc="train" if line is None else f"train {line}",
        dynamic_ncols=True, mininterval=1.0, position=line,
    )
    window = LossWindow(train_step, position.window_losses)
    step = position.step
    try:
        while step < total:
            lr = optimizer.param_groups[0]["lr"]
            for _ in range(train_step.micro_batches):  # the last one updates
                epoch, index, indices = next(stream)
                cpu_batch = train_batches.collate(indices)
                window.tokens += int(cpu_batch["attention_mask"].sum())  # before the copy: no sync
                window.add(train_step.step(cpu_batch), step + 1, epoch, index)
            if train_step.deferred:
                yield step  # the driver runs the queued update (solo.train.packed.Packer.flush)
            step += 1
            next_epoch, next_index = (
                (epoch + 1, 0) if index + 1 == len(train_batches) else (epoch, index + 1)
            )
            position = DataPosition(step=step, epoch=next_epoch, batch=next_index)
            bar.update(1)

            if step % log_every == 0 or step == total:
                record = window.record(step, epoch + (index + 1) / len(train_batches), lr, kept())
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
                    loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}", tok_s=f"{record['tokens_per_s']:.0f}"
                )
                window = LossWindow(train_step)
            if eval_every and (step % int(eval_every) == 0 or step == total):
                window.read(kept())  # no dev loss of a diverged model
                final_dev = yield from evaluate(step)
            stop = interrupt.requested()  # SIGINT/SIGTERM: checkpoint this step, then stop
            if (ckpt_every and step % int(ckpt_every) == 0 and step < total) or stop:
                # Read first: the checkpoint must precede the first non-finite loss.
                position = dataclasses.replace(position, window_losses=tuple(window.read(kept())))
                if not all(bool(torch.isfinite(p).all()) for p in params):
                    raise NonFiniteLoss(
                        f"training stopped: parameters became NaN/inf at optimiser step {step}; last good "
                        f"checkpoint: {kept()}; lower trainer.lr or set trainer.grad_clip"
                    )
                save_checkpoint(
                    checkpoint_dir, model=model, optimizer=optimizer, scheduler=scheduler,
                    position=position,
                )
                last_good = step
            if stop:
                raise interrupt.stopped(step, last_good)
            yield step
    finally:
        bar.close()
    return TrainOutcome(
        steps=step, resumed_from=restored.step if restored else None, final_dev_loss=final_dev
    )
