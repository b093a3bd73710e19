"""LoRA baseline: only Q and V slices, loralib init and scaling, merge equivalence, counts, frozen backbone."""

from __future__ import annotations

import math

import pytest
import torch

from solo.errors import SoloError
from solo.methods import apply_method
from solo.models.backbone import build_random_model, random_config
from solo.paths import shared_data_dir
from tests.methods.methods_helpers import (
    adamw_step,
    assert_only_the_adapter_changed,
    lora,
    make_gpt2,
    make_llama,
    randomise_b,
)


@pytest.mark.parametrize(("name", "expected"), [("gpt2", 147_456), ("gpt2-medium", 393_216)])
def test_trainable_counts_on_real_shapes(name, expected):
    model = build_random_model(random_config(shared_data_dir() / "gpt2-configs" / f"{name}.json"), device="meta")
    assert lora(model).num_trainable() == expected


def test_starts_exactly_at_backbone_and_uses_loralib_init(gpt2, tokens):
    base = gpt2(tokens).logits
    method = lora(gpt2)
    assert torch.equal(gpt2(tokens).logits, base)  # B = 0
    layer = method.layers[0]
    assert layer.lora_A.shape == (2 * 4, 32) and layer.lora_B.shape == (2 * 32, 4)
    bound = 1 / math.sqrt(32)  # kaiming_uniform with a=√5 on fan_in 32
    assert layer.lora_A.abs().max() <= bound and layer.lora_A.abs().max() > 0.8 * bound
    assert layer.scaling == 32 / 4


def test_only_q_and_v_slices_change(gpt2):
    method = lora(gpt2)
    randomise_b(method)
    layer = method.layers[0]
    x = torch.randn(5, 32)
    base = torch.addmm(layer.bias, x, layer.weight)
    delta = layer(x) - base
    q, k, v = delta.split(32, dim=-1)
    assert torch.all(k == 0) and q.abs().sum() > 0 and v.abs().sum() > 0
    a_q, a_v = layer.lora_A[:4], layer.lora_A[4:]
    b_q, b_v = layer.lora_B[:32], layer.lora_B[32:]
    torch.testing.assert_close(q, x @ a_q.T @ b_q.T * 8.0)
    torch.testing.assert_close(v, x @ a_v.T @ b_v.T * 8.0)


def test_merge_gives_the_same_logits(gpt2, tokens):
    method = lora(gpt2)
    randomise_b(method)
    unmerged = gpt2(tokens).logits
    assert not torch.equal(unmerged, make_gpt2()(tokens).logits)
    method.merge()
    torch.testing.assert_close(gpt2(tokens).logits, unmerged, rtol=1e-5, atol=1e-5)


def test_dropout_is_on_the_lora_input_only(gpt2):
    method = lora(gpt2, dropout=0.5)
    randomise_b(method)
    layer = method.layers[0].train()
    x = torch.randn(64, 32)
    base = torch.addmm(layer.bias, x, layer.weight)
    torch.manual_seed(0)
    k_slice = (layer(x) - base)[:, 32:64]
    assert torch.all(k_slice == 0)  # the frozen path itself is never dropped
    assert not torch.equal(layer(x), layer(x))


def test_backbone_bitwise_unchanged_after_training_step(gpt2, tokens):
    before = {k: v.clone() for k, v in gpt2.state_dict().items()}
    method = lora(gpt2, dropout=0.1)
    adamw_step(method, gpt2, tokens)
    added = {f"transformer.h.{i}.attn.c_attn.lora_{m}" for i in range(6) for m in "AB"}
    assert_only_the_adapter_changed(gpt2, before, added, method)


def test_detach_restores_original_modules(gpt2, tokens):
    original = gpt2.transformer.h[0].attn.c_attn
    method = lora(gpt2)
    randomise_b(method)
    method.detach()
    assert gpt2.transformer.h[0].attn.c_attn is original
    assert torch.equal(gpt2(tokens).logits, make_gpt2()(tokens).logits)


def test_llama_q_and_v_projections(tokens):
    model = make_llama()
    method = lora(model)
    attn = model.model.layers[0].self_attn
    assert hasattr(attn.q_proj, "lora_A") and hasattr(attn.v_proj, "lora_A") and not hasattr(attn.k_proj, "lora_A")
    # 4 layers × (q: 4·(32+32), v: 4·(32+16) with 2 kv heads of 8)
    assert method.num_trainable() == 4 * (4 * (32 + 32) + 4 * (32 + 16))
    randomise_b(method)
    ids = tokens % 89
    unmerged = model(ids).logits
    method.merge()
    torch.testing.assert_close(model(ids).logits, unmerged, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"rank": 0}, "method.rank"), ({"alpha": 0}, "method.alpha"), ({"targets": ["q", "o"]}, "method.targets"),
     ({"dropout": 1.0}, "method.dropout"), ({"ranks": 4}, "method.ranks")],
)
def test_invalid_values_rejected(gpt2, overrides, field):
    with pytest.raises(SoloError, match=field.replace(".", r"\.")):
        lora(gpt2, **overrides)


def test_full_fine_tuning_trains_every_parameter_once(gpt2, tokens):
    method = apply_method(gpt2, {"name": "full_ft"})
    unique = {id(p): p for p in gpt2.parameters()}
    assert method.num_trainable() == sum(p.numel() for p in unique.values())
    assert all(p.requires_grad for p in gpt2.parameters())
    wte_before = gpt2.transformer.wte.weight.detach().clone()
    adamw_step(method, gpt2, tokens)
    assert not torch.equal(gpt2.transformer.wte.weight, wte_before)
    assert "lm_head.weight" not in method.adapter_state_dict()  # tied to wte, saved once
