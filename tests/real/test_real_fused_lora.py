"""LoRA on a fused Q/K/V layer learns on real weights, exactly as on separate q_proj/v_proj.

The only real model offline (SmolLM2-135M, Llama) has separate projections. Phi-3 is the same
network with Q, K, V fused in one `qkv_proj` (and gate/up in one `gate_up_proj`), so SmolLM2's
real weights, concatenated, make a real pretrained fused-QKV model with SmolLM2's outputs. LoRA on
it (solo.methods.lora's LoRAFusedLinear on Phi-3's concatenated GQA rows) must then train exactly
as LoRA on SmolLM2's q_proj/v_proj from the same A: the same loss at every step, the same adapter
at the end, and a lower loss on held-out MRs. A wrong row layout fails here (checked: with K's and
V's rows swapped, 10 of the 12 losses differ, by up to 11%). About 45 s of CPU time; measured: the
same loss at all 12 steps (4.880 -> 3.003), held-out dev loss 2.351 -> 2.089.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import Phi3Config, Phi3ForCausalLM

from tests.real.conftest import BATCH, trainer_config

pytestmark = pytest.mark.slow

STEPS = 12
LORA = {"name": "lora", "rank": 8, "alpha": 32, "dropout": 0.0}  # no dropout: both runs draw nothing
_FUSED = {"self_attn.q_proj": ("self_attn.qkv_proj", ("k_proj", "v_proj")),
          "mlp.gate_proj": ("mlp.gate_up_proj", ("up_proj",))}


def as_phi3(llama) -> Phi3ForCausalLM:
    """`llama` as a Phi-3 model: the same weights, Q/K/V rows concatenated into qkv_proj."""
    c = llama.config
    config = Phi3Config(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads, hidden_act=c.hidden_act,
        max_position_embeddings=c.max_position_embeddings,
        original_max_position_embeddings=c.max_position_embeddings, rms_norm_eps=c.rms_norm_eps,
        rope_parameters=dict(c.rope_parameters), tie_word_embeddings=c.tie_word_embeddings,
        resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0, sliding_window=None,
        bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id)
    state = llama.state_dict()
    fused = {}
    for key, value in state.items():
        for first, (name, rest) in _FUSED.items():
            if f".{first}." in key:
                parts = [value, *(state[key.replace(first.split(".")[1], other)] for other in rest)]
                fused[key.replace(first, name)] = torch.cat(parts)
        if not any(f".{m}." in key for m in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")):
            fused[key] = value
    phi3 = Phi3ForCausalLM(config)
    phi3.load_state_dict(fused, strict=not c.tie_word_embeddings)
    phi3.tie_weights()
    return phi3.eval()


def _train(model, method, pairs, tokenizer, run_dir) -> list[float]:
    """`method` on `model` trained STEPS steps on `pairs`: the loss of each step."""
    from solo.data import TrainBatches, encode_pairs
    from solo.train.loop import train
    from solo.train.tracking import Tracker

    batches = TrainBatches(encode_pairs(tokenizer, pairs, 512), BATCH, 1, pad_id=int(tokenizer.pad_token_id))
    trainer = trainer_config(max_steps=STEPS, lr=2e-3, weight_decay=0.01, warmup_steps=2, log_every=1)
    train(model=model, params=method.trainable_parameters(), after_optimizer_step=method.after_optimizer_step,
          train_batches=batches, dev_batches=None, trainer_cfg=trainer, run_dir=run_dir, tracker=Tracker(),
          device=torch.device("cpu"))
    records = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return [record["loss"] for record in records if "loss" in record]


def _dev_loss(model, pairs, tokenizer) -> float:
    from solo.data import TrainBatches, encode_pairs
    from solo.train.loop import dev_loss

    batches = TrainBatches(encode_pairs(tokenizer, pairs, 512), BATCH, 1,
                           pad_id=int(tokenizer.pad_token_id), shuffle=False)
    return dev_loss(model, batches, torch.device("cpu"))


def _q_and_v(separate, name: str) -> list[torch.Tensor]:
    """The separate run's q_proj and v_proj tensor `name` of each block, stacked as the fused
    layer holds them (q_proj's layer comes before v_proj's in every block)."""
    layers = separate.layers
    return [torch.cat([getattr(q, name), getattr(v, name)]).detach() for q, v in zip(layers[::2], layers[1::2],
                                                                                     strict=True)]


def test_lora_on_fused_qkv_trains_as_on_separate_projections_and_learns(backbone, pairs, tmp_path):
    from solo.methods import apply_method

    llama, tokenizer = backbone
    train_pairs, dev_pairs = pairs
    phi3 = as_phi3(llama)
    ids = torch.tensor([tokenizer(f"{dev_pairs[0].mr} {dev_pairs[0].ref}").input_ids])
    with torch.no_grad():
        torch.testing.assert_close(phi3(ids).logits, llama(ids).logits, rtol=0, atol=1e-4)

    separate, fused = apply_method(llama, LORA), apply_method(phi3, LORA)
    try:
        assert [type(layer).__name__ for layer in fused.layers] == ["LoRAFusedLinear"] * len(fused.layers)
        with torch.no_grad():
            for layer, a in zip(fused.layers, _q_and_v(separate, "lora_A"), strict=True):
                layer.lora_A.copy_(a)  # the same start (B is zero in both)
        assert fused.trainable_parameters() and sum(p.numel() for p in fused.trainable_parameters()) == sum(
            p.numel() for p in separate.trainable_parameters())
        before = _dev_loss(phi3, dev_pairs, tokenizer)
        separate_losses = _train(llama, separate, train_pairs[: STEPS * BATCH], tokenizer, tmp_path / "separate")
        fused_losses = _train(phi3, fused, train_pairs[: STEPS * BATCH], tokenizer, tmp_path / "fused")
        after = _dev_loss(phi3, dev_pairs, tokenizer)
        print(f"fused LoRA on real weights: dev loss {before:.3f} -> {after:.3f}; "
              f"train loss {fused_losses[0]:.3f} -> {fused_losses[-1]:.3f}")
        assert len(fused_losses) == STEPS
        torch.testing.assert_close(torch.tensor(fused_losses), torch.tensor(separate_losses), rtol=1e-4, atol=0)
        for name in ("lora_A", "lora_B"):
            for layer, expected in zip(fused.layers, _q_and_v(separate, name), strict=True):
                torch.testing.assert_close(getattr(layer, name).detach(), expected, rtol=1e-3, atol=1e-5)
        assert after < before - 0.2, f"dev loss {before:.3f} -> {after:.3f}: LoRA on the fused layer did not learn"
    finally:
        separate.detach()
        fused.detach()
