"""AdamW with decoupled weight decay, and the linear warm-up / decay schedule."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from solo.errors import SoloError
from solo.train.optim import build_optimizer, build_scheduler, linear_warmup_decay

TRAINER = OmegaConf.create({"lr": 0.1, "weight_decay": 0.5})  # the rest: schema defaults


def test_schedule_warms_up_then_decays_to_zero() -> None:
    warmup, total = 4, 10
    values = [linear_warmup_decay(s, warmup, total) for s in range(total + 1)]
    assert values[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert values[4:] == pytest.approx([1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0.0])


def test_scheduler_drives_the_optimizer_lr() -> None:
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = build_optimizer([param], TRAINER)
    scheduler = build_scheduler(optimizer, warmup_steps=2, total_steps=4)
    seen = []
    for _ in range(4):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.0, 0.05, 0.1, 0.05])
    # The scheduler survives a state_dict round trip (resume).
    again = build_scheduler(build_optimizer([param], TRAINER), warmup_steps=2, total_steps=4)
    again.load_state_dict(scheduler.state_dict())
    assert again.last_epoch == 4


def test_weight_decay_is_decoupled_from_the_gradient() -> None:
    # With a zero gradient Adam's update is 0, so only the decoupled decay moves the weight.
    param = torch.nn.Parameter(torch.full((2,), 2.0))
    optimizer = build_optimizer([param], TRAINER)
    param.grad = torch.zeros(2)
    optimizer.step()
    assert param.detach().tolist() == pytest.approx([2.0 * (1 - 0.1 * 0.5)] * 2)


def test_no_trainable_parameters_is_a_user_error() -> None:
    with pytest.raises(SoloError, match="no trainable parameters"):
        build_optimizer([], TRAINER)
