"""The decoding engine: which state and batch size run solo.decode's exact beam search.

`decode.engine` picks one of two (`search` below). The search itself is
solo.decode.beam_search, unchanged either way (its results do not depend on the batch size):
- `reference`: the model's own forward with Hugging Face's cache (HFCacheState), batches of 32;
- `fast`: for GPT-2, solo.decode.static_search: the same search as a fixed-shape step over
  `SharedPromptGPT2State` (gpt2_state.py, one copy of each prompt's keys, the beams' cache never
  copied), its flags read every `decode.sync_every` steps, replayed as a CUDA graph on CUDA
  (`decode.cuda_graph`); other models run their own forward with SDPA attention and
  beam_search's per-step host checks.
  On CUDA the batch is as many prompts as memory allows (split evenly across batches): at batch
  32 x 10 beams GPT-2 runs a few hundred rows per step and is launch-bound, and bigger batches
  amortise every launch over more rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from solo.decode.beam_search import DEFAULT_BATCH_SIZE, BeamSettings, PackedDecoding, beam_search
from solo.decode.gpt2_state import unsupported_reason
from solo.decode.static_search import StaticSearchReport, static_beam_search
from solo.errors import SoloError

log = logging.getLogger(__name__)

# Fraction of free GPU memory the caches and per-step score tensors may take.
_MEMORY_SHARE = 0.5
# Beyond this, larger batches gain little and the prompt-length spread inside a batch grows.
_MAX_PROMPTS_PER_BATCH = 256


def decode_batch_size(model: nn.Module, prompts: Sequence[Sequence[int]], num_beams: int,
                      max_new_tokens: int, copies: int = 1) -> int:
    """Prompts per beam-search batch: what fits the device's free memory, split evenly.
    `copies`: each prompt goes in that many times (packed decoding, one copy per run)."""
    if not prompts:
        return DEFAULT_BATCH_SIZE
    device = next(model.parameters()).device
    if device.type != "cuda":
        return max(1, DEFAULT_BATCH_SIZE // copies)
    config = model.config
    layers = int(getattr(config, "n_layer", getattr(config, "num_hidden_layers", 24)))
    width = int(getattr(config, "n_embd", getattr(config, "hidden_size", 1024)))
    vocab = int(getattr(config, "vocab_size", 50257))
    element = next(model.parameters()).element_size()
    prompt_length = max(len(p) for p in prompts)
    if unsupported_reason(model) is None:
        # Keys and values of every layer: the prompt once per prompt, max_new_tokens per beam.
        cache_per_prompt = 2 * layers * width * (prompt_length + num_beams * max_new_tokens) * element
    else:
        # DynamicCache: every beam holds the whole sequence, and concatenation plus the beam
        # reorder keep up to three copies alive.
        cache_per_prompt = 3 * 2 * layers * width * (prompt_length + max_new_tokens) * element * num_beams
    # fp32 logits, log-probs, beam totals and sort keys over the vocabulary, and the fixed-shape
    # search's snapshot of the logits (one per window, for a redo).
    scores_per_prompt = (6 * 4 + element) * vocab * num_beams
    free, _ = torch.cuda.mem_get_info(device)
    # Blocks PyTorch keeps cached from earlier work are free to this search too.
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    fits = int(free * _MEMORY_SHARE) // ((cache_per_prompt + scores_per_prompt) * copies)
    return even_batch_size(len(prompts), max(1, min(_MAX_PROMPTS_PER_BATCH, fits)))


def even_batch_size(count: int, fits: int) -> int:
    """The smallest batch size that needs as few batches as batches of `fits` would.

    630 prompts at 256 a batch would leave a last batch of 118; 3 x 210 takes as many steps
    with less padding and less memory.
    """
    return math.ceil(count / math.ceil(count / fits))


def fast_beam_search(model: nn.Module, prompts: Sequence[Sequence[int]], *, num_beams: int = 10,
                     max_new_tokens: int = 64, batch_size: int | None = None, sync_every: int = 8,
                     cuda_graph: str | bool = "auto", report: StaticSearchReport | None = None,
                     **search: Any) -> list[Any]:
    """solo.decode.beam_search's tokens, computed with the fast engine and (by default) the largest
    batch that fits; `search`: beam_search's other keywords (eos_id, pad_id, length_penalty, ...).

    GPT-2: static_beam_search (sync_every, cuda_graph, report: see there). Other models: their own
    forward (SDPA) with beam_search's per-step checks; cuda_graph=True is then an error.
    """
    BeamSettings(sync_every=sync_every, cuda_graph=cuda_graph).validate()
    packed: PackedDecoding | None = search.get("packed")
    if batch_size is None:
        batch_size = decode_batch_size(model, prompts, num_beams, max_new_tokens,
                                       copies=len(packed.members) if packed is not None else 1)
    elif packed is not None:
        batch_size = packed.batch_size(batch_size)
    reason = unsupported_reason(model)
    if reason is None:
        return static_beam_search(model, prompts, num_beams=num_beams, max_new_tokens=max_new_tokens,
                                  batch_size=batch_size, sync_every=sync_every,
                                  cuda_graph=cuda_graph, report=report, **search)
    if cuda_graph is True:
        raise SoloError(f"decode.cuda_graph=true needs a GPT-2 model: {reason}; use auto or false")
    log.info("decode: %s; the fast engine runs the model's own forward (no CUDA graph)", reason)
    if report is not None:
        report.fallback = f"{reason}: the model's own forward, host checks every step"
    use_sdpa(model)
    return beam_search(model, prompts, num_beams=num_beams, max_new_tokens=max_new_tokens,
                       batch_size=batch_size, **search)


def search(model: nn.Module, prompts: Sequence[Sequence[int]], *, engine: str,
           batch_size: int | None = None, sync_every: int = 8, cuda_graph: str | bool = "auto",
           report: StaticSearchReport | None = None, **settings: Any) -> list[Any]:
    """beam_search over `prompts` with the engine `decode.engine` names (see ENGINES in
    beam_search.py; checked by BeamSettings); `batch_size` None: the engine's default (prompts
    per search batch, all members of a `packed` search together).
    `settings`: beam_search's keywords. sync_every, cuda_graph and report are the fast engine's
    (fast_beam_search); the reference engine reads the host every step and has no graph."""
    if engine == "fast":
        return fast_beam_search(model, prompts, batch_size=batch_size, sync_every=sync_every,
                                cuda_graph=cuda_graph, report=report, **settings)
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    packed: PackedDecoding | None = settings.get("packed")
    if packed is not None:
        batch_size = packed.batch_size(batch_size)
    return beam_search(model, prompts, batch_size=batch_size, **settings)


def use_sdpa(model: torch.nn.Module) -> str:
    """Switch a Hugging Face model to PyTorch's fused scaled-dot-product attention if it can.

    Returns the attention implementation in effect afterwards ("sdpa" or what the model had). A
    model class that does not declare sdpa support keeps its own attention: forcing it breaks
    some (Gemma2's logit soft-capping raises in the first step) and makes transformers warn for
    others (Bloom, MPT, which compute attention themselves).
    """
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    setter = getattr(model, "set_attn_implementation", None)
    if current != "sdpa" and getattr(model, "_supports_sdpa", False) and callable(setter):
        try:
            setter("sdpa")
        except (ValueError, ImportError, NotImplementedError):
            pass
    return str(getattr(config, "_attn_implementation", "unknown"))
