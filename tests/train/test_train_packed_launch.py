"""Packed experiments end to end: solo.train.lockstep with pack=True and `launcher=packed` give
each run its alone numbers (fp32 rounding), its own run dir and files, and make tables pack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from solo.experiments.run_table import with_default_launcher
from solo.paths import REPO_ROOT
from solo.train.rundir import is_finished
from tests.train.test_train_lockstep import SHORT, TIMING
from tests.train.test_train_pipeline import compose_cfg, tiny_overrides
from tests.train.toy_loop import metric_records

NO_DROPOUT = "method.dropout=0"


def _cfgs(shared: Path, root: Path, jobs: list[list[str]]):
    return [compose_cfg(tiny_overrides(shared, root, *SHORT, *job)) for job in jobs]


def _adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "adapter" / "adapter.safetensors"))


@pytest.mark.slow
def test_a_packed_sweep_gives_each_run_its_alone_numbers(shared_data, tmp_path, fake_scorer):
    from solo.train.lockstep import finished_run_dirs, run_lockstep
    from solo.train.packed import Packer
    from solo.train.pipeline import run_experiment

    jobs = [
        [NO_DROPOUT],
        [NO_DROPOUT, "method.rank=16", "method.sparsity=0.5", "trainer.lr=3e-3"],
        ["method=lora", NO_DROPOUT],
        ["method=full_ft"],  # changes the backbone: trains alone, in the same process
        [NO_DROPOUT, "seed=2"],  # another random backbone: a pack of its own
    ]
    alone = [run_experiment(cfg) for cfg in _cfgs(shared_data, tmp_path / "alone", jobs)]
    opened: list[Packer] = []
    original = Packer.__init__

    def recording(self):
        original(self)
        opened.append(self)

    Packer.__init__ = recording  # type: ignore[method-assign]
    try:
        packed = finished_run_dirs(
            run_lockstep(_cfgs(shared_data, tmp_path / "packed", jobs), jobs, pack=True))
    finally:
        Packer.__init__ = original  # type: ignore[method-assign]
    assert len(opened) == 1 and len(opened[0].packs) == 2  # seed 1's backbone, seed 2's

    for job, a, p in zip(jobs, alone, packed, strict=True):
        assert a.name == p.name and is_finished(p)  # same config hash: the launcher is not in it
        left, right = metric_records(a, drop=TIMING), metric_records(p, drop=TIMING)
        assert [r.keys() for r in left] == [r.keys() for r in right]
        for x, y in zip(left, right, strict=True):
            for key, value in x.items():
                assert value == pytest.approx(y[key], rel=1e-5, abs=1e-6), (job, key)
        a_adapter, p_adapter = _adapter(a), _adapter(p)
        assert a_adapter.keys() == p_adapter.keys()
        for key in a_adapter:
            assert torch.allclose(a_adapter[key], p_adapter[key], rtol=1e-4, atol=1e-6), (job, key)
        assert (p / "predictions.txt").exists() and (p / "scores.json").exists()
    # Adapters equal up to fp32 rounding decode to the same text, packed or alone (a run decoded
    # with another run's adapter, or in train mode, would not).
    for a, p in zip(alone, packed, strict=True):
        assert (a / "predictions.txt").read_text() == (p / "predictions.txt").read_text()
    # The first pack's three runs decoded in one search; the others each alone.
    assert [json.loads((p / "meta.json").read_text())["decode"]["runs"] for p in packed] == [3, 3, 3, 1, 1]
    # Full fine-tuning trained alone, exactly as alone.
    assert all(torch.equal(v, _adapter(packed[3])[k]) for k, v in _adapter(alone[3]).items())

    # A crash after training (adapters saved, nothing decoded): the rerun trains nothing and
    # decodes the pack's runs together again, with their saved adapters.
    predictions = [(p / "predictions.txt").read_text() for p in packed]
    for p in packed:
        for name in ("predictions.txt", "references.txt", "scores.json", "DONE"):
            (p / name).unlink()
    again = finished_run_dirs(
        run_lockstep(_cfgs(shared_data, tmp_path / "packed", jobs), jobs, pack=True))
    assert again == packed
    assert [(p / "predictions.txt").read_text() for p in packed] == predictions
    assert [json.loads((p / "meta.json").read_text())["decode"]["runs"] for p in packed] == [3, 3, 3, 1, 1]


@pytest.mark.slow
def test_hydra_packed_launcher_runs_a_sweep_and_skips_it_when_done(shared_data, tmp_path):
    fake_score = (
        "import e2e_eval; "
        "keys = ['BLEU', 'NIST', 'METEOR', 'ROUGE_L', 'CIDEr']; "
        "e2e_eval.shared_scorer = lambda: type('Fake', (), {'score': lambda self, p, r, mteval='perl': dict.fromkeys(keys, 0.0)})(); "
        "from solo.train.__main__ import main; main()"
    )
    args = ["-m", "launcher=packed", *tiny_overrides(shared_data, Path("runs"), *SHORT),
            "method.rank=4,8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}

    def launch() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", fake_score, *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    first = launch()
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Launching 2 jobs packed over shared backbones" in first.stdout + first.stderr
    done = sorted((tmp_path / "runs").glob("solo-tiny/*/DONE"))
    assert len(done) == 2
    again = launch()
    assert again.returncode == 0 and again.stdout.count("already finished, not rerun") == 2


def test_tables_pack_on_cuda_unless_a_launcher_is_chosen():
    assert with_default_launcher(["profile=tiny"], cuda=True) == ["launcher=packed", "profile=tiny"]
    assert with_default_launcher(["profile=tiny"], cuda=False) == ["profile=tiny"]
    chosen = ["launcher=slurm", "hydra.launcher.partition=gpu"]
    assert with_default_launcher(chosen, cuda=True) == chosen


def _launcher(tmp_path, **options):
    from omegaconf import OmegaConf

    from hydra_plugins.solo_lockstep_launcher.lockstep_launcher import LockstepLauncher

    launcher = LockstepLauncher(**options)
    launcher.config = OmegaConf.create(
        {"hydra": {"hydra_logging": None, "verbose": False, "sweep": {"dir": str(tmp_path)}}})
    launcher.hydra_context = object()
    launcher._compose = lambda index, overrides: overrides
    return launcher


@pytest.mark.parametrize("pack", [True, False])
def test_the_launchers_failure_summary_names_its_own_launcher(tmp_path, capsys, pack):
    """launcher=packed used to report its diverged runs as 'lockstep runs failed'."""
    launcher = _launcher(tmp_path, pack=pack)
    launcher._run_group = lambda jobs: ([None] * len(jobs), ["runs/a: loss is nan at optimiser step 3"], None)
    with pytest.raises(SystemExit) as exit_info:
        launcher.launch([["seed=1"], ["seed=2"]], initial_job_idx=0)
    assert exit_info.value.code == 2
    kind = "packed" if pack else "lockstep"
    assert (f"error: 1 of 2 {kind} runs failed:\n  runs/a: loss is nan at optimiser step 3\n"
            in capsys.readouterr().err)


def test_a_ctrl_c_stops_the_sweep_not_only_its_group(tmp_path, capsys):
    """With runs_at_once, a Ctrl-C stopped the running group and the next group started, so a
    sweep needed one Ctrl-C per group; and the sweep exited 2, where a single run exits 130."""
    launched = []

    def run_group(jobs):
        launched.append(jobs)
        return [None] * len(jobs), ["runs/a: interrupted at step 7; rerun the same command to resume from step 7"], 130

    launcher = _launcher(tmp_path, runs_at_once=2)
    launcher._run_group = run_group
    with pytest.raises(SystemExit) as exit_info:
        launcher.launch([[f"seed={seed}"] for seed in range(1, 6)], initial_job_idx=0)
    assert exit_info.value.code == 130
    assert launched == [[["seed=1"], ["seed=2"]]]
    err = capsys.readouterr().err
    assert "error: 1 of 5 lockstep runs failed:" in err
    assert "  3 later run(s) not started (the sweep was interrupted); rerun the same command to run them" in err
