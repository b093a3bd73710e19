"""From MR strings to predictions: encode each unique MR once, beam-search, make the text, time it."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields

from torch import nn

from solo.decode.beam_search import BeamSettings, PackedDecoding
from solo.decode.engine import search
from solo.decode.static_search import StaticSearchReport
from solo.decode.text import prediction_text, stop_token_ids
from solo.errors import SoloError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeStats:
    """How long decoding took; `mrs_per_s` counts unique MRs (each is decoded once). `runs`: how
    many runs' adapters were decoded together in those seconds (packed decoding), else 1."""

    mrs: int
    unique_mrs: int
    generated_tokens: int
    seconds: float
    runs: int = 1

    @property
    def mrs_per_s(self) -> float:
        return self.unique_mrs / self.seconds if self.seconds > 0 else float("inf")

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict:
        return {**asdict(self), "mrs_per_s": self.mrs_per_s, "tokens_per_s": self.tokens_per_s}


def settings_from_config(decode_cfg: Mapping | None) -> BeamSettings:
    """The `decode` config group as BeamSettings; a key that is not a setting is an error."""
    known = {f.name for f in fields(BeamSettings)}
    values = dict(decode_cfg or {})
    unknown = sorted(set(values) - known)
    if unknown:
        raise SoloError(f"decode.{unknown[0]} is not a decoding setting; known: {', '.join(sorted(known))}")
    if "extra_stop_tokens" in values and not isinstance(values["extra_stop_tokens"], str):
        values["extra_stop_tokens"] = tuple(values["extra_stop_tokens"] or ())
    settings = BeamSettings(**values)
    settings.validate()
    return settings


def decode_mrs_with_stats(model: nn.Module, tokenizer, mrs: Sequence[str],
                          decode_cfg: Mapping | None = None, *,
                          progress: bool = False) -> tuple[list[str], DecodeStats]:
    """One prediction per MR (solo.decode.text.prediction_text; duplicates decoded once), and the
    timing."""
    return _decode(model, tokenizer, mrs, decode_cfg, progress=progress, packed=None)[0]


def decode_mrs_packed(backbone: nn.Module, packed: PackedDecoding, tokenizer, mrs: Sequence[str],
                      decode_cfg: Mapping | None = None, *,
                      progress: bool = False) -> list[tuple[list[str], DecodeStats]]:
    """decode_mrs_with_stats for each member of `packed` (runs whose adapters are packed over
    `backbone`), in one search: per member, its predictions and the (shared) timing."""
    return _decode(backbone, tokenizer, mrs, decode_cfg, progress=progress, packed=packed)


def _decode(model: nn.Module, tokenizer, mrs: Sequence[str], decode_cfg: Mapping | None, *,
            progress: bool, packed: PackedDecoding | None) -> list[tuple[list[str], DecodeStats]]:
    from solo.data import encode_prompt

    settings = settings_from_config(decode_cfg)
    unique = list(dict.fromkeys(mrs))
    prompts = [encode_prompt(tokenizer, mr) for mr in unique]
    stop_ids = stop_token_ids(tokenizer, settings.extra_stop_tokens)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    search_kwargs = dict(eos_id=stop_ids, pad_id=int(pad_id), num_beams=settings.num_beams,
                         length_penalty=settings.length_penalty,
                         no_repeat_ngram_size=settings.no_repeat_ngram_size,
                         max_new_tokens=settings.max_new_tokens, style=settings.style,
                         progress=progress)
    if packed is not None:
        search_kwargs["packed"] = packed
    report = StaticSearchReport()
    started = time.perf_counter()
    outputs = search(model, prompts, engine=settings.engine, batch_size=settings.batch_size,
                     sync_every=settings.sync_every, cuda_graph=settings.cuda_graph, report=report,
                     **search_kwargs)
    seconds = time.perf_counter() - started
    if report.batches:
        log.info("decode: %d batches, %d CUDA graphs captured (%.2f s), %d windows of %d steps redone "
                 "for a tie%s", report.batches, report.graphs_captured, report.capture_seconds,
                 report.windows_redone, settings.sync_every,
                 f"; eager steps: {report.fallback}" if report.fallback else "")
    per_member = outputs if packed is not None else [outputs]
    results = []
    for own in per_member:
        texts = {mr: prediction_text(tokenizer, ids) for mr, ids in zip(unique, own, strict=True)}
        stats = DecodeStats(mrs=len(mrs), unique_mrs=len(unique),
                            generated_tokens=sum(len(o) for o in own), seconds=seconds,
                            runs=len(per_member))
        results.append(([texts[mr] for mr in mrs], stats))
    runs = f" for {len(per_member)} runs at once" if packed is not None else ""
    log.info("decoded %d unique MRs (%d requested)%s in %.1f s: %.2f MRs/s, %.0f tokens/s",
             len(unique), len(mrs), runs, seconds, len(unique) * len(per_member) / max(seconds, 1e-9),
             sum(r[1].generated_tokens for r in results) / max(seconds, 1e-9))
    return results
