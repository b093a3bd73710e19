"""Label-smoothed next-token loss, as microsoft/LoRA computes it for GPT-2 on E2E."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def token_losses(logits: torch.Tensor, targets: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Per-position loss `(1-eps)*NLL + eps*mean_v(-log p_v)`; logits [B,T,V], targets [B,T] -> [B,T].

    microsoft/LoRA's smoothing: uniform mass over the whole vocabulary, the true token included
    (numerically what `F.cross_entropy(label_smoothing=eps)` gives, spelled out to be auditable).
    """
    nll, smooth = nll_and_smooth(logits, targets, smooth=epsilon != 0.0)
    return smoothed(nll, smooth, epsilon)


def smoothed(nll: torch.Tensor, smooth: torch.Tensor | None, epsilon: float) -> torch.Tensor:
    """`(1-eps)*nll + eps*smooth` per position (just `nll` when eps is 0)."""
    return nll if epsilon == 0.0 else (1.0 - epsilon) * nll + epsilon * smooth


def nll_and_smooth(logits: torch.Tensor, targets: torch.Tensor, smooth: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per position: -log p(target) and (if `smooth`) the mean over the vocabulary of -log p_v."""
    # At least fp32: under bf16 autocast the logits arrive in bf16, too coarse for a mean over
    # 50k; fp64 stays fp64 (the exactness tests compare runs in it).
    wide = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    logprobs = F.log_softmax(wide, dim=-1)
    nll = -logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return nll, (-logprobs.mean(dim=-1) if smooth else None)


def shift_for_next_token(
    logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Align position t-1's prediction with token t: `loss_mask[:, t]` marks token t as a target."""
    return logits[:, :-1, :], input_ids[:, 1:], loss_mask[:, 1:].to(torch.float32)


def masked_token_loss(
    logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor, epsilon: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the per-token losses over target tokens, number of target tokens) for one batch.

    Returning the sum and the count separately lets callers average per batch (training, as
    microsoft/LoRA does) or per token over many batches (dev loss).
    """
    shifted_logits, targets, mask = shift_for_next_token(logits, input_ids, loss_mask)
    losses = token_losses(shifted_logits, targets, epsilon)
    return (losses * mask).sum(), mask.sum()


def label_smoothed_loss(
    logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor, epsilon: float
) -> torch.Tensor:
    """Mean label-smoothed loss over the batch's target tokens (the training objective)."""
    total, count = masked_token_loss(logits, input_ids, loss_mask, epsilon)
    return total / count.clamp(min=1.0)


def grouped_label_smoothed_losses(
    logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor,
    groups: Sequence[tuple[int, float]],
) -> list[torch.Tensor]:
    """`label_smoothed_loss` of each group of rows, (row count, epsilon) in batch order: what
    packed runs need from one forward. The log-softmax runs once over the whole batch and only
    the per-position losses are split, so the backward writes the logits' gradient once (slicing
    the logits per group would give each group a full-size gradient to add)."""
    shifted, targets, mask = shift_for_next_token(logits, input_ids, loss_mask)
    nll, smooth = nll_and_smooth(shifted, targets, smooth=any(eps != 0.0 for _, eps in groups))
    out, start = [], 0
    for count, epsilon in groups:
        rows = slice(start, start + count)
        per_position = smoothed(nll[rows], smooth[rows] if smooth is not None else None, epsilon)
        kept = mask[rows]
        out.append((per_position * kept).sum() / kept.sum().clamp(min=1.0))
        start += count
    return out
