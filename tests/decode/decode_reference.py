"""The slow, obviously-correct beam search the fast one is checked against.

One prompt, no KV cache: every step re-runs the model on each hypothesis' whole sequence. Scores
are numpy float32 (IEEE, so the same numbers as the fast search's fp32 tensor ops); candidates
are sorted with an explicit (score desc, beam asc, token asc) key. Semantics: the module doc of
`solo.decode.beam_search`.
"""

from __future__ import annotations

import numpy as np
import torch


def banned_tokens(sequence: list[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already present in `sequence` (prompt included)."""
    if n <= 0 or len(sequence) < n:
        return set()
    context = sequence[len(sequence) - n + 1:]
    return {sequence[i + n - 1] for i in range(len(sequence) - n + 1)
            if sequence[i:i + n - 1] == context}


def next_logits(model, sequence: list[int]) -> np.ndarray:
    """fp32 logits of the token after `sequence`, from a full forward without a cache."""
    ids = torch.tensor([sequence])
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits
    return logits[0, -1].float().numpy().copy()


def next_log_probs(model, sequence: list[int]) -> np.ndarray:
    return torch.log_softmax(torch.from_numpy(next_logits(model, sequence)), dim=-1).numpy()


def reference_beam_search(model, prompt: list[int], *, eos_id: int | tuple[int, ...], num_beams: int,
                          length_penalty: float, no_repeat_ngram_size: int,
                          max_new_tokens: int, ties_to_high_token: bool = False) -> list[int]:
    """Best hypothesis without eos. `ties_to_high_token` flips the token tie-break (only used to
    show that a test's outcome really depends on how ties are broken)."""
    stops = {eos_id} if isinstance(eos_id, int) else set(eos_id)
    k = num_beams
    live: list[tuple[list[int], np.float32]] = [([], np.float32(0.0))]  # best first
    finished: list[tuple[np.float32, int, list[int]]] = []  # (final score, arrival, tokens)
    arrivals = 0
    for step in range(max_new_tokens):
        last_step = step == max_new_tokens - 1
        scores, beams, tokens = [], [], []
        for beam, (generated, score) in enumerate(live):
            log_probs = next_log_probs(model, prompt + generated)
            for token in banned_tokens(prompt + generated, no_repeat_ngram_size):
                log_probs[token] = -np.inf
            scores.append(np.float32(score) + log_probs)
            beams.append(np.full(len(log_probs), beam))
            tokens.append(np.arange(len(log_probs)))
        scores, beams, tokens = (np.concatenate(a) for a in (scores, beams, tokens))
        possible = np.isfinite(scores)
        scores, beams, tokens = scores[possible], beams[possible], tokens[possible]
        token_key = -tokens if ties_to_high_token else tokens
        ranked = np.lexsort((token_key, beams, -scores))[:2 * k]  # last key is the primary one

        penalty = np.float32((step + 1) ** length_penalty)
        new_live = []
        for rank, i in enumerate(ranked):
            generated = live[beams[i]][0]
            token = int(tokens[i])
            if token in stops or last_step:
                if rank < k:
                    output = generated if token in stops else generated + [token]
                    finished.append((scores[i] / penalty, arrivals, output))
                    arrivals += 1
            elif len(new_live) < k:
                new_live.append((generated + [token], scores[i]))
        finished = sorted(finished, key=lambda f: (-f[0], f[1]))[:k]
        live = new_live
        if last_step or not live:
            break
        if len(finished) == k and live[0][1] / penalty <= finished[-1][0]:
            break
    return finished[0][2] if finished else []


def lora_reference_beam_search(model, prompt: list[int], *, eos_id: int | tuple[int, ...],
                               num_beams: int, length_penalty: float, no_repeat_ngram_size: int,
                               max_new_tokens: int, bans_after_softmax: bool = False,
                               prompt_ngrams: bool = False, expand_all_first: bool = False,
                               refill_finished: bool = False) -> list[int]:
    """microsoft/LoRA's gpt2_beam.py search (the "lora" rule of solo.decode.beam_search), written
    out slot by slot. The flags each swap one rule for its HF counterpart; they exist only to show
    that a test's models make every rule matter."""
    stops = {eos_id} if isinstance(eos_id, int) else set(eos_id)
    k = num_beams
    slots: list[tuple[list[int], np.float32]] = [([], np.float32(0.0))] * k
    best: tuple[np.float32, list[int]] | None = None

    def offer(score: np.float32, length: int, tokens: list[int]) -> None:
        nonlocal best
        final = np.float32(score) / np.float32(length ** length_penalty)
        if best is None or final > best[0]:
            best = (final, tokens)

    for step in range(max_new_tokens):
        candidates = []  # (score, slot, token)
        expanded = slots if step > 0 or expand_all_first else slots[:1]
        for slot, (generated, score) in enumerate(expanded):
            searched = prompt + generated if prompt_ngrams else generated
            banned = banned_tokens(searched, no_repeat_ngram_size)
            logits = next_logits(model, prompt + generated)
            if not bans_after_softmax:
                logits[list(banned)] = -np.inf
            log_probs = torch.log_softmax(torch.from_numpy(logits), dim=-1).numpy()
            log_probs[list(banned)] = -np.inf
            log_probs[np.isnan(log_probs)] = -np.inf
            candidates += [(np.float32(score) + log_probs[t], slot, t) for t in range(len(log_probs))]
        ranked = sorted(candidates, key=lambda c: (-c[0], c[1], c[2]))
        if refill_finished:  # HF: finished candidates leave, the next ones take their slots
            new_slots = []
            for score, slot, token in ranked:
                tokens = expanded[slot][0] + [token]
                if token in stops:
                    if len(new_slots) < k:
                        offer(score, step + 1, tokens)
                elif len(new_slots) < k:
                    new_slots.append((tokens, score))
            slots = new_slots
        else:
            slots = []
            for score, slot, token in ranked[:k]:
                tokens = expanded[slot][0] + [token]
                if token in stops:
                    offer(score, step + 1, tokens)
                    score = np.float32(-np.inf)
                slots.append((tokens, score))
    for tokens, score in slots:
        offer(score, max_new_tokens, tokens)
    tokens = best[1] if best is not None else []
    cut = next((i for i, t in enumerate(tokens) if t in stops), len(tokens))
    return tokens[:cut]
