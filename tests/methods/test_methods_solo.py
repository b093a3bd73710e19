"""Solo Connection: exactness at λ=0, the connection's arithmetic, masks, counts, ablations, attachment."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from solo.errors import SoloError
from solo.methods import SoloConnection, apply_method
from solo.methods.placement import find_blocks
from tests.methods.methods_helpers import adamw_step, make_gpt2, make_llama


def solo(model, **overrides) -> SoloConnection:
    cfg = {"name": "solo", "rank": 8, "dropout": 0.0, "init_seed": 3, **overrides}
    return apply_method(model, cfg)  # type: ignore[return-value]


def test_lambda_zero_leaves_logits_exactly_unchanged(gpt2, tokens):
    base = gpt2(tokens).logits
    method = solo(gpt2, sparsity=0.5, blocks=[1, 2, 3, 4, 5, 6])
    assert not torch.equal(gpt2(tokens).logits, base)  # λ=0.001 does change them
    with torch.no_grad():
        method.adapter.lam.zero_()
    assert torch.equal(gpt2(tokens).logits, base)


def test_lambda_is_clamped_in_forward_and_projected_after_step(gpt2, tokens):
    method = solo(gpt2)
    with torch.no_grad():
        method.adapter.lam.fill_(-0.5)  # outside [0, 1]: the forward must treat it as 0
    assert torch.equal(gpt2(tokens).logits, make_gpt2()(tokens).logits)
    method.after_optimizer_step()
    assert torch.equal(method.adapter.lam.detach(), torch.zeros(method.n_connections))
    with torch.no_grad():
        method.adapter.lam.fill_(3.0)
    method.after_optimizer_step()
    assert torch.equal(method.adapter.lam.detach(), torch.ones(method.n_connections))


@pytest.mark.parametrize(("span", "blocks"), [(1, None), (2, [2, 4]), (3, None)])
def test_connection_adds_f_solo_of_group_input_to_group_output(span, blocks, tokens):
    """Checks y_last = D_last(·) + λ·v⊙(Dec(Enc(x_first-1) + e)) against hand-computed values."""
    model = make_gpt2(n_layer=8)
    blocks_list = find_blocks(model)
    raw_out, block_in = {}, {}
    for i, block in enumerate(blocks_list):  # registered before the method: sees the raw output
        block.register_forward_pre_hook(lambda m, a, i=i: block_in.__setitem__(i + 1, a[0]))
        block.register_forward_hook(lambda m, a, o, i=i: raw_out.__setitem__(i + 1, o if torch.is_tensor(o) else o[0]))
    method = solo(model, span=span, blocks=blocks, sparsity=0.25, lambda_init=0.3)
    a = method.adapter
    with torch.no_grad():
        a.encodings.normal_()
        model(tokens)
        enc, dec = a.encoder * a.encoder_mask, a.decoder * a.decoder_mask
        for t, (first, last) in enumerate(method.groups):
            assert last - first + 1 == span
            z = (block_in[first] @ enc.T + a.encodings[t]) @ dec.T
            expected = raw_out[last] + 0.3 * a.v[t] * z
            torch.testing.assert_close(block_in[last + 1], expected, rtol=1e-5, atol=1e-6)


def test_dropout_acts_only_in_training_mode(gpt2, tokens):
    method = solo(gpt2, dropout=0.5, lambda_init=1.0)
    gpt2.eval()
    assert torch.equal(gpt2(tokens).logits, gpt2(tokens).logits)
    gpt2.train()
    assert method.adapter.dropout.training
    assert not torch.equal(gpt2(tokens).logits, gpt2(tokens).logits)


def test_masks_keep_exact_counts_and_hold_through_adamw_steps(gpt2, tokens):
    method = solo(gpt2, sparsity=0.7, rank=6, lambda_init=0.5)
    a = method.adapter
    numel = 6 * 32
    assert int(a.encoder_mask.sum()) == int(a.decoder_mask.sum()) == round(0.3 * numel)
    for _ in range(3):
        adamw_step(method, gpt2, tokens, weight_decay=0.5)
    assert a.encoder.grad is not None
    assert torch.all(a.encoder.grad[~a.encoder_mask] == 0)
    assert torch.all(a.decoder.grad[~a.decoder_mask] == 0)
    assert torch.all(a.encoder[~a.encoder_mask] == 0) and torch.all(a.decoder[~a.decoder_mask] == 0)
    assert torch.all(a.encoder[a.encoder_mask] != 0)  # kept entries did train / are live


def test_masks_are_a_function_of_mask_seed(gpt2):
    first = solo(make_gpt2(), sparsity=0.5, mask_seed=7).adapter.encoder_mask
    same = solo(make_gpt2(), sparsity=0.5, mask_seed=7, init_seed=99).adapter.encoder_mask
    other = solo(make_gpt2(), sparsity=0.5, mask_seed=8).adapter.encoder_mask
    assert torch.equal(first, same) and not torch.equal(first, other)


@pytest.mark.parametrize(
    ("n_layer", "d", "r", "s", "span", "t"),
    [(6, 32, 8, 0.0, 1, 2), (6, 32, 8, 0.6, 1, 2), (8, 48, 5, 0.35, 1, 3), (8, 32, 4, 0.5, 3, 1), (12, 32, 16, 0.9, 3, 2)],
)
def test_trainable_count_matches_formula(n_layer, d, r, s, span, t):
    model = make_gpt2(n_layer=n_layer, n_embd=d)
    method = solo(model, rank=r, sparsity=s, span=span)
    assert method.n_connections == t
    kept = round((1 - s) * d * r)
    assert method.num_trainable() == 2 * kept + t * r + t * d + t
    # Independent measurement: live entries of the trainable tensors.
    a = method.adapter
    live = sum(p.numel() for p in method.trainable_parameters() if p is not a.encoder and p is not a.decoder)
    masks = (a.encoder_mask, a.decoder_mask) if s > 0 else (torch.ones(r, d), torch.ones(d, r))
    assert method.num_trainable() == live + int(masks[0].sum()) + int(masks[1].sum())


def test_paper_example_count_on_gpt2_small_shapes():
    """Issue example: GPT-2 S, r=128, no sparsity -> 196,608 + 5·(128+768+1) = 201,093."""
    from solo.models.backbone import build_random_model, random_config
    from solo.paths import shared_data_dir

    model = build_random_model(random_config(shared_data_dir() / "gpt2-configs" / "gpt2.json"), device="meta")
    method = apply_method(model, {"name": "solo", "rank": 128, "init_seed": 0})
    assert method.n_connections == 5 and method.num_trainable() == 201_093


def test_frozen_encoder_decoder_ablation(gpt2, tokens):
    method = solo(gpt2, train_encdec=False, sparsity=0.5)
    a = method.adapter
    before_enc, before_dec = a.encoder.detach().clone(), a.decoder.detach().clone()
    assert not a.encoder.requires_grad and not a.decoder.requires_grad
    assert method.num_trainable() == method.n_connections * (8 + 32 + 1)
    adamw_step(method, gpt2, tokens)
    assert torch.equal(a.encoder, before_enc) and torch.equal(a.decoder, before_dec)
    assert not torch.equal(a.v.detach(), solo(make_gpt2(), train_encdec=False, sparsity=0.5).adapter.v.detach())


def test_plain_vector_ablation_has_no_lambda(gpt2, tokens):
    method = solo(gpt2, homotopy=False, v_init="ones")
    assert not hasattr(method.adapter, "lam")
    assert method.num_trainable() == 2 * 8 * 32 + method.n_connections * (8 + 32)
    x = torch.randn(3, 32)
    a = method.adapter
    torch.testing.assert_close(a(x, 0), (x @ a.encoder.T) @ a.decoder.T)  # v = ones, e = 0


def test_backbone_bitwise_unchanged_after_training_step(gpt2, tokens):
    before = {k: v.clone() for k, v in gpt2.state_dict().items()}
    method = solo(gpt2, sparsity=0.3)
    adapter_before = method.adapter.v.detach().clone()
    adamw_step(method, gpt2, tokens)
    after = gpt2.state_dict()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    assert not torch.equal(method.adapter.v.detach(), adapter_before)


def test_generation_with_kv_cache_matches_full_recompute(gpt2, tokens):
    solo(gpt2, lambda_init=0.5)
    prompt = tokens[:1, :4]
    cached = gpt2.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=True, pad_token_id=0)
    uncached = gpt2.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=False, pad_token_id=0)
    assert torch.equal(cached, uncached)
    # Incremental logits equal full-sequence logits at every position.
    out = gpt2(tokens[:, :5], use_cache=True)
    step = gpt2(tokens[:, 5:6], cache=out.cache, use_cache=True)
    torch.testing.assert_close(step.logits[:, -1], gpt2(tokens[:, :6]).logits[:, -1], rtol=1e-4, atol=1e-5)


def test_llama_style_model_attach(tokens):
    model = make_llama()
    ids = tokens % 89
    base = model(ids).logits
    method = solo(model, lambda_init=0.5)
    assert method.groups == [(2, 2)]  # 4 blocks: D2 only (D4 is the final block)
    assert not torch.equal(model(ids).logits, base)
    with torch.no_grad():
        method.adapter.lam.zero_()
    assert torch.equal(model(ids).logits, base)
    assert model.generate(ids[:1, :3], max_new_tokens=3, do_sample=False).shape == (1, 6)


def test_detach_restores_backbone(gpt2, tokens):
    base = gpt2(tokens).logits
    method = solo(gpt2, lambda_init=1.0)
    method.detach()
    assert torch.equal(gpt2(tokens).logits, base)
    assert "solo_adapter.encoder" not in dict(gpt2.named_parameters())
    solo(gpt2)  # can attach again


def test_accepts_dictconfig_and_records_resolved_seed(gpt2):
    torch.manual_seed(5)
    method = apply_method(gpt2, OmegaConf.create({"name": "solo", "rank": 4, "blocks": [1, 3]}))
    assert isinstance(method.settings.init_seed, int)
    assert method.settings.to_dict()["blocks"] == [1, 3] and method.groups == [(1, 1), (3, 3)]
    assert set(method.adapter_state_dict()) == {
        "solo_adapter.encoder", "solo_adapter.decoder", "solo_adapter.encodings", "solo_adapter.v", "solo_adapter.lam",
    }


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"rank": 0}, "method.rank"),
        ({"rank": -3}, "method.rank"),
        ({"sparsity": 1.0}, "method.sparsity"),
        ({"sparsity": -0.1}, "method.sparsity"),
        ({"blocks": [7]}, "method.blocks"),
        ({"blocks": [0]}, "method.blocks"),
        ({"span": 7}, "method.span"),
        ({"span": 5}, "method.span"),  # fits in 6 blocks only by ending on the final block
        ({"blocks": [3], "span": 5}, "method.blocks"),
        ({"v_init": "zeros"}, "method.v_init"),
        ({"sparcity": 0.5}, "method.sparcity"),
    ],
)
def test_invalid_values_rejected_naming_the_field(gpt2, overrides, field):
    with pytest.raises(SoloError, match=field.replace(".", r"\.")):
        solo(gpt2, **overrides)
    assert not hasattr(gpt2, "solo_adapter")


def test_unknown_method_name_rejected(gpt2):
    with pytest.raises(SoloError, match=r"method\.name"):
        apply_method(gpt2, {"name": "prefix"})


def test_attaching_twice_rejected(gpt2):
    solo(gpt2)
    with pytest.raises(SoloError, match="already"):
        solo(gpt2)


@pytest.mark.parametrize("span", [1, 2])
def test_gradient_checkpointing_gives_the_same_gradients(span, tokens):
    grads = []
    for checkpointing in (False, True):
        model = make_gpt2()
        method = solo(model, span=span, blocks=[2, 4], lambda_init=0.5)
        if checkpointing:
            enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            enable()
        model.train()
        model(tokens, labels=tokens).loss.backward()
        grads.append([p.grad.clone() for p in method.trainable_parameters()])
    for plain, checkpointed in zip(*grads, strict=True):
        torch.testing.assert_close(plain, checkpointed)


def test_repr_names_the_settings_the_connections_and_the_trainable_count():
    """Printing the method (a notebook's first look) says where it attached and how big it is."""
    method = apply_method(make_gpt2(n_layer=12), {"name": "solo", "rank": 8, "sparsity": 0.5, "span": 3})
    text = repr(method)
    assert text.startswith("SoloConnection(rank=8, sparsity=0.5, span=3, ")
    assert f"connections=[{', '.join(f'D{a}-D{b}' for a, b in method.groups)}]" in text
    assert text.endswith(f"trainable={method.num_trainable():,})")
    lora = apply_method(make_gpt2(), {"name": "lora"})
    assert repr(lora) == f"LoRA(rank=4, alpha=32, dropout=0.1, targets=['q', 'v'], trainable={lora.num_trainable():,})"


def test_no_room_for_a_default_connection_names_only_fixes_that_exist():
    from solo.methods.placement import connection_groups

    with pytest.raises(SoloError, match=r"2-block model .*; set method\.blocks \(e\.g\. \[1\]\)$"):
        connection_groups(2, None, 1)  # span 1 cannot go lower
    with pytest.raises(SoloError, match=r"lower method\.span or set method\.blocks"):
        connection_groups(3, None, 2)
    assert connection_groups(2, [1], 1) == [(1, 1)]
