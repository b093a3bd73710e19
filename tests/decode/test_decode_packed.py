"""Packed decoding (solo.decode.beam_search.PackedDecoding): several runs' adapters over one
backbone in one beam search give each run the tokens it gets decoded alone, with both engines and
both search rules (the hf rule drops finished prompts mid-search), for GPT-2 and a Llama."""

from __future__ import annotations

import pytest
import torch

from solo.decode import search
from solo.decode.beam_search import PackedDecoding
from solo.decode.static_search import StaticSearchReport
from solo.methods import apply_method
from solo.methods.packing import PackedForward, PromptLayout, shared_copy
from tests.decode.decode_models import random_prompts, small_gpt2

EOS = 15
METHODS = [
    {"name": "solo", "rank": 8, "sparsity": 0.5, "dropout": 0.0, "init_seed": 3,
     "blocks": [1, 2]},
    {"name": "solo", "rank": 4, "dropout": 0.0, "init_seed": 4, "homotopy": False,
     "blocks": [2]},
    {"name": "lora", "rank": 2, "alpha": 8, "dropout": 0.0},
]
SEARCH = dict(eos_id=EOS, pad_id=0, num_beams=3, length_penalty=0.9, no_repeat_ngram_size=3,
              max_new_tokens=12)


def gpt2():
    return small_gpt2(16, seed=2, eos_bias=1.0, head_std=0.3)


def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
        bos_token_id=EOS, eos_token_id=EOS, pad_token_id=0)).double().eval()


def packed_runs(backbone):
    """Each method on its own tree over `backbone`, trained-looking (every term nonzero), and
    registered with one PackedForward."""
    forward = PackedForward(backbone)
    trees = []
    for index, method_cfg in enumerate(METHODS):
        tree = shared_copy(backbone)
        torch.manual_seed(10 + index)
        method = apply_method(tree, method_cfg)
        with torch.no_grad():
            for p in method.trainable_parameters():
                p.add_(0.3 * torch.randn_like(p)).abs_()  # λ > 0: the gate is open
        forward.add_member(index, method.packed_terms())
        tree.eval()
        trees.append(tree)
    return forward, trees


@pytest.mark.parametrize("engine", ["fast", "reference"])
@pytest.mark.parametrize("style", ["lora", "hf"])
@pytest.mark.parametrize("model", [gpt2, llama], ids=["gpt2", "llama"])
def test_packed_decoding_gives_each_run_its_tokens_alone(model, style, engine):
    backbone = model()
    forward, trees = packed_runs(backbone)
    prompts = random_prompts(EOS + 1, 9, seed=5, end_with=EOS)
    settings = dict(SEARCH, style=style, engine=engine)
    alone = [search(tree, prompts, batch_size=4, **settings) for tree in trees]
    # The adapters change the tokens, so a run decoded with another run's adapter would show.
    assert alone[0] != alone[1] != alone[2] != alone[0]
    report = StaticSearchReport()
    packed = search(backbone, prompts, batch_size=8, report=report,
                    packed=PackedDecoding(forward, (0, 1, 2)), **settings)
    assert packed == alone
    if engine == "fast" and model is gpt2:
        assert report.batches == 5  # 8 prompts a search over 3 runs: 2 at a time
        assert (report.compactions > 0) == (style == "hf")


def test_a_subset_of_the_members_in_any_order():
    backbone = gpt2()
    forward, trees = packed_runs(backbone)
    prompts = random_prompts(EOS + 1, 5, seed=6, end_with=EOS)
    settings = dict(SEARCH, style="hf", engine="fast")
    packed = search(backbone, prompts, packed=PackedDecoding(forward, (2, 0)), **settings)
    assert packed == [search(trees[i], prompts, **settings) for i in (2, 0)]


def test_the_prompt_layout_follows_prompts_leaving_the_batch():
    layout = PromptLayout([4, 4, 1, 1, 1, 7])
    assert layout.counts(6) == [(4, 2), (1, 3), (7, 1)]     # the prompt pass: a row each
    assert layout.counts(18) == [(4, 6), (1, 9), (7, 3)]    # three beams each
    layout.keep([1, 3, 5])
    assert layout.counts(9) == [(4, 3), (1, 3), (7, 3)]
    with pytest.raises(ValueError, match="over 3 prompts"):
        layout.counts(10)
    with pytest.raises(ValueError, match="consecutive"):
        PromptLayout([1, 2, 1])
