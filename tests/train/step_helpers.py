"""A small GPT-2, right-padded batches and method/optimiser set-ups for the training-step tests."""

from __future__ import annotations

import copy

import torch
from omegaconf import OmegaConf
from transformers import GPT2LMHeadModel

from solo.methods import apply_method
from solo.train.optim import build_optimizer, build_scheduler

PAD = 255
STEPS = 20
# Solo with sparsity > 0 so the in-step mask re-application and the lambda clamp both matter.
SOLO = {"name": "solo", "rank": 8, "sparsity": 0.5, "dropout": 0.0, "init_seed": 3}
LORA = {"name": "lora", "rank": 4, "alpha": 32, "dropout": 0.0}
TRAINER = {"lr": 2e-3, "weight_decay": 0.01, "betas": [0.9, 0.999], "eps": 1e-6}


def make_batch(generator: torch.Generator, batch_size: int = 4) -> dict[str, torch.Tensor]:
    """A right-padded batch as solo.data.TrainBatches.collate makes it (targets: second half)."""
    lengths = torch.randint(8, 30, (batch_size,), generator=generator).tolist()
    width = max(lengths)
    input_ids = torch.full((batch_size, width), PAD, dtype=torch.long)
    attention_mask = torch.zeros((batch_size, width), dtype=torch.long)
    loss_mask = torch.zeros((batch_size, width))
    for row, length in enumerate(lengths):
        input_ids[row, :length] = torch.randint(0, PAD, (length,), generator=generator)
        attention_mask[row, :length] = 1
        loss_mask[row, length // 2:length] = 1.0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "loss_mask": loss_mask}


def attach(backbone: GPT2LMHeadModel, method_cfg: dict):
    model = copy.deepcopy(backbone)
    torch.manual_seed(5)  # LoRA draws A from the global RNG
    method = apply_method(model, method_cfg)
    optimizer = build_optimizer(method.trainable_parameters(), OmegaConf.create(TRAINER))
    scheduler = build_scheduler(optimizer, warmup_steps=5, total_steps=STEPS)
    return model, method, optimizer, scheduler
