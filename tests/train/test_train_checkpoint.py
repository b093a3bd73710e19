"""Atomic directory replacement and the checkpoint round trip (weights, optimiser, RNG, position)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from solo.atomic import atomic_directory, previous_path, readable_directory
from solo.train.checkpoint import DataPosition, load_checkpoint, save_checkpoint
from solo.train.optim import build_optimizer, build_scheduler

TRAINER = OmegaConf.create({"lr": 0.01, "weight_decay": 0.01})


def test_failed_write_keeps_the_previous_directory(tmp_path) -> None:
    target = tmp_path / "checkpoint"
    with atomic_directory(target) as staging:
        (staging / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_directory(target) as staging:
        (staging / "a.txt").write_text("half")
        raise RuntimeError("crash while writing")
    assert (target / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_crash_between_the_renames_falls_back_to_the_old_copy(tmp_path) -> None:
    target = tmp_path / "checkpoint"
    with atomic_directory(target) as staging:
        (staging / "a.txt").write_text("first")
    # The state a crash after `rename(path, path.old)` but before `rename(tmp, path)` leaves.
    target.rename(previous_path(target))
    assert readable_directory(target) == previous_path(target)
    with atomic_directory(target) as staging:
        (staging / "a.txt").write_text("second")
    assert readable_directory(target) == target
    assert (target / "a.txt").read_text() == "second"
    assert not previous_path(target).exists()


def _model_and_optim():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2))
    model[2].weight.requires_grad_(False)  # frozen: must not be in the checkpoint
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, TRAINER)
    return model, optimizer, build_scheduler(optimizer, 2, 10)


def test_checkpoint_round_trip_restores_everything(tmp_path) -> None:
    torch.manual_seed(0)
    model, optimizer, scheduler = _model_and_optim()
    for _ in range(3):
        model(torch.randn(5, 3)).sum().backward()
        optimizer.step()
        scheduler.step()
    save_checkpoint(
        tmp_path / "ckpt",
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        position=DataPosition(step=3, epoch=1, batch=2),
    )
    expected_draws = (random.random(), np.random.rand(), torch.rand(2))
    expected_weights = {k: v.clone() for k, v in model.state_dict().items()}
    expected_exp_avg = optimizer.state[optimizer.param_groups[0]["params"][0]]["exp_avg"].clone()

    torch.manual_seed(123)  # a different process: other weights, other RNG state
    fresh, fresh_opt, fresh_sched = _model_and_optim()
    position = load_checkpoint(
        tmp_path / "ckpt", model=fresh, optimizer=fresh_opt, scheduler=fresh_sched
    )
    assert position == DataPosition(step=3, epoch=1, batch=2)
    assert fresh_sched.last_epoch == 3
    got_exp_avg = fresh_opt.state[fresh_opt.param_groups[0]["params"][0]]["exp_avg"]
    assert torch.equal(got_exp_avg, expected_exp_avg)
    for name, value in fresh.state_dict().items():
        if name == "2.weight":  # frozen, not saved: keeps the fresh model's value
            assert not torch.equal(value, expected_weights[name])
        else:
            assert torch.equal(value, expected_weights[name]), name
    draws = (random.random(), np.random.rand(), torch.rand(2))
    assert draws[0] == expected_draws[0] and draws[1] == expected_draws[1]
    assert torch.equal(draws[2], expected_draws[2])


def test_missing_checkpoint_means_fresh_start(tmp_path) -> None:
    model, optimizer, scheduler = _model_and_optim()
    assert (
        load_checkpoint(tmp_path / "none", model=model, optimizer=optimizer, scheduler=scheduler)
        is None
    )


def test_checkpoint_holds_exactly_what_the_optimiser_trains(tmp_path) -> None:
    """Trainable means the method's list (the optimiser's parameters), not requires_grad."""
    from safetensors.torch import load_file

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    optimizer = build_optimizer(list(model[0].parameters()), TRAINER)  # model[1] requires grad too
    scheduler = build_scheduler(optimizer, 2, 10)
    save_checkpoint(tmp_path / "ckpt", model=model, optimizer=optimizer, scheduler=scheduler,
                    position=DataPosition())
    saved = load_file(str(readable_directory(tmp_path / "ckpt") / "trainable.safetensors"))
    assert sorted(saved) == ["0.bias", "0.weight"]
