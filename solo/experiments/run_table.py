"""`python -m solo.experiments.run_table TABLE [seeds=1,2,3] [profile=tiny] [--dry-run | --no-launch] [overrides...]`

Runs what one paper table needs, then aggregates it. Each non-cited row's experiment is composed
for every seed exactly as `python -m solo.train` would compose it; rows whose run dir is already
finished (DONE) are skipped, the rest are launched as Hydra multiruns of solo.train (so any
launcher works: launcher=joblib, launcher=slurm ...; on CUDA the default is launcher=packed, one
backbone pass per step for all of a launch's rows). Rows shared between tables run once.
Finally results/tableN.{md,csv,png} are built (results/smoke/ for smoke profiles).

Other arguments are Hydra overrides handed to solo.train unchanged. seeds defaults to 1; give
several (seeds=1,2,3) for mean ± std. A smoke profile (profile=tiny) puts its runs under
runs/smoke unless run_root is given. --dry-run prints the plan (finished rows, the solo.train
commands) and launches nothing; --no-launch builds the table from what has finished, with the
rows' own configs, and launches nothing. `make table2 ARGS=...` calls it.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from solo.errors import SoloError, exit_on_solo_error
from solo.experiments.aggregate import NO_FINISHED_RUN, aggregate
from solo.experiments.launch import STOP_CODES, launch
from solo.experiments.tables import table_rows
from solo.paths import REPO_ROOT
from solo.train.compose import compose_train_config

SMOKE_RUN_ROOT = "runs/smoke"


@dataclass
class TablePlan:
    table: int
    smoke: bool
    run_root: Path  # absolute
    overrides: list[str]  # handed to every solo.train call
    seeds: list[int]
    finished: list[tuple[str, int, Path]] = field(default_factory=list)
    todo: list[tuple[str, int, Path]] = field(default_factory=list)  # (experiment, seed, run dir to be)
    cited: list[str] = field(default_factory=list)
    configs: dict[str, Any] = field(default_factory=dict)  # experiment_id -> its composed config

    def commands(self) -> list[list[str]]:
        """solo.train multiruns covering `todo`: one in all when it is a full grid, else one per seed."""
        if not self.todo:
            return []
        experiments = list(dict.fromkeys(e for e, _, _ in self.todo))
        seeds = list(dict.fromkeys(s for _, s, _ in self.todo))
        base = [sys.executable, "-m", "solo.train", "-m", *self.overrides]
        if len(self.todo) == len(experiments) * len(seeds):
            return [[*base, f"experiment={','.join(experiments)}", f"seed={','.join(map(str, seeds))}"]]
        return [
            [*base, f"experiment={','.join(e for e, s, _ in self.todo if s == seed)}", f"seed={seed}"]
            for seed in seeds
        ]


MODES = {"--dry-run": "dry-run", "--no-launch": "no-launch"}


def _split_arguments(arguments: list[str]) -> tuple[list[int], list[str], str]:
    """seeds, the overrides for solo.train, and the mode: run, dry-run or no-launch."""
    seeds, overrides, mode = [1], [], "run"
    for arg in arguments:
        if arg in MODES:
            if mode != "run":
                raise SoloError(f"{arg} with --{mode}: give one of --dry-run and --no-launch")
            mode = MODES[arg]
        elif arg.startswith("seeds="):
            try:
                seeds = [int(s) for s in arg.split("=", 1)[1].split(",") if s.strip()]
            except ValueError:
                raise SoloError(f"{arg!r}: seeds must be comma-separated integers, e.g. seeds=1,2,3") from None
            if not seeds:
                raise SoloError("seeds= is empty; give e.g. seeds=1 or seeds=1,2,3")
            repeated = sorted({s for s in seeds if seeds.count(s) > 1})
            if repeated:  # one run dir per seed: a repeat would be counted twice in mean ± std
                raise SoloError(f"{arg!r} repeats seed {repeated[0]}; give each seed once, e.g. seeds=1,2,3")
        elif arg.startswith(("experiment=", "seed=", "-m", "--multirun")):
            raise SoloError(f"{arg!r}: run_table chooses the experiments and seeds itself; use seeds=1,2,3")
        else:
            overrides.append(arg)
    return seeds, overrides, mode


def plan_table(table: int, seeds: list[int], overrides: list[str]) -> TablePlan:
    """Which (experiment, seed) runs the table still needs, by the run dirs solo.train would use."""
    from solo.train.rundir import is_finished, run_dir_for

    rows = table_rows(table)
    probe = compose_train_config([f"experiment={rows[0].experiment}", *overrides])
    smoke = bool(probe.get("smoke", False))
    if smoke and not any(o.startswith("run_root=") for o in overrides):
        overrides = [*overrides, f"run_root={SMOKE_RUN_ROOT}"]
    run_root = compose_train_config(overrides).run_root
    plan = TablePlan(table, smoke, (REPO_ROOT / str(run_root)).resolve(), overrides, seeds)
    seen_ids: set[tuple[str, int]] = set()
    for row in rows:
        if row.cited:
            plan.cited.append(row.experiment)
            continue
        for seed in seeds:
            cfg = compose_train_config([f"experiment={row.experiment}", f"seed={seed}", *overrides])
            if (cfg.experiment_id, seed) in seen_ids:
                continue  # an alias of a row already planned
            seen_ids.add((cfg.experiment_id, seed))
            plan.configs.setdefault(str(cfg.experiment_id), cfg)
            run_dir = REPO_ROOT / run_dir_for(cfg)
            if is_finished(run_dir):
                plan.finished.append((row.experiment, seed, run_dir))
            else:
                plan.todo.append((row.experiment, seed, run_dir))
    return plan


def with_default_launcher(overrides: list[str], cuda: bool) -> list[str]:
    """On CUDA a table's rows train packed (`launcher=packed`: one backbone pass per step for
    all of them) unless the overrides choose a launcher; elsewhere each run trains alone."""
    if not cuda or any(o.startswith(("launcher=", "hydra/launcher=")) for o in overrides):
        return overrides
    return ["launcher=packed", *overrides]


def run_table(table: int, arguments: list[str]) -> int:
    import torch

    seeds, overrides, mode = _split_arguments(arguments)
    overrides = with_default_launcher(overrides, torch.cuda.is_available())
    plan = plan_table(table, seeds, overrides)
    label = "SMOKE run (profile is not for results)" if plan.smoke else "run"
    print(f"table {table}: {len(plan.todo)} runs to do, {len(plan.finished)} finished, "
          f"{len(plan.cited)} cited rows (not re-run); {label} root {plan.run_root}")
    for experiment, seed, run_dir in plan.finished:
        print(f"  finished, skipped: {experiment} seed {seed} -> {run_dir}")
    failures = 0
    for command in plan.commands():
        # As one would type it (the launch itself uses this interpreter, sys.executable).
        prefix = "  not launched (--no-launch): " if mode == "no-launch" else "  $ "
        print(prefix + shlex.join(["python", *command[1:]]), flush=True)
        if mode != "run":
            continue
        code = launch(command)
        if code in STOP_CODES:
            print(f"table {table}: interrupted; nothing aggregated; rerun the same command to go on "
                  "(finished runs are skipped, stopped ones resume)", file=sys.stderr)
            return code
        failures += code != 0
    if mode == "dry-run":
        return 0
    messages = aggregate(table, plan.run_root, smoke=plan.smoke, configs=plan.configs)
    for message in messages:
        print(message)
    if failures:
        written = NO_FINISHED_RUN not in messages[0]
        shown = "their rows show as missing" if written else "so no table was written"
        print(f"table {table}: {failures} launch(es) failed (the error is above); {shown}; fix it and "
              "rerun the same command (finished runs are skipped)", file=sys.stderr)
        return 1
    return 0


@exit_on_solo_error
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        raise SystemExit(0)
    if not argv or not argv[0].isdigit():
        raise SoloError("usage: python -m solo.experiments.run_table TABLE [seeds=1,2,3] [profile=tiny] [--dry-run | --no-launch] [overrides...]")
    raise SystemExit(run_table(int(argv[0]), argv[1:]))


if __name__ == "__main__":
    main()
