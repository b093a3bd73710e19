"""Runs trained in lockstep in one process (solo.train.lockstep) equal the runs trained alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from solo.paths import REPO_ROOT
from solo.train.rundir import is_finished, run_dir_for
from tests.train.test_train_pipeline import compose_cfg, tiny_overrides
from tests.train.toy_loop import metric_records

# Few steps, but enough to cross a checkpoint and an evaluation; dropout (GPT-2's and the
# method's) is on, so every step draws from the global RNG the driver must swap per run.
SHORT = ("trainer.max_steps=4", "trainer.eval_every=4", "trainer.ckpt_every=2")
TIMING = ("tokens_per_s",)


def _cfgs(shared: Path, root: Path, jobs: list[list[str]]):
    return [compose_cfg(tiny_overrides(shared, root, *SHORT, *job)) for job in jobs]


def _same_run(a: Path, b: Path) -> None:
    assert a.name == b.name  # same config hash
    assert metric_records(a, drop=TIMING) == metric_records(b, drop=TIMING)
    left = load_file(str(a / "adapter" / "adapter.safetensors"))
    right = load_file(str(b / "adapter" / "adapter.safetensors"))
    assert left.keys() == right.keys()
    for key in left:
        assert torch.equal(left[key], right[key]), key
    assert (a / "predictions.txt").read_text() == (b / "predictions.txt").read_text()


@pytest.mark.slow
def test_runs_in_lockstep_equal_the_runs_trained_alone(
    shared_data,
    tmp_path,
    fake_scorer,
):
    from solo.train.lockstep import finished_run_dirs, run_lockstep
    from solo.train.pipeline import run_experiment

    jobs = [["seed=1"], ["seed=2"]]
    alone = [run_experiment(cfg) for cfg in _cfgs(shared_data, tmp_path / "alone", jobs)]
    state = torch.get_rng_state()
    together = finished_run_dirs(run_lockstep(_cfgs(shared_data, tmp_path / "together", jobs), jobs))
    # The runs drew from their own RNG states, and the caller's is as it was.
    assert torch.equal(torch.get_rng_state(), state)

    assert [p.parent for p in together] == [tmp_path / "together" / "solo-tiny"] * 2
    for a, b in zip(alone, together, strict=True):
        assert is_finished(b)
        _same_run(a, b)
    # The seeds give different runs, so equality above is not a coincidence.
    assert metric_records(alone[0], drop=TIMING) != metric_records(alone[1], drop=TIMING)


def test_a_failing_run_stops_alone_and_every_failure_is_reported(
    shared_data,
    tmp_path,
    fake_scorer,
):
    from solo.train.lockstep import LockstepFailed, finished_run_dirs, run_lockstep

    jobs = [
        ["seed=1"],
        ["trainer.precision=fp64"],
        ["trainer.lr=1e12", "trainer.grad_clip=null"],
        ["seed=1"],  # the first job again (same run dir): trained once, not refused by its lock
    ]
    cfgs = _cfgs(shared_data, tmp_path, jobs)
    with pytest.raises(LockstepFailed) as failure:
        finished_run_dirs(run_lockstep(cfgs, jobs))
    lines = str(failure.value).splitlines()
    assert lines[0] == "2 of 4 lockstep runs failed:"
    good, bad_config, diverged, _ = (run_dir_for(c) for c in cfgs)
    assert lines[1].startswith(f"{bad_config}: trainer.precision='fp64' is not allowed; allowed: one of")
    assert lines[2].startswith(f"{diverged}: training stopped: loss is ")
    assert len(lines) == 3
    assert is_finished(good) and not is_finished(diverged)
    assert not bad_config.exists()  # refused before a run dir was made for it
    assert len(fake_scorer) == 1  # only the good run reached scoring


@pytest.mark.slow
def test_hydra_lockstep_launcher_runs_a_sweep_and_reports_failures(shared_data, tmp_path):
    # The scorer's JVMs take longer than the runs; the launcher, not the metrics, is tested here.
    fake_score = (
        "import e2e_eval; "
        "keys = ['BLEU', 'NIST', 'METEOR', 'ROUGE_L', 'CIDEr']; "
        "e2e_eval.shared_scorer = lambda: type('Fake', (), {'score': lambda self, p, r, mteval='perl': dict.fromkeys(keys, 0.0)})(); "
        "from solo.train.__main__ import main; main()"
    )
    args = [
        "-m",
        "launcher=lockstep",
        *tiny_overrides(shared_data, Path("runs"), *SHORT),
        "seed=1,2",
        "trainer.precision=fp32,fp64",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", fake_score, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    finished = sorted(p.parent.name for p in (tmp_path / "runs").glob("solo-tiny/*/DONE"))
    assert len(finished) == 2  # both fp32 seeds
    assert "Launching 4 jobs in lockstep" in done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if "is not allowed; allowed: one of" in line]
    assert len(errors) == 2 and all("trainer.precision='fp64'" in line for line in errors)
    assert "error: 2 of 4 lockstep runs failed:" in done.stderr
    assert list((tmp_path / "runs" / "multirun").glob("*/multirun.yaml"))


def test_a_failed_run_does_not_keep_its_frames_alive(capsys):
    """The launch keeps a failed run's exception to report it; the model and optimiser its
    frames held must be freed then, not when the last run of the launch ends."""
    import gc
    import weakref

    from solo.train.lockstep import LockstepResult, RunState, _Run

    class Model:
        pass

    held = []

    def steps():
        model = Model()
        held.append(weakref.ref(model))
        yield 0
        raise RuntimeError("a bug in the run")

    run = _Run(index=0, steps=steps(), state=RunState(cuda=False), stream=None,
               result=LockstepResult(label="a run"))
    assert run.advance() and not run.advance()
    gc.collect()
    assert run.result.exception is not None and "a bug in the run" in capsys.readouterr().err
    assert held[0]() is None
