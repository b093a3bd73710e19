"""The whole experiment (train -> decode -> score) on a tiny random GPT-2 and the shared dev data."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file

import solo.config  # noqa: F401
from solo.paths import REPO_ROOT
from solo.train.rundir import run_dir_for


def tiny_overrides(shared: Path, run_root: Path, *extra: str) -> list[str]:
    return [
        "model=tiny",
        "method=solo",
        "data.train_split=valid",
        f"data.lora_dir={shared / 'lora-format'}",
        "data.max_train_examples=16",
        "data.max_valid_examples=16",
        "data.max_test_mrs=2",
        "data.max_length=64",
        "trainer.batch_size=4",
        "trainer.max_steps=8",
        "trainer.warmup_steps=0",
        "trainer.lr=1e-2",
        "trainer.eval_every=8",
        "trainer.ckpt_every=2",
        "trainer.log_every=1",
        "decode.num_beams=2",
        "decode.max_new_tokens=4",
        "logger.mode=disabled",
        f"run_root={run_root}",
        *extra,
    ]


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=overrides)


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_experiment_writes_the_run_dir_contract_and_is_never_rerun(
    shared_data, tmp_path, fake_scorer, capsys
):
    from solo.train.pipeline import run_experiment

    cfg = compose_cfg(tiny_overrides(shared_data, tmp_path, "logger.mode=offline"))
    run_dir = run_experiment(cfg)
    assert run_dir == run_dir_for(cfg) and run_dir.parent == tmp_path / "solo-tiny"

    for name in (
        "config.yaml",
        "meta.json",
        "metrics.jsonl",
        "params.json",
        "predictions.txt",
        "references.txt",
        "scores.json",
        "recipe.json",
        "DONE",
        "adapter/adapter.safetensors",
        "adapter/adapter_config.json",
        "checkpoint/state.pt",
    ):
        assert (run_dir / name).exists(), name
    meta = json.loads((run_dir / "meta.json").read_text())
    assert {
        "git_sha",
        "machine",
        "torch",
        "device",
        "setup",
        "started",
        "finished",
        "seed",
        "name",
    } <= set(meta)
    assert (
        meta["device"] == "cpu"
        and meta["name"] == "solo-tiny"
        and "dev set stands in" in meta["setup"]
    )
    params = json.loads((run_dir / "params.json").read_text())
    assert 0 < params["trainable"] < params["total"]

    # Training learns: the dev loss (same 16 pairs) falls from the untrained baseline.
    dev = [r["dev_loss"] for r in _records(run_dir) if "dev_loss" in r]
    train_steps = [r["step"] for r in _records(run_dir) if "loss" in r]
    assert train_steps == list(range(1, 9))
    assert dev[-1] < dev[0] - 0.05

    # Two unique test MRs: two prediction lines, two reference blocks, handed to the scorer.
    ((predictions, references, mteval),) = fake_scorer
    assert len(predictions) == 2 and len(references) == 2 and all(references)
    assert mteval == "python"  # the recipe's BLEU/NIST variant, recorded with the scores
    assert (run_dir / "predictions.txt").read_text().count("\n") == 2
    assert (run_dir / "references.txt").read_text().strip().count("\n\n") == 1
    assert json.loads((run_dir / "scores.json").read_text())["BLEU"] == 0.5
    assert json.loads((run_dir / "scores.json").read_text())["mteval"] == "python"

    # wandb ran offline for real and wrote its files inside the run dir.
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert offline and list(offline[0].glob("run-*.wandb"))

    # Same config again: reported, not rerun, nothing rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert run_experiment(compose_cfg(tiny_overrides(shared_data, tmp_path))) == run_dir
    assert "already finished" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == stamps
    # A different config gets its own directory.
    assert run_dir_for(compose_cfg(tiny_overrides(shared_data, tmp_path, "seed=2"))) != run_dir


def test_crash_after_training_resumes_at_decoding_with_the_saved_adapter(
    shared_data, tmp_path, fake_scorer
):
    from solo.train.pipeline import run_experiment

    # A length penalty > 1 favours long hypotheses, so the tiny model's predictions are not empty
    # and show whether the rebuilt backbone + loaded adapter is the trained model.
    overrides = ["trainer.eval_every=null", "trainer.max_steps=2", "decode.length_penalty=2.0"]
    first = run_experiment(compose_cfg(tiny_overrides(shared_data, tmp_path / "a", *overrides)))
    assert all((first / "predictions.txt").read_text().splitlines())
    # The state a crash during decoding leaves: training done (adapter saved), nothing after it.
    crashed = tmp_path / "b" / first.relative_to(tmp_path / "a")
    shutil.copytree(first, crashed)
    for name in ("DONE", "scores.json", "predictions.txt", "references.txt"):
        (crashed / name).unlink()
    metrics_before = (crashed / "metrics.jsonl").read_text()
    assert (
        run_experiment(compose_cfg(tiny_overrides(shared_data, tmp_path / "b", *overrides)))
        == crashed
    )
    assert (crashed / "metrics.jsonl").read_text() == metrics_before  # not retrained
    assert (crashed / "predictions.txt").read_text() == (first / "predictions.txt").read_text()
    assert (crashed / "DONE").exists()


def test_nan_loss_stops_the_experiment_keeping_the_last_checkpoint(
    shared_data, tmp_path, fake_scorer, monkeypatch
):
    import solo.train.step as step
    from solo.errors import SoloError
    from solo.train.pipeline import run_experiment

    real_loss, calls = step.label_smoothed_loss, {"n": 0}

    def loss_going_nan_at_step_5(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(step, "label_smoothed_loss", loss_going_nan_at_step_5)
    cfg = compose_cfg(tiny_overrides(shared_data, tmp_path))
    with pytest.raises(
        SoloError, match=r"loss is nan at optimiser step 5 .*last good checkpoint: step 4"
    ):
        run_experiment(cfg)
    run_dir = run_dir_for(cfg)
    state = torch.load(run_dir / "checkpoint" / "state.pt", weights_only=False)
    assert state["position"]["step"] == 4
    assert not (run_dir / "DONE").exists() and not (run_dir / "adapter").exists()


def _cli(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "solo.train", *args],
        cwd=cwd,
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory, shared_data):
    """Run the CLI, SIGKILL it after its first checkpoint, rerun the same command to the end."""
    cwd = tmp_path_factory.mktemp("cli")
    log = tmp_path_factory.mktemp("logs") / "cli.log"
    args = tiny_overrides(shared_data, Path("runs"))
    run_dir = cwd / run_dir_for(compose_cfg(args))
    first = _cli(args, cwd, log)
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoint" / "state.pt").exists():
        assert first.poll() is None, (
            f"run ended before its first checkpoint: {log.read_text()[-2000:]}"
        )
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    interrupted = not (run_dir / "adapter").exists()
    second = _cli(args, cwd, log)
    assert second.wait(timeout=300) == 0, log.read_text()[-3000:]
    return cwd, run_dir, args, interrupted, log


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_bitwise_same_adapter(
    killed_and_resumed, shared_data, tmp_path, fake_scorer
):
    from solo.train.pipeline import run_experiment

    _, run_dir, args, interrupted, _ = killed_and_resumed
    assert interrupted, "the kill landed after training had finished"
    meta = json.loads((run_dir / "meta.json").read_text())
    assert len(meta["resumed"]) == 1
    steps = [r["step"] for r in _records(run_dir) if "loss" in r]
    assert steps == list(range(1, 9))  # replayed steps are logged once

    # An uninterrupted run of the same config (run_root is not part of the hash).
    straight = run_experiment(compose_cfg([*args[:-1], f"run_root={tmp_path}"]))
    assert straight.name == run_dir.name
    a = load_file(str(straight / "adapter" / "adapter.safetensors"))
    b = load_file(str(run_dir / "adapter" / "adapter.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_cli_scores_with_e2e_eval_and_leaves_no_hydra_files(killed_and_resumed):
    cwd, run_dir, _, _, _ = killed_and_resumed
    assert set(json.loads((run_dir / "scores.json").read_text())) == {
        "BLEU",
        "NIST",
        "METEOR",
        "ROUGE_L",
        "CIDEr",
        "mteval",
    }
    assert (run_dir / "DONE").exists()
    assert sorted(os.listdir(cwd)) == ["runs"]
    assert not list(cwd.rglob(".hydra"))


@pytest.mark.slow
def test_multirun_jobs_find_their_run_dirs_by_hash(killed_and_resumed):
    cwd, run_dir, args, _, log = killed_and_resumed
    # logger.* is not part of the hash: both jobs are the finished run, so neither reruns it.
    sweep = _cli(["-m", *args, "logger.mode=disabled,offline"], cwd, log)
    assert sweep.wait(timeout=120) == 0, log.read_text()[-3000:]
    assert (
        log.read_text().count(f"already finished, not rerun: results in runs/{run_dir.parent.name}")
        == 2
    )
    assert sorted(os.listdir(cwd)) == ["runs"]
    assert [p.name for p in (cwd / "runs" / "multirun").glob("*/multirun.yaml")] == [
        "multirun.yaml"
    ]
