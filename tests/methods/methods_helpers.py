"""Tiny random backbones and a training step for method tests (small vocabularies keep tests fast)."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM


def make_gpt2(n_layer: int = 6, n_embd: int = 32, seed: int = 0, vocab: int = 97) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab, n_positions=64, n_embd=n_embd, n_layer=n_layer, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )
    return GPT2LMHeadModel(config).eval()


def make_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=89, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def lora(model, **overrides):
    """LoRA r=4, α=32 without dropout (overrides change any setting)."""
    from solo.methods import apply_method

    return apply_method(model, {"name": "lora", "rank": 4, "alpha": 32, "dropout": 0.0, **overrides})


def randomise_b(method) -> None:
    """Nonzero B, so every LoRA term shows (B starts at zero)."""
    with torch.no_grad():
        for layer in method.layers:
            layer.lora_B.normal_(std=0.05)


def assert_only_the_adapter_changed(model, before: dict, added: set[str], method) -> None:
    """After training: the state dict gained exactly `added` (the adapter), every backbone tensor
    is bitwise what it was in `before`, and each LoRA B moved off zero."""
    after = model.state_dict()
    assert set(after) - set(before) == added
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    assert all(layer.lora_B.abs().sum() > 0 for layer in method.layers)


def adamw_step(method, model, tokens, lr: float = 1e-2, weight_decay: float = 0.1) -> None:
    """One real training step: LM loss, backward, AdamW with weight decay, method projection."""
    optimizer = torch.optim.AdamW(method.trainable_parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    loss = model(tokens, labels=tokens).loss
    loss.backward()
    optimizer.step()
    method.after_optimizer_step()
    model.eval()
