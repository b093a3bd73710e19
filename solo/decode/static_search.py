"""The fast engine's beam search: each decode step a function of fixed-shape device tensors, replayed
as a CUDA graph on CUDA, with the host reading the search's flags only every few steps.

The search is solo.decode.beam_search's, rule for rule (see its module doc), and so are the tokens;
what differs is when the host looks at the device. beam_search's loop waits for the device every
step: top_k_low_index_first asks whether its superset holds every tie, the hf rule asks whether a
prompt is done and then drops it (new shapes), the GPT-2 state cuts its cache after the steps so
far (a shape that grows) and each step builds its length penalty from a host float. Here one step
(the beam update: log-softmax, n-gram bans, top-k, reorder, finished bookkeeping; then GPT-2's
forward of the chosen tokens through SharedPromptGPT2State.advance_at) reads and writes a fixed
set of tensors in place, and even the step count lives on the device:

- top-k takes a fixed superset, keys it tie-free as beam_search does, and raises a device flag
  when the superset's last score equals the k-th (a tie it may cut) where that tie can change a
  result (not among impossible, -inf candidates once it cannot). The host reads the flag
  every `sync_every` steps; a window of steps that raised it is rolled back to a snapshot of the
  search's tensors taken at its start and run again with beam_search's exact top-k, so a tie costs
  time, never a different token;
- hf: a done prompt stays in the batch, frozen (its finished set takes no more hypotheses); the
  host reads the done flags at each sync, stops once all are done, and drops the done prompts
  when at most half the batch is left with a CUDA graph (a new shape needs a new capture), or as
  soon as any is done without one;
- lora always runs max_new_tokens steps, so its only host read is the tie flag.

On CUDA (decode.cuda_graph auto or true) the step is captured once per batch shape: the batch's
first step runs eagerly on a side stream (the warm-up, a real step), the capture records the
second call, and every later step is one replay. Where capture fails (a hook that synchronises,
say), the steps run eagerly and the reason is logged (auto) or raised (true). On the CPU the same
step runs eagerly: that is what the CPU tests compare token for token with the slow references.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from solo.cuda_graphs import capture, on_device
from solo.decode.beam_search import (
    DEFAULT_BATCH_SIZE,
    BeamSettings,
    PackedDecoding,
    _Batch,
    _BestOffer,
    _start_batch,
    _tie_free_keys,
    decode_in_batches,
    token_lists,
    top_k_low_index_first,
)
from solo.decode.gpt2_state import SharedPromptGPT2State, unsupported_reason
from solo.decode.ngram import ban_repeated_ngrams
from solo.errors import SoloError

log = logging.getLogger(__name__)


@dataclass
class StaticSearchReport:
    """What the fixed-shape search did: speed only, the tokens do not depend on any of it."""

    batches: int = 0
    steps: int = 0                # decode steps, a redone window counted once
    host_reads: int = 0           # flag reads (one per window of sync_every steps)
    windows_redone: int = 0       # windows run again with the exact top-k (a tie at a superset's edge)
    compactions: int = 0          # times hf's done prompts left the batch
    graphs_captured: int = 0
    graph_replays: int = 0
    capture_seconds: float = 0.0
    fallback: str | None = None   # why steps ran eagerly although CUDA graphs were asked for


def superset_width(k: int) -> int:
    """How many candidates the fixed-shape top-k keys for the best k. beam_search's first superset
    is 2k + 8, widened only after a host check; here a miss costs a window's redo, so it is wider
    (bf16's coarse scores tie often)."""
    return 4 * k + 16


def top_k_flagged(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """top_k_low_index_first over a fixed superset, without a host read: (values, columns,
    tie_free [rows]). Where tie_free, a row's result is top_k_low_index_first's (the superset holds
    every score >= the k-th); elsewhere it may not be."""
    if scores.dtype != torch.float32:
        raise TypeError(f"scores must be float32, got {scores.dtype}")
    width, wide = scores.shape[-1], superset_width(k)
    if wide >= width:
        columns = torch.arange(width, device=scores.device).expand_as(scores)
        best = _tie_free_keys(scores, columns).topk(k, dim=-1).indices
        return scores.gather(-1, best), best, torch.ones_like(scores[:, 0], dtype=torch.bool)
    values, columns = scores.topk(wide, dim=-1)
    best = _tie_free_keys(values, columns).topk(k, dim=-1).indices
    return values.gather(-1, best), columns.gather(-1, best), values[:, -1] < values[:, k - 1]


def static_beam_search(model: nn.Module, prompts: Sequence[Sequence[int]], *,
                       eos_id: int | Sequence[int], pad_id: int, num_beams: int = 10,
                       length_penalty: float = 0.8, no_repeat_ngram_size: int = 4,
                       max_new_tokens: int = 64, style: str = "lora",
                       batch_size: int = DEFAULT_BATCH_SIZE, sync_every: int = 8,
                       cuda_graph: str | bool = "auto", progress: bool = False,
                       report: StaticSearchReport | None = None,
                       packed: PackedDecoding | None = None) -> list[Any]:
    """solo.decode.beam_search's tokens for a GPT-2 model, from the fixed-shape step (module doc).

    sync_every: steps between host reads; cuda_graph: "auto" (graphs on CUDA), True (graphs or a
    SoloError), False (eager steps). `report`, if given, is filled with what the search did.
    `packed`: several runs' adapters at once, one list per member (beam_search.PackedDecoding).
    """
    reason = unsupported_reason(model)
    if reason is not None:
        raise SoloError(f"the fixed-shape decode step runs GPT-2 only: {reason}; use "
                        "solo.decode.beam_search")
    settings = BeamSettings(num_beams=num_beams, length_penalty=float(length_penalty),
                            no_repeat_ngram_size=no_repeat_ngram_size, max_new_tokens=max_new_tokens,
                            batch_size=batch_size, style=style, sync_every=sync_every,
                            cuda_graph=cuda_graph)
    settings.validate()
    report = report if report is not None else StaticSearchReport()
    device = next(model.parameters()).device
    if cuda_graph is True and device.type != "cuda":
        raise SoloError(f"decode.cuda_graph=true needs a CUDA device (the model is on {device}); "
                        "use auto or false")
    graphs = _GraphPolicy(wanted=cuda_graph is not False and device.type == "cuda",
                          required=cuda_graph is True, report=report)

    def search_batch(device, prompts, stop_ids, pad_id, settings, on_select=None):
        with on_device(device):  # streams, captures and replays act on the current device
            return _search_batch(model, device, prompts, stop_ids, pad_id, settings, graphs,
                                 on_select)

    return decode_in_batches(model, prompts, settings, eos_id=eos_id, pad_id=pad_id,
                             search_batch=search_batch, progress=progress, packed=packed)


@dataclass
class _GraphPolicy:
    """Whether steps are graphed; after one failed capture (auto) the rest of the search is eager."""

    wanted: bool
    required: bool
    report: StaticSearchReport

    def give_up(self, reason: str) -> None:
        if self.required:
            raise SoloError(f"decode.cuda_graph=true, but {reason}; use auto to decode eagerly")
        log.warning("decode: CUDA graphs off, decode steps run eagerly (%s)", reason)
        self.wanted = False
        self.report.fallback = reason


def _search_batch(model: nn.Module, device: torch.device, prompts: list[list[int]],
                  stop_ids: tuple[int, ...], pad_id: int, settings: BeamSettings,
                  graphs: _GraphPolicy,
                  on_select: Callable[[list[int]], None] | None = None) -> list[list[int]]:
    report, total = graphs.report, settings.max_new_tokens
    state = SharedPromptGPT2State(model, settings.num_beams, total)
    batch = _start_batch(state, device, prompts, pad_id, settings)
    steps_type = _LoraSteps if settings.style == "lora" else _HFSteps
    search = steps_type(state, batch, torch.tensor(stop_ids, device=device), pad_id, settings)
    report.batches += 1
    results: dict[int, list[int]] = {}
    prompt_of_row = list(range(len(prompts)))
    runner = _StepRunner(search.step, graphs, device)
    done_steps = 0
    while done_steps < total:
        window = min(settings.sync_every, total - done_steps)
        saved = search.snapshot()
        for _ in range(window):
            runner()
        flags = search.flags().tolist()  # the window's one host read
        report.host_reads += 1
        if flags[0]:  # a superset may have cut a tie: the window again, with the exact top-k
            search.restore(saved)
            for _ in range(window):
                search.step(exact=True)
            flags = search.flags().tolist()
            report.windows_redone += 1
        done_steps += window
        report.steps += window
        done = flags[1:]
        if done and all(done):
            break
        alive = [row for row, d in enumerate(done) if not d]
        if done and _compacts(len(alive), len(done), graphed=runner.graphed):
            finished = [row for row, d in enumerate(done) if d]
            for row, out in zip(finished, search.outputs(finished, stop_ids), strict=True):
                results[prompt_of_row[row]] = out
            search.select(alive)
            if on_select is not None:
                on_select(alive)
            report.compactions += 1
            prompt_of_row = [prompt_of_row[row] for row in alive]
            runner = _StepRunner(search.step, graphs, device)  # a new shape: a new capture
    search.finish()
    rows = list(range(len(prompt_of_row)))
    for row, out in zip(rows, search.outputs(rows, stop_ids), strict=True):
        results[prompt_of_row[row]] = out
    return [results[i] for i in range(len(prompts))]


def _compacts(alive: int, rows: int, graphed: bool) -> bool:
    """Drop done prompts now? Eagerly that only saves work; with a graph it costs a capture."""
    return alive < rows if not graphed else 2 * alive <= rows


class _StepRunner:
    """Calls `step()`: eagerly, or (CUDA) the first call eagerly on a side stream as the warm-up,
    then a capture, then one graph replay per call."""

    def __init__(self, step: Callable[[], None], graphs: _GraphPolicy,
                 device: torch.device) -> None:
        self.step, self.graphs, self.device = step, graphs, device
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warmed_up = False

    @property
    def graphed(self) -> bool:
        return self.graphs.wanted

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
            self.graphs.report.graph_replays += 1
            return
        if not self.graphs.wanted:
            self.step()
            return
        if not self.warmed_up:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self.step()
            torch.cuda.current_stream(self.device).wait_stream(side)
            self.warmed_up = True
            return
        self.graph = self._capture()
        if self.graph is None:
            self.step()
        else:
            self.graph.replay()  # the capture only recorded this step
            self.graphs.report.graph_replays += 1

    def _capture(self) -> torch.cuda.CUDAGraph | None:
        started = time.perf_counter()
        graph = torch.cuda.CUDAGraph()
        try:
            # Nothing runs while capturing, so a failed capture leaves the search as it was.
            with capture(graph, self.device):
                self.step()
        except Exception as err:  # any capture failure: go on eagerly (auto) or stop (true)
            with contextlib.suppress(RuntimeError):  # an invalidated capture may re-raise here
                torch.cuda.synchronize(self.device)
            self.graphs.give_up(f"capturing the decode step failed: {type(err).__name__}: {err}")
            return None
        self.graphs.report.graphs_captured += 1
        self.graphs.report.capture_seconds += time.perf_counter() - started
        return graph


class _FixedShapeSteps:
    """One batch's search as tensors that each step updates in place (a CUDA graph holds their
    addresses); rows are prompt * K + beam as in beam_search. Subclasses: the two rules."""

    def __init__(self, state: SharedPromptGPT2State, batch: _Batch, stops: torch.Tensor,
                 pad_id: int, settings: BeamSettings) -> None:
        self.state, self.settings, self.stops, self.pad_id = state, settings, stops, pad_id
        device = batch.tokens.device
        self.beams, self.total = settings.num_beams, settings.max_new_tokens
        self.prompts = batch.tokens.shape[0] // self.beams
        self.vocab = batch.logits.shape[-1]
        self.prompt_width = batch.prompt_width
        self.logits = batch.logits.contiguous()  # the next step's logits, rewritten by each step
        self.first_real, self.next_position = batch.first_real, batch.next_position
        self.step_index = torch.zeros((), dtype=torch.long, device=device)
        self.tie = torch.zeros((), dtype=torch.bool, device=device)  # a superset may have cut a tie
        self.prompt_index = torch.arange(self.prompts, device=device)[:, None]
        self.generated_at = torch.arange(self.total, device=device)  # generated positions
        # Final-score divisors by length (1..T; 0 is never used), the numbers beam_search's
        # _final_penalty makes per step.
        self.penalties = torch.tensor(
            [float(max(n, 1)) ** settings.length_penalty for n in range(self.total + 1)],
            dtype=torch.float32, device=device)

    # -- what the host loop uses -------------------------------------------------------------------

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor a step changes (besides the beam cache slots it writes before reading)."""
        return [self.logits, self.step_index, self.tie, self.state.ancestry]

    def snapshot(self) -> list[torch.Tensor]:
        return [t.clone() for t in self.tensors()]

    def restore(self, saved: list[torch.Tensor]) -> None:
        for tensor, copy in zip(self.tensors(), saved, strict=True):
            tensor.copy_(copy)

    def flags(self) -> torch.Tensor:
        """[tie, done per prompt...] as one tensor, for one host read; the tie flag is cleared."""
        flags = self.tie.clone().view(1)
        self.tie.zero_()
        return flags

    def outputs(self, rows: list[int], stop_ids: Sequence[int]) -> list[list[int]]:
        tokens, lengths = self.best()
        index = torch.tensor(rows, dtype=torch.long, device=tokens.device)
        return token_lists(tokens[index], lengths[index], stop_ids)

    def finish(self) -> None:
        """After the last step."""

    def best(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def step(self, exact: bool = False) -> None:
        """One step; `exact`: beam_search's top-k (host reads) instead of the flagged one."""
        raise NotImplementedError

    def select(self, alive: list[int]) -> None:
        raise NotImplementedError(f"{type(self).__name__} never drops prompts")

    # -- pieces of a step --------------------------------------------------------------------------

    def top_k(self, scores: torch.Tensor, k: int, exact: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if exact:
            return top_k_low_index_first(scores, k)
        values, columns, tie_free = top_k_flagged(scores, k)
        self.tie.logical_or_((~tie_free & self.tie_matters(values[:, -1])).any())
        return values, columns

    def tie_matters(self, kth: torch.Tensor) -> torch.Tensor:
        """[P] bool: could the order of candidates tied at each prompt's k-th score `kth` change
        its result? Where not, a tie the superset may cut costs no redo."""
        raise NotImplementedError

    def is_stop(self, tokens: torch.Tensor) -> torch.Tensor:
        # Not torch.isin: it may sort and deduplicate (data-dependent shapes).
        return (tokens[..., None] == self.stops).any(dim=-1)

    def penalty(self, length: torch.Tensor) -> torch.Tensor:
        return self.penalties.index_select(0, length.view(1)).view(())

    def advance(self, tokens: torch.Tensor) -> None:
        """GPT-2's forward of this step's tokens; its logits are the next step's."""
        step = self.step_index
        self.logits.copy_(self.state.advance_at(tokens, self.next_position + step, step))
        self.step_index.add_(1)


class _LoraSteps(_FixedShapeSteps):
    """The "lora" rule (beam_search's _lora_steps) with fixed shapes."""

    def __init__(self, state, batch, stops, pad_id, settings) -> None:
        super().__init__(state, batch, stops, pad_id, settings)
        if self.vocab < self.beams:
            raise SoloError(f"decode.num_beams={self.beams} exceeds the vocabulary of {self.vocab} tokens")
        device = self.logits.device
        self.generated = batch.tokens[:, self.prompt_width:].clone()  # [R, T], pad until written
        self.from_start = torch.zeros_like(batch.first_real)  # n-grams over generated tokens only
        # The first step's slots all hold the empty hypothesis: scores 0, -inf, ... expand slot 0
        # only, as beam_search's first step does (its ties rank slot 0's tokens first as well).
        self.scores = torch.full((self.prompts, self.beams), float("-inf"), device=device)
        self.scores[:, 0] = 0.0
        self.best_offer = _BestOffer(self.prompts, self.total, pad_id, device)

    def tensors(self) -> list[torch.Tensor]:
        return [*super().tensors(), self.generated, self.scores, *self.best_offer.tensors()]

    def step(self, exact: bool = False) -> None:
        prompts, beams, vocab, step = self.prompts, self.beams, self.vocab, self.step_index
        banned = self.logits.float()  # may be self.logits itself, rewritten at the end of the step
        ban_repeated_ngrams(banned, self.generated, self.from_start,
                            self.settings.no_repeat_ngram_size, length=step)
        log_probs = torch.log_softmax(banned, dim=-1).view(prompts, beams, vocab)
        log_probs.masked_fill_(log_probs.isnan(), float("-inf"))  # every token banned
        totals = (log_probs + self.scores[:, :, None]).view(prompts, beams * vocab)
        scores, flat = self.top_k(totals, beams, exact)
        rows = (self.prompt_index * beams + flat // vocab).view(-1)
        new_tokens = flat % vocab
        self.generated.copy_(torch.where(self.generated_at == step, new_tokens.view(-1, 1),
                                         self.generated[rows]))
        self.state.reorder(rows)

        stopped = self.is_stop(new_tokens)
        length = step + 1
        self.best_offer.offer(stopped, scores / self.penalty(length),
                              self.generated.view(prompts, beams, -1), length)
        self.scores.copy_(scores.masked_fill(stopped, float("-inf")))
        self.advance(new_tokens.view(-1))

    def tie_matters(self, kth: torch.Tensor) -> torch.Tensor:
        # Ties at -inf (slots that stopped, all-banned rows) only decide which -inf hypotheses
        # fill the slots, and once a prompt has an offer no -inf hypothesis can replace it (ties
        # are not strictly higher). Without one, the final offer may take a -inf slot's tokens.
        return (kth > float("-inf")) | ~self.best_offer.taken

    def finish(self) -> None:
        everyone = torch.ones_like(self.scores, dtype=torch.bool)
        length = torch.full((), self.total, dtype=torch.long, device=self.scores.device)
        self.best_offer.offer(everyone, self.scores / self.penalty(length),
                              self.generated.view(self.prompts, self.beams, -1), length)

    def best(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.best_offer.tokens, self.best_offer.lengths


class _HFSteps(_FixedShapeSteps):
    """The "hf" rule (beam_search's _hf_steps) with fixed shapes; done prompts are frozen."""

    def __init__(self, state, batch, stops, pad_id, settings) -> None:
        super().__init__(state, batch, stops, pad_id, settings)
        device = self.logits.device
        prompts, beams, total = self.prompts, self.beams, self.total
        self.tokens = batch.tokens.clone()  # [R, prompt_width + T]: prompt, then generated tokens
        self.positions = torch.arange(self.tokens.shape[1], device=device)
        self.live_scores = torch.full((prompts, beams), float("-inf"), device=device)
        self.live_scores[:, 0] = 0.0  # only the empty hypothesis is live at the start
        self.kept_scores = torch.full((prompts, beams), float("-inf"), device=device)
        self.kept_tokens = torch.full((prompts, beams, total), pad_id, dtype=torch.long, device=device)
        self.kept_lengths = torch.zeros((prompts, beams), dtype=torch.long, device=device)
        self.done = torch.zeros(prompts, dtype=torch.bool, device=device)
        self.candidates = min(2 * beams, beams * self.vocab)
        self.ranks = torch.arange(self.candidates, device=device)

    def tensors(self) -> list[torch.Tensor]:
        return [*super().tensors(), self.tokens, self.live_scores, self.kept_scores,
                self.kept_tokens, self.kept_lengths, self.done]

    def flags(self) -> torch.Tensor:
        return torch.cat([super().flags(), self.done])

    def step(self, exact: bool = False) -> None:
        beams, vocab, width, step = self.beams, self.vocab, self.candidates, self.step_index
        prompts, neg_inf = self.prompts, float("-inf")
        log_probs = torch.log_softmax(self.logits.float(), dim=-1)
        ban_repeated_ngrams(log_probs, self.tokens, self.first_real,
                            self.settings.no_repeat_ngram_size, length=self.prompt_width + step)
        totals = log_probs.add_(self.live_scores.reshape(-1, 1)).view(prompts, beams * vocab)
        cand_scores, flat = self.top_k(totals, width, exact)
        cand_beams, cand_tokens = flat // vocab, flat % vocab
        possible = cand_scores > neg_inf
        is_eos = self.is_stop(cand_tokens)
        finishes = is_eos | (step == self.total - 1)
        source_rows = self.prompt_index * beams + cand_beams

        # Finished hypotheses: the new ones (best K ranks only) merge into the kept set, unless
        # the prompt is done (beam_search has dropped it from the batch by then).
        penalty = self.penalty(step + 1)
        joins = finishes & possible & (self.ranks < beams) & ~self.done[:, None]
        new_scores = torch.where(joins, cand_scores / penalty, neg_inf)
        new_tokens = self.tokens[:, self.prompt_width:][source_rows]  # [P, width, T]
        last = torch.where(is_eos, self.pad_id, cand_tokens)
        new_tokens = torch.where(self.generated_at == step, last[..., None], new_tokens)
        new_lengths = step + (~is_eos).long()
        merged_scores = torch.cat([self.kept_scores, new_scores], dim=1)
        best = merged_scores.sort(dim=1, descending=True, stable=True).indices[:, :beams]
        self.kept_scores.copy_(merged_scores.gather(1, best))
        self.kept_lengths.copy_(torch.cat([self.kept_lengths, new_lengths], 1).gather(1, best))
        self.kept_tokens.copy_(torch.cat([self.kept_tokens, new_tokens], 1)[self.prompt_index, best])

        # Live hypotheses: the first K candidates (by rank) that neither finished nor are impossible.
        stays = ~finishes & possible
        pick = (self.ranks + torch.where(stays, 0, width)).argsort(dim=1)[:, :beams]
        self.live_scores.copy_(torch.where(stays.gather(1, pick), cand_scores.gather(1, pick), neg_inf))
        rows = (self.prompt_index * beams + cand_beams.gather(1, pick)).view(-1)
        next_tokens = cand_tokens.gather(1, pick).view(-1)
        self.tokens.copy_(torch.where(self.positions == self.prompt_width + step, next_tokens[:, None],
                                      self.tokens[rows]))
        self.state.reorder(rows)

        worst_kept = self.kept_scores[:, -1]
        best_live = self.live_scores.max(dim=1).values
        self.done.logical_or_((best_live == neg_inf)
                              | ((worst_kept > neg_inf) & (best_live / penalty <= worst_kept)))
        self.advance(next_tokens)

    def tie_matters(self, kth: torch.Tensor) -> torch.Tensor:
        # -inf candidates are impossible (never kept, ranked after every possible one), and a
        # done prompt is frozen.
        return (kth > float("-inf")) & ~self.done

    def best(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.kept_tokens[:, 0], self.kept_lengths[:, 0]

    def select(self, alive: list[int]) -> None:
        """Keep only the prompts `alive` (batch indices), in that order."""
        device = self.logits.device
        keep = torch.tensor(alive, dtype=torch.long, device=device)
        rows = (keep[:, None] * self.beams + torch.arange(self.beams, device=device)).view(-1)
        self.state.select(rows)
        self.logits, self.tokens = self.logits[rows], self.tokens[rows]
        self.first_real, self.next_position = self.first_real[rows], self.next_position[rows]
        self.live_scores, self.kept_scores = self.live_scores[keep], self.kept_scores[keep]
        self.kept_tokens, self.kept_lengths = self.kept_tokens[keep], self.kept_lengths[keep]
        self.done = self.done[keep]
        self.prompts = len(alive)
        self.prompt_index = torch.arange(self.prompts, device=device)[:, None]
