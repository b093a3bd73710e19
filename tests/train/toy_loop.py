"""A toy GPT-2, toy batches and a trainer config for the loop tests, shared by the test modules."""

from __future__ import annotations

import json

import torch
from omegaconf import OmegaConf
from transformers import GPT2Config, GPT2LMHeadModel

from solo.data import TrainBatches
from solo.train.loop import train
from solo.train.tracking import Tracker


class Interrupt(Exception):
    """Stands in for a crash at a chosen optimiser step."""


def toy_model(dropout: float) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=40, n_positions=32, n_embd=16, n_layer=2, n_head=2,
        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, bos_token_id=0, eos_token_id=0,
    )
    model = GPT2LMHeadModel(config)
    model.transformer.wte.weight.requires_grad_(False)  # a frozen part, like a backbone
    return model


def toy_batches(n_examples: int, batch_size: int = 4, shuffle: bool = True) -> TrainBatches:
    gen = torch.Generator().manual_seed(1)
    examples = []
    for n in range(n_examples):
        length = 5 + n % 7
        ids = torch.randint(1, 40, (length,), generator=gen).tolist()
        examples.append((ids, [0, 0] + [1] * (length - 2)))
    return TrainBatches(examples, batch_size, seed=3, pad_id=0, shuffle=shuffle)


def toy_trainer(**changes):
    base = {
        "epochs": 2, "max_steps": None, "batch_size": 4, "lr": 0.01, "weight_decay": 0.01,
        "warmup_steps": 2, "label_smoothing": 0.1, "grad_clip": 1.0, "grad_accum": 1,
        "fast_step": False, "eval_every": 4, "eval_max_batches": 2, "ckpt_every": 3, "log_every": 2,
        "precision": "fp32", "device": "cpu",
    }
    return OmegaConf.create({**base, **changes})


def run_toy(run_dir, trainer_cfg, model, n_examples: int, hook=None):
    """Train `model` on the toy batches; `hook(step, model)` runs after every optimiser step."""
    params = [p for p in model.parameters() if p.requires_grad]
    steps = {"n": 0}

    def after_step() -> None:
        steps["n"] += 1
        if hook:
            hook(steps["n"], model)

    outcome = train(
        model=model, params=params, after_optimizer_step=after_step,
        train_batches=toy_batches(n_examples), dev_batches=toy_batches(n_examples, shuffle=False),
        trainer_cfg=trainer_cfg, run_dir=run_dir, tracker=Tracker(), device=torch.device("cpu"),
    )
    return model, outcome


def metric_records(run_dir, drop: tuple[str, ...] = ()) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]
