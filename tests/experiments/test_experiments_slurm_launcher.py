"""The Slurm launcher's failures as one line (no Slurm needed: sbatch is a stand-in on PATH)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from solo.paths import REPO_ROOT

EXPERIMENT = ["experiment=table2/solo_r8_s0", "profile=tiny"]


def test_a_refused_sbatch_is_one_line_naming_the_launcher_settings(tmp_path: Path):
    """An sbatch that refuses the job (here a stand-in on PATH, as for a bad partition or GRES)
    gave submitit's traceback through Hydra; it is one line naming what to check, exit 2."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "sbatch"
    fake.write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: gpu' >&2\nexit 1\n")
    fake.chmod(0o755)
    # submitit will not submit where there is no srun; this one is never run.
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, "-m", "solo.train", "-m", *EXPERIMENT, f"run_root={tmp_path / 'runs'}",
         "launcher=slurm", "hydra.launcher.partition=gpu"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: Slurm refused the sweep (sbatch: error: invalid partition specified: gpu); check "
        "hydra.launcher (partition, gpus_per_node, gres; configs/launcher/slurm.yaml) against "
        "`sinfo`, then rerun the same command")


def test_a_job_that_failed_on_the_cluster_is_one_line_with_its_logs():
    from submitit.core.utils import FailedJobError

    from hydra_plugins.solo_slurm_launcher.slurm_launcher import failure_line

    err = FailedJobError("Job (task=0) failed during processing with trace:\n"
                         "----------------------\nTraceback (most recent call last):\n"
                         "  File \"x.py\", line 1\nRuntimeError: CUDA out of memory\n")
    assert failure_line(err, Path("/runs/multirun/t")) == (
        "a Slurm job failed (RuntimeError: CUDA out of memory); its logs are under "
        "/runs/multirun/t/.submitit; rerun the same command to resume it (finished runs are skipped)")


def test_an_sbatch_that_refuses_without_saying_why_is_still_a_refusal():
    """submitit raises the same FailedJobError for a refused submission as for a failed job; the
    refusal is the one caused by sbatch's non-zero exit, and is not reported as a job failure."""
    import subprocess as sp

    from submitit.core.utils import FailedJobError

    from hydra_plugins.solo_slurm_launcher.slurm_launcher import failure_line

    try:
        try:
            raise sp.CalledProcessError(1, ["sbatch", "x.sh"], output="", stderr="")
        except sp.CalledProcessError as cause:
            raise FailedJobError("") from cause
    except FailedJobError as err:
        line = failure_line(err, Path("/runs/multirun/t"))
    assert line.startswith("Slurm refused the sweep (sbatch exited 1); check hydra.launcher"), line


def test_launcher_slurm_where_there_is_no_slurm_is_one_line(tmp_path: Path):
    """Without srun submitit raised a RuntimeError through Hydra's traceback, and the sweep's
    folder stayed behind holding only Hydra's multirun.yaml."""
    from hydra_plugins.solo_slurm_launcher.slurm_launcher import NO_SLURM

    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    sweep_dir = tmp_path / "sweep"
    done = subprocess.run(
        [sys.executable, "-m", "solo.train", "-m", *EXPERIMENT, f"run_root={tmp_path / 'runs'}",
         "launcher=slurm", f"hydra.sweep.dir={sweep_dir}"],
        cwd=REPO_ROOT, env={**os.environ, "PATH": str(empty_path)}, capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [f"error: {NO_SLURM}"]
    assert not sweep_dir.exists()


def test_a_ctrl_c_while_waiting_for_the_jobs_says_they_go_on(monkeypatch, capsys):
    """A Ctrl-C while submitit waited was a traceback (and, later, solo.train's 'rerun the same
    command', which would race the jobs still running on the cluster)."""
    import shutil

    import pytest

    from hydra_plugins.solo_slurm_launcher.slurm_launcher import WAIT_INTERRUPTED, SlurmLauncher

    def waiting(self, job_overrides, initial_job_idx):
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    # The base class itself: Hydra's plugin discovery may have imported submitit's module again.
    monkeypatch.setattr(SlurmLauncher.__bases__[0], "launch", waiting)
    launcher = SlurmLauncher.__new__(SlurmLauncher)
    with pytest.raises(SystemExit) as stop:
        launcher.launch([["seed=1"]], initial_job_idx=0)
    assert stop.value.code == 130
    assert capsys.readouterr().err == f"error: {WAIT_INTERRUPTED}\n"
