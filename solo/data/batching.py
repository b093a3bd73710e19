"""Deterministic, resumable training batches with per-batch padding, in one of two orders
(`data.batch_order`):

- "random": each epoch, a fresh permutation of all examples cut into consecutive batches, as
  microsoft/LoRA's gpt2_ft.py draws them (a DistributedSampler, which shuffles, with set_epoch;
  unlike its DataLoader's drop_last the last short batch is kept, so every example is seen);
- "bucketed": shuffle all examples, cut the order into large chunks, sort each chunk by length
  and slice it into batches (so a batch holds similar lengths and little padding), then shuffle
  the batches (so lengths do not drift through the epoch). Faster; different batches.

Either order depends only on (seed, epoch), so a resumed trainer recomputes `epoch(e)` and skips
to its saved batch index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from solo.data.buckets import pick_bucket
from solo.errors import SoloError

# Batches sorted together per chunk: large enough for tight length groups, small enough that an
# epoch still mixes lengths at random.
CHUNK_BATCHES = 50
BATCH_ORDERS = ("random", "bucketed")


class TrainBatches:
    """Batch index lists per epoch plus `collate`, over pre-encoded (input_ids, loss_mask) examples.

    `bucket_lengths` (e.g. [64, 128, 256]) pads every batch to the smallest bucket that fits its
    longest sequence, so only a few shapes occur (CUDA graphs, compile). `order` is the training
    order, "random" or "bucketed" (module doc). `shuffle=False` gives the same batches every
    epoch, whatever the order: consecutive examples after a stable sort by length (for dev loss).
    """

    def __init__(
        self,
        examples: Sequence[tuple[Sequence[int], Sequence[int]]],
        batch_size: int,
        seed: int,
        pad_id: int,
        bucket_lengths: Sequence[int] | None = None,
        shuffle: bool = True,
        order: str = "bucketed",
    ) -> None:
        if batch_size < 1:
            raise SoloError(f"batch size {batch_size} must be at least 1 (trainer.batch_size)")
        if seed < 0:  # numpy's seed sequences take non-negative integers only
            raise SoloError(f"seed={seed} must be a non-negative integer")
        if order not in BATCH_ORDERS:
            raise SoloError(f"data.batch_order={order!r} must be one of {', '.join(BATCH_ORDERS)}")
        if not examples:
            raise SoloError("no training examples; check data.train_split and data.max_train_examples")
        for index, (ids, mask) in enumerate(examples):
            if len(ids) != len(mask) or not ids:
                raise ValueError(f"example {index}: input_ids and loss_mask must be equal, non-empty")
        self.examples = examples
        self.batch_size = batch_size
        self.seed = seed
        self.pad_id = pad_id
        self.shuffle = shuffle
        self.order = order
        self.lengths = np.array([len(ids) for ids, _ in examples])
        self.bucket_lengths = sorted(bucket_lengths) if bucket_lengths else None
        if self.bucket_lengths and self.lengths.max() > self.bucket_lengths[-1]:
            raise SoloError(
                f"data.bucket_lengths={list(bucket_lengths)} is too short for a {self.lengths.max()}-token "
                "example; add a bucket at least data.max_length long"
            )

    def __len__(self) -> int:
        return math.ceil(len(self.examples) / self.batch_size)

    def epoch(self, epoch: int) -> list[list[int]]:
        """The batches of `epoch` as example index lists: a pure function of (seed, epoch)."""
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return self._slice(order)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.examples))
        if self.order == "random":
            return self._slice(order)
        chunk = self.batch_size * CHUNK_BATCHES  # a multiple of the batch size: one short batch at most
        batches: list[list[int]] = []
        for start in range(0, len(order), chunk):
            part = order[start:start + chunk]
            part = part[np.argsort(-self.lengths[part], kind="stable")]
            batches.extend(self._slice(part))
        return [batches[i] for i in rng.permutation(len(batches))]

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Right-padded tensors for one batch.

        input_ids LongTensor[B,T] (pad_id after the end), attention_mask LongTensor[B,T] (1 on real
        tokens), loss_mask FloatTensor[B,T] aligned with input_ids: 1 where token t is a target,
        i.e. predicted from position t-1 (the trainer shifts logits and labels).
        """
        rows = [self.examples[i] for i in indices]
        width = self.padded_length(max(len(ids) for ids, _ in rows))
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        loss_mask = torch.zeros((len(rows), width), dtype=torch.float32)
        for row, (ids, mask) in enumerate(rows):
            input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
            loss_mask[row, : len(ids)] = torch.as_tensor(mask, dtype=torch.float32)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "loss_mask": loss_mask}

    def padded_length(self, longest: int) -> int:
        """The batch width for a longest sequence: itself, or the smallest bucket that fits it."""
        return pick_bucket(longest, self.bucket_lengths)

    def _slice(self, order: np.ndarray) -> list[list[int]]:
        return [order[i:i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
