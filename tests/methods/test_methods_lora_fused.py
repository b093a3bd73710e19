"""LoRA on one fused QKV nn.Linear (GPT-NeoX, Bloom, Falcon, GPT-BigCode, Phi-3): each slice acts
on exactly the rows the model's own attention reads as Q, K or V."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AttentionInterface,
    AutoModelForCausalLM,
    BloomConfig,
    FalconConfig,
    GPTBigCodeConfig,
    GPTNeoXConfig,
    MptConfig,
    Phi3Config,
)
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from solo.errors import SoloError
from solo.methods import load_adapter, save_adapter
from solo.methods.packing import PackedForward, shared_copy
from tests.methods.methods_helpers import (
    adamw_step,
    assert_only_the_adapter_changed,
    lora,
    randomise_b,
)

VOCAB = 97
CONFIGS = {
    "gpt_neox": lambda: GPTNeoXConfig(hidden_size=32, num_attention_heads=4, num_hidden_layers=2,
                                      intermediate_size=64),
    "bloom": lambda: BloomConfig(hidden_size=32, n_head=4, n_layer=2),
    "falcon-multi-query": lambda: FalconConfig(hidden_size=32, num_attention_heads=4, num_hidden_layers=2),
    "falcon-per-head": lambda: FalconConfig(hidden_size=32, num_attention_heads=4, num_hidden_layers=2,
                                            multi_query=False),
    "falcon-grouped": lambda: FalconConfig(hidden_size=32, num_attention_heads=4, num_hidden_layers=2,
                                           new_decoder_architecture=True, num_kv_heads=2),
    "gpt_bigcode-multi-query": lambda: GPTBigCodeConfig(n_embd=32, n_head=4, n_layer=2),
    "gpt_bigcode-per-head": lambda: GPTBigCodeConfig(n_embd=32, n_head=4, n_layer=2, multi_query=False),
    "phi3": lambda: Phi3Config(hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                               num_hidden_layers=2, intermediate_size=64, pad_token_id=0),
}

_captured: list[tuple[torch.Tensor, ...]] = []


def _capture(module, query, key, value, attention_mask, **kwargs):
    _captured.append((query.detach().clone(), key.detach().clone(), value.detach().clone()))
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register("solo_capture", _capture)


def make(kind: str, seed: int = 0):
    config = CONFIGS[kind]()
    config.vocab_size, config.bos_token_id, config.eos_token_id = VOCAB, 0, 0
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    if kind != "bloom":  # Bloom computes its attention itself (alibi), through `_reshape`
        model.set_attn_implementation("solo_capture")
    return model.eval()


def first_layer_qkv(model, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Q, K and V as the first block's attention splits them out of its fused projection."""
    _captured.clear()
    if model.config.model_type == "bloom":
        attention = model.transformer.h[0].self_attention
        split = attention._reshape
        attention._reshape = lambda fused: _captured.append(tuple(t.clone() for t in split(fused))) or _captured[-1]
        try:
            with torch.no_grad():
                model(ids)
        finally:
            del attention._reshape
    else:
        with torch.no_grad():
            model(ids)
    return _captured[0]



@pytest.fixture()
def ids():
    return torch.randint(1, VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("target", ["q", "k", "v"])
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_each_slice_moves_its_own_states_only(kind, target, ids):
    model = make(kind)
    before = first_layer_qkv(model, ids)
    method = lora(model, targets=[target])
    assert len(method.layers) == 2  # one fused projection per block
    randomise_b(method)
    after = first_layer_qkv(model, ids)
    for role, old, new in zip("qkv", before, after, strict=True):
        if role == target:  # every head and channel of the slice changed
            assert bool(((new - old).abs().amax(dim=(0, 2)) > 1e-4).all()), role
        else:
            torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_starts_at_the_backbone_and_merges_to_the_same_logits(kind, ids):
    model = make(kind)
    base = model(ids).logits
    method = lora(model)
    assert torch.equal(model(ids).logits, base)  # B = 0
    randomise_b(method)
    unmerged = model(ids).logits
    assert not torch.allclose(unmerged, base, atol=1e-3)
    method.merge()
    torch.testing.assert_close(model(ids).logits, unmerged, rtol=1e-5, atol=1e-5)


def test_grouped_query_counts_and_a_training_step_leave_the_backbone_alone(ids):
    model = make("phi3")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    method = lora(model, dropout=0.1)
    # 2 blocks × (A: 2 slices · r · d, B: r · (q rows 4·8 + v rows 2·8))
    assert method.num_trainable() == 2 * (2 * 4 * 32 + 4 * (32 + 16))
    adamw_step(method, model, ids)
    added = {f"model.layers.{i}.self_attn.qkv_proj.lora_{m}" for i in range(2) for m in "AB"}
    assert_only_the_adapter_changed(model, before, added, method)


def test_adapter_round_trip(tmp_path, ids):
    model = make("falcon-grouped")
    method = lora(model, targets=["k", "v"], dropout=0.1)
    adamw_step(method, model, ids)
    expected = model(ids).logits
    save_adapter(method, tmp_path / "adapter")
    fresh = make("falcon-grouped")
    loaded = load_adapter(fresh, tmp_path / "adapter")
    assert loaded.num_trainable() == method.num_trainable()
    assert torch.equal(fresh(ids).logits, expected)


def test_packed_members_get_the_logits_they_get_alone(ids):
    base = make("gpt_neox")
    forward = PackedForward(base)
    trees = [shared_copy(base) for _ in range(2)]
    methods = [lora(trees[0], rank=2), lora(trees[1], rank=4, targets=["k"])]
    for member, method in enumerate(methods):
        randomise_b(method)
        forward.add_member(member, method.packed_terms())
    with torch.no_grad(), forward.rows([(0, 2), (1, 2)]):
        joint = base(torch.cat([ids, ids.flip(0)])).logits
    with torch.no_grad():
        torch.testing.assert_close(joint[:2], trees[0](ids).logits, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(joint[2:], trees[1](ids.flip(0)).logits, rtol=1e-5, atol=1e-6)
    forward.close()


def test_a_fused_projection_of_an_unknown_layout_is_refused():
    model = AutoModelForCausalLM.from_config(MptConfig(vocab_size=VOCAB, d_model=32, n_heads=4, n_layers=2,
                                                       bos_token_id=0, eos_token_id=0))
    with pytest.raises(SoloError, match=r"mpt's fused `Wqkv`.*method=solo"):
        lora(model)


def test_fused_layers_of_an_unknown_layout_beside_q_and_v_are_left_alone(caplog):
    """MiniMax-like: q_proj/v_proj in its full-attention blocks, a fused qkv_proj in its
    linear-attention ones; LoRA adapts the former (refusing the whole model was a regression)."""
    from types import SimpleNamespace

    from torch import nn

    model = nn.Module()
    model.config = SimpleNamespace(model_type="minimax")
    model.full = nn.ModuleDict({"q_proj": nn.Linear(8, 8), "k_proj": nn.Linear(8, 8), "v_proj": nn.Linear(8, 8)})
    model.linear = nn.ModuleDict({"qkv_proj": nn.Linear(8, 24)})
    with caplog.at_level("WARNING", logger="solo.methods.lora"):
        method = lora(model)
    assert len(method.layers) == 2 and not hasattr(model.linear.qkv_proj, "lora_A")
    assert "1 fused `qkv_proj` layers of minimax left unadapted" in caplog.text
