"""`trainer.fast_step`: the loop on solo.accel.FastTrainStep (eager on the CPU) against the plain step."""

from __future__ import annotations

import json
import re

import pytest
import torch
from omegaconf import OmegaConf
from transformers import GPT2Config, GPT2LMHeadModel

from solo.accel import graphed_step
from solo.data import TrainBatches
from solo.errors import SoloError
from solo.train.checkpoint import readable_directory
from solo.train.loop import NonFiniteLoss, check_trainer_config, train, use_fast_step
from solo.train.tracking import Tracker


class Interrupt(Exception):
    """Stands in for a crash at a chosen optimiser step."""


def _model() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    # No dropout: the fast step drops the attention mask, and under CUDA graphs pads to buckets,
    # so only a dropout-free model gives the same numbers on both paths.
    config = GPT2Config(
        vocab_size=40, n_positions=32, n_embd=16, n_layer=2, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )
    model = GPT2LMHeadModel(config)
    model.transformer.wte.weight.requires_grad_(False)  # a frozen part, like a backbone
    return model


def _batches(shuffle: bool = True) -> TrainBatches:
    gen = torch.Generator().manual_seed(1)
    examples = []
    for n in range(16):
        length = 5 + n % 7
        examples.append((torch.randint(1, 40, (length,), generator=gen).tolist(), [0, 0] + [1] * (length - 2)))
    return TrainBatches(examples, 4, seed=3, pad_id=0, shuffle=shuffle)


def _trainer(**changes):
    base = {
        "epochs": 2, "max_steps": None, "batch_size": 4, "lr": 0.01, "weight_decay": 0.01,
        "warmup_steps": 2, "label_smoothing": 0.1, "grad_clip": 1.0, "grad_accum": 1,
        "fast_step": False, "eval_every": 4, "eval_max_batches": 2, "ckpt_every": 3, "log_every": 2,
        "precision": "fp32", "device": "cpu",
    }
    return OmegaConf.create({**base, **changes})


def _run(run_dir, trainer_cfg, model=None, hook=None):
    model = model or _model()
    params = [p for p in model.parameters() if p.requires_grad]
    steps = {"n": 0}

    def after_step() -> None:
        steps["n"] += 1
        if hook:
            hook(steps["n"], model)

    outcome = train(
        model=model, params=params, after_optimizer_step=after_step, train_batches=_batches(),
        dev_batches=_batches(shuffle=False), trainer_cfg=trainer_cfg, run_dir=run_dir,
        tracker=Tracker(), device=torch.device("cpu"),
    )
    return model, outcome


def _records(run_dir) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [{k: v for k, v in json.loads(line).items() if k != "tokens_per_s"} for line in lines]


@pytest.fixture
def fast_calls(monkeypatch) -> dict:
    """Counts FastTrainStep calls, so a test notices if the loop ignores the switch."""
    calls = {"n": 0}
    original = graphed_step.FastTrainStep.__call__

    def counting(self, batch):
        calls["n"] += 1
        return original(self, batch)

    monkeypatch.setattr(graphed_step.FastTrainStep, "__call__", counting)
    return calls


def test_fast_step_on_cpu_matches_the_plain_step(tmp_path, fast_calls) -> None:
    plain, outcome = _run(tmp_path / "plain", _trainer(fast_step=False))
    assert fast_calls["n"] == 0 and outcome.steps == 8
    fast, outcome = _run(tmp_path / "fast", _trainer(fast_step=True))
    assert fast_calls["n"] == 8 and outcome.steps == 8
    a, b = _records(tmp_path / "plain"), _records(tmp_path / "fast")
    assert [sorted(r) for r in a] == [sorted(r) for r in b]
    for ra, rb in zip(a, b, strict=True):
        for key in ra:
            assert ra[key] == pytest.approx(rb[key], abs=1e-5, rel=0), (ra["step"], key)
    moved = 0.0
    for (name, pa), pb, p0 in zip(plain.named_parameters(), fast.parameters(), _model().parameters(), strict=True):
        torch.testing.assert_close(pb, pa, atol=1e-5, rtol=0, msg=name)
        moved = max(moved, float((pa - p0).abs().max().detach()))
    assert moved > 1e-3  # the comparison is about trained weights, not the initial ones


def test_fast_step_run_resumes_bitwise(tmp_path, fast_calls) -> None:
    # Checkpoints on log boundaries: a logged mean spanning a checkpoint is not replayed exactly.
    trainer = _trainer(fast_step=True, ckpt_every=4)
    straight, _ = _run(tmp_path / "a", trainer)

    def crash(step, _model):
        if step == 7:
            raise Interrupt

    with pytest.raises(Interrupt):
        _run(tmp_path / "b", trainer, hook=crash)
    resumed, outcome = _run(tmp_path / "b", trainer)
    assert outcome.resumed_from == 4
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert _records(tmp_path / "b") == _records(tmp_path / "a")


@pytest.mark.parametrize("fast_step", [False, True])
def test_late_nan_check_names_the_step_and_keeps_an_earlier_checkpoint(tmp_path, fast_step) -> None:
    def poison_at_4(step, model):
        if step == 4:
            with torch.no_grad():
                model.transformer.h[0].ln_1.weight.fill_(float("nan"))

    # Losses are read at logs, evaluations and checkpoints (steps 3, 6). The NaN loss of step 5
    # surfaces at the step-5 log, or the step-5 evaluation (which then writes no dev loss), or
    # the step-6 checkpoint (which then is not written).
    for log_every, eval_every, name in ((5, None, "log"), (10, 5, "eval"), (10, None, "ckpt")):
        run_dir = tmp_path / name
        trainer = _trainer(fast_step=fast_step, log_every=log_every, eval_every=eval_every)
        with pytest.raises(NonFiniteLoss, match=r"loss is nan at optimiser step 5 .*step 3 in .*checkpoint"):
            _run(run_dir, trainer, hook=poison_at_4)
        state = torch.load(readable_directory(run_dir / "checkpoint") / "state.pt", weights_only=False)
        assert state["position"]["step"] == 3
        assert all(r["step"] < 5 for r in _records(run_dir))


def test_fast_step_setting() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not use_fast_step(_trainer(fast_step="auto"), cpu)
    assert use_fast_step(_trainer(fast_step="auto"), cuda)
    assert not use_fast_step(_trainer(fast_step="auto", grad_accum=2), cuda)
    assert use_fast_step(_trainer(fast_step=True), cpu)
    assert not use_fast_step(_trainer(fast_step=False), cuda)
    check_trainer_config(_trainer(fast_step=False, grad_accum=2))
    for bad in (_trainer(fast_step=True, grad_accum=2), _trainer(fast_step="yes")):
        with pytest.raises(SoloError, match=r"trainer\.fast_step"):
            check_trainer_config(bad)


def test_fast_step_with_grad_accum_is_refused_by_the_loop(tmp_path) -> None:
    with pytest.raises(SoloError, match=r"trainer\.fast_step=true needs trainer\.grad_accum=1"):
        _run(tmp_path, _trainer(fast_step=True, grad_accum=2))
    assert not (tmp_path / "checkpoint").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"compile": "yes"}, "trainer.compile='yes' must be true or false"),
     ({"compile": True, "fast_step": False}, "trainer.compile=true works inside the fast step")],
)
def test_compile_setting_is_checked(overrides, message):
    from solo.train.loop import compile_setting

    cfg = OmegaConf.create({"fast_step": "auto", "grad_accum": 1, **overrides})
    with pytest.raises(SoloError, match=re.escape(message)):
        compile_setting(cfg)
    assert compile_setting(OmegaConf.create({"fast_step": "auto"})) is False
