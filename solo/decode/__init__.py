"""Decoding: exact batched beam search, its engines (GPT-2 fast state), MR-to-text prediction, writers.

Typical use (after training):
    texts, stats = decode_mrs_with_stats(model, tokenizer, [g.mr for g in groups], cfg.decode)
    write_predictions(run_dir / "predictions.txt", texts)
    write_references(run_dir / "references.txt", groups)
"""

from solo.decode.beam_search import (
    BeamSettings,
    DecoderState,
    HFCacheState,
    beam_search,
    top_k_low_index_first,
)
from solo.decode.engine import fast_beam_search, search
from solo.decode.gpt2_state import SharedPromptGPT2State
from solo.decode.ngram import ban_repeated_ngrams
from solo.decode.predict import DecodeStats, decode_mrs_with_stats, settings_from_config
from solo.decode.static_search import StaticSearchReport, static_beam_search
from solo.decode.text import prediction_text, stop_token_ids
from solo.decode.writers import one_line, write_predictions, write_references

__all__ = [
    "BeamSettings",
    "DecodeStats",
    "DecoderState",
    "HFCacheState",
    "SharedPromptGPT2State",
    "StaticSearchReport",
    "ban_repeated_ngrams",
    "beam_search",
    "decode_mrs_with_stats",
    "fast_beam_search",
    "one_line",
    "prediction_text",
    "search",
    "settings_from_config",
    "static_beam_search",
    "stop_token_ids",
    "top_k_low_index_first",
    "write_predictions",
    "write_references",
]
