"""A real two-job Hydra multirun through hydra-submitit-launcher on the local one-node Slurm.

CI starts the cluster with scripts/slurm_local.sh before the tests; when it is not running the
test starts it itself (as root), and skips, saying why, only when Slurm cannot be started.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from solo.paths import REPO_ROOT
from solo.train.compose import compose_train_config
from solo.train.rundir import run_dir_for

pytestmark = pytest.mark.slurm

START_SCRIPT = REPO_ROOT / "scripts" / "slurm_local.sh"
# Tiny real runs: the smoke profile trimmed further so two jobs fit the test budget on 2 cores.
EXPERIMENT = ["experiment=table6/solo_r128_s0.6_plain_vector", "profile=tiny", "trainer.max_steps=2",
              "data.max_test_mrs=2", "data.max_train_examples=16", "data.max_valid_examples=8"]
SEEDS = (1, 2)


def _slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    probe = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    return probe.returncode == 0 and any(s.startswith(("idle", "mix", "alloc")) for s in probe.stdout.split())


def _ensure_slurm() -> None:
    if _slurm_up():
        return
    if os.geteuid() != 0:
        pytest.skip("Slurm is not running and starting it needs root: run `sudo scripts/slurm_local.sh` first")
    started = subprocess.run(["bash", str(START_SCRIPT)], capture_output=True, text=True, timeout=600)
    if started.returncode != 0 or not _slurm_up():
        reason = (started.stderr or started.stdout).strip().splitlines()[-1:] or ["no output"]
        pytest.skip(f"could not start a local Slurm with scripts/slurm_local.sh: {reason[0]}")


def _cancel(submitit_dir: Path) -> None:
    ids = {p.name.split("_")[0] for p in submitit_dir.glob("*") if p.name.split("_")[0].isdigit()}
    if ids:
        subprocess.run(["scancel", *sorted(ids)], capture_output=True, timeout=30)


@pytest.mark.slow
def test_two_job_multirun_lands_in_its_run_dirs(tmp_path: Path):
    _ensure_slurm()
    run_root, sweep_dir = tmp_path / "runs", tmp_path / "multirun"
    command = [
        sys.executable, "-m", "solo.train", "-m", *EXPERIMENT, f"seed={','.join(map(str, SEEDS))}",
        f"run_root={run_root}", "launcher=slurm", "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep_dir}",
    ]
    try:
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=400)
    except subprocess.TimeoutExpired:
        _cancel(sweep_dir / ".submitit")
        raise
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # Slurm ran them: one array task per job, each with submitit's result file.
    results = sorted((sweep_dir / ".submitit").rglob("*_result.pkl"))
    assert len(results) == len(SEEDS), sorted(p.name for p in (sweep_dir / ".submitit").rglob("*"))

    run_dirs = []
    for seed in SEEDS:
        # The very dir solo.train computes for this config: the launcher does not change the hash.
        cfg = compose_train_config([*EXPERIMENT, f"seed={seed}", f"run_root={run_root}"])
        run_dir = run_dir_for(cfg)
        assert (run_dir / "DONE").exists(), f"seed {seed}: no finished run dir at {run_dir}"
        scores = json.loads((run_dir / "scores.json").read_text())
        assert set(scores) == {"BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr", "mteval"}
        assert len((run_dir / "predictions.txt").read_text().splitlines()) == 2
        meta = json.loads((run_dir / "meta.json").read_text())
        assert meta["seed"] == seed
        run_dirs.append(run_dir)
    assert run_dirs[0] != run_dirs[1]
