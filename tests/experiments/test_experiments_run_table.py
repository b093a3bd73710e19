"""run_table: plans the missing (experiment, seed) runs by solo.train's run dirs, launches, aggregates."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest

from solo.errors import SoloError
from solo.experiments import run_table as rt
from solo.paths import REPO_ROOT
from solo.train.compose import compose_train_config
from solo.train.rundir import run_dir_for


def _finish(cfg_overrides: list[str], bleu: float = 0.5) -> Path:
    """Lay down a finished run dir exactly where solo.train would put this config's run."""
    cfg = compose_train_config(cfg_overrides)
    run_dir = run_dir_for(cfg)
    run_dir.mkdir(parents=True)
    from omegaconf import OmegaConf

    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (run_dir / "scores.json").write_text(json.dumps({"BLEU": bleu, "NIST": 1.0, "METEOR": 0.1, "ROUGE_L": 0.2, "CIDEr": 0.3}))
    (run_dir / "params.json").write_text(json.dumps({"trainable": 99, "total": 999}))
    (run_dir / "DONE").write_text("")
    return run_dir


def test_plan_skips_finished_rows_and_runs_shared_rows_once(tmp_path: Path):
    overrides = ["profile=tiny", f"run_root={tmp_path}"]
    done = _finish(["experiment=table2/lora_r8", "seed=2", *overrides])
    plan = rt.plan_table(1, [1, 2], overrides)
    assert plan.smoke and plan.cited == ["table1/full_ft_gpt2-medium"]
    assert plan.finished == [("table1/lora_gpt2", 2, done)]
    assert len(plan.todo) == 4 * 2 - 1  # four re-run rows (full FT is cited) x two seeds, one done
    (first, *rest) = plan.commands()
    # not a full grid any more: one multirun per seed, seed 2 without the finished row
    assert len(rest) == 1 and "seed=1" in first and "seed=2" in rest[0]
    second = next(a for a in rest[0] if a.startswith("experiment=")).split("=", 1)[1].split(",")
    assert "table1/lora_gpt2" not in second and len(second) == 3


def test_full_grid_is_one_multirun(tmp_path: Path):
    plan = rt.plan_table(6, [1, 2, 3], ["profile=tiny", f"run_root={tmp_path}"])
    (command,) = plan.commands()
    assert command[2:4] == ["solo.train", "-m"]
    assert "experiment=table6/solo_r128_s0.6_homotopy,table6/solo_r128_s0.6_plain_vector" in command
    assert "seed=1,2,3" in command


def test_smoke_profile_defaults_to_smoke_run_root():
    plan = rt.plan_table(6, [1], ["profile=tiny"])
    assert plan.run_root.parts[-2:] == ("runs", "smoke")
    assert f"run_root={rt.SMOKE_RUN_ROOT}" in plan.overrides


@pytest.mark.slow
def test_run_table_launches_then_aggregates_into_smoke_results(tmp_path: Path, monkeypatch):
    overrides = ["profile=tiny", f"run_root={tmp_path / 'runs'}"]
    launched: list[list[str]] = []

    def fake_train(command):  # stands in for `python -m solo.train -m ...`
        launched.append(command)
        experiments = next(a for a in command if a.startswith("experiment=")).split("=", 1)[1].split(",")
        seeds = next(a for a in command if a.startswith("seed=")).split("=", 1)[1].split(",")
        passed = [a for a in command[4:] if not a.startswith(("experiment=", "seed="))]
        for experiment in experiments:
            for seed in seeds:
                _finish([f"experiment={experiment}", f"seed={seed}", *passed], bleu=0.1 * int(seed))
        return 0

    monkeypatch.setattr(rt, "launch", fake_train)
    out = tmp_path / "results"
    monkeypatch.setattr(rt, "aggregate", lambda t, root, smoke, configs: rt_aggregate(t, root, out, smoke, configs))
    from solo.experiments.aggregate import aggregate as rt_aggregate

    assert rt.run_table(6, [*overrides, "seeds=1,2"]) == 0
    assert len(launched) == 1
    md = (out / "table6.md").read_text()
    assert "SMOKE RUN — NOT RESULTS" in md and "missing /" not in md
    assert "15.00 ± 7.07" in md  # BLEU 10 and 20 (percent) over seeds 1 and 2
    # a second call finds everything finished and launches nothing
    assert rt.run_table(6, [*overrides, "seeds=1,2"]) == 0 and len(launched) == 1


@pytest.mark.parametrize("bad", [["seeds=a"], ["seed=3"], ["experiment=table2/lora_r8"], ["seeds="],
                                 ["seeds=1,2,1"]])
def test_bad_arguments_are_one_line_errors(bad):
    with pytest.raises(SoloError):
        rt._split_arguments(bad)


SOLO_ROWS = sorted(
    f"{path.parent.name}/{path.stem}"
    for path in (REPO_ROOT / "configs" / "experiment").glob("table*/*.yaml")
    if "solo" in path.stem
)


@pytest.mark.parametrize("experiment", SOLO_ROWS)
def test_every_solo_row_places_its_connections_in_the_smoke_model(experiment: str):
    """`make tableN profile=tiny` runs every row: each placement (span 3 and 5 among them) must
    fit the tiny model's blocks."""
    from solo.methods.placement import connection_groups

    cfg = compose_train_config([f"experiment={experiment}", "profile=tiny"])
    assert cfg.method.name == "solo"
    groups = connection_groups(int(cfg.model.overrides.n_layer), cfg.method.get("blocks"),
                               int(cfg.method.get("span", 1)))
    assert groups


def test_help_prints_the_usage_and_no_table_is_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        rt.main(["--help"])
    assert stop.value.code == 0 and "--dry-run prints the plan" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        rt.main([])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: usage: python -m solo.experiments.run_table TABLE")


def test_dry_run_prints_a_command_one_can_paste(capsys):
    """The plan's command was printed without its interpreter (`$ -m solo.train ...`), and an
    override with shell characters unquoted."""
    import shlex

    assert rt.run_table(6, ["--dry-run", "profile=tiny", "trainer.betas=[0.9,0.99]"]) == 0
    command = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("  $ "))
    words = shlex.split(command[4:])
    assert words[:4] == ["python", "-m", "solo.train", "-m"]
    assert "trainer.betas=[0.9,0.99]" in words and "'trainer.betas=[0.9,0.99]'" in command


def _child(code: str) -> list[str]:
    return [sys.executable, "-c", "import os, signal, sys, time\n" + code]


def test_a_ctrl_c_during_a_launch_waits_for_it_instead_of_a_traceback():
    """The launch shares the terminal's process group, so it gets the Ctrl-C itself, checkpoints and
    exits 130; run_table died of a KeyboardInterrupt traceback meanwhile."""
    before = signal.getsignal(signal.SIGINT)
    # The child's own Ctrl-C handling is not the point here: it signals its parent (this
    # process) and then exits as an interrupted solo.train does.
    assert rt.launch(_child("os.kill(os.getppid(), signal.SIGINT); time.sleep(0.5); sys.exit(130)")) == 130
    assert signal.getsignal(signal.SIGINT) is before
    # A launch that finished although the signal came: still a stop (no later launch starts).
    assert rt.launch(_child("os.kill(os.getppid(), signal.SIGINT); time.sleep(0.5)")) == 130
    assert rt.launch(_child("sys.exit(3)")) == 3


def test_a_sigterm_for_run_table_alone_is_passed_on_to_the_launch():
    started = time.monotonic()
    assert rt.launch(_child("os.kill(os.getppid(), signal.SIGTERM); time.sleep(60)")) == 143
    assert time.monotonic() - started < 30


def test_an_interrupted_launch_stops_the_table_and_aggregates_nothing(monkeypatch, capsys):
    class Plan:
        smoke, run_root, finished, cited, todo = True, Path("runs/smoke"), [], [], [("a", 1, None)] * 2

        def commands(self):
            return [["python", "-m", "solo.train", "first"], ["python", "-m", "solo.train", "second"]]

    launched = []
    monkeypatch.setattr(rt, "plan_table", lambda table, seeds, overrides: Plan())
    monkeypatch.setattr(rt, "launch", lambda command: launched.append(command[-1]) or 130)
    monkeypatch.setattr(rt, "aggregate", lambda *a, **k: pytest.fail("aggregated after an interrupt"))
    assert rt.run_table(2, ["profile=tiny"]) == 130
    assert launched == ["first"]
    assert "table 2: interrupted; nothing aggregated; rerun the same command" in capsys.readouterr().err


def test_a_sweep_over_a_row_never_stands_in_for_it(tmp_path: Path):
    """`hparams_search=solo_lr` on a table's experiment writes runs with the row's experiment_id;
    the one finished last (lr 1e-3 here) used to become the table's number, the row's own run
    listed as 'superseded'."""
    from solo.experiments.aggregate import aggregate

    overrides = ["profile=tiny", f"run_root={tmp_path / 'runs'}"]
    row = _finish(["experiment=table2/solo_r128_s0.6", "seed=1", *overrides], bleu=0.60)
    sweep = _finish(["experiment=table2/solo_r128_s0.6", "seed=1", "trainer.lr=0.001", *overrides], bleu=0.10)
    for run_dir, finished in ((row, "2026-12-01T10:00:00Z"), (sweep, "2026-12-02T10:00:00Z")):
        (run_dir / "meta.json").write_text(json.dumps({"finished": finished}))
    second_seed = _finish(["experiment=table2/solo_r128_s0.6", "seed=2", *overrides], bleu=0.70)
    plan = rt.plan_table(6, [1], overrides)
    out = tmp_path / "results"
    aggregate(6, plan.run_root, out, smoke=True, configs=plan.configs)
    md = (out / "table6.md").read_text()
    assert "65.00 ± 7.07" in md  # the row's seeds 1 and 2 (BLEU 60 and 70), not the sweep's 10
    assert f"another config of this experiment (a sweep's?), not used: `{sweep}` (seed 1)" in md
    assert str(second_seed) in md and "superseded" not in md
    assert "Built by `make table6` from the finished runs of the rows' own configs" in md


@pytest.mark.parametrize("wrote", [True, False])
def test_a_failed_launch_says_whether_a_table_was_written(monkeypatch, capsys, wrote):
    """With no weights every launch fails and nothing is aggregated; the last line said the
    failed rows 'show as missing' in a table that was never written."""
    from solo.experiments.aggregate import NO_FINISHED_RUN

    class Plan:
        smoke, run_root, finished, cited, todo, configs = True, Path("runs/smoke"), [], [], [("a", 1, None)], {}

        def commands(self):
            return [["python", "-m", "solo.train", "row"]]

    monkeypatch.setattr(rt, "plan_table", lambda table, seeds, overrides: Plan())
    monkeypatch.setattr(rt, "launch", lambda command: 2)
    said = "wrote results/smoke/table2.md" if wrote else f"table 2: {NO_FINISHED_RUN} runs/smoke; nothing written"
    monkeypatch.setattr(rt, "aggregate", lambda *a, **k: [said])
    assert rt.run_table(2, ["profile=tiny"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("table 2: 1 launch(es) failed (the error is above); ")
    assert ("their rows show as missing" in last) == wrote and ("no table was written" in last) != wrote


def test_no_launch_builds_the_table_from_what_finished_with_the_rows_own_configs(tmp_path: Path, monkeypatch, capsys):
    """The standalone aggregate CLI matches runs by experiment_id (it cannot know the launch's
    overrides); --no-launch gives the exact table without starting the missing rows."""
    overrides = ["profile=tiny", f"run_root={tmp_path / 'runs'}"]
    row = _finish(["experiment=table2/solo_r128_s0.6", "seed=1", *overrides], bleu=0.60)
    _finish(["experiment=table2/solo_r128_s0.6", "seed=1", "trainer.lr=0.001", *overrides], bleu=0.10)
    monkeypatch.setattr(rt, "launch", lambda command: pytest.fail("--no-launch launched"))
    out = tmp_path / "results"
    from solo.experiments.aggregate import aggregate as real_aggregate

    monkeypatch.setattr(rt, "aggregate", lambda t, root, smoke, configs: real_aggregate(t, root, out, smoke, configs))
    assert rt.run_table(6, [*overrides, "--no-launch"]) == 0
    assert "not launched (--no-launch): python -m solo.train" in capsys.readouterr().out
    md = (out / "table6.md").read_text()
    assert f"`{row}` (seed 1)" in md and "60.00 / " in md and "not used" in md
    with pytest.raises(SoloError, match="give one of --dry-run and --no-launch"):
        rt._split_arguments(["--dry-run", "--no-launch"])
