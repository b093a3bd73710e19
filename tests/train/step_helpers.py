"""A small GPT-2, right-padded batches and method/optimiser set-ups for the training-step tests."""

from __future__ import annotations

import copy

import torch
from omegaconf import OmegaConf
from transformers import GPT2LMHeadModel

from solo.data import TrainBatches
from solo.methods import apply_method
from solo.train.optim import build_optimizer, build_scheduler

PAD = 255
STEPS = 20
# Solo with sparsity > 0 so the in-step mask re-application and the lambda clamp both matter.
SOLO = {"name": "solo", "rank": 8, "sparsity": 0.5, "dropout": 0.0, "init_seed": 3}
LORA = {"name": "lora", "rank": 4, "alpha": 32, "dropout": 0.0}
TRAINER = {"lr": 2e-3, "weight_decay": 0.01, "betas": [0.9, 0.999], "eps": 1e-6}


def make_batch(generator: torch.Generator, batch_size: int = 4) -> dict[str, torch.Tensor]:
    """A right-padded batch from solo.data.TrainBatches.collate (targets: the second half)."""
    lengths = torch.randint(8, 30, (batch_size,), generator=generator).tolist()
    examples = [(torch.randint(0, PAD, (n,), generator=generator).tolist(), [0] * (n // 2) + [1] * (n - n // 2))
                for n in lengths]
    return TrainBatches(examples, batch_size, seed=0, pad_id=PAD).collate(range(batch_size))


def attach(backbone: GPT2LMHeadModel, method_cfg: dict):
    model = copy.deepcopy(backbone)
    torch.manual_seed(5)  # LoRA draws A from the global RNG
    method = apply_method(model, method_cfg)
    optimizer = build_optimizer(method.trainable_parameters(), OmegaConf.create(TRAINER))
    scheduler = build_scheduler(optimizer, warmup_steps=5, total_steps=STEPS)
    return model, method, optimizer, scheduler
