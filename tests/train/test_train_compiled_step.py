"""GraphedStep(compile=True): torch.compile'd forward + loss gives the uncompiled step's losses."""

from __future__ import annotations

import pytest
import torch

from solo.train.graphed_step import GraphedStep
from tests.train.step_helpers import LORA, PAD, SOLO, attach

STEPS = 5


def run(base, data, method_cfg, **kwargs):
    model, method, optimizer, scheduler = attach(base, method_cfg)
    # One bucket for every batch (all are <= 30 tokens): one shape, so one compilation.
    step = GraphedStep(model, method.after_optimizer_step, optimizer, scheduler, pad_id=PAD,
                       label_smoothing=0.1, buckets=(32,), log=lambda _msg: None, **kwargs)
    losses = [step.step(batch).item() for batch in data[:STEPS]]
    return losses, method.adapter_state_dict(), step


@pytest.fixture(scope="module")
def inductor_cpu() -> None:
    """Skip unless inductor can compile for the CPU here (it needs a C++ compiler)."""
    try:
        out = torch.compile(lambda x: torch.sin(x) * 2.0, dynamic=False)(torch.ones(3))
    except Exception as err:  # noqa: BLE001 - any failure means no usable backend
        pytest.skip(f"inductor's CPU backend is unavailable: {type(err).__name__}: {err}")
    assert torch.allclose(out, torch.sin(torch.ones(3)) * 2.0)


@pytest.mark.slow  # inductor compiles forward and backward: ~20-40 s on 2 cores
def test_compiled_step_matches_uncompiled(backbone, batches, inductor_cpu):
    plain, plain_adapter, _ = run(backbone, batches, SOLO)
    compiled, compiled_adapter, step = run(backbone, batches, SOLO, compile=True)

    assert step.compiled and step.compile_failure is None
    assert step.compile_seconds > 0.0  # the first step really went through the compiler
    assert abs(plain[-1] - plain[0]) > 1e-4  # the curve moves, so equality means something
    assert max(abs(a - b) for a, b in zip(plain, compiled, strict=True)) < 1e-4
    for name, value in plain_adapter.items():
        torch.testing.assert_close(compiled_adapter[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_compile_failure_falls_back_to_the_uncompiled_step(backbone, batches, monkeypatch):
    """A compiled function that fails on its first call: the step says why and trains on uncompiled."""
    plain, plain_adapter, _ = run(backbone, batches, LORA)

    def broken_compile(fn, **_kwargs):
        def fails(*_args, **_kw):
            raise RuntimeError("inductor exploded")
        return fails

    monkeypatch.setattr(torch, "compile", broken_compile)
    messages = []
    model, method, optimizer, scheduler = attach(backbone, LORA)
    step = GraphedStep(model, method.after_optimizer_step, optimizer, scheduler, pad_id=PAD,
                       label_smoothing=0.1, buckets=(32,), log=messages.append, compile=True)
    assert step.compiled
    losses = [step.step(batch).item() for batch in batches[:STEPS]]

    assert not step.compiled and "inductor exploded" in step.compile_failure
    assert any("torch.compile off" in m for m in messages)
    # The failed first attempt must not have left gradients or an update behind.
    assert max(abs(a - b) for a, b in zip(plain, losses, strict=True)) < 1e-6
    for name, value in plain_adapter.items():
        torch.testing.assert_close(method.adapter_state_dict()[name], value, rtol=0, atol=1e-7, msg=name)
