"""Fixed sequence-length buckets: a CUDA graph replays only the shapes it was captured with.

`pick_bucket` is the one rule for a padded batch width: TrainBatches.collate pads to it, and the
graphed training step (solo.train.graphed_step) pads a batch to it again if it arrives narrower.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from solo.errors import SoloError

# E2E examples are 40-110 tokens (MR + reference); batches of 8 mostly end between 80 and 110.
# Steps of 16 keep padding waste under ~15% while needing at most a handful of captures.
DEFAULT_BUCKETS: tuple[int, ...] = (64, 80, 96, 112, 128, 160, 192, 256, 384, 512)

# Lengths past the last bucket round up to a multiple of this, so rare long batches still share
# a few shapes instead of each needing its own graph.
_OVERFLOW_MULTIPLE = 64


def check_buckets(buckets: Sequence[int]) -> tuple[int, ...]:
    """Validate a bucket list (positive, strictly increasing) and return it as a tuple."""
    out = tuple(int(b) for b in buckets)
    if not out or any(b <= 0 for b in out) or any(a >= b for a, b in zip(out, out[1:], strict=False)):
        raise SoloError(
            f"bucket lengths {list(buckets)} must be positive and strictly increasing; "
            "fix data.bucket_lengths (e.g. [64, 96, 128])"
        )
    return out


def pick_bucket(length: int, buckets: Sequence[int] | None) -> int:
    """The smallest bucket >= length; past the last bucket, length rounded up to a multiple of 64."""
    if not buckets:
        return int(length)
    for bucket in buckets:
        if length <= bucket:
            return int(bucket)
    return -(-int(length) // _OVERFLOW_MULTIPLE) * _OVERFLOW_MULTIPLE


def right_padded_lengths(attention_mask: torch.Tensor) -> torch.Tensor:
    """Per-row lengths of a right-padded attention mask; SoloError if any row is not right-padded.

    The fast step drops the attention mask and relies on causal attention alone, which is exact
    only when every pad token comes after every real token of its row.
    """
    lengths = attention_mask.sum(dim=1)
    positions = torch.arange(attention_mask.shape[1]).unsqueeze(0)
    if not torch.equal(attention_mask.to(torch.bool), positions < lengths.unsqueeze(1)):
        raise SoloError(
            "the fast training step needs right-padded batches (attention_mask 1...1 0...0 per row); "
            "use solo.data.TrainBatches.collate or set trainer.fast_step=false"
        )
    return lengths


def pad_to(tensor: torch.Tensor, length: int, value: int | float) -> torch.Tensor:
    """Right-pad (or keep) a [B, T] tensor to [B, length]; length must be >= T."""
    extra = length - tensor.shape[1]
    if extra < 0:
        raise ValueError(f"cannot pad a batch of length {tensor.shape[1]} down to {length}")
    if extra == 0:
        return tensor
    return torch.nn.functional.pad(tensor, (0, extra), value=value)


def concatenate_batches(batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Collated batches stacked along the batch dimension, right padded to the longest (padding:
    attention and loss masks 0, token 0; masked positions never reach a real one)."""
    width = max(b["input_ids"].shape[1] for b in batches)
    return {key: torch.cat([pad_to(b[key], width, 0) for b in batches]) for key in batches[0]}
