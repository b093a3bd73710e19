"""Fast decoding gives the same tokens as the exact beam search of solo.decode."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from solo.accel import decode_batch_size, fast_beam_search
from solo.decode import beam_search

EOS = 127


def test_fast_decoding_gives_the_exact_beam_search_tokens():
    config = GPT2Config(vocab_size=128, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=EOS, eos_token_id=EOS)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    model.config._attn_implementation = "eager"  # the fast path must switch it to sdpa
    generator = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, EOS, (int(n),), generator=generator).tolist()
               for n in torch.randint(3, 12, (7,), generator=generator)]
    settings = dict(eos_id=EOS, pad_id=EOS, num_beams=4, length_penalty=0.9,
                    no_repeat_ngram_size=3, max_new_tokens=10)

    exact = beam_search(model, prompts, batch_size=2, **settings)
    fast = fast_beam_search(model, prompts, **settings)

    assert model.config._attn_implementation == "sdpa"
    assert fast == exact
    assert any(len(tokens) > 0 for tokens in fast)  # something was generated


def test_decode_batch_size_on_cpu_is_the_default():
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=1, n_head=2))
    assert decode_batch_size(model, [[1, 2, 3]], num_beams=10, max_new_tokens=8) == 32
