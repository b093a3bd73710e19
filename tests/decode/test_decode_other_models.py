"""The fast engine on models other than GPT-2: the model's own forward, in the attention its class
supports (use_sdpa never forces sdpa on a class that does not declare it)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, BloomConfig, Gemma2Config, Qwen2Config

from solo.decode.engine import search, use_sdpa
from tests.decode.decode_models import random_prompts
from tests.decode.decode_reference import lora_reference_beam_search

VOCAB = 61
SEARCH = dict(num_beams=3, max_new_tokens=6, eos_id=[0], pad_id=0, length_penalty=0.8,
              no_repeat_ngram_size=4, style="lora")


def _model(config):
    config.vocab_size, config.bos_token_id, config.eos_token_id, config.pad_token_id = VOCAB, 0, 0, 0
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()


CONFIGS = {
    # Gemma2 soft-caps its attention logits, which sdpa cannot: forcing sdpa raised in the first step.
    "gemma2": lambda: Gemma2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=8),
    # Bloom computes its attention itself (alibi); transformers warned when sdpa was forced on it.
    "bloom": lambda: BloomConfig(hidden_size=32, n_head=4, n_layer=2),
    "qwen2": lambda: Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2),
}


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_the_fast_engine_gives_the_reference_engines_tokens(kind):
    model = _model(CONFIGS[kind]())
    prompts = random_prompts(VOCAB, 3, seed=1)
    with torch.no_grad():
        reference = search(model, prompts, engine="reference", **SEARCH)
        fast = search(model, prompts, engine="fast", **SEARCH)
    assert fast == reference
    # Both engines end in beam_search on these models: the one-prompt search written out is the
    # independent check of the tokens.
    one_by_one = {key: value for key, value in SEARCH.items() if key not in ("pad_id", "style")}
    one_by_one["eos_id"] = tuple(one_by_one["eos_id"])
    assert [list(o) for o in fast] == [lora_reference_beam_search(model, p, **one_by_one) for p in prompts]
    assert model.config._attn_implementation == ("sdpa" if kind == "qwen2" else "eager")


def test_use_sdpa_switches_only_a_class_that_supports_it():
    assert use_sdpa(_model(CONFIGS["qwen2"]())) == "sdpa"
    assert use_sdpa(_model(CONFIGS["gemma2"]())) == "eager"
