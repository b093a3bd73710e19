"""One training step (forward, label-smoothed loss, backward, AdamW, method projection) per launch.

GPT-2 training at batch 8 and E2E lengths is launch-bound: the arithmetic of a GPT-2 M step takes
a few milliseconds, the ~2,000 kernel launches of an eager step take several times that. On CUDA,
`GraphedStep` captures the whole step in a CUDA graph per (batch size, length bucket) and
replays it, so a step costs one host-to-device copy, one learning-rate fill and one graph launch,
with no host synchronisation: the loss stays on the device and non-finite losses are flagged in a
device-side bit that `check_finite()` reads when the caller chooses (e.g. at log time).

On the CPU (or if capture fails) the same body runs eagerly: same bucketed padding, same fused
AdamW, same loss, so its equivalence with the plain trainer step is testable without a GPU.

With `compile=True` the forward pass and the loss go through `torch.compile` (inductor, default
mode, static shapes) before the warm-up, so the captured graph replays a few hundred fused Triton
kernels instead of ~1,500 small eager ones (layer norms, GELUs, the fp32 log-softmax over the
vocabulary). The CUDA graph is still ours: inductor's "reduce-overhead" mode would capture its own.
Dynamo compiles once per (batch, length) shape, i.e. once per bucket, during the warm-up; the
capture itself forbids recompiling. If compiling fails, the step says why and continues without it.

Equivalence with the plain step rests on three facts, each covered by tests/train/test_train_graphed_step.py:
- batches are right-padded, so causal attention alone never lets a real token see a pad token,
  and the attention mask can be dropped (which also lets SDPA take its fused causal kernel);
- pad positions carry loss_mask 0, so padding further to a bucket changes no loss term;
- the fused AdamW kernel computes the same update as the for-each one.
"""

from __future__ import annotations

import contextlib
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from solo.cuda_graphs import capture, on_device
from solo.data.buckets import (
    DEFAULT_BUCKETS,
    check_buckets,
    pad_to,
    pick_bucket,
    right_padded_lengths,
)
from solo.train.loss import grouped_label_smoothed_losses, label_smoothed_loss
from solo.train.precision import apply_precision

# Eager iterations on a side stream before the first capture: they create the optimiser state,
# cuBLAS handles and autograd buffers, which must exist before capture starts.
_FIRST_WARMUP_ITERS = 3
# Later buckets only need their own shapes' workspaces.
_LATER_WARMUP_ITERS = 1


def _one_sequence_per_row(position_ids: torch.Tensor) -> None:
    return None


@contextlib.contextmanager
def causal_attention_without_mask() -> Iterator[None]:
    """Within: a forward given no attention mask runs SDPA with `is_causal=True` and no mask.

    Given no mask, transformers (5.x) looks in the position ids for several sequences packed into
    one row. Its answer needs a host read, so while a CUDA stream captures or dynamo traces it
    assumes packing and builds an explicit [B, 1, L, L] mask, which takes SDPA off its fused
    causal kernel in exactly the captured and compiled steps. A step's rows are one right-padded
    sequence each, so the answer is always "not packed" (and eager steps skip the host read). One
    module-level function stands in, so that dynamo's guard on it holds from call to call.
    """
    try:
        from transformers import masking_utils
    except ImportError:  # transformers before masking_utils: no such check
        masking_utils = None
    find = getattr(masking_utils, "find_packed_sequence_indices", None)
    if find is None:
        yield
        return
    masking_utils.find_packed_sequence_indices = _one_sequence_per_row
    try:
        yield
    finally:
        masking_utils.find_packed_sequence_indices = find


def _no_recompile(active: bool) -> contextlib.AbstractContextManager:
    set_stance = getattr(torch.compiler, "set_stance", None)  # torch >= 2.6
    if not active or set_stance is None:
        return contextlib.nullcontext()
    return set_stance("fail_on_recompile")


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    packed: torch.Tensor  # [2, B, L] int64 on the device: row 0 input ids, row 1 loss mask


class StepPart:
    """One run's share of a graphed step: its optimiser (switched to the fused, and under graphs
    capturable, kernel in place), scheduler, projection and loss settings, and the device tensors
    its loss and non-finite flag land in."""

    def __init__(self, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None, project: Callable[[], None],
                 *, label_smoothing: float = 0.1, grad_clip: float | None = None,
                 device: torch.device) -> None:
        self.optimizer, self.scheduler, self.project = optimizer, scheduler, project
        self.label_smoothing = float(label_smoothing)
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.lr_tensors: list[torch.Tensor] | None = None
        self.loss_out = torch.zeros((), device=device)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)

    def sync_learning_rates(self) -> None:
        assert self.lr_tensors is not None
        for group, lr in zip(self.optimizer.param_groups, self.lr_tensors, strict=True):
            value = group["lr"]
            if isinstance(value, torch.Tensor):
                lr.copy_(value, non_blocking=True)
            else:
                lr.fill_(float(value))


class GraphedStep:
    """A training step equal to the plain one, CUDA-graphed per length bucket where it can be.

    A solo.train.step.TrainStep. `project` is the method's projection (`after_optimizer_step`),
    run after each update; `optimizer` is the trainer's AdamW over the trainable parameters, which
    this class switches to the fused (and, on CUDA, capturable) implementation in place, so build
    the step after loading a checkpoint into the optimiser. `scheduler` (optional) steps after
    each update and keeps writing float learning rates into `optimizer.param_groups`; each step
    copies them to the device.

    `step(batch)` takes a collated batch dict (input_ids, attention_mask, loss_mask; CPU tensors,
    right padded) and returns the batch loss as a 0-dim device tensor without synchronising.
    Gradient accumulation is not supported (one micro-batch per optimiser step).

    Packed runs (solo.train.packed) share one step: `GraphedStep.packed(model, parts, rows)` takes
    one `StepPart` per run and `rows`, the packed forward's context (solo.methods.packing); then
    `step_parts([(part, batch), ...])` runs one forward over the stacked batches, each part's loss
    on its rows (the label-smoothed loss with the part's epsilon; `loss_fn` is for single runs), one backward of their sum and each part's own update, captured per (parts and
    their row counts, length bucket).

    `compile=True` runs the forward pass and loss through torch.compile (inductor, default mode,
    static shapes), compiled once per shape during the first step of that shape; meant for bucketed
    CUDA training (on the CPU it works too, but compiles every distinct length without buckets).
    `compile_seconds` sums those first steps; on a failure `compile_failure` holds the reason.
    Packed steps are not compiled (the packed forward's hooks are Python state dynamo would guard on).

    Under CUDA graphs the gradients live in fixed buffers zeroed each step, so a parameter that
    gets no gradient still receives AdamW's weight decay, where the plain step (gradients set to
    None) would skip it; every parameter of solo's methods gets a gradient every step.
    """

    micro_batches = 1
    deferred = False

    def __init__(
        self,
        model: torch.nn.Module,
        project: Callable[[], None],
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        *,
        pad_id: int,
        label_smoothing: float = 0.1,
        grad_clip: float | None = None,
        buckets: Sequence[int] | None = DEFAULT_BUCKETS,
        precision: str = "fp32",
        cuda_graphs: bool | None = None,
        max_graphs: int = 12,
        loss_fn: Callable[..., torch.Tensor] = label_smoothed_loss,
        log: Callable[[str], None] | None = None,
        compile: bool = False,  # noqa: A002 - mirrors torch.compile; opt-in, see the module docstring
        _parts: Sequence[StepPart] | None = None,
        _rows: Callable[[Sequence[tuple[int, int]]], contextlib.AbstractContextManager] | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.pad_id = int(pad_id)
        self.label_smoothing = float(label_smoothing)
        self.buckets = check_buckets(buckets) if buckets else None
        self.device = next(model.parameters()).device
        self.autocast = apply_precision(precision, self.device)
        self.precision = precision
        self.loss_fn = loss_fn
        self.max_graphs = int(max_graphs)
        self._log = log or (lambda msg: warnings.warn(msg, stacklevel=3))
        self.parts = list(_parts) if _parts is not None else [StepPart(
            optimizer, scheduler, project, label_smoothing=label_smoothing, grad_clip=grad_clip,
            device=self.device)]
        self._rows = _rows
        self.params = [p for part in self.parts for p in part.params]
        model.train()  # submodules too (an adapter attached while the model was in eval mode)

        want_graphs = self.device.type == "cuda" if cuda_graphs is None else bool(cuda_graphs)
        if want_graphs and self.device.type != "cuda":
            self._log("CUDA graphs need a CUDA device; running the step eagerly")
            want_graphs = False
        self.graphed = want_graphs
        self.fallback_reason: str | None = None
        for part in self.parts:
            self._use_fused_optimizer(part)

        self._graphs: dict[tuple, _Graph] = {}
        self._pool = None
        self._static_grads: list[torch.Tensor] | None = None
        self._projection_in_graph = False

        self.steps = 0
        self.eager_steps = 0
        self.capture_seconds = 0.0
        # Seconds spent in the first step of each new shape under torch.compile (the compiling).
        self.compile_seconds = 0.0
        self.compile_failure: str | None = None
        self._compiled_shapes: set[tuple[int, ...]] = set()
        self._compiled: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
        if compile and _parts is None:
            self._compiled = self._compile_forward_loss()

    @classmethod
    def packed(cls, model: torch.nn.Module, parts: Sequence[StepPart],
               rows: Callable[[Sequence[tuple[int, int]]], contextlib.AbstractContextManager],
               **options: Any) -> GraphedStep:
        """One step for several runs over `model` (their packed backbone): see the class docstring."""
        first = parts[0]
        return cls(model, first.project, first.optimizer, first.scheduler, _parts=parts,
                   _rows=rows, **options)

    # ----------------------------------------------------------------------------------------
    # public

    def step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One optimiser step on one micro-batch (update, projection, scheduler); the device loss."""
        (loss,) = self.step_parts([(self.parts[0], batch)])
        return loss

    def step_parts(self, batches: Sequence[tuple[StepPart, dict[str, torch.Tensor]]]) -> list[torch.Tensor]:
        """One optimiser step of each part on its batch, in one forward and backward; the losses."""
        losses = self._step(batches)
        for part, _ in batches:
            if part.scheduler is not None:
                part.scheduler.step()
        return losses

    def _step(self, batches: Sequence[tuple[StepPart, dict[str, torch.Tensor]]]) -> list[torch.Tensor]:
        for _, batch in batches:
            attention_mask = batch.get("attention_mask")
            if attention_mask is not None and attention_mask.device.type == "cpu":
                right_padded_lengths(attention_mask)
        length = pick_bucket(max(int(b["input_ids"].shape[1]) for _, b in batches), self.buckets)
        input_ids = torch.cat([pad_to(b["input_ids"], length, self.pad_id) for _, b in batches])
        loss_mask = torch.cat([pad_to(b["loss_mask"], length, 0) for _, b in batches])
        active = tuple(self.parts.index(part) for part, _ in batches)
        counts = tuple(int(b["input_ids"].shape[0]) for _, b in batches)
        if not self.model.training:  # cheap check; a full .train() walks every module
            self.model.train()
        self.steps += 1

        if self.graphed:
            with on_device(self.device):  # a replay launches on the current device's stream
                losses = self._replay_step(active, counts, length, input_ids, loss_mask)
            if losses is not None:
                return losses
        return self._eager(active, counts, input_ids, loss_mask)

    def _replay_step(self, active: tuple[int, ...], counts: tuple[int, ...], length: int,
                     input_ids: torch.Tensor, loss_mask: torch.Tensor) -> list[torch.Tensor] | None:
        """The step as a graph replay (captured first for a new key); None: run it eagerly."""
        key = (active, counts, length)
        entry = self._graphs.get(key)
        if entry is None and len(self._graphs) < self.max_graphs:
            entry = self._capture(key, input_ids, loss_mask)
        if entry is None:
            return None
        self._load(entry.packed, input_ids, loss_mask)
        for index in active:
            self.parts[index].sync_learning_rates()
        entry.graph.replay()
        if not self._projection_in_graph:
            for index in active:
                self.parts[index].project()
        return [self.parts[index].loss_out.clone() for index in active]

    def check_finite(self) -> bool:
        """True if every loss since the last call was finite (synchronises; resets the flag)."""
        flags = torch.stack([part.nonfinite for part in self.parts])
        ok = not bool(flags.any().item())
        for part in self.parts:
            part.nonfinite.zero_()
        return ok

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)

    @property
    def compiled(self) -> bool:
        """Whether the forward pass and loss currently run through torch.compile."""
        return self._compiled is not None

    # ----------------------------------------------------------------------------------------
    # the step body, shared by eager execution and capture

    def _forward_loss(self, input_ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            # No attention mask: batches are right-padded, so causal attention is exact for every
            # real token, and SDPA can use its fused causal kernel.
            logits = self.model(input_ids=input_ids, use_cache=False).logits
        return self.loss_fn(logits, input_ids, loss_mask, self.label_smoothing)

    def _packed_losses(self, active: tuple[int, ...], counts: tuple[int, ...],
                       input_ids: torch.Tensor, loss_mask: torch.Tensor) -> list[torch.Tensor]:
        """Each active part's loss on its rows of one forward over the stacked batches."""
        assert self._rows is not None
        with self._rows(list(zip(active, counts, strict=True))), self.autocast():
            logits = self.model(input_ids=input_ids, use_cache=False).logits
        return grouped_label_smoothed_losses(
            logits, input_ids, loss_mask,
            [(count, self.parts[index].label_smoothing) for index, count in zip(active, counts, strict=True)])

    def _losses_and_grads(self, active: tuple[int, ...], counts: tuple[int, ...],
                          input_ids: torch.Tensor, loss_mask: torch.Tensor,
                          recover: bool) -> list[torch.Tensor]:
        """Forward, losses and backward; compiled if asked. `recover`: on a compile failure, say so
        and redo the step uncompiled (the eager path); otherwise raise (capture retries itself)."""
        if self._rows is not None:
            losses = self._packed_losses(active, counts, input_ids, loss_mask)
            total = losses[0]
            for loss in losses[1:]:
                total = total + loss
            total.backward()
            return losses
        if self._compiled is None:
            loss = self._forward_loss(input_ids, loss_mask)
            loss.backward()
            return [loss]
        shape = (*input_ids.shape, *loss_mask.shape)
        first = shape not in self._compiled_shapes
        started = time.perf_counter()
        try:
            loss = self._compiled(input_ids, loss_mask)
            loss.backward()  # AOTAutograd compiles the backward graph on its first call
        except Exception as err:
            if not recover:
                raise
            self._drop_compile(f"{type(err).__name__}: {err}")
            self._zero_grads(active)  # a failure inside backward may have left partial gradients
            return self._losses_and_grads(active, counts, input_ids, loss_mask, recover)
        if first:
            self._compiled_shapes.add(shape)
            seconds = time.perf_counter() - started
            self.compile_seconds += seconds
            self._log(f"fast step: compiled forward+loss+backward for shape {tuple(input_ids.shape)} in {seconds:.1f} s")
        return [loss]

    def _body(
        self, active: tuple[int, ...], counts: tuple[int, ...], input_ids: torch.Tensor,
        loss_mask: torch.Tensor, project: bool, recover: bool = False,
    ) -> list[torch.Tensor]:
        if self._static_grads is not None:
            torch._foreach_zero_(self._static_grads)
        with causal_attention_without_mask():
            losses = self._losses_and_grads(active, counts, input_ids, loss_mask, recover)
        out = []
        for index, loss in zip(active, losses, strict=True):
            part = self.parts[index]
            if part.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(part.params, part.grad_clip)
            part.optimizer.step()
            if project:
                part.project()
            loss = loss.detach()
            part.loss_out.copy_(loss)
            part.nonfinite.logical_or_(~torch.isfinite(loss))
            out.append(loss)
        return out

    def _eager(self, active: tuple[int, ...], counts: tuple[int, ...], input_ids: torch.Tensor,
               loss_mask: torch.Tensor) -> list[torch.Tensor]:
        self.eager_steps += 1
        input_ids = input_ids.to(self.device, non_blocking=True)
        loss_mask = loss_mask.to(self.device, dtype=torch.float32, non_blocking=True)
        losses = self._body(active, counts, input_ids, loss_mask, project=True, recover=True)
        if self._static_grads is None:
            for index in active:
                self.parts[index].optimizer.zero_grad(set_to_none=True)
        return [loss.clone() for loss in losses]

    def _zero_grads(self, active: tuple[int, ...]) -> None:
        if self._static_grads is not None:
            torch._foreach_zero_(self._static_grads)
        else:
            for index in active:
                self.parts[index].optimizer.zero_grad(set_to_none=True)

    # ----------------------------------------------------------------------------------------
    # torch.compile

    def _compile_forward_loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        """The forward pass and loss as one torch.compile'd function (compiled lazily, per shape)."""
        try:
            import torch._dynamo  # noqa: F401 - the config below lives there

            # dynamic=False compiles each (batch, length) shape once; allow as many shapes as
            # graphs (dynamo's default limit of 8 would silently run later buckets uncompiled).
            config = torch._dynamo.config
            name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
            setattr(config, name, max(int(getattr(config, name)), self.max_graphs + 4))
            model, autocast, loss_fn = self.model, self.autocast, self.loss_fn
            smoothing = self.label_smoothing

            # A closure, not a bound method, so dynamo guards on what the step uses and not on
            # every attribute of this object.
            def forward_loss(input_ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
                with autocast():
                    logits = model(input_ids=input_ids, use_cache=False).logits
                return loss_fn(logits, input_ids, loss_mask, smoothing)

            # Default mode: inductor fuses the kernels; the CUDA graph around them is ours.
            return torch.compile(forward_loss, dynamic=False)
        except Exception as err:  # e.g. no compiler backend on this platform
            self._drop_compile(f"{type(err).__name__}: {err}")
            return None

    def _drop_compile(self, reason: str) -> None:
        self._compiled = None
        self.compile_failure = reason
        self._log(f"fast step: torch.compile off, continuing uncompiled ({reason[:2000]})")

    # ----------------------------------------------------------------------------------------
    # CUDA graphs

    def _use_fused_optimizer(self, part: StepPart) -> None:
        """Switch a part's optimiser to its fused kernel (one launch for all parameters) where possible."""
        optimizer = part.optimizer
        if not isinstance(optimizer, (torch.optim.AdamW, torch.optim.Adam)):
            if self.graphed:
                self._fallback(f"{type(optimizer).__name__} is not capturable here; need Adam/AdamW")
            return
        fused_ok = all(p.is_floating_point() for p in part.params) and self.device.type in (
            "cuda",
            "cpu",
        )
        for group in optimizer.param_groups:
            if group.get("differentiable"):
                fused_ok = False
            if fused_ok:
                group["fused"] = True
                group["foreach"] = False
            if self.graphed:
                group["capturable"] = True
        # State created by earlier plain steps keeps `step` on the CPU; fused/capturable want it
        # beside the parameter.
        for param, state in optimizer.state.items():
            step = state.get("step")
            if isinstance(step, torch.Tensor) and (fused_ok or self.graphed):
                state["step"] = step.to(param.device, torch.float32)

    def _load(self, packed: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor) -> None:
        host = torch.stack([input_ids.to(torch.int64), loss_mask.to(torch.int64)])
        if host.device.type == "cpu":
            # Pinned memory (from torch's caching host allocator, which waits on the copy before
            # reusing a block) makes the copy truly asynchronous.
            host = host.pin_memory()
        packed.copy_(host, non_blocking=True)

    def _fallback(self, reason: str) -> None:
        self.graphed = False
        self.fallback_reason = reason
        self._graphs.clear()  # never replayed again: free their memory pool
        self._log(f"fast step: CUDA graphs off, running eagerly ({reason})")

    def _capture(self, key: tuple, input_ids: torch.Tensor, loss_mask: torch.Tensor) -> _Graph | None:
        """Warm up and capture the step for one (parts, row counts, length) key; None after a failure.

        Warm-up iterations really update the parameters and optimiser state, so both are
        snapshotted first and restored afterwards: the trajectory equals the plain one.
        """
        active, counts, _ = key
        started = time.perf_counter()
        first = not self._graphs
        snapshot = self._snapshot()
        stream = torch.cuda.Stream(device=self.device)
        parts = [self.parts[index] for index in active]
        try:
            if first:
                self._pool = torch.cuda.graph_pool_handle()
                self._static_grads = [torch.zeros_like(p) for p in self.params]
                for p, g in zip(self.params, self._static_grads, strict=True):
                    p.grad = g
                for part in self.parts:
                    part.lr_tensors = [
                        torch.tensor(float(g["lr"]), dtype=torch.float32, device=self.device)
                        for g in part.optimizer.param_groups
                    ]
                self._projection_in_graph = self._projection_is_sync_free()
            packed = torch.empty((2, *input_ids.shape), dtype=torch.int64, device=self.device)
            self._load(packed, input_ids, loss_mask)
            saved_lrs = []
            for part in parts:
                part.sync_learning_rates()
                saved_lrs.append([g["lr"] for g in part.optimizer.param_groups])
                for group, lr in zip(part.optimizer.param_groups, part.lr_tensors, strict=True):
                    group["lr"] = lr  # the graph must read the rate from device memory
            try:
                stream.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(stream):
                    for _ in range(_FIRST_WARMUP_ITERS if first else _LATER_WARMUP_ITERS):
                        self._body(active, counts, packed[0], packed[1].to(torch.float32),
                                   self._projection_in_graph)
                torch.cuda.current_stream(self.device).wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                # Every shape was compiled during the warm-up; compiling inside a capture would fail
                # obscurely (allocations, autotuning), so a guard miss here is an error instead.
                with _no_recompile(self._compiled is not None), capture(graph, self.device, self._pool):
                    self._body(active, counts, packed[0], packed[1].to(torch.float32),
                               self._projection_in_graph)
            finally:
                for part, lrs in zip(parts, saved_lrs, strict=False):
                    for group, lr in zip(part.optimizer.param_groups, lrs, strict=True):
                        group["lr"] = lr
        except Exception as err:  # any capture failure: keep training, eagerly
            with contextlib.suppress(RuntimeError):  # an invalidated capture may re-raise here
                torch.cuda.synchronize(self.device)
            self._restore(snapshot)
            where = "".join(traceback.format_exception(err, limit=-4))  # the innermost frames
            what = (f"capture of {len(active)} part(s), rows {list(counts)} x length "
                    f"{input_ids.shape[1]} failed: {type(err).__name__}: {err}")
            self._log(f"fast step: capture traceback (innermost frames):\n{where}")
            if self._compiled is not None:
                # Try again without torch.compile before giving up on the graphs.
                self._drop_compile(f"compiled {what}")
                self._compiled_shapes.clear()
                return self._capture(key, input_ids, loss_mask)
            self._fallback(what)
            return None
        torch.cuda.synchronize(self.device)
        self._restore(snapshot)
        entry = _Graph(graph=graph, packed=packed)
        self._graphs[key] = entry
        self.capture_seconds += time.perf_counter() - started
        return entry

    def _projection_is_sync_free(self) -> bool:
        """Whether `after_optimizer_step` can live inside the graph (no host synchronisation).

        It is a projection (clamp, mask re-application), so one extra call here is harmless, and
        the parameters are restored from the snapshot after capture anyway.
        """
        torch.cuda.synchronize(self.device)
        torch.cuda.set_sync_debug_mode("error")
        try:
            for part in self.parts:
                part.project()
            return True
        except RuntimeError as err:
            self._log(f"fast step: after_optimizer_step synchronises ({err}); running it outside the graph")
            return False
        finally:
            torch.cuda.set_sync_debug_mode("default")

    def _snapshot(self) -> dict[str, Any]:
        with torch.no_grad():
            params = [p.detach().clone() for p in self.params]
            state = {
                p: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
                for part in self.parts for p, s in part.optimizer.state.items()
            }
        # Warm-up steps draw dropout masks too: put the generators back, or a run that captures
        # its graphs after a resume would draw other masks than the uninterrupted run.
        rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return {"params": params, "state": state, "rng": rng, "cuda_rng": cuda_rng}

    def _restore(self, snapshot: dict[str, Any]) -> None:
        """Put parameters and optimiser state back in place (the graph holds their addresses)."""
        with torch.no_grad():
            for p, saved in zip(self.params, snapshot["params"], strict=True):
                p.copy_(saved)
            for p, state in (item for part in self.parts for item in part.optimizer.state.items()):
                before = snapshot["state"].get(p)
                for k, v in state.items():
                    if not isinstance(v, torch.Tensor):
                        continue
                    if before is not None and isinstance(before.get(k), torch.Tensor):
                        v.copy_(before[k])
                    else:  # state born during warm-up: a fresh Adam state is all zeros, step 0
                        v.zero_()
            if self._static_grads is not None:
                torch._foreach_zero_(self._static_grads)
            for part in self.parts:
                part.nonfinite.zero_()
        torch.set_rng_state(snapshot["rng"])
        if snapshot["cuda_rng"] is not None:  # into the state object the graphs registered
            torch.cuda.set_rng_state(snapshot["cuda_rng"], self.device)
