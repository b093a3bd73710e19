"""Fast decoding: the exact beam search of solo.decode, with GPU-sized batches and SDPA attention.

The search itself is solo.decode.beam_search, unchanged (its results do not depend on the batch
size). What makes decoding fast on a GPU is the batch: beam search at batch 32 x 10 beams runs
GPT-2 at a few hundred rows per step and is launch-bound; batching as many prompts as memory
allows amortises every launch and the per-step host check over more rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from solo.accel.precision import use_sdpa
from solo.decode.beam_search import beam_search

# Fraction of free GPU memory the KV cache and per-step score tensors may take.
_MEMORY_SHARE = 0.5
# Beyond this, larger batches gain little and the prompt-length spread inside a batch grows.
_MAX_PROMPTS_PER_BATCH = 256
_CPU_BATCH = 32


def decode_batch_size(model: nn.Module, prompts: Sequence[Sequence[int]], num_beams: int,
                      max_new_tokens: int) -> int:
    """The number of prompts per beam-search batch that fits the device's free memory."""
    device = next(model.parameters()).device
    if device.type != "cuda" or not prompts:
        return _CPU_BATCH
    config = model.config
    layers = int(getattr(config, "n_layer", getattr(config, "num_hidden_layers", 24)))
    width = int(getattr(config, "n_embd", getattr(config, "hidden_size", 1024)))
    vocab = int(getattr(config, "vocab_size", 50257))
    element = next(model.parameters()).element_size()
    length = max(len(p) for p in prompts) + max_new_tokens
    # Keys and values of every layer; x3: the cache grows by concatenation and is reordered by
    # copy each step, so up to three copies coexist.
    cache_per_row = 3 * 2 * layers * width * length * element
    # fp32 logits, log-probs, beam totals and sort keys over the vocabulary.
    scores_per_row = 6 * vocab * 4
    free, _ = torch.cuda.mem_get_info(device)
    # Blocks PyTorch keeps cached from earlier work are free to this search too.
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    rows = int(free * _MEMORY_SHARE) // (cache_per_row + scores_per_row)
    return max(1, min(_MAX_PROMPTS_PER_BATCH, rows // num_beams))


def fast_beam_search(model: nn.Module, prompts: Sequence[Sequence[int]], *, eos_id: int, pad_id: int,
                     num_beams: int = 10, length_penalty: float = 0.9, no_repeat_ngram_size: int = 4,
                     max_new_tokens: int = 64, batch_size: int | None = None) -> list[list[int]]:
    """solo.decode.beam_search with SDPA attention and (by default) the largest batch that fits."""
    use_sdpa(model)
    if batch_size is None:
        batch_size = decode_batch_size(model, prompts, num_beams, max_new_tokens)
    return beam_search(model, prompts, eos_id=eos_id, pad_id=pad_id, num_beams=num_beams,
                       length_penalty=length_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
                       max_new_tokens=max_new_tokens, batch_size=batch_size)
