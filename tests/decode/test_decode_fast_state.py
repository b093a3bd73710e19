"""The fast GPT-2 decoding state gives the logits, and so the tokens, of the model's own forward."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from solo.decode import beam_search
from solo.decode.beam_search import HFCacheState
from solo.decode.engine import fast_beam_search
from solo.decode.gpt2_state import SharedPromptGPT2State, unsupported_reason
from solo.decode.static_search import StaticSearchReport
from solo.methods import apply_method
from tests.decode.decode_models import small_gpt2, tied_bigram
from tests.decode.decode_reference import lora_reference_beam_search
from tests.decode.test_decode_beam_search import case, prompts_for, reference, settings

EOS = 127


@pytest.mark.parametrize("batch_size", [1, 3, 7])
@pytest.mark.parametrize("num_beams", [1, 3, 10])
@pytest.mark.parametrize("name", ["gpt2-ties", "gpt2-eos", "gpt2-two-stops", "trained"])
@pytest.mark.parametrize("style", ["lora", "hf"])
def test_fast_search_equals_the_reference(style, name, num_beams, batch_size):
    out = fast_beam_search(case(name)["model"], prompts_for(name), pad_id=0, batch_size=batch_size,
                           **settings(name, num_beams, style))
    assert tuple(tuple(o) for o in out) == reference(name, num_beams, style)


def _left_padded(prompts: list[list[int]], pad: int):
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):] = torch.tensor(p)
        mask[row, width - len(p):] = 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def test_state_logits_follow_reorders_and_selections_like_the_hf_cache():
    """Drive both states through the same random beam shuffles and prompt removals."""
    model = small_gpt2(16, seed=4)
    beams, steps = 3, 6
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10], [11, 12, 13, 14]]
    ids, mask, positions = _left_padded(prompts, 0)
    generator = torch.Generator().manual_seed(0)
    fast, plain = SharedPromptGPT2State(model, beams, steps), HFCacheState(model, beams)
    with torch.no_grad():
        a, b = fast.start(ids, mask, positions), plain.start(ids, mask, positions)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
        mask = mask.repeat_interleave(beams, 0)
        next_position = mask.sum(-1)
        prompts_left = len(prompts)
        for step in range(steps - 1):
            rows = torch.randint(0, beams, (prompts_left, beams), generator=generator)
            rows = (rows + beams * torch.arange(prompts_left)[:, None]).view(-1)
            fast.reorder(rows), plain.reorder(rows)
            mask = torch.cat([mask[rows], torch.ones(len(rows), 1, dtype=torch.long)], 1)
            next_position = next_position[rows]
            if step == 2:  # the second prompt is done and leaves the batch
                keep = torch.tensor([p * beams + k for p in (0, 2, 3) for k in range(beams)])
                fast.select(keep), plain.select(keep)
                mask, next_position, prompts_left = mask[keep], next_position[keep], 3
            tokens = torch.randint(0, 15, (len(next_position),), generator=generator)
            a = fast.advance(tokens, mask, next_position + step)
            b = plain.advance(tokens, mask, next_position + step)
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def _fp64_gpt2(layers: int = 4) -> GPT2LMHeadModel:
    config = GPT2Config(vocab_size=128, n_positions=64, n_embd=32, n_layer=layers, n_head=2,
                        bos_token_id=EOS, eos_token_id=EOS)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config).double().eval()


@pytest.mark.parametrize("method", [
    {"name": "solo", "rank": 8, "span": 1, "lambda_init": 1.0, "sparsity": 0.5},
    {"name": "solo", "rank": 8, "span": 3, "lambda_init": 1.0},
    {"name": "lora", "rank": 4, "alpha": 32},
])
def test_methods_act_in_the_fast_state_as_in_the_model(method):
    model = _fp64_gpt2(layers=6)
    attached = apply_method(model, method)
    with torch.no_grad():  # make the adapter's contribution large enough to change tokens
        for p in attached.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.5)
    model.double().eval()
    generator = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, EOS, (int(n),), generator=generator).tolist()
               for n in torch.randint(3, 12, (5,), generator=generator)]
    kwargs = dict(eos_id=EOS, pad_id=EOS, num_beams=4, length_penalty=0.9,
                  no_repeat_ngram_size=3, max_new_tokens=10)
    exact = beam_search(model, prompts, batch_size=2, **kwargs)
    assert fast_beam_search(model, prompts, **kwargs) == exact
    attached.detach()
    assert beam_search(model, prompts, batch_size=2, **kwargs) != exact  # the method mattered


def test_other_models_fall_back_to_the_plain_state(monkeypatch):
    import solo.decode.engine as engine

    def no_static_search(*args, **kwargs):
        raise AssertionError("the GPT-2 state was used on a model it does not support")

    monkeypatch.setattr(engine, "static_beam_search", no_static_search)
    model = tied_bigram(12, seed=3)
    reason = unsupported_reason(model)
    assert reason is not None
    kwargs = dict(eos_id=11, num_beams=3, length_penalty=0.5, no_repeat_ngram_size=2, max_new_tokens=8)
    prompts = [[1, 2], [3], [4, 5, 6]]
    report = StaticSearchReport()
    out = fast_beam_search(model, prompts, pad_id=0, report=report, **kwargs)
    assert [list(o) for o in out] == [lora_reference_beam_search(model, p, **kwargs) for p in prompts]
    assert report.fallback is not None and report.fallback.startswith(reason)


def test_block_forwards_are_swapped_during_the_search_and_restored_after():
    model = _fp64_gpt2(layers=2)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        before = model(ids).logits
    swapped: list[bool] = []  # per block call: did it run the search's forward?
    hooks = [block.register_forward_pre_hook(lambda b, _a: swapped.append("forward" in vars(b)))
             for block in model.transformer.h]
    fast_beam_search(model, [[1, 2, 3]], eos_id=EOS, pad_id=EOS, num_beams=2, max_new_tokens=3)
    assert swapped and all(swapped)  # every block call of the search went through its forward
    assert all("forward" not in vars(block) for block in model.transformer.h)

    calls = {"n": 0}

    def fail_on_the_fifth_call(_block, _args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("stop inside the search")

    hooks.append(model.transformer.h[0].register_forward_pre_hook(fail_on_the_fifth_call))
    with pytest.raises(RuntimeError, match="stop inside"):
        fast_beam_search(model, [[1, 2, 3]], eos_id=EOS, pad_id=EOS, num_beams=2, max_new_tokens=8)
    assert all("forward" not in vars(block) for block in model.transformer.h)  # restored anyway
    for hook in hooks:
        hook.remove()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, before)  # the model's own forward, as before


def test_batch_sizes():
    from solo.decode.beam_search import DEFAULT_BATCH_SIZE
    from solo.decode.engine import decode_batch_size, even_batch_size

    # Off CUDA nothing is memory-sized: the CPU default.
    assert decode_batch_size(_fp64_gpt2(layers=1), [[1, 2, 3]], num_beams=10, max_new_tokens=8) == DEFAULT_BATCH_SIZE
    assert even_batch_size(630, 256) == 210
    assert even_batch_size(630, 1000) == 630
    assert even_batch_size(7, 3) == 3
    for count in range(1, 40):
        for fits in range(1, 12):
            size = even_batch_size(count, fits)
            assert size <= fits and -(-count // size) == -(-count // fits)
