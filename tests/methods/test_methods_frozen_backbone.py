"""Attaching LoRA or Solo Connection freezes the backbone itself: it does not rely on the training
code optimising only `method.trainable_parameters()`."""

from __future__ import annotations

import pytest
import torch

from solo.methods import apply_method
from solo.methods.base import named

METHODS = {
    "lora": {"name": "lora", "rank": 4, "alpha": 32, "dropout": 0.0},
    "solo": {"name": "solo", "rank": 8, "sparsity": 0.3, "dropout": 0.0},
}


@pytest.mark.parametrize("cfg", METHODS.values(), ids=METHODS.keys())
def test_only_the_methods_parameters_require_grad(gpt2, cfg):
    method = apply_method(gpt2, cfg)
    requiring = {name for name, p in gpt2.named_parameters() if p.requires_grad}
    assert requiring == set(named(gpt2, method.trainable_parameters()))
    assert requiring and all(".lora_" in n or n.startswith("solo_adapter.") for n in requiring)


@pytest.mark.parametrize("cfg", METHODS.values(), ids=METHODS.keys())
def test_an_optimiser_over_every_parameter_leaves_the_backbone_unchanged(gpt2, tokens, cfg):
    method = apply_method(gpt2, cfg)
    adapter = set(named(gpt2, method.trainable_parameters()))
    before = {n: p.detach().clone() for n, p in gpt2.named_parameters()}
    # Everything the model holds, weight decay included: a backbone weight with requires_grad
    # would get a gradient and move.
    optimizer = torch.optim.AdamW(gpt2.parameters(), lr=1e-2, weight_decay=0.1)
    gpt2.train()
    gpt2(tokens, labels=tokens).loss.backward()
    optimizer.step()
    after = dict(gpt2.named_parameters())
    for name, value in before.items():
        if name not in adapter:
            assert torch.equal(after[name], value), name
    assert any(not torch.equal(after[n], before[n]) for n in adapter)  # the step really trained
