"""`trainer.fast_step`: the loop on GraphedStep (eager on the CPU) against the plain step."""

from __future__ import annotations

import re

import pytest
import torch
from omegaconf import OmegaConf

from solo.errors import SoloError
from solo.train.checkpoint import readable_directory
from solo.train.graphed_step import GraphedStep
from solo.train.loop import check_trainer_config
from solo.train.metrics import NonFiniteLoss
from solo.train.step import use_fast_step
from tests.train.toy_loop import Interrupt, metric_records, run_toy, toy_model
from tests.train.toy_loop import toy_trainer as _trainer


def _model():
    # No dropout: the fast step drops the attention mask, and under CUDA graphs pads to buckets,
    # so only a dropout-free model gives the same numbers on both paths.
    return toy_model(dropout=0.0)


def _run(run_dir, trainer_cfg, model=None, hook=None):
    return run_toy(run_dir, trainer_cfg, model or _model(), n_examples=16, hook=hook)


def _records(run_dir) -> list[dict]:
    return metric_records(run_dir, drop=("tokens_per_s",))


@pytest.fixture
def fast_calls(monkeypatch) -> dict:
    """Counts GraphedStep calls, so a test notices if the loop ignores the switch."""
    calls = {"n": 0}
    original = GraphedStep.step

    def counting(self, batch):
        calls["n"] += 1
        return original(self, batch)

    monkeypatch.setattr(GraphedStep, "step", counting)
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
    from solo.train.step import compile_setting

    cfg = OmegaConf.create({"fast_step": "auto", "grad_accum": 1, **overrides})
    with pytest.raises(SoloError, match=re.escape(message)):
        compile_setting(cfg)
    assert compile_setting(OmegaConf.create({"fast_step": "auto"})) is False
