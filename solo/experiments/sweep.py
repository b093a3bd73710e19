"""`python -m solo.experiments.sweep RUNS [--out FILE.md]`: a sweep's results as one table.

A Hydra sweep (`hparams_search=solo_rank_sparsity`, `method.rank=8,32,64 seed=1,2,3`, ...) leaves
one run dir per job. This reads every finished run dir under RUNS, groups the runs whose configs
differ in the seed only, and prints one row per group: the settings that vary across the groups,
the seeds, the trainable parameters and the five scores (mean ± sample std over the seeds), best
BLEU first. The paper tables (`make tableN`) stay the place for the paper's rows; this is for
everything else one sweeps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from solo.errors import SoloError, exit_on_solo_error
from solo.experiments.aggregate import RunRecord, display_path, find_runs, format_metric, publish
from solo.experiments.tables import METRICS
from solo.train.rundir import read_run_config, semantic_config


@dataclass
class SweepPoint:
    """The runs of one config, any seed."""

    settings: dict[str, Any]  # the flattened semantic config, seed dropped
    runs: list[RunRecord] = field(default_factory=list)

    def scores(self, metric: str) -> list[float]:
        return [r.scores[metric] for r in self.runs if r.scores]

    def cell(self, metric: str) -> str:
        values = self.scores(metric)
        if not values:
            return "—"
        mean = format_metric(metric, statistics.fmean(values))
        return f"{mean} ± {format_metric(metric, statistics.stdev(values))}" if len(values) >= 2 else mean


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: json.dumps(value) if isinstance(value, list) else value}


def sweep_points(runs: list[RunRecord]) -> list[SweepPoint]:
    """The runs grouped by config without the seed (RunRecord.config_key; one run dir per config
    and seed). A group's settings are read from its first run's config.yaml."""
    points: dict[str, SweepPoint] = {}
    for run in sorted(runs, key=lambda r: str(r.run_dir)):
        if run.config_key not in points:
            settings = _flatten(semantic_config(read_run_config(run.run_dir)))
            settings.pop("seed", None)
            points[run.config_key] = SweepPoint(settings)
        points[run.config_key].runs.append(run)
    return list(points.values())


def varying_keys(points: list[SweepPoint]) -> list[str]:
    """The settings whose values are not the same in every point (in config order)."""
    keys = list(dict.fromkeys(k for p in points for k in p.settings))
    return [k for k in keys if len({json.dumps(p.settings.get(k), default=str) for p in points}) > 1]


def render_markdown(root: Path, points: list[SweepPoint]) -> str:
    keys = varying_keys(points)
    smoke = any(r.smoke for p in points for r in p.runs)
    runs = sum(len(p.runs) for p in points)
    ranked = sorted(points, key=lambda p: -statistics.fmean(p.scores("BLEU") or [float("-inf")]))
    lines = [f"# Sweep: {display_path(root)}", ""]
    if smoke:
        lines += ["**SMOKE RUNS (profile=tiny) — NOT RESULTS.**", ""]
    lines += [f"{runs} finished runs, {len(points)} configs; mean ± sample std over seeds, best BLEU first.",
              "Settings not shown are the same in every config.", ""]
    header = [*keys, "seeds", "trainable", *METRICS]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for point in ranked:
        trainable = sorted({r.trainable for r in point.runs if r.trainable is not None})
        cells = [str(point.settings.get(k, "—")) for k in keys]
        cells += [",".join(str(r.seed) for r in sorted(point.runs, key=lambda r: r.seed)),
                  "/".join(f"{t:,}" for t in trainable) or "—", *(point.cell(m) for m in METRICS)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Run dirs", ""]
    for index, point in enumerate(ranked, start=1):
        label = ", ".join(f"{k}={point.settings[k]}" for k in keys if k in point.settings) or "the only config"
        dirs = ", ".join(f"`{display_path(r.run_dir)}` (seed {r.seed})" for r in sorted(point.runs, key=lambda r: r.seed))
        lines.append(f"{index}. {label}: {dirs}")
    return "\n".join(lines) + "\n"


@exit_on_solo_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m solo.experiments.sweep",
                                     description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("runs", type=Path, help="a folder holding the sweep's run dirs, e.g. runs/table2/solo_r128_s0.6")
    parser.add_argument("--out", type=Path, help="also write the table to this .md file (an earlier one is kept as .bak)")
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        parser.error(f"{args.runs}: no such folder; give the folder of the sweep's run dirs (under runs/)")
    if args.out is not None and args.out.is_dir():
        parser.error(f"--out {args.out}: is a folder; give a file name, e.g. results/sweep.md")
    runs = [r for r in find_runs(args.runs) if r.scores is not None]
    if not runs:
        raise SoloError(f"no finished, scored run under {args.runs}; nothing to summarise")
    text = render_markdown(args.runs, sweep_points(runs))
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for message in publish({args.out: text.encode()}):
            print(message, file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
