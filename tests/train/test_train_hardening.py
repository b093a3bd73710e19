"""Every bad input and fault gets one line, the right exit status, and loses nothing.

Bad settings and inputs fail before a run directory or a weight exists; damaged checkpoints are
named (and an intact earlier copy is used); SIGINT/SIGTERM stop with a checkpoint; a full or
read-only disk is one line naming the path.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import solo.models
from solo.errors import SoloError, exit_on_solo_error
from solo.paths import REPO_ROOT
from solo.train.pipeline import run_experiment
from solo.train.rundir import claimed, run_dir_for
from tests.train.test_train_pipeline import compose_cfg, tiny_overrides


def _fail_if_loaded(monkeypatch) -> None:
    def load_backbone(*args, **kwargs):
        pytest.fail("a weight was loaded before the settings were checked")

    monkeypatch.setattr(solo.models, "load_backbone", load_backbone)


def _exit_line(capsys, cfg) -> tuple[int, str]:
    """Run as the CLI does; (exit status, the one line it printed on stderr)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        exit_on_solo_error(run_experiment)(cfg)
    # Progress bars (tqdm, on stderr) aside, the run says one thing: the error line, last.
    lines = [
        line for line in capsys.readouterr().err.splitlines()
        if line.strip() and not line.startswith(("train", "decode"))
    ]
    assert len(lines) == 1, lines
    return int(exc.value.code), lines[0]  # type: ignore[arg-type]


def _snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("decode.num_beams=0", "decode.num_beams=0 must be an integer >= 1"),
        ("decode.length_penalty=abc", "decode.length_penalty='abc' must be a finite number"),
        ("decode.max_new_tokens=0", "decode.max_new_tokens=0 would make every prediction empty"),
        ("seed=-1", "seed=-1 is not allowed; allowed: an integer >= 0 and <= 4294967295"),
        ("seed=abc", "seed='abc' is not allowed; allowed: an integer >= 0 and <= 4294967295"),
        ("decode.engine=bogus", "decode.engine='bogus' must be one of"),
        ("score.mteval=bogus", "mteval='bogus' must be one of perl, python"),
        ("trainer.lr=-1", "trainer.lr=-1 is not allowed; allowed: a number > 0"),
        ("trainer.lr=abc", "trainer.lr='abc' is not allowed; allowed: a number > 0"),
        ("trainer.warmup_steps=-5", "trainer.warmup_steps=-5 is not allowed; allowed: an integer >= 0"),
        ("trainer.betas=[0.9]", "trainer.betas=[0.9] is not allowed; allowed: a list of 2 items"),
        ("trainer.weight_decay=-0.1", "trainer.weight_decay=-0.1 is not allowed; allowed: a number >= 0"),
        ("+trainer.lrr=0.1", "trainer.lrr is not a trainer setting"),
        ("data.max_length=0", "data.max_length=0 is not allowed; allowed: an integer >= 2"),
        ("data.setup=bogus", "data.setup='bogus' is not allowed; allowed: one of lora, official"),
        ("method.rank=0", "method.rank must be a positive integer, got 0"),
        ("method.blocks=5", "method.blocks must be a list (e.g. [5]) or null, got 5"),
        ("logger.mode=bogus", "logger.mode='bogus' is not allowed; allowed: one of online, offline, disabled"),
        ("+sed=3", "sed is not a setting; known: cited, data, decode, experiment_id, logger"),
        ("+model.tokeniser=gpt2", "model.tokeniser is not a model setting; known: config_file, format"),
        ("+score.meteval=perl", "score.meteval is not a score setting; known: mteval"),
        ("+logger.grup=x", "logger.grup is not a logger setting; known: entity, group, mode, project, tags"),
        # Fits a Python float, not the float32 AdamW's first step turns it into.
        ("trainer.lr=1e300", "trainer.lr=1e+300 is too large: AdamW's first step"),
    ],
)
def test_bad_settings_fail_before_a_run_dir_or_a_weight(
    override, line, shared_data, tmp_path, capsys, monkeypatch
):
    _fail_if_loaded(monkeypatch)
    cfg = compose_cfg(tiny_overrides(shared_data, tmp_path / "runs", override))
    started = time.monotonic()
    code, printed = _exit_line(capsys, cfg)
    assert code == 2 and printed.startswith("error: ") and line in printed
    assert time.monotonic() - started < 5  # checked up front, not after training
    assert not (tmp_path / "runs").exists()


def test_cli_bad_lr_is_one_line_and_exit_2(shared_data, tmp_path):
    args = tiny_overrides(shared_data, tmp_path / "runs", "trainer.lr=abc")
    done = subprocess.run(
        [sys.executable, "-m", "solo.train", *args], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: trainer.lr='abc' is not allowed; allowed: a number > 0 (default 0.0002)"
    )
    assert sorted(os.listdir(tmp_path)) == []


def test_a_key_the_config_leaves_unset_is_one_line_before_anything(shared_data, tmp_path, capsys, monkeypatch):
    from solo.train.pipeline import check_config

    _fail_if_loaded(monkeypatch)
    overrides = [o if o != "model=tiny" else "model=hf" for o in tiny_overrides(shared_data, tmp_path / "runs")]
    cfg = compose_cfg(overrides)
    code, printed = _exit_line(capsys, cfg)
    assert code == 2 and printed.startswith("error: model.pretrained is not set; give it on the command line")
    with pytest.raises(SoloError, match=r"model\.pretrained is not set"):  # a sweep's jobs are checked so
        check_config(cfg)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("case", ["bad-data", "dead-adapter", "missing-weights", "stop-token"])
def test_bad_inputs_leave_no_stub_run_dir(case, shared_data, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    extra, line = {
        "bad-data": (f"data.lora_dir={empty}", f"{empty / 'valid.txt'} not found"),
        "dead-adapter": ("method.rank=8 method.sparsity=0.9999",
                         "method.sparsity=0.9999 keeps 0 of the 512 entries of E and D"),
        "missing-weights": (f"model.pretrained={empty}", f"model.pretrained folder {empty} has no loadable weights"),
        # Checked against the tokenizer once it is loaded: before training, not at decode time.
        "stop-token": ("decode.extra_stop_tokens=[Zyxwvq]",
                       "decode.extra_stop_tokens: 'Zyxwvq' encodes to 5 tokens"),
    }[case]
    cfg = compose_cfg(tiny_overrides(shared_data, tmp_path / "runs", *extra.split()))
    code, printed = _exit_line(capsys, cfg)
    assert code == 2 and line in printed
    assert not (tmp_path / "runs").exists()


def test_a_run_held_by_another_process_is_refused_before_loading(
    shared_data, tmp_path, capsys, monkeypatch
):
    cfg = compose_cfg(tiny_overrides(shared_data, tmp_path))
    run_dir = run_dir_for(cfg)
    with claimed(run_dir):  # what a live second process holds (flock: per open file)
        before = _snapshot(run_dir)
        _fail_if_loaded(monkeypatch)
        code, printed = _exit_line(capsys, cfg)
    assert code == 2 and "is being written by another process running the same config" in printed
    assert _snapshot(run_dir) == before


def _crash_after_first_checkpoint(monkeypatch, cfg) -> Path:
    """Train until just after the step-2 checkpoint, then crash (as a kill would)."""
    import solo.train.step as step

    real, calls = step.label_smoothed_loss, {"n": 0}

    def crash_at_step_3(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(step, "label_smoothed_loss", crash_at_step_3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_experiment(cfg)
    monkeypatch.setattr(step, "label_smoothed_loss", real)
    return run_dir_for(cfg)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


def test_damaged_checkpoint_without_an_intact_copy_is_one_line_and_kept(
    shared_data, tmp_path, capsys, monkeypatch, fake_scorer
):
    cfg = compose_cfg(tiny_overrides(shared_data, tmp_path))
    run_dir = _crash_after_first_checkpoint(monkeypatch, cfg)
    weights = run_dir / "checkpoint" / "trainable.safetensors"
    _truncate(weights)
    before = _snapshot(run_dir)
    code, printed = _exit_line(capsys, cfg)
    assert code == 2 and f"cannot resume: {weights} is unreadable" in printed
    assert f"move {run_dir / 'checkpoint'} aside" in printed and "from step 0" in printed
    assert _snapshot(run_dir) == before  # nothing deleted, nothing rewritten


def test_damaged_meta_json_stops_a_resume_with_one_line_and_is_kept(
    shared_data, tmp_path, capsys, monkeypatch, fake_scorer
):
    cfg = compose_cfg(tiny_overrides(shared_data, tmp_path))
    run_dir = _crash_after_first_checkpoint(monkeypatch, cfg)
    _truncate(run_dir / "meta.json")
    before = _snapshot(run_dir)
    code, printed = _exit_line(capsys, cfg)
    assert code == 2 and re.match(rf"error: {re.escape(str(run_dir / 'meta.json'))}:\d+: damaged \(", printed)
    assert "move it out of the run root" in printed
    assert _snapshot(run_dir) == before


def test_damaged_checkpoint_falls_back_to_the_intact_old_copy(
    shared_data, tmp_path, capsys, monkeypatch, fake_scorer
):
    cfg = compose_cfg(tiny_overrides(shared_data, tmp_path))
    run_dir = _crash_after_first_checkpoint(monkeypatch, cfg)
    # What a crash after the second rename of a checkpoint write leaves: both copies.
    shutil.copytree(run_dir / "checkpoint", run_dir / "checkpoint.old")
    state = run_dir / "checkpoint" / "state.pt"
    state.write_bytes(os.urandom(4096))
    damaged_bytes = state.read_bytes()
    capsys.readouterr()
    run_experiment(cfg)
    out = capsys.readouterr().out
    assert f"checkpoint: {state} is unreadable" in out
    assert "kept it as checkpoint.damaged and used the intact checkpoint.old instead" in out
    assert "resumed from step 2 (checkpoint written " in out and "from checkpoint.old)" in out
    assert (run_dir / "checkpoint.damaged" / "state.pt").read_bytes() == damaged_bytes
    assert (run_dir / "DONE").exists()


def test_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(
    shared_data, tmp_path, capsys, monkeypatch, fake_scorer
):
    import solo.train.checkpoint as checkpoint

    real, writes = checkpoint._write_bytes, {"n": 0}

    def disk_fills_at_the_second_checkpoint(path: Path, data: bytes) -> None:
        writes["n"] += 1
        if writes["n"] == 4:  # the second checkpoint's state.pt: half written, then ENOSPC
            path.write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(checkpoint, "_write_bytes", disk_fills_at_the_second_checkpoint)
    cfg = compose_cfg(tiny_overrides(shared_data, tmp_path))
    run_dir = run_dir_for(cfg)
    code, printed = _exit_line(capsys, cfg)
    assert code == 2
    assert printed == (
        f"error: cannot write {run_dir / 'checkpoint.tmp' / 'state.pt'}: no space left on the "
        "device; free space there or set run_root= to a disk with room, then rerun the same "
        "command (it resumes)"
    )
    state = torch.load(run_dir / "checkpoint" / "state.pt", weights_only=False)
    assert state["position"]["step"] == 2 and not (run_dir / "checkpoint.tmp").exists()

    monkeypatch.setattr(checkpoint, "_write_bytes", real)
    run_experiment(cfg)
    assert "resumed from step 2 (checkpoint written " in capsys.readouterr().out
    assert (run_dir / "DONE").exists()


@pytest.fixture()
def no_java(monkeypatch, tmp_path):
    """A PATH without `java`, and no scorer started yet by an earlier test in this process."""
    import e2e_eval.scoring

    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(e2e_eval.scoring, "_shared", None)


def _fail_if_trained(monkeypatch) -> None:
    import solo.train.pipeline as pipeline

    def train_steps(*args, **kwargs):
        pytest.fail("training started although the scorer cannot run")

    monkeypatch.setattr(pipeline, "train_steps", train_steps)


def test_missing_java_stops_a_run_before_its_run_dir_with_the_scorers_line(
    shared_data, tmp_path, capsys, monkeypatch, no_java
):
    from e2e_eval.errors import E2EEvalError
    from e2e_eval.java import java_executable

    with pytest.raises(E2EEvalError) as scorer_says:
        java_executable()
    _fail_if_trained(monkeypatch)
    cfg = compose_cfg(tiny_overrides(shared_data, tmp_path / "runs"))
    code, printed = _exit_line(capsys, cfg)
    assert code == 2 and printed == f"error: {scorer_says.value}"
    assert not (tmp_path / "runs").exists()


def test_missing_java_stops_a_lockstep_launch_once_before_any_run(
    shared_data, tmp_path, monkeypatch, no_java
):
    from e2e_eval.errors import E2EEvalError
    from solo.train.lockstep import run_lockstep

    _fail_if_loaded(monkeypatch)  # one check for the launch, not one per run after its loading
    jobs = [["seed=1"], ["seed=2"]]
    cfgs = [compose_cfg(tiny_overrides(shared_data, tmp_path / "runs", *job)) for job in jobs]
    with pytest.raises(E2EEvalError, match="`java` not found"):
        run_lockstep(cfgs, jobs, pack=True)
    assert not (tmp_path / "runs").exists()


def test_missing_java_is_one_line_from_the_lockstep_launcher(shared_data, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    args = ["-m", "launcher=lockstep", *tiny_overrides(shared_data, Path("runs")), "seed=1,2"]
    done = subprocess.run(
        [sys.executable, "-m", "solo.train", *args], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PATH": str(empty), "PYTHONPATH": str(REPO_ROOT)}, timeout=120,
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [done.stderr.strip().splitlines()[-1]] and "`java` not found" in errors[0]
    assert not (tmp_path / "runs" / "solo-tiny").exists()  # Hydra's sweep record only


@pytest.mark.parametrize("case", ["under-a-file", "no-folders-there"])
def test_a_run_root_that_cannot_hold_folders_is_one_line(
    case, shared_data, tmp_path, capsys, monkeypatch, fake_scorer
):
    file = tmp_path / "README.md"
    file.write_text("kept", encoding="utf-8")
    root = file / "x" if case == "under-a-file" else tmp_path / "proc" / "x"
    if case == "no-folders-there":  # as /proc answers a root user's mkdir
        real_mkdir = Path.mkdir

        def mkdir(self, *args, **kwargs):
            if str(self).startswith(str(root)):
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(root))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    before = _snapshot(tmp_path)
    cfg = compose_cfg(tiny_overrides(shared_data, root))
    code, printed = _exit_line(capsys, cfg)
    problem = (f"{file} is a file, not a folder" if case == "under-a-file"
               else f"{root} cannot be made (No such file or directory)")
    assert code == 2 and printed == (
        f"error: cannot create the run directory {run_dir_for(cfg)}: {problem}; set run_root= to "
        "a folder that can hold run directories"
    )
    assert _snapshot(tmp_path) == before and sorted(os.listdir(tmp_path)) == ["README.md"]


def test_read_only_run_root_is_one_line(shared_data, tmp_path, capsys, monkeypatch, fake_scorer):
    root = tmp_path / "readonly"
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):  # we run as root, so chmod would not stop us
        if str(self).startswith(str(root)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    cfg = compose_cfg(tiny_overrides(shared_data, root))
    code, printed = _exit_line(capsys, cfg)
    assert code == 2
    assert printed == (
        f"error: cannot write {run_dir_for(cfg)}: read-only file system; set run_root= to a "
        "writable folder, then rerun the same command (it resumes)"
    )


def _cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "solo.train", *args], cwd=cwd, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.slow  # two CLI runs (and, for SIGINT, one straight run to compare with)
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_cleanly_with_a_checkpoint_and_the_rerun_resumes(
    signum, status, shared_data, tmp_path, fake_scorer
):
    # Long enough that the signal lands mid-training; no periodic checkpoint: the interrupted
    # step writes its own.
    args = tiny_overrides(
        shared_data, Path("runs"), "trainer.max_steps=30", "trainer.ckpt_every=null",
        "trainer.eval_every=null", "decode.max_new_tokens=2",
    )
    run_dir = tmp_path / run_dir_for(compose_cfg(args))
    first = _cli(args, tmp_path)
    deadline = time.monotonic() + 120
    while not (run_dir / "metrics.jsonl").exists() or not (run_dir / "metrics.jsonl").read_text():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    first.send_signal(signum)
    _, err = first.communicate(timeout=120)
    assert first.returncode == status, err[-2000:]
    last = [line for line in err.splitlines() if "interrupted" in line][-1]
    assert err.rstrip().endswith(last)
    step = int(last.split("interrupted at step ")[1].split(";")[0])
    assert 1 <= step < 30
    assert last == f"interrupted at step {step}; rerun the same command to resume from step {step}"
    assert "Traceback" not in err
    state = torch.load(run_dir / "checkpoint" / "state.pt", weights_only=False)
    assert state["position"]["step"] == step and not (run_dir / "DONE").exists()

    second = _cli(args, tmp_path)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err[-3000:]
    assert f"resumed from step {step} (checkpoint written " in out
    if signum == signal.SIGINT:  # once is enough: the resumed adapter is the uninterrupted one
        straight = run_experiment(compose_cfg([*args, f"run_root={tmp_path / 'straight'}"]))
        a = load_file(str(straight / "adapter" / "adapter.safetensors"))
        b = load_file(str(run_dir / "adapter" / "adapter.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("damage", ["truncated-weights", "truncated-state", "random-bytes", "missing"])
def test_each_kind_of_damage_is_named(damage, tmp_path, capsys):
    from solo.train.checkpoint import DataPosition, load_checkpoint, save_checkpoint
    from solo.train.optim import build_optimizer, build_scheduler

    def fresh() -> dict:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        optimizer = build_optimizer(list(model.parameters()), {"lr": 0.1})
        return {"model": model, "optimizer": optimizer, "scheduler": build_scheduler(optimizer, 0, 10)}

    save_checkpoint(tmp_path / "checkpoint", **fresh(), position=DataPosition(step=3))
    weights, state = tmp_path / "checkpoint" / "trainable.safetensors", tmp_path / "checkpoint" / "state.pt"
    named = {"truncated-weights": weights, "truncated-state": state,
             "random-bytes": weights, "missing": state}[damage]
    if damage == "missing":
        named.unlink()
    elif damage == "random-bytes":
        named.write_bytes(os.urandom(2000))
    else:
        _truncate(named)
    before = _snapshot(tmp_path)
    with pytest.raises(SoloError) as err:
        load_checkpoint(tmp_path / "checkpoint", **fresh())
    message = str(err.value)
    assert "\n" not in message and str(named) in message
    assert ("is missing" if damage == "missing" else "is unreadable") in message
    assert _snapshot(tmp_path) == before

    # With an intact earlier copy it is used instead, and the damaged one kept.
    shutil.move(tmp_path / "checkpoint", tmp_path / "keep")
    save_checkpoint(tmp_path / "checkpoint", **fresh(), position=DataPosition(step=2))
    shutil.move(tmp_path / "checkpoint", tmp_path / "checkpoint.old")
    shutil.move(tmp_path / "keep", tmp_path / "checkpoint")
    capsys.readouterr()
    position = load_checkpoint(tmp_path / "checkpoint", **fresh())
    assert position is not None and position.step == 2
    out = capsys.readouterr().out
    assert "used the intact checkpoint.old instead" in out and "resumed from step 2" in out
    assert _snapshot(tmp_path / "checkpoint.damaged") == {
        tmp_path / "checkpoint.damaged" / p.name: data
        for p, data in before.items() if p.parent == tmp_path / "checkpoint"
    }


def test_ctrl_c_in_lockstep_checkpoints_every_run_and_exits_130(
    shared_data, tmp_path, monkeypatch, fake_scorer
):
    import solo.train.step as step
    from solo.train.lockstep import LockstepFailed, finished_run_dirs, run_lockstep

    real, calls = step.label_smoothed_loss, {"n": 0}

    def ctrl_c_during_the_third_micro_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # run 0's second step: both runs have done one step
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(step, "label_smoothed_loss", ctrl_c_during_the_third_micro_batch)
    jobs = [["seed=1", "trainer.ckpt_every=null"], ["seed=2", "trainer.ckpt_every=null"]]
    cfgs = [compose_cfg(tiny_overrides(shared_data, tmp_path, *job)) for job in jobs]
    with pytest.raises(LockstepFailed) as err:
        finished_run_dirs(run_lockstep(cfgs, jobs))
    assert err.value.exit_code == 130  # type: ignore[attr-defined]
    lines = str(err.value).splitlines()
    assert lines[0] == "2 of 2 lockstep runs failed:"
    assert lines[1].endswith("interrupted at step 2; rerun the same command to resume from step 2")
    assert lines[2].endswith("interrupted at step 2; rerun the same command to resume from step 2")
    for cfg in cfgs:
        state = torch.load(run_dir_for(cfg) / "checkpoint" / "state.pt", weights_only=False)
        assert state["position"]["step"] == 2


@pytest.fixture
def one_visible_gpu(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    return chosen


@pytest.mark.parametrize("name, words", [
    ("cuda:3", "1 CUDA device(s) are visible (cuda:0..cuda:0)"),
    ("cuda:x", "is not auto, cpu or cuda[:N]"),
    ("gpu", "is not auto, cpu or cuda[:N]"),
])
def test_a_device_that_is_not_there_is_one_line(one_visible_gpu, name, words):
    from solo.train.loop import resolve_device

    with pytest.raises(SoloError, match=re.escape(words)):
        resolve_device(name)
    assert one_visible_gpu == []


def test_a_chosen_gpu_becomes_the_current_device(one_visible_gpu):
    """Graph captures, replays and streams act on the current device: a run on cuda:N makes
    cuda:N current (cuda alone keeps the current one)."""
    from solo.train.loop import resolve_device

    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda")
    assert one_visible_gpu == [torch.device("cuda", 0)]


@pytest.mark.parametrize("overrides, line", [
    (["trainer.lrr=1e-3"], "trainer.lrr: no such setting (did you mean trainer.lr?"),
    (["methd=lora"], "methd: no such setting (did you mean method?"),
    (["method=full_ft", "method.rank=4"], "method.rank: no such setting (method has name;"),
    (["~trainer.nope"], "trainer.nope: no such setting ("),
    # GPT-2's recipe has model.format null: there is nothing under it to set one by one.
    (["model.format.separator=5"],
     "model.format.separator: no such setting (model.format is one value here (e.g. null), not a "
     "group of settings: set it whole, model.format={key: value, ...};"),
    (["+trainer.lr=1"], "+trainer.lr: trainer.lr is already set by the composed config; drop the `+`"),
    (["method=lorra"], "method=lorra: no such option in configs/method/ (available: full_ft, lora, solo)"),
    (["experiment=table2/solo_r8_s"],
     "experiment=table2/solo_r8_s: no such option in configs/experiment/table2/ (closest: solo_r8_s0,"),
    (["experiment=tabl2/solo_r8_s0"],
     "experiment=tabl2/solo_r8_s0: no such option in configs/experiment/ (available: recipe/..., table1/...,"),
])
def test_a_typo_in_an_override_is_one_line_naming_the_nearest(overrides, line):
    from solo.train.compose import compose_train_config

    with pytest.raises(SoloError) as raised:
        compose_train_config(overrides)
    assert str(raised.value).startswith(line) and "\n" not in str(raised.value)


def test_cli_override_typos_fail_before_any_job_of_a_sweep(shared_data, tmp_path):
    """A sweep is checked job by job before Hydra launches any: here its second job's method has
    no `rank` (Hydra alone would have run the first job, then failed)."""
    run = subprocess.run(
        [sys.executable, "-m", "solo.train", "-m", "profile=tiny", "method=solo,full_ft",
         "method.rank=8", f"run_root={tmp_path / 'runs'}"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        "error: method.rank: no such setting (method has name; "
        "python -m solo.train --cfg job lists every setting) in the sweep's job profile=tiny "
        f"method=full_ft method.rank=8 run_root={tmp_path / 'runs'}"]
    assert not (tmp_path / "runs").exists() and not (REPO_ROOT / "multirun").exists()


def test_a_sweep_value_out_of_range_fails_before_any_job(tmp_path, capsys):
    """Values are checked too, not only names: Hydra alone trained the first job of this sweep
    to the end, then stopped at the second."""
    from solo.train.__main__ import check_overrides

    with pytest.raises(SystemExit) as stop:
        check_overrides(["-m", "profile=tiny", "trainer.lr=1e-3,-1", f"run_root={tmp_path}"])
    assert stop.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: trainer.lr") and "> 0" in line
    assert line.endswith(f"in the sweep's job profile=tiny trainer.lr=-1 run_root={tmp_path}")
    check_overrides(["-m", "profile=tiny", "trainer.lr=1e-3,2e-3", f"run_root={tmp_path}"])  # both fine
    assert not any(tmp_path.iterdir())


def test_a_ctrl_c_that_reaches_the_launcher_is_one_line(monkeypatch, capsys):
    """launcher=joblib's parent waits for its workers in joblib's loop: a Ctrl-C there was
    Hydra's KeyboardInterrupt traceback (the workers stop themselves with a checkpoint)."""
    import solo.train.__main__ as entry

    def waiting_for_workers():
        raise KeyboardInterrupt

    monkeypatch.setattr(entry, "main", waiting_for_workers)
    with pytest.raises(SystemExit) as stop:
        entry.cli(["profile=tiny"])
    assert stop.value.code == 130
    assert capsys.readouterr().err.startswith("interrupted; rerun the same command to resume")
