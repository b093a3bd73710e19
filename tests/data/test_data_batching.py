"""TrainBatches: deterministic per (seed, epoch), every example once, tight per-batch padding."""

from __future__ import annotations

import random

import pytest
import torch

from solo.data import TrainBatches
from solo.errors import SoloError

PAD = 50256


def _examples(n: int = 1000, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt, target = rng.randint(3, 30), rng.randint(2, 60)
        ids = [rng.randint(0, 50000) for _ in range(prompt + target)]
        out.append((ids, [0] * prompt + [1] * target))
    return out


def _padding_fraction(batches: TrainBatches, epoch: int) -> float:
    real = padded = 0
    for indices in batches.epoch(epoch):
        lengths = [len(batches.examples[i][0]) for i in indices]
        real += sum(lengths)
        padded += max(lengths) * len(lengths)
    return 1 - real / padded


def test_epoch_is_a_pure_function_of_seed_and_epoch():
    examples = _examples()
    a = TrainBatches(examples, batch_size=16, seed=3, pad_id=PAD)
    b = TrainBatches(examples, batch_size=16, seed=3, pad_id=PAD)
    assert a.epoch(2) == b.epoch(2)
    assert b.epoch(5) and a.epoch(2) == b.epoch(2)  # no hidden state advanced by other calls
    assert a.epoch(0) != a.epoch(1)
    assert a.epoch(0) != TrainBatches(examples, 16, seed=4, pad_id=PAD).epoch(0)


def test_every_example_once_per_epoch_and_len():
    examples = _examples(1003)
    batches = TrainBatches(examples, batch_size=16, seed=0, pad_id=PAD)
    epoch = batches.epoch(0)
    assert len(batches) == len(epoch) == 63  # ceil(1003 / 16)
    assert sorted(i for batch in epoch for i in batch) == list(range(1003))
    assert sorted(len(batch) for batch in epoch)[1:] == [16] * 62  # one short batch at most


def test_length_bucketing_cuts_padding_against_random_batches():
    examples = _examples()
    bucketed = TrainBatches(examples, batch_size=16, seed=0, pad_id=PAD)
    rng = random.Random(0)
    order = list(range(len(examples)))
    rng.shuffle(order)
    random_real = random_padded = 0
    for start in range(0, len(order), 16):
        lengths = [len(examples[i][0]) for i in order[start:start + 16]]
        random_real += sum(lengths)
        random_padded += max(lengths) * len(lengths)
    assert _padding_fraction(bucketed, 0) < 0.1 < 1 - random_real / random_padded


def test_collate_pads_right_and_aligns_masks():
    examples = [([1, 2, 3, 4, 5], [0, 0, 1, 1, 1]), ([7, 8, 9], [0, 1, 1])]
    batch = TrainBatches(examples, batch_size=2, seed=0, pad_id=PAD).collate([1, 0])
    assert batch["input_ids"].dtype == torch.long and batch["attention_mask"].dtype == torch.long
    assert batch["loss_mask"].dtype == torch.float32
    assert batch["input_ids"].tolist() == [[7, 8, 9, PAD, PAD], [1, 2, 3, 4, 5]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["loss_mask"].tolist() == [[0, 1, 1, 0, 0], [0, 0, 1, 1, 1]]


def test_bucket_lengths_pad_to_next_bucket_and_reject_overlong():
    examples = [([1] * 5, [0, 0, 1, 1, 1]), ([1] * 9, [0] * 4 + [1] * 5)]
    batches = TrainBatches(examples, batch_size=1, seed=0, pad_id=PAD, bucket_lengths=[16, 8])
    assert batches.collate([0])["input_ids"].shape == (1, 8)
    assert batches.collate([1])["input_ids"].shape == (1, 16)
    assert batches.collate([0, 1])["attention_mask"].sum().item() == 14
    with pytest.raises(SoloError, match="data.bucket_lengths"):
        TrainBatches(examples, batch_size=1, seed=0, pad_id=PAD, bucket_lengths=[8])


def test_no_shuffle_is_the_same_every_epoch_and_sorted_by_length():
    examples = _examples(100)
    batches = TrainBatches(examples, batch_size=8, seed=0, pad_id=PAD, shuffle=False)
    assert batches.epoch(0) == batches.epoch(7)
    flat = [i for batch in batches.epoch(0) for i in batch]
    assert sorted(flat) == list(range(100))
    assert [len(examples[i][0]) for i in flat] == sorted(len(ids) for ids, _ in examples)


def test_rejects_empty_examples_and_bad_batch_size():
    with pytest.raises(SoloError, match="no training examples"):
        TrainBatches([], batch_size=4, seed=0, pad_id=PAD)
    with pytest.raises(SoloError, match="batch size 0"):
        TrainBatches(_examples(3), batch_size=0, seed=0, pad_id=PAD)
    with pytest.raises(SoloError, match="seed=-1"):
        TrainBatches(_examples(3), batch_size=2, seed=-1, pad_id=PAD)


def test_random_order_is_a_fresh_permutation_in_consecutive_batches():
    examples = _examples(1003)
    batches = TrainBatches(examples, batch_size=16, seed=3, pad_id=PAD, order="random")
    epoch = batches.epoch(1)
    assert len(batches) == len(epoch) == 63
    flat = [i for batch in epoch for i in batch]
    assert sorted(flat) == list(range(1003))
    assert [len(b) for b in epoch] == [16] * 62 + [11]  # consecutive slices: the short one last
    # deterministic and resumable: a pure function of (seed, epoch), unlike the bucketed order
    again = TrainBatches(examples, batch_size=16, seed=3, pad_id=PAD, order="random")
    assert again.epoch(1) == epoch and again.epoch(0) != epoch
    assert epoch != TrainBatches(examples, 16, seed=3, pad_id=PAD).epoch(1)
    # no length grouping: padding like random batches, far above the bucketed order's
    bucketed = TrainBatches(examples, 16, seed=3, pad_id=PAD)
    assert _padding_fraction(bucketed, 1) < 0.1 < _padding_fraction(batches, 1)


def test_unknown_batch_order_is_a_solo_error():
    with pytest.raises(SoloError, match=r"data.batch_order='sorted' must be one of random, bucketed"):
        TrainBatches(_examples(10), 4, seed=0, pad_id=PAD, order="sorted")
