"""The label-smoothed loss against a hand computation, and its target-token masking."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from solo.train.loss import label_smoothed_loss, masked_token_loss


def _hand_loss(
    logits: list[list[list[float]]], ids: list[list[int]], mask: list[list[int]], eps: float
) -> float:
    """microsoft/LoRA's formula written out with scalars: position t-1 predicts token t."""
    total, count = 0.0, 0
    for b, row in enumerate(ids):
        for t in range(1, len(row)):
            if not mask[b][t]:
                continue
            scores = logits[b][t - 1]
            log_z = math.log(sum(math.exp(s) for s in scores))
            logp = [s - log_z for s in scores]
            nll = -logp[row[t]]
            uniform = -sum(logp) / len(logp)
            total += (1 - eps) * nll + eps * uniform
            count += 1
    return total / count


def test_label_smoothed_loss_matches_hand_computation() -> None:
    logits = [
        [[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4], [1.0, 1.0, -2.0, 3.0]],
        [[-0.5, 0.0, 2.5, 1.0], [3.0, -3.0, 0.0, 0.7], [0.0, 0.0, 0.0, 0.0]],
    ]
    ids = [[1, 3, 2], [0, 2, 1]]
    # Row 0: both later tokens are targets; row 1: only the middle one (the last is padding).
    mask = [[0, 1, 1], [0, 1, 0]]
    got = label_smoothed_loss(
        torch.tensor(logits), torch.tensor(ids), torch.tensor(mask, dtype=torch.float32), 0.1
    )
    assert got.item() == pytest.approx(_hand_loss(logits, ids, mask, 0.1), rel=1e-6)
    # Smoothing must matter: the unsmoothed value differs.
    plain = label_smoothed_loss(
        torch.tensor(logits), torch.tensor(ids), torch.tensor(mask, dtype=torch.float32), 0.0
    )
    assert plain.item() == pytest.approx(_hand_loss(logits, ids, mask, 0.0), rel=1e-6)
    assert abs(plain.item() - got.item()) > 1e-3


def test_non_target_positions_do_not_change_the_loss() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    ids = torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[0, 0, 1, 1, 0], [0, 1, 1, 1, 1]], dtype=torch.float32)
    base = label_smoothed_loss(logits, ids, mask, 0.1)
    changed_logits = logits.clone()
    changed_logits[0, 3:] = 100.0  # predictions for positions 4 (padding) and beyond
    changed_ids = ids.clone()
    changed_ids[0, 0] = (ids[0, 0] + 1) % 7  # prompt token, never a target
    changed_ids[0, 4] = (ids[0, 4] + 1) % 7  # padding
    assert label_smoothed_loss(changed_logits, changed_ids, mask, 0.1).item() == pytest.approx(
        base.item()
    )
    total, count = masked_token_loss(logits, ids, mask, 0.0)
    assert count.item() == 6
    expected = F.cross_entropy(
        logits[:, :-1].reshape(-1, 7), ids[:, 1:].reshape(-1), reduction="none"
    )
    assert total.item() == pytest.approx(
        (expected * mask[:, 1:].reshape(-1)).sum().item(), rel=1e-6
    )


def test_grouped_losses_equal_each_groups_own_loss() -> None:
    from solo.train.loss import grouped_label_smoothed_losses, label_smoothed_loss

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 6, 11, generator=gen, dtype=torch.float64)
    ids = torch.randint(0, 11, (7, 6), generator=gen)
    mask = (torch.rand(7, 6, generator=gen) > 0.3).double()
    groups = [(3, 0.1), (1, 0.0), (3, 0.25)]
    grouped = grouped_label_smoothed_losses(logits, ids, mask, groups)
    start = 0
    for (count, eps), loss in zip(groups, grouped, strict=True):
        rows = slice(start, start + count)
        assert torch.allclose(loss, label_smoothed_loss(logits[rows], ids[rows], mask[rows], eps),
                              rtol=1e-14, atol=0)
        start += count
