"""Fixtures of the training tests: a fake scorer for the pipeline, a small backbone and batches
for the step tests."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from tests.train.step_helpers import PAD, STEPS, make_batch


@pytest.fixture()
def fake_scorer(monkeypatch):
    """Records what the pipeline hands the scorer; the real one is exercised by the CLI test."""
    import e2e_eval

    calls = []

    def score(predictions, references, mteval="perl"):
        calls.append((predictions, references, mteval))
        return {"BLEU": 0.5, "NIST": 1.0, "METEOR": 0.25, "ROUGE_L": 0.5, "CIDEr": 0.1}

    monkeypatch.setattr(e2e_eval, "score", score)
    return calls


@pytest.fixture(scope="module")
def backbone() -> GPT2LMHeadModel:
    # Smaller than the shared tiny fixture (vocabulary 256): the tests compare 2 x 20 steps per
    # method and must stay within seconds on 2 cores.
    config = GPT2Config(vocab_size=256, n_positions=128, n_embd=32, n_layer=3, n_head=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=PAD, eos_token_id=PAD)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def batches() -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [make_batch(generator) for _ in range(STEPS)]
