"""Batched beam search with a KV cache for any Hugging Face decoder-only causal LM.

Two search rules, `style` (decode.style), each defined exactly; the tests check both token for
token against slow one-prompt implementations in `tests/decode/decode_reference.py`. Per prompt,
with K = num_beams, V = vocabulary size, T = max_new_tokens, "stop token" = any of `eos_id`:

Common to both. A hypothesis' score is a sum of fp32 log-probabilities, each the fp32
`log_softmax` of the model's logits (cast to fp32 first, whatever the model's dtype); additions
are fp32. Candidates are ranked by score, ties broken by lower beam index (beams are ordered by
rank at the previous step), then lower token id. A final score is score / L**length_penalty,
L = number of generated tokens *including* the stop token, computed in fp32 as
fp32(score) / fp32(L**length_penalty). The result is the best final hypothesis cut before its
first stop token.

style "lora": microsoft/LoRA's examples/NLG/src/gpt2_beam.py, rule for rule.
* Bans. A token that would repeat an n-gram of the hypothesis' *generated* tokens (the prompt is
  not searched; see `ngram.py`) gets logit -inf *before* the softmax, so the other tokens'
  probabilities renormalise. (A row where every token is banned, possible only with a vocabulary
  smaller than the history, gets -inf everywhere: LoRA's softmax would give NaN there.)
* Step. K slots, all holding the empty hypothesis with score 0. The first step expands slot 0
  only (the slots are identical); later steps expand every slot by every token. The best K of
  those (K x V, or V at the first step) fill the K slots in rank order.
* Finishing. A slot whose new token is a stop token offers its hypothesis with its final score,
  then keeps its slot with score -inf (its continuations rank last; the slot is not refilled).
  After T steps, always T (no early stop), every slot offers its hypothesis, stop token or not.
  An offer replaces the best one if there is none yet or if its final score is strictly higher
  (so ties go to the earlier offer: earlier step, then better rank).

style "hf": Hugging Face `generate` semantics (`early_stopping=False`).
* Bans. A token that would repeat an n-gram of the sequence (prompt included; see `ngram.py`)
  gets -inf *after* the softmax. Candidates with score -inf are impossible and never kept.
* Step. Starting from one live hypothesis (the empty one, score 0), every step expands each live
  hypothesis by every token. Of the best 2K candidates:
  - a candidate "finishes" if its token is a stop token, or if this step is the last one allowed
    (T); it joins the finished set only if it is among the best K (HF's rule);
  - the first K candidates that do not finish, in rank order, are the next live hypotheses.
* Finished set. At most K hypotheses, kept sorted by final score; ties go to the one that
  finished earlier (older step first, then better rank within a step).
* Stopping. A prompt is done after T steps, when no live hypothesis remains, or by HF's
  `early_stopping=False` heuristic: once the finished set is full and the best live score
  divided by (tokens generated so far)**length_penalty is <= the worst finished score. A done
  prompt never changes again.
With a vocabulary of at least 2K tokens this is what `model.generate(num_beams=K,
length_penalty=..., no_repeat_ngram_size=..., early_stopping=False)` does (on a single prompt:
HF includes padding in its n-grams); HF leaves ties in an unspecified order.

Batching: prompts are sorted by length and run in batches with left padding; the attention mask
and position ids make padding invisible, so a prompt's result does not depend on its batch.
That holds exactly in exact arithmetic (the tests use float64 models); in fp32/bf16 the model's
kernels may round differently for other batch shapes, which can flip a near-tie.

Model calls go through a DecoderState (prompt pass, one token per row per step, beam reorder,
removal of done prompts). The default, HFCacheState, is the model's own forward with a
DynamicCache: the prompt pass runs once per prompt and its cache is repeated K times, each step
concatenates to and reorders the whole cache. solo.decode.gpt2_state's SharedPromptGPT2State computes the
same logits for GPT-2 without those copies. Host syncs per step: "is the top-k superset
tie-free?" and (hf) "is any prompt done?"; solo.decode.static_search runs the same search as a
fixed-shape step that reads the host only every decode.sync_every steps (the fast engine's).
"""

from __future__ import annotations

import inspect
import math
import operator
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from solo.decode.ngram import ban_repeated_ngrams
from solo.errors import SoloError

ENGINES = ("fast", "reference")
STYLES = ("lora", "hf")
# Prompts per batch when nothing sizes the batch to a GPU's memory.
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class BeamSettings:
    """The search settings; the defaults are `configs/decode/default.yaml` (the paper-table recipe:
    microsoft/LoRA's E2E decoding).

    style: the search rule, "lora" or "hf" (module doc).
    batch_size only affects speed (None: memory-sized on CUDA with the fast engine, else
    DEFAULT_BATCH_SIZE).
    extra_stop_tokens: strings that end a hypothesis besides the tokenizer's eos, one token each
    (solo.decode.text.stop_token_ids).
    engine picks the decoding state, not the search: "reference" runs the model's own forward
    with HF's DynamicCache, "fast" solo.decode.gpt2_state's SharedPromptGPT2State for GPT-2 models (the
    reference for others); both give the same tokens up to floating-point rounding.
    sync_every, cuda_graph: speed only, for the fast engine on GPT-2 (solo.decode.static_search):
    the host reads the search's flags every sync_every steps; cuda_graph "auto" replays each step
    as a CUDA graph on CUDA, True requires that (an error where it cannot), False never.
    """

    num_beams: int = 10
    length_penalty: float = 0.8
    no_repeat_ngram_size: int = 4
    max_new_tokens: int = 64
    batch_size: int | None = None
    engine: str = "fast"
    style: str = "lora"
    extra_stop_tokens: tuple[str, ...] = ("\n\n",)
    sync_every: int = 8
    cuda_graph: str | bool = "auto"

    def validate(self) -> None:
        for field, low in (("num_beams", 1), ("no_repeat_ngram_size", 0), ("max_new_tokens", 0),
                           ("batch_size", 1), ("sync_every", 1)):
            value = getattr(self, field)
            if field == "batch_size" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SoloError(f"decode.{field}={value!r} must be an integer >= {low}")
        penalty = self.length_penalty
        if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or not math.isfinite(penalty):
            raise SoloError(f"decode.length_penalty={penalty!r} must be a finite number (scores are "
                            "divided by length ** length_penalty; the paper's recipe: 0.8)")
        if self.engine not in ENGINES:
            raise SoloError(f"decode.engine={self.engine!r} must be one of {', '.join(ENGINES)}")
        if self.style not in STYLES:
            raise SoloError(f"decode.style={self.style!r} must be one of {', '.join(STYLES)}")
        if not (isinstance(self.cuda_graph, bool) or self.cuda_graph == "auto"):
            raise SoloError(f"decode.cuda_graph={self.cuda_graph!r} must be auto, true or false")
        if isinstance(self.extra_stop_tokens, str) or not all(
                isinstance(t, str) and t for t in self.extra_stop_tokens):
            raise SoloError(f"decode.extra_stop_tokens={self.extra_stop_tokens!r} must be a list of "
                            "non-empty strings (each one token, e.g. ['\\n\\n'] for GPT-2)")


def beam_search(model: nn.Module, prompts: Sequence[Sequence[int]], *, eos_id: int | Sequence[int],
                pad_id: int, num_beams: int = 10, length_penalty: float = 0.8,
                no_repeat_ngram_size: int = 4, max_new_tokens: int = 64, style: str = "lora",
                batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False,
                state: StateFactory | None = None, packed: PackedDecoding | None = None) -> list[Any]:
    """One generated token list per prompt (no prompt, no stop token), in the order of `prompts`.

    `eos_id` is the stop token id, or several: a hypothesis ends at the first of any of them.

    See the module doc for the exact search. The model is put in eval mode for the search and
    restored afterwards; results do not depend on batch_size or on which prompts share a batch.
    `state` builds the per-batch DecoderState (default: the model's own forward with a
    DynamicCache); solo.decode.engine passes a faster one that computes the same logits.
    `packed`: decode for several runs' adapters at once (see PackedDecoding); then the result is
    one such list per member.
    """
    settings = BeamSettings(num_beams=num_beams, length_penalty=float(length_penalty),
                            no_repeat_ngram_size=no_repeat_ngram_size,
                            max_new_tokens=max_new_tokens, batch_size=batch_size, style=style)
    make_state = state or HFCacheState

    def search_batch(device, prompts, stop_ids, pad_id, settings, on_select=None):
        return _search_batch(make_state(model, num_beams), device, prompts, stop_ids, pad_id,
                             settings, on_select)

    return decode_in_batches(model, prompts, settings, eos_id=eos_id, pad_id=pad_id,
                             search_batch=search_batch, progress=progress, packed=packed)


# search_batch(device, prompts, stop_ids, pad_id, settings, on_select=None): one batch's tokens;
# on_select(prompts), if given, hears which batch prompts stay whenever some leave the batch.
BatchSearch = Callable[..., list[list[int]]]


class PromptPacking(Protocol):
    """What packed decoding needs of the backbone's packing (solo.methods.packing.PackedForward):
    within `prompts(members)`, a forward's rows of prompt i get member `members[i]`'s adapter;
    the context's value has `keep(prompts)`, told which batch prompts stay when some leave."""

    def prompts(self, members: Sequence[int]) -> AbstractContextManager[Any]: ...


@dataclass(frozen=True)
class PackedDecoding:
    """Decode the prompts once for each of several runs whose adapters are packed over one backbone
    (solo.methods.packing): every batch of prompts goes in once per member, member by member, and
    `forward` applies each member's adapter to its own rows. Each member gets the tokens it gets
    decoded alone (rows never mix), for the price of one backbone pass per step for all."""

    forward: PromptPacking
    members: tuple[int, ...]

    def batch_size(self, per_search: int) -> int:
        """Prompts per batch such that a search batch (all members) holds about `per_search`."""
        return max(1, per_search // len(self.members))


def decode_in_batches(model: nn.Module, prompts: Sequence[Sequence[int]], settings: BeamSettings, *,
                      eos_id: int | Sequence[int], pad_id: int, search_batch: BatchSearch,
                      progress: bool = False, packed: PackedDecoding | None = None) -> list[Any]:
    """What every search shares around its per-batch search: checks, batches of similar lengths,
    eval and inference mode, results back in the order of `prompts`.

    `search_batch` (BatchSearch) decodes one batch (beam_search's or solo.decode.static_search's).
    `packed`: each batch once per member (PackedDecoding); the result is one list per member.
    """
    if settings.batch_size is None:
        raise SoloError("beam_search needs an integer batch_size")
    settings.validate()
    for i, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise SoloError(f"prompt {i} is empty; a decoder-only model needs at least one token")
    _check_positions(model, prompts, settings.max_new_tokens)
    stop_ids = stop_id_tuple(eos_id)

    copies = len(packed.members) if packed is not None else 1
    results: list[list[list[int]]] = [[[] for _ in prompts] for _ in range(copies)]
    if settings.max_new_tokens == 0 or not prompts:
        return results if packed is not None else results[0]
    # Similar lengths share a batch, so little compute goes to padding; stable for determinism.
    size = settings.batch_size
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    batches = [order[s:s + size] for s in range(0, len(order), size)]
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="decode", unit="batch")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in batches:
                texts = [list(prompts[i]) for i in batch]
                if packed is None:
                    outs = search_batch(device, texts, stop_ids, pad_id, settings)
                else:
                    members = [m for m in packed.members for _ in batch]
                    with packed.forward.prompts(members) as layout:
                        outs = search_batch(device, texts * copies, stop_ids, pad_id, settings,
                                            on_select=layout.keep)
                for copy in range(copies):
                    own = outs[copy * len(batch):(copy + 1) * len(batch)]
                    for i, out in zip(batch, own, strict=True):
                        results[copy][i] = out
    finally:
        model.train(was_training)
    return results if packed is not None else results[0]


def stop_id_tuple(eos_id: int | Sequence[int]) -> tuple[int, ...]:
    """The stop ids as a non-empty tuple of ints (one id or several)."""
    given = list(eos_id) if isinstance(eos_id, Sequence) else [eos_id]
    try:
        ids = tuple(operator.index(i) for i in given if not isinstance(i, bool))
    except TypeError:
        ids = ()
    if not ids or len(ids) < len(given) or any(i < 0 for i in ids):
        raise SoloError(f"stop token ids must be one or more non-negative integers, got {eos_id!r}")
    return tuple(dict.fromkeys(ids))


class DecoderState(Protocol):
    """What the search needs from a model: logits for the next token of every live row.

    Rows are numbered prompt * num_beams + beam within the current batch. `start` runs the
    prompts (left-padded) and returns one row of logits per prompt; every beam of a prompt starts
    from it. `reorder(rows)` makes row i continue the hypothesis that row rows[i] held; `select`
    keeps only the given rows (whole prompts leave the batch); `advance` feeds one token per row
    at `positions` and returns the next logits. `mask` is the attention mask over the padded
    prompt and the tokens generated so far (an implementation may track it itself).
    """

    def start(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor: ...
    def reorder(self, rows: torch.Tensor) -> None: ...
    def select(self, rows: torch.Tensor) -> None: ...
    def advance(self, tokens: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor: ...


class HFCacheState:
    """DecoderState for any Hugging Face causal LM, through its own forward and a DynamicCache."""

    def __init__(self, model: nn.Module, num_beams: int):
        self.model = model
        self.num_beams = num_beams
        params = _forward_parameters(model)
        # transformers 5.x renamed `past_key_values` to `cache` (old name deprecated).
        self.cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self.keep_last_logits_only = "logits_to_keep" in params
        self.cache = self._new_cache()

    def _new_cache(self):
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.model.config)
        except TypeError:  # transformers 4.x
            return DynamicCache()

    def _last_logits(self, input_ids, attention_mask, position_ids) -> torch.Tensor:
        kwargs = {self.cache_kwarg: self.cache}
        if self.keep_last_logits_only:
            kwargs["logits_to_keep"] = 1
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         position_ids=position_ids, use_cache=True, **kwargs)
        return out.logits[:, -1, :]

    def start(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        logits = self._last_logits(ids, mask, positions)
        # One prompt pass, then each beam gets its own copy of the prompt's cache.
        self.cache.batch_repeat_interleave(self.num_beams)
        return logits

    def reorder(self, rows: torch.Tensor) -> None:
        self.cache.reorder_cache(rows)

    def select(self, rows: torch.Tensor) -> None:
        self.cache.batch_select_indices(rows)

    def advance(self, tokens: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self._last_logits(tokens[:, None], mask, positions[:, None])


StateFactory = Callable[[nn.Module, int], DecoderState]


def _forward_parameters(model: nn.Module) -> set[str]:
    # Wrappers such as peft's PeftModel take **kwargs and pass them to the HF model they hold.
    seen = model
    for _ in range(4):
        params = set(inspect.signature(seen.forward).parameters)
        if "cache" in params or "past_key_values" in params or not hasattr(seen, "get_base_model"):
            return params
        seen = seen.get_base_model()
    return params


def _check_positions(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> None:
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    longest = max((len(p) for p in prompts), default=0)
    if isinstance(limit, int) and prompts and longest + max_new_tokens > limit:
        raise SoloError(
            f"a prompt of {longest} tokens plus decode.max_new_tokens={max_new_tokens} exceeds the "
            f"model's {limit} positions; lower decode.max_new_tokens"
        )


def top_k_low_index_first(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top k of each row of fp32 `scores`, sorted by value, equal values by lower column first.

    torch.topk leaves the order of ties unspecified, so the final choice and order come from
    unique int64 keys (see `_tie_free_keys`). Building keys for a whole 500k-wide row is slow,
    so a plain topk first takes a few more than k; that superset holds every element tied with
    the k-th one unless its last value still equals the k-th (rare with real weights in fp32;
    common in bf16, whose coarse logits tie often), in which case a superset 8x wider is tried,
    and so on up to the whole row.
    """
    if scores.dtype != torch.float32:
        raise TypeError(f"scores must be float32, got {scores.dtype}")
    width = scores.shape[-1]
    wide = 2 * k + 8
    while wide < width:
        values, columns = scores.topk(wide, dim=-1)
        if bool((values[:, -1] < values[:, k - 1]).all()):
            best = _tie_free_keys(values, columns).topk(k, dim=-1).indices
            return values.gather(-1, best), columns.gather(-1, best)
        wide *= 8
    columns = torch.arange(width, device=scores.device).expand_as(scores)
    best = _tie_free_keys(scores, columns).topk(k, dim=-1).indices
    return scores.gather(-1, best), best


def _tie_free_keys(values: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """int64 keys ordered like (value, -column): an order-preserving integer image of the fp32
    value in the high half, the reversed column in the low half. All keys of a row differ."""
    bits = (values + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0 so they tie
    monotone = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return monotone.to(torch.int64) * (1 << 32) + ((1 << 32) - 1 - columns)


@dataclass
class _Batch:
    """A batch after the prompt pass: rows are prompt * K + beam."""

    prompt_width: int
    logits: torch.Tensor         # [rows, V] next-token logits of every row
    tokens: torch.Tensor         # [rows, prompt_width + T] left-padded prompt, then generated tokens
    mask: torch.Tensor           # [rows, prompt_width + T] attention mask
    first_real: torch.Tensor     # [rows] first non-padding position
    next_position: torch.Tensor  # [rows] position id of the first generated token


def _start_batch(state: DecoderState, device: torch.device, prompts: list[list[int]], pad_id: int,
                 settings: BeamSettings) -> _Batch:
    beams, steps = settings.num_beams, settings.max_new_tokens
    prompt_width = max(len(p) for p in prompts)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    ids = torch.full((len(prompts), prompt_width + steps), pad_id, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, prompt_width - len(prompt):prompt_width] = torch.tensor(prompt)
    ids = ids.to(device)
    mask = torch.ones_like(ids)
    mask[:, :prompt_width] = torch.arange(prompt_width, device=device) >= (prompt_width - lengths)[:, None]
    positions = (mask[:, :prompt_width].cumsum(-1) - 1).clamp(min=0)
    logits = state.start(ids[:, :prompt_width], mask[:, :prompt_width], positions)
    return _Batch(prompt_width=prompt_width,
                  logits=logits.repeat_interleave(beams, dim=0),
                  tokens=ids.repeat_interleave(beams, dim=0),
                  mask=mask.repeat_interleave(beams, dim=0),
                  first_real=(prompt_width - lengths).repeat_interleave(beams),
                  next_position=lengths.repeat_interleave(beams))


def _search_batch(state: DecoderState, device: torch.device, prompts: list[list[int]],
                  stop_ids: tuple[int, ...], pad_id: int, settings: BeamSettings,
                  on_select: Callable[[list[int]], None] | None = None) -> list[list[int]]:
    batch = _start_batch(state, device, prompts, pad_id, settings)
    stops = torch.tensor(stop_ids, device=device)
    if settings.style == "lora":  # never drops a prompt
        best_tokens, best_lengths = _lora_steps(state, batch, stops, pad_id, settings)
    else:
        best_tokens, best_lengths = _hf_steps(state, batch, stops, pad_id, settings, on_select)
    return token_lists(best_tokens, best_lengths, stop_ids)


def token_lists(best_tokens: torch.Tensor, best_lengths: torch.Tensor,
                stop_ids: Sequence[int]) -> list[list[int]]:
    """Each prompt's best tokens [P, T] cut to its length [P] and before its first stop token."""
    stop_set = set(stop_ids)
    results = []
    for tokens, length in zip(best_tokens.tolist(), best_lengths.tolist(), strict=True):
        tokens = tokens[:length]
        cut = next((i for i, t in enumerate(tokens) if t in stop_set), len(tokens))
        results.append(tokens[:cut])
    return results


def _final_penalty(length: int, settings: BeamSettings, device: torch.device) -> torch.Tensor:
    return torch.tensor(float(length) ** settings.length_penalty, dtype=torch.float32, device=device)


def _lora_steps(state: DecoderState, batch: _Batch, stops: torch.Tensor, pad_id: int,
                settings: BeamSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """The "lora" rule (module doc); returns each prompt's best tokens [P, T] and length [P]."""
    beams, steps, ngram = settings.num_beams, settings.max_new_tokens, settings.no_repeat_ngram_size
    width, tokens, logits = batch.prompt_width, batch.tokens, batch.logits
    device = tokens.device
    num_prompts, vocab = tokens.shape[0] // beams, logits.shape[-1]
    if vocab < beams:
        raise SoloError(f"decode.num_beams={beams} exceeds the vocabulary of {vocab} tokens")
    prompt_index = torch.arange(num_prompts, device=device)[:, None]
    generated_from = torch.zeros_like(batch.first_real)  # n-grams over generated tokens only
    scores = torch.zeros(num_prompts, beams, device=device)
    best = _BestOffer(num_prompts, steps, pad_id, device)

    for step in range(steps):
        banned = logits.float()  # may be `logits` itself, which is not used again
        ban_repeated_ngrams(banned, tokens[:, width:width + step], generated_from, ngram)
        log_probs = torch.log_softmax(banned, dim=-1).view(num_prompts, beams, vocab)
        log_probs.masked_fill_(log_probs.isnan(), float("-inf"))  # every token banned
        if step == 0:  # the slots are identical: expand slot 0 only
            totals = log_probs[:, 0]
        else:
            totals = (log_probs + scores[:, :, None]).view(num_prompts, beams * vocab)
        scores, flat = top_k_low_index_first(totals, beams)
        rows = (prompt_index * beams + flat // vocab).view(-1)
        new_tokens = flat % vocab
        tokens = tokens[rows]
        tokens[:, width + step] = new_tokens.view(-1)
        state.reorder(rows)

        stopped = torch.isin(new_tokens, stops)
        best.offer(stopped, scores / _final_penalty(step + 1, settings, device),
                   tokens[:, width:].view(num_prompts, beams, -1), step + 1)
        scores = scores.masked_fill(stopped, float("-inf"))
        if step < steps - 1:
            logits = state.advance(new_tokens.view(-1), batch.mask[:, :width + step + 1],
                                   batch.next_position + step)

    everyone = torch.ones_like(scores, dtype=torch.bool)
    best.offer(everyone, scores / _final_penalty(steps, settings, device),
               tokens[:, width:].view(num_prompts, beams, -1), steps)
    return best.tokens, best.lengths


class _BestOffer:
    """Each prompt's best offered hypothesis: replaced only by a strictly higher final score, or
    taken whatever its score while there is none (gpt2_beam.py's `_add_beam_candidate`).
    Updated in place (a CUDA graph of the fixed-shape step holds the tensors' addresses)."""

    def __init__(self, num_prompts: int, steps: int, pad_id: int, device: torch.device) -> None:
        self.scores = torch.full((num_prompts,), float("-inf"), device=device)
        self.taken = torch.zeros(num_prompts, dtype=torch.bool, device=device)
        self.tokens = torch.full((num_prompts, steps), pad_id, dtype=torch.long, device=device)
        self.lengths = torch.zeros(num_prompts, dtype=torch.long, device=device)

    def offer(self, offered: torch.Tensor, finals: torch.Tensor, tokens: torch.Tensor,
              length: int | torch.Tensor) -> None:
        """offered, finals: [P, K]; tokens: [P, K, T]; length: an int or a 0-dim device tensor.
        Slots offer in rank order, so the first slot with the highest final score is the one a
        sequential pass would keep."""
        top = torch.where(offered, finals, float("-inf")).max(dim=1).values
        first = (offered & (finals == top[:, None])).int().argmax(dim=1)
        take = offered.any(dim=1) & (~self.taken | (top > self.scores))
        self.scores.copy_(torch.where(take, top, self.scores))
        self.taken |= take
        chosen = tokens[torch.arange(tokens.shape[0], device=tokens.device), first]
        self.tokens.copy_(torch.where(take[:, None], chosen, self.tokens))
        self.lengths.copy_(torch.where(take, length, self.lengths))

    def tensors(self) -> list[torch.Tensor]:
        return [self.scores, self.taken, self.tokens, self.lengths]


def _hf_steps(state: DecoderState, batch: _Batch, stops: torch.Tensor, pad_id: int,
              settings: BeamSettings, on_select: Callable[[list[int]], None] | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The "hf" rule (module doc); returns each prompt's best tokens [P, T] and length [P].
    `on_select(prompts)`: told which batch prompts stay whenever done ones leave."""
    beams, steps, ngram = settings.num_beams, settings.max_new_tokens, settings.no_repeat_ngram_size
    prompt_width, logits, tokens, mask = batch.prompt_width, batch.logits, batch.tokens, batch.mask
    first_real, next_position = batch.first_real, batch.next_position
    device = tokens.device
    num_prompts = tokens.shape[0] // beams
    neg_inf = torch.tensor(float("-inf"), device=device)

    alive = torch.arange(num_prompts, device=device)  # prompts still searching
    live_scores = torch.full((num_prompts, beams), float("-inf"), device=device)
    live_scores[:, 0] = 0.0  # only the empty hypothesis is live at the start
    kept_scores = torch.full((num_prompts, beams), float("-inf"), device=device)
    kept_tokens = torch.full((num_prompts, beams, steps), pad_id, dtype=torch.long, device=device)
    kept_lengths = torch.zeros((num_prompts, beams), dtype=torch.long, device=device)

    for step in range(steps):
        num_alive = alive.shape[0]
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        ban_repeated_ngrams(log_probs, tokens[:, :prompt_width + step], first_real, ngram)
        vocab = log_probs.shape[-1]
        totals = log_probs.add_(live_scores.reshape(-1, 1)).view(num_alive, beams * vocab)
        width = min(2 * beams, beams * vocab)
        cand_scores, flat = top_k_low_index_first(totals, width)
        cand_beams, cand_tokens = flat // vocab, flat % vocab
        possible = cand_scores > neg_inf
        is_eos = torch.isin(cand_tokens, stops)
        finishes = is_eos | (step == steps - 1)
        ranks = torch.arange(width, device=device)
        source_rows = torch.arange(num_alive, device=device)[:, None] * beams + cand_beams

        # Finished hypotheses: merge the new ones (best K ranks only) into the kept set.
        penalty = _final_penalty(step + 1, settings, device)
        joins = finishes & possible & (ranks < beams)
        new_scores = torch.where(joins, cand_scores / penalty, neg_inf)
        new_tokens = tokens[:, prompt_width:][source_rows]  # [alive, width, steps]
        new_tokens[..., step] = torch.where(is_eos, pad_id, cand_tokens)
        new_lengths = step + (~is_eos).long()
        merged_scores = torch.cat([kept_scores[alive], new_scores], dim=1)
        best = merged_scores.sort(dim=1, descending=True, stable=True).indices[:, :beams]
        kept_scores[alive] = merged_scores.gather(1, best)
        kept_lengths[alive] = torch.cat([kept_lengths[alive], new_lengths], 1).gather(1, best)
        kept_tokens[alive] = torch.cat([kept_tokens[alive], new_tokens], 1)[
            torch.arange(num_alive, device=device)[:, None], best]

        if step == steps - 1:
            break

        # Live hypotheses: the first K candidates (by rank) that neither finished nor are impossible.
        stays = ~finishes & possible
        pick = (ranks + torch.where(stays, 0, width)).argsort(dim=1)[:, :beams]
        live_scores = torch.where(stays.gather(1, pick), cand_scores.gather(1, pick), neg_inf)
        rows = (torch.arange(num_alive, device=device)[:, None] * beams + cand_beams.gather(1, pick))
        rows = rows.view(-1)
        next_tokens = cand_tokens.gather(1, pick).view(-1)
        tokens = tokens[rows]
        tokens[:, prompt_width + step] = next_tokens
        state.reorder(rows)

        worst_kept = kept_scores[alive][:, -1]
        best_live = live_scores.max(dim=1).values
        done = (best_live == neg_inf) | ((worst_kept > neg_inf) & (best_live / penalty <= worst_kept))
        if bool(done.any()):
            stay = (~done).nonzero().view(-1)
            if stay.numel() == 0:
                break
            keep_rows = (stay[:, None] * beams + torch.arange(beams, device=device)).view(-1)
            alive, live_scores = alive[stay], live_scores[stay]
            tokens, mask = tokens[keep_rows], mask[keep_rows]
            first_real, next_position = first_real[keep_rows], next_position[keep_rows]
            next_tokens = next_tokens[keep_rows]
            state.select(keep_rows)
            if on_select is not None:
                on_select(stay.tolist())

        logits = state.advance(next_tokens, mask[:, :prompt_width + step + 1], next_position + step)

    return kept_tokens[:, 0], kept_lengths[:, 0]
