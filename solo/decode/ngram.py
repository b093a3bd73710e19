"""No-repeat-n-gram blocking for a batch of hypotheses, in tensor ops (no Python loop over rows).

A token is banned when the last n-1 tokens followed by it form an n-gram that already occurs
anywhere in the searched tokens. Which tokens are searched is the caller's choice: the search's
"hf" rule passes the whole sequence, prompt included (Hugging Face's `NoRepeatNGramLogitsProcessor`
for decoder-only models), the "lora" rule only the generated tokens (gpt2_beam.py's
`_calc_banned_ngram_tokens` over `history`). Unlike HF with left padding, padding is never part of
an n-gram: each row says where its real tokens start.
"""

from __future__ import annotations

import torch


def ban_repeated_ngrams(log_probs: torch.Tensor, tokens: torch.Tensor, first_real: torch.Tensor,
                        ngram_size: int, length: torch.Tensor | None = None) -> None:
    """Set log_probs[r, t] = -inf (in place) for every token t that would repeat an n-gram of row r.

    log_probs: [rows, vocab] float; tokens: [rows, width] left-padded sequences (prompt + generated
    so far); first_real: [rows] index of the first non-padding position of each row.
    length: only tokens[:, :length] are searched (a 0-dim device tensor: the fixed-shape decode
    step keeps one buffer for all its steps and must not read the step count on the host);
    None: all of them.
    """
    width = tokens.shape[1]
    if ngram_size <= 0 or width < ngram_size:
        return
    searched = width if length is None else length
    # windows[r, i] = tokens[r, i : i + n]; its first n-1 tokens are the context, the last the token
    # that followed that context. Windows that reach past `searched` never match.
    windows = tokens.unfold(1, ngram_size, 1)
    starts = torch.arange(windows.shape[1], device=tokens.device)
    inside = (starts[None, :] >= first_real[:, None]) & (starts[None, :] + ngram_size <= searched)
    context_at = (searched - ngram_size + 1 + torch.arange(ngram_size - 1, device=tokens.device)).clamp(min=0)
    context = tokens.index_select(1, context_at)
    matches = (windows[..., :-1] == context[:, None, :]).all(dim=-1) & inside
    # amin-scatter: +inf for non-matches leaves the score unchanged; duplicates reduce safely.
    # (Filled on the device, not copied from a host scalar: a CUDA graph capture allows no copy.)
    penalties = torch.full(matches.shape, float("inf"), dtype=log_probs.dtype, device=log_probs.device)
    penalties.masked_fill_(matches, float("-inf"))
    log_probs.scatter_reduce_(1, windows[..., -1], penalties, reduce="amin", include_self=True)
