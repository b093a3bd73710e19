"""Packed training: the runs of a sweep share one frozen backbone, and each optimiser step runs it
once over the concatenation of one batch from every run, each run's adapter on its own rows.

Why: the runs of a table differ only in their adapters (rank, sparsity, span, seed, learning
rate...). Alone, each run pushes the same frozen backbone through batches of 4 or 8 rows, which
keeps a GPU launch-bound; packed, N runs make one batch of N times the rows for about the cost
of one.

How it fits (`launcher=packed`, solo.train.lockstep with `pack=True`): each run is still its own
`solo.train.pipeline.experiment_steps`, with its own data order, method, AdamW and scheduler
state, checkpoints, run dir, metrics and wandb run. Two things change:
- `PackMember.load_backbone`: the backbone is loaded as alone (same seed, same RNG draws) and, if
  it equals the backbone of a pack already open (same class, config, device, precision, every
  tensor equal), the run gets `shared_copy` of that pack's backbone and joins it; otherwise it
  opens a new pack. A method that changes the backbone (full fine-tuning) runs alone.
- `PackMember.make_step`: the run's `TrainStep` only queues its micro-batches (`deferred`); the
  loop then yields, and the driver calls `Packer.flush`, which for each pack runs the backbone
  once over all queued batches (right padded to the longest), takes each run's loss on its own
  rows (its label smoothing, its 1/grad_accum), backpropagates their sum and then lets each run
  take its own optimiser step (`PlainStep.update`: its clipping, AdamW, scheduler, projection).

Exactness: rows of a transformer never mix and the runs' losses are separate terms of the sum,
so each run gets its own gradient; a packed run equals the run alone up to floating-point
rounding (padding to the pack's longest batch changes only masked positions). With dropout on,
each joint step's draws come from a seed made of one draw from each of its runs' own generators
(`joint_seed`), so a packed run is reproducible run by run and across a resume, but draws
different masks than alone. A pack's dev losses are one pass for all its runs, and once
every run has finished training the pack decodes the test set for all of them in one beam search
(solo.decode.beam_search.PackedDecoding: each prompt once per run, each run's adapter on its own
rows; the same tokens as alone in exact arithmetic — on CUDA the packed search batches prompts
differently, so fp32/bf16 rounding may flip a near-tie); a run resumed after training (its
adapter saved) joins that search with its saved adapter. A run that fails (a non-finite loss, an error) leaves its
pack; the others go on.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from solo.data.buckets import concatenate_batches
from solo.errors import SoloError
from solo.methods.packing import PackedForward, shared_copy
from solo.train.graphed_step import GraphedStep, StepPart
from solo.train.loop import evaluating, joint_dev_losses
from solo.train.loss import grouped_label_smoothed_losses
from solo.train.precision import apply_precision
from solo.train.rng import RunState
from solo.train.step import (
    PlainStep,
    compile_setting,
    forward_logits,
    loss_settings,
    make_train_step,
    step_buckets,
    to_device,
    use_fast_step,
)

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from solo.methods import Method
    from solo.train.step import TrainStep

# Methods that leave the backbone frozen and describe themselves as packed terms.
PACKABLE_METHODS = ("solo", "lora")


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def same_backbone(a: nn.Module, b: nn.Module) -> bool:
    """Same class, config and tensors (names, dtypes, values): one can stand in for the other."""
    if type(a) is not type(b):
        return False
    config_a, config_b = getattr(a, "config", None), getattr(b, "config", None)
    if (config_a is None) != (config_b is None):
        return False
    if config_a is not None and config_a.to_dict() != config_b.to_dict():
        return False
    left, right = _tensors(a), _tensors(b)
    if left.keys() != right.keys():
        return False
    for name, x in left.items():
        y = right[name]
        if x.dtype != y.dtype or x.shape != y.shape or not torch.equal(x, y.to(x.device)):
            return False
    return True


@dataclass
class _Queued:
    member: PackMember
    batch: dict[str, torch.Tensor]
    loss: torch.Tensor  # filled by the flush
    seed: int  # drawn from the run's own generator: its share of the joint step's dropout seed


def joint_seed(seeds: Sequence[int]) -> int:
    """One seed for a joint step from its runs' draws, in queue order."""
    digest = hashlib.blake2b(",".join(map(str, seeds)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


@dataclass(eq=False)
class PendingDecode:
    """A run's test-set decoding, queued for the pack's joint search; `result` once decoded."""

    member: PackMember
    tokenizer: Any
    mrs: list[str]
    decode_cfg: dict[str, Any]
    result: tuple[list[str], Any] | None = None  # (predictions, solo.decode.DecodeStats)

    def key(self) -> tuple:
        """Runs decode together when their searches differ only in the adapter."""
        from solo.decode.predict import settings_from_config

        tokenizer = self.tokenizer
        return (settings_from_config(self.decode_cfg), type(tokenizer).__name__,
                getattr(tokenizer, "name_or_path", None), len(tokenizer), tuple(self.mrs))


@dataclass(eq=False)
class PendingDevLoss:
    """A run's dev loss, queued for the pack's joint evaluation; `value` once flushed."""

    member: PackMember
    order: list[list[int]]  # its dev batches (solo.train.loop.dev_order)
    batches: Any  # its BatchSource, to collate them
    value: float = float("nan")


class PackedStep:
    """A run's TrainStep inside a pack: queues micro-batches; the pack's flush does the work,
    eagerly (`plain`: the run's loss settings and optimiser update) or as its part of the pack's
    graphed step (`part`: solo.train.graphed_step.StepPart)."""

    deferred = True

    def __init__(self, member: PackMember, plain: PlainStep | None = None,
                 part: StepPart | None = None) -> None:
        assert (plain is None) != (part is None)
        self.member, self.plain, self.part = member, plain, part
        self.micro_batches = plain.micro_batches if plain is not None else 1

    def step(self, cpu_batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pack = self.member.pack
        assert pack is not None
        # fp64 holds any loss dtype exactly, so the logged value is the one computed.
        loss = torch.full((), float("nan"), dtype=torch.float64, device=pack.device)
        # From the run's own generator, which its checkpoint saves and a resume restores.
        seed = int(torch.randint(0, 2**62, ()))
        pack.queue.append(_Queued(self.member, cpu_batch, loss, seed))
        return loss

    def check_finite(self) -> bool:
        return True  # every loss is returned, and the loop checks those


class Pack:
    """One frozen backbone and the runs packed over it."""

    def __init__(self, backbone: nn.Module, device: torch.device, precision: str) -> None:
        self.backbone = backbone.to(device)
        self.device, self.precision = device, precision
        self.forward = PackedForward(self.backbone)
        self.queue: list[_Queued] = []
        self.dev_queue: list[PendingDevLoss] = []
        self.decode_queue: list[PendingDecode] = []
        self.members: list[PackMember] = []
        self._graphed: GraphedStep | None = None  # the graphed step of the runs that take one
        self.graphed_options: dict[str, Any] = {}
        # The pack's own generator objects (the graphs it captures register them) and TF32 flags;
        # each flush reseeds the generators (joint_seed).
        self.state = RunState(cuda=device.type == "cuda")

    def accepts(self, backbone: nn.Module, device: torch.device, precision: str) -> bool:
        return device == self.device and precision == self.precision and same_backbone(
            self.backbone, backbone)

    def flush(self) -> None:
        """The queued micro-batches of every run: one forward and backward per micro-batch
        index over all runs' rows, then each run's optimiser update."""
        queued, self.queue = self.queue, []
        evaluations, self.dev_queue = self.dev_queue, []
        if evaluations:
            self._dev_losses(evaluations)
        if self.decode_queue and self._all_decoding():
            decodes, self.decode_queue = self.decode_queue, []
            self._decode(decodes)
        if not queued:
            return
        self.state.restore()
        # The joint step's dropout masks: seeded from its runs' own generators, so a pack
        # rebuilt on resume (whose own generator state no checkpoint holds) draws the masks the
        # uninterrupted pack drew.
        torch.manual_seed(joint_seed([item.seed for item in queued]))
        self.backbone.train()
        try:
            graphed = [item for item in queued if item.member.step.part is not None]
            if graphed:
                self._graphed_step(graphed)
            eager = [item for item in queued if item.member.step.plain is not None]
            if eager:
                self._eager_step(eager)
        finally:
            self.state.capture()

    def _graphed_step(self, items: Sequence[_Queued]) -> None:
        """One GraphedStep over the runs' parts: captured per (runs, rows, bucket) on CUDA."""
        parts = [item.member.step.part for item in items]
        if self._graphed is None or any(part not in self._graphed.parts for part in parts):
            stepping = [m for m in self.members if m.step is not None and m.step.part]
            # The step names a run by its part's place among `stepping`; the packed forward, by
            # its member index (members that take the eager step, or none, hold indices too).
            indices = [m.index for m in stepping]

            def rows(counts: Sequence[tuple[int, int]]) -> contextlib.AbstractContextManager:
                return self.forward.rows([(indices[place], n) for place, n in counts])

            self._graphed = GraphedStep.packed(
                self.backbone, [m.step.part for m in stepping], rows, precision=self.precision,
                cuda_graphs=self.device.type == "cuda", **self.graphed_options)
        losses = self._graphed.step_parts([(item.member.step.part, item.batch) for item in items])
        for item, loss in zip(items, losses, strict=True):
            item.loss.copy_(loss)

    def _dev_losses(self, pending: Sequence[PendingDevLoss]) -> None:
        """Every queued dev loss in one pass: batch i of each run stacked into one forward, each
        run's adapter on its rows, in eval mode (what solo.train.loop.dev_loss computes alone)."""

        def rows(present: list[int], sizes: list[int]):
            return self.forward.rows([(pending[k].member.index, size)
                                      for k, size in zip(present, sizes, strict=True)])

        with evaluating([self.backbone, *(p.member.model for p in pending)]):
            values = joint_dev_losses(
                self.backbone, [(p.batches, p.order) for p in pending], self.device,
                autocast=apply_precision(self.precision, self.device), rows=rows)
        for p, value in zip(pending, values, strict=True):
            p.value = value

    def _all_decoding(self) -> bool:
        """Every run with its adapter in the pack has finished training and waits to decode: the
        most runs share the search when the pack decodes now."""
        waiting = {id(p.member) for p in self.decode_queue}
        return all(id(m) in waiting for m in self.members if m.packed)

    def _decode(self, pending: Sequence[PendingDecode]) -> None:
        """The queued decodings, one search per set of runs with the same prompts and settings,
        each run's adapter on its own rows (solo.decode.decode_mrs_packed), in eval mode."""
        from solo.decode.beam_search import PackedDecoding
        from solo.decode.predict import decode_mrs_packed

        self._graphed = None  # training is over: its CUDA graphs' memory goes to the search
        apply_precision(self.precision, self.device)  # the runs' matmul mode, as each alone
        groups: dict[tuple, list[PendingDecode]] = {}
        for item in pending:
            groups.setdefault(item.key(), []).append(item)
        with evaluating([p.member.model for p in pending]):  # the search sets the backbone's mode
            for items in groups.values():
                first = items[0]
                packed = PackedDecoding(self.forward, tuple(item.member.index for item in items))
                results = decode_mrs_packed(self.backbone, packed, first.tokenizer, first.mrs,
                                            first.decode_cfg)
                for item, result in zip(items, results, strict=True):
                    item.result = result

    def _eager_step(self, queued: Sequence[_Queued]) -> None:
        autocast = apply_precision(self.precision, self.device)
        rounds: dict[int, list[_Queued]] = {}
        seen: dict[int, int] = {}
        for item in queued:  # a run's k-th micro-batch goes into round k
            k = seen.get(id(item.member), 0)
            seen[id(item.member)] = k + 1
            rounds.setdefault(k, []).append(item)
        for items in rounds.values():
            self._forward_backward(items, autocast)
        for member in dict.fromkeys(item.member for item in queued):
            member.step.plain.update()

    def _forward_backward(self, items: Sequence[_Queued], autocast) -> None:
        batch = to_device(concatenate_batches([item.batch for item in items]), self.device)
        counts = [(item.member.index, int(item.batch["input_ids"].shape[0])) for item in items]
        with self.forward.rows(counts), autocast():
            logits = forward_logits(self.backbone, batch)
        losses = grouped_label_smoothed_losses(
            logits, batch["input_ids"], batch["loss_mask"],
            [(count, item.member.step.plain.label_smoothing)
             for item, (_, count) in zip(items, counts, strict=True)])
        total = None
        for item, loss in zip(items, losses, strict=True):
            item.loss.copy_(loss.detach())
            scaled = loss * (1.0 / item.member.step.micro_batches)
            total = scaled if total is None else total + scaled
        assert total is not None
        total.backward()


@dataclass(eq=False)  # hashed by identity: one per run
class PackMember:
    """One run's place in a `Packer`: how it loads its backbone and builds its training step."""

    packer: Packer
    index: int
    pack: Pack | None = None  # None: the run trains alone (not packable, or not yet loaded)
    step: PackedStep | None = None
    model: nn.Module | None = None  # the run's own module tree over the pack's backbone
    _terms_added: bool = field(default=False, repr=False)

    def load_backbone(self, cfg: DictConfig) -> tuple[nn.Module, Any]:
        """`load_backbone(cfg.model)` as alone; shared with a pack's when the run can be packed."""
        from solo.models import load_backbone
        from solo.train.loop import resolve_device

        model, tokenizer = load_backbone(cfg.model)
        if str(cfg.method.name) not in PACKABLE_METHODS:
            return model, tokenizer
        return self.join(model, resolve_device(str(cfg.trainer.device)), str(cfg.trainer.precision)), tokenizer

    def join(self, backbone: nn.Module, device: torch.device, precision: str) -> nn.Module:
        """The run's own module tree over the backbone of the pack `backbone` equals (a new pack
        if none does); attach the run's method to it."""
        self.pack = self.packer.pack_for(backbone, device, precision)
        self.pack.members.append(self)
        self.model = shared_copy(self.pack.backbone)
        return self.model

    def attach(self, method: Method) -> None:
        """Register the run's method with its pack (after `apply_method` on the run's tree)."""
        if self.pack is None:
            return
        terms = method.packed_terms()
        if terms is None:
            raise SoloError(f"method {method.name!r} cannot be packed; train it with launcher=lockstep")
        self.pack.forward.add_member(self.index, terms)
        self._terms_added = True

    def make_step(self, model: nn.Module, project, optimizer, scheduler, *, trainer_cfg: DictConfig,
                  **kwargs: Any) -> TrainStep:
        """The run's TrainStep: a `PackedStep` in a pack, else the step it takes alone. A run
        whose `trainer.fast_step` picks the graphed step alone takes its part of the pack's
        graphed step (CUDA graphs on CUDA)."""
        if not self.packed:
            return make_train_step(model, project, optimizer, scheduler, trainer_cfg=trainer_cfg,
                                   **kwargs)
        if use_fast_step(trainer_cfg, self.pack.device):
            if compile_setting(trainer_cfg):
                warnings.warn(
                    "trainer.compile=true does not apply to packed runs (dynamo would guard on the "
                    "packed forward's per-row state); the pack's step runs uncompiled", stacklevel=2)
            return self.graphed_packed_step(
                optimizer, scheduler, project, **loss_settings(trainer_cfg),
                pad_id=int(kwargs["pad_id"]), bucket_lengths=kwargs.get("bucket_lengths"))
        return self.packed_step(PlainStep(
            model, project, optimizer, scheduler, **loss_settings(trainer_cfg),
            micro_batches=int(trainer_cfg.get("grad_accum") or 1),
        ))

    def packed_step(self, plain: PlainStep) -> PackedStep:
        """The run's eager step in its pack; `plain` holds its loss settings and its update."""
        self.step = PackedStep(self, plain)
        return self.step

    def graphed_packed_step(self, optimizer, scheduler, project, *, label_smoothing: float,
                            grad_clip: float | None, pad_id: int,
                            bucket_lengths: Sequence[int] | None = None) -> PackedStep:
        """The run's part of its pack's graphed step (one CUDA graph per set of runs, rows and
        length bucket on CUDA; the same body eagerly elsewhere)."""
        assert self.pack is not None
        self.pack.graphed_options = {
            "pad_id": int(pad_id), "buckets": step_buckets(bucket_lengths, self.pack.device),
        }
        self.step = PackedStep(self, part=StepPart(
            optimizer, scheduler, project, label_smoothing=label_smoothing, grad_clip=grad_clip,
            device=self.pack.device))
        return self.step

    def dev_loss_queue(self):
        """`train_steps`'s `queue_dev_loss` for a packed run (its dev loss computed with the
        pack's other runs' in one pass); None for a run that trains alone."""
        if not self.packed:
            return None

        def queue(batches, max_examples: int | None) -> PendingDevLoss:
            from solo.train.loop import dev_order

            assert self.pack is not None
            pending = PendingDevLoss(self, dev_order(batches, max_examples=max_examples), batches)
            self.pack.dev_queue.append(pending)
            return pending

        return queue

    @property
    def packed(self) -> bool:
        """The run's adapter is in its pack's forward (it trains, evaluates and decodes packed)."""
        return self.pack is not None and self._terms_added

    def queue_decode(self, tokenizer, mrs: Sequence[str], decode_cfg: dict[str, Any]) -> PendingDecode:
        """Queue a packed run's test-set decoding: the pack decodes it with its other runs' once all
        have finished training; yield until `result` is set."""
        if not self.packed:
            raise SoloError("only a run whose adapter is in its pack decodes packed")
        assert self.pack is not None
        pending = PendingDecode(self, tokenizer, list(mrs), dict(decode_cfg))
        self.pack.decode_queue.append(pending)
        return pending

    def leave(self) -> None:
        """The run is over (finished or failed): its rows and queued batches leave the pack."""
        if self.pack is None:
            return
        self.pack.forward.remove_member(self.index)
        self.pack.queue = [item for item in self.pack.queue if item.member is not self]
        self.pack.dev_queue = [item for item in self.pack.dev_queue if item.member is not self]
        self.pack.decode_queue = [item for item in self.pack.decode_queue if item.member is not self]
        if self in self.pack.members:
            self.pack.members.remove(self)
        self._terms_added = False


class Packer:
    """The packs of one launch: each run joins the pack whose backbone equals its own."""

    def __init__(self) -> None:
        self.packs: list[Pack] = []
        self._indices = itertools.count()

    def member(self) -> PackMember:
        return PackMember(self, next(self._indices))

    def pack_for(self, backbone: nn.Module, device: torch.device, precision: str) -> Pack:
        for pack in self.packs:
            if pack.accepts(backbone, device, precision):
                return pack
        pack = Pack(backbone, device, precision)
        self.packs.append(pack)
        return pack

    def flush(self) -> None:
        for pack in self.packs:
            pack.flush()
