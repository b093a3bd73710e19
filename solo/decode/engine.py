"""The decoding engine: which state and batch size run solo.decode's exact beam search.

`decode.engine` picks one of two (`search` below). The search itself is
solo.decode.beam_search, unchanged either way (its results do not depend on the batch size):
- `reference`: the model's own forward with Hugging Face's cache (HFCacheState), batches of 32;
- `fast`: for GPT-2, `SharedPromptGPT2State` (gpt2_state.py), which keeps one copy of each prompt's
  keys and never copies the beams' cache; other models run their own forward with SDPA attention.
  On CUDA the batch is as many prompts as memory allows (split evenly across batches): at batch
  32 x 10 beams GPT-2 runs a few hundred rows per step and is launch-bound, and bigger batches
  amortise every launch and the per-step host checks over more rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from solo.decode.beam_search import DEFAULT_BATCH_SIZE, beam_search
from solo.decode.gpt2_state import SharedPromptGPT2State, unsupported_reason

# Fraction of free GPU memory the caches and per-step score tensors may take.
_MEMORY_SHARE = 0.5
# Beyond this, larger batches gain little and the prompt-length spread inside a batch grows.
_MAX_PROMPTS_PER_BATCH = 256


def decode_batch_size(model: nn.Module, prompts: Sequence[Sequence[int]], num_beams: int,
                      max_new_tokens: int) -> int:
    """Prompts per beam-search batch: what fits the device's free memory, split evenly."""
    if not prompts:
        return DEFAULT_BATCH_SIZE
    device = next(model.parameters()).device
    if device.type != "cuda":
        return DEFAULT_BATCH_SIZE
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
    # fp32 logits, log-probs, beam totals and sort keys over the vocabulary.
    scores_per_prompt = 6 * vocab * 4 * num_beams
    free, _ = torch.cuda.mem_get_info(device)
    # Blocks PyTorch keeps cached from earlier work are free to this search too.
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    fits = int(free * _MEMORY_SHARE) // (cache_per_prompt + scores_per_prompt)
    return even_batch_size(len(prompts), max(1, min(_MAX_PROMPTS_PER_BATCH, fits)))


def even_batch_size(count: int, fits: int) -> int:
    """The smallest batch size that needs as few batches as batches of `fits` would.

    630 prompts at 256 a batch would leave a last batch of 118; 3 x 210 takes as many steps
    with less padding and less memory.
    """
    return math.ceil(count / math.ceil(count / fits))


def fast_beam_search(model: nn.Module, prompts: Sequence[Sequence[int]], *, num_beams: int = 10,
                     max_new_tokens: int = 64, batch_size: int | None = None,
                     **search: Any) -> list[list[int]]:
    """solo.decode.beam_search's tokens, computed with the fast state and (by default) the largest
    batch that fits; `search`: beam_search's other keywords (eos_id, pad_id, length_penalty, ...)."""
    if unsupported_reason(model) is None:
        state = partial(SharedPromptGPT2State, max_new_tokens=max_new_tokens)
    else:
        use_sdpa(model)
        state = None
    if batch_size is None:
        batch_size = decode_batch_size(model, prompts, num_beams, max_new_tokens)
    return beam_search(model, prompts, num_beams=num_beams, max_new_tokens=max_new_tokens,
                       batch_size=batch_size, state=state, **search)


def search(model: nn.Module, prompts: Sequence[Sequence[int]], *, engine: str,
           batch_size: int | None = None, **settings: Any) -> list[list[int]]:
    """beam_search over `prompts` with the engine `decode.engine` names (see ENGINES in
    beam_search.py; checked by BeamSettings); `batch_size` None: the engine's default.
    `settings`: beam_search's keywords."""
    if engine == "fast":
        return fast_beam_search(model, prompts, batch_size=batch_size, **settings)
    return beam_search(model, prompts, batch_size=batch_size or DEFAULT_BATCH_SIZE, **settings)


def use_sdpa(model: torch.nn.Module) -> str:
    """Switch a Hugging Face model to PyTorch's fused scaled-dot-product attention if it can.

    Returns the attention implementation in effect afterwards ("sdpa" or what the model had).
    """
    setter = getattr(model, "set_attn_implementation", None)
    if callable(setter):
        try:
            setter("sdpa")
        except (ValueError, ImportError, NotImplementedError):
            pass
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "_attn_implementation", None) != "sdpa":
        try:
            config._attn_implementation = "sdpa"
        except (ValueError, AttributeError):
            pass
    return str(getattr(config, "_attn_implementation", "unknown"))
