"""Run dirs -> results/tableN.md, tableN.csv (and tableN.png for Tables 2-3).

Each printed row of the paper is matched to the finished run dirs (those with DONE) whose
config.yaml carries the row's `experiment_id` and the same smoke flag; our numbers are the mean
± sample std over their seeds, shown beside the paper's with the difference, and every number
names the run dirs it came from. A row with no finished run is shown as missing, never filled
in; rows the paper cites from the LoRA paper are shown as cited.

When several finished run dirs share an experiment and seed (a rerun after the config changed),
the one finished last is used and the others are listed as superseded in the sources. Given the
rows' configs (`make tableN` passes the ones it composed), only the runs of exactly those configs,
any seed, are used; other runs of the same experiment (a sweep's, say `hparams_search=solo_lr`)
are listed as not used instead of standing in for the row. Without them (this module's CLI), a row
whose averaged runs are of several configs carries a warning, and a superseded run of another
config says so.

Results are never overwritten silently: every output is rendered first, then each file is
swapped in atomically; an existing file whose content differs is first kept beside it as
`<name>.<its mtime>.bak` (and the message says so); identical content is left untouched.

CLI: python -m solo.experiments.aggregate TABLE [--runs runs] [--out results] [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from solo.atomic import replacing
from solo.decode.recipe import read_recipe, recipe_line
from solo.errors import SoloError, exit_on_solo_error
from solo.experiments.plot import params_vs_bleu_png
from solo.experiments.tables import (
    METRICS,
    PERCENT_METRICS,
    TABLE_TITLES,
    PaperRow,
    experiment_id_of,
    table_rows,
)
from solo.paper import parse_printed_count
from solo.paths import REPO_ROOT
from solo.train.rundir import config_hash, read_run_config, read_run_json, run_dir_for

PLOTTED_TABLES = frozenset({2, 3})
NO_FINISHED_RUN = "no finished run under"  # aggregate's message when it wrote nothing
DONE_FILE = "DONE"  # docs/DESIGN.md run-dir contract: written last by solo.train
SMOKE_BANNER = (
    "> **SMOKE RUN — NOT RESULTS.** Built from `profile=tiny` runs: a tiny random GPT-2, the dev "
    "set standing in for the training set, a handful of steps and a few test MRs. It checks the "
    "table machinery end to end; its numbers say nothing about the paper."
)


@dataclass(frozen=True)
class RunRecord:
    """What aggregation needs from one finished run dir."""

    run_dir: Path
    experiment_id: str | None
    seed: int
    smoke: bool
    setup: str
    model: str
    trainable: int | None
    scores: dict[str, float] | None  # paper scale (percent for BLEU/METEOR/ROUGE_L); None if absent
    finished: str
    recipe: str = "not recorded"  # decoding/scoring recipe (solo.decode.recipe), one line
    config_key: str = ""  # rundir.config_hash without the seed: equal for the seeds of one config
    train_split: str = "train"  # data.train_split: "valid" where the dev set stood in (make demo)


@dataclass
class RowResult:
    row: PaperRow
    experiment_id: str
    runs: list[RunRecord] = field(default_factory=list)  # one per seed, the ones averaged
    superseded: list[RunRecord] = field(default_factory=list)
    unscored: list[RunRecord] = field(default_factory=list)  # DONE but no scores.json
    other_configs: list[RunRecord] = field(default_factory=list)  # the experiment, not the row's config
    stand_ins: list[RunRecord] = field(default_factory=list)  # trained on another split (make demo's run)

    @property
    def mixed_configs(self) -> int:
        """How many configs the averaged runs are of (more than one: the mean mixes them)."""
        return len({r.config_key for r in self.runs})

    @property
    def status(self) -> str:
        if self.row.cited:
            return "cited"
        return "ok" if self.runs else "missing"

    def mean(self, metric: str) -> float | None:
        values = [r.scores[metric] for r in self.runs if r.scores]
        return statistics.fmean(values) if values else None

    def std(self, metric: str) -> float | None:
        values = [r.scores[metric] for r in self.runs if r.scores]
        return statistics.stdev(values) if len(values) >= 2 else None

    @property
    def params(self) -> str:
        counts = sorted({r.trainable for r in self.runs if r.trainable is not None})
        return "/".join(str(c) for c in counts)


def _to_paper_scale(scores: dict) -> dict[str, float]:
    return {m: float(scores[m]) * (100.0 if m in PERCENT_METRICS else 1.0) for m in METRICS}


def _setup_label(cfg) -> str:
    setup = OmegaConf.select(cfg, "data.setup", default="?")
    split = OmegaConf.select(cfg, "data.train_split", default="train")
    label = f"{setup}" + ("" if split == "train" else f", {split} as train")
    return label + (", smoke" if cfg.get("smoke") else "")


def read_run(run_dir: Path) -> RunRecord | None:
    """The record of a finished run dir, or None if it is not finished (no DONE)."""
    if not (run_dir / DONE_FILE).exists():
        return None
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        raise SoloError(f"{config_path} missing in a finished run dir; the run dir is damaged, move it out of the run root")
    cfg = read_run_config(run_dir)
    scores_path, params_path, meta_path = (run_dir / n for n in ("scores.json", "params.json", "meta.json"))
    scores, raw = None, None
    if scores_path.exists():
        raw = read_run_json(scores_path)
        missing = [m for m in METRICS if m not in raw]
        if missing:
            raise SoloError(f"{scores_path} lacks {', '.join(missing)}; rescore the run (python -m e2e_eval)")
        scores = _to_paper_scale(raw)
    trainable = read_run_json(params_path).get("trainable") if params_path.exists() else None
    finished = read_run_json(meta_path).get("finished", "") if meta_path.exists() else ""
    experiment_id = cfg.get("experiment_id")
    return RunRecord(
        run_dir=run_dir,
        experiment_id=str(experiment_id) if experiment_id is not None else None,
        seed=int(cfg.get("seed", 0)),
        smoke=bool(cfg.get("smoke", False)),
        setup=_setup_label(cfg),
        model=str(OmegaConf.select(cfg, "model.name", default="?")),
        trainable=int(trainable) if trainable is not None else None,
        scores=scores,
        finished=str(finished or ""),
        recipe=_recipe_of(run_dir, raw),
        config_key=config_hash(cfg, without=("seed",)),
        train_split=str(OmegaConf.select(cfg, "data.train_split", default="train")),
    )


def _recipe_of(run_dir: Path, raw_scores: dict | None) -> str:
    recipe = read_recipe(run_dir)
    if recipe is not None:
        return recipe_line(recipe)
    # A run dir from before recipe files: only its scores may say how BLEU/NIST were computed.
    mteval = raw_scores.get("mteval") if raw_scores is not None else None
    return f"not recorded (BLEU/NIST by mteval {mteval or 'perl'})"


def find_runs(run_root: Path) -> list[RunRecord]:
    """Every finished run dir below `run_root` (names may nest, so search for DONE files)."""
    if not run_root.exists():
        return []
    records = (read_run(done.parent) for done in sorted(run_root.rglob(DONE_FILE)))
    return [r for r in records if r is not None]


def _of_config(run: RunRecord, config: Any) -> bool:
    """Whether `run` is `config`'s run for its seed (the run dir solo.train would give it)."""
    return run.run_dir.name == run_dir_for(OmegaConf.merge(config, {"seed": run.seed})).name


def match_row(row: PaperRow, runs: list[RunRecord], smoke: bool, config: Any = None) -> RowResult:
    """The row's runs: those of its experiment_id, or with `config` (the row's composed config)
    those of exactly that config, any seed."""
    result = RowResult(row=row, experiment_id=experiment_id_of(row.experiment))
    if row.cited:
        return result
    by_seed: dict[int, list[RunRecord]] = {}
    for run in runs:
        if run.experiment_id == result.experiment_id and run.smoke == smoke:
            if not smoke and run.train_split != "train":  # smoke runs all train on the dev set
                result.stand_ins.append(run)
            elif config is not None and not _of_config(run, config):
                result.other_configs.append(run)
            elif run.scores is None:
                result.unscored.append(run)
            else:
                by_seed.setdefault(run.seed, []).append(run)
    for seed in sorted(by_seed):
        candidates = sorted(by_seed[seed], key=lambda r: (r.finished, str(r.run_dir)))
        result.runs.append(candidates[-1])
        result.superseded.extend(candidates[:-1])
    return result


def aggregate_table(table: int, run_root: Path, smoke: bool,
                    configs: Mapping[str, Any] | None = None) -> list[RowResult]:
    """Every row's result; `configs`: each experiment_id's composed config (see match_row)."""
    runs = find_runs(run_root)
    configs = configs or {}
    return [match_row(row, runs, smoke, configs.get(experiment_id_of(row.experiment)))
            for row in table_rows(table)]


def format_metric(metric: str, value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if metric in PERCENT_METRICS else f"{value:.3f}"


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _metric_cell(result: RowResult, metric: str) -> str:
    paper = result.row.metrics[metric]
    printed = result.row.printed.get(metric) or f"{paper:g}"  # as the paper prints it: 45.70, not 45.7
    if result.status == "cited":
        return f"cited / {printed}"
    mean = result.mean(metric)
    if mean is None:
        return f"missing / {printed}"
    std = result.std(metric)
    ours = format_metric(metric, mean) + (f" ± {format_metric(metric, std)}" if std is not None else "")
    diff = mean - paper
    return f"{ours} / {printed} ({'+' if diff >= 0 else '−'}{format_metric(metric, abs(diff))})"


def render_markdown(table: int, results: list[RowResult], run_root: Path, smoke: bool,
                    exact: bool = False) -> str:
    """`exact`: the rows were matched by their composed configs (make tableN), not by experiment_id."""
    lines = [f"# {TABLE_TITLES[table]}" + (" — SMOKE RUN" if smoke else ""), ""]
    if smoke:
        lines += [SMOKE_BANNER, ""]
    lines += [
        (f"Built by `make table{table}` from the finished runs of the rows' own configs under "
         if exact else f"Built by `python -m solo.experiments.aggregate {table}` from the finished run dirs under ")
        + f"`{display_path(run_root)}`. Each metric cell is **ours / paper (ours − paper)**; ours is "
        "the mean ± sample std over seeds (no ± with one seed). BLEU, METEOR and ROUGE-L are in "
        "percent, NIST and CIDEr raw, as the paper prints them. *missing*: no finished run, nothing "
        "is filled in. *cited*: the paper copies the row from the LoRA paper; it is not re-run.",
        "",
        *_recipe_lines(results),
        "",
        "| # | row | params paper | params ours | BLEU | NIST | METEOR | ROUGE-L | CIDEr | seeds | setup |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for index, res in enumerate(results, start=1):
        seeds = ",".join(str(r.seed) for r in res.runs) or "—"
        setup = "; ".join(sorted({f"{r.setup} ({r.model})" for r in res.runs})) or "—"
        cells = [_metric_cell(res, m) for m in METRICS]
        lines.append(
            f"| {index} | {res.row.label} | {res.row.params_printed} | {res.params or '—'} | "
            + " | ".join(cells) + f" | {seeds} | {setup} |"
        )
    lines += ["", "## Sources", ""]
    for index, res in enumerate(results, start=1):
        head = f"{index}. `{res.row.experiment}` (experiment_id `{res.experiment_id}`): "
        if res.status == "cited":
            lines.append(head + f"cited — {res.row.note or 'LoRA paper'}")
            continue
        if not res.runs:
            lines.append(head + "missing — no finished run dir")
        else:
            lines.append(head + ", ".join(f"`{display_path(r.run_dir)}` (seed {r.seed})" for r in res.runs))
        if res.row.note:
            lines.append(f"   - note on the paper's row (tables.csv): {res.row.note}")
        if res.mixed_configs > 1:
            lines.append(f"   - **warning: these runs are of {res.mixed_configs} different configs** (a sweep "
                         f"over this experiment?): the mean mixes them; `make table{table} ARGS=--no-launch` "
                         "rebuilds the table from each row's own config")
        used = {r.config_key for r in res.runs}
        for run in res.superseded:
            other = "" if run.config_key in used else "; another config: a rerun after a change, or a sweep's run"
            lines.append(f"   - superseded (same seed, finished earlier{other}): `{display_path(run.run_dir)}`")
        for run in res.unscored:
            lines.append(f"   - finished without scores.json, not used: `{display_path(run.run_dir)}`")
        for run in res.other_configs:
            lines.append(f"   - another config of this experiment (a sweep's?), not used: "
                         f"`{display_path(run.run_dir)}` (seed {run.seed})")
        for run in res.stand_ins:
            lines.append(f"   - trained on the {run.train_split} split, not the training set (make demo's "
                         f"run?), so no paper result, not used: `{display_path(run.run_dir)}` (seed {run.seed})")
    return "\n".join(lines) + "\n"


def _recipe_lines(results: list[RowResult]) -> list[str]:
    """The recipes of the runs shown (README.md, "Reproduction notes", says where each choice
    comes from); rows whose runs differ from the first recipe are named."""
    recipes: dict[str, list[int]] = {}
    for index, res in enumerate(results, start=1):
        for recipe in sorted({r.recipe for r in res.runs}):
            recipes.setdefault(recipe, []).append(index)
    if not recipes:
        return ["Recipe: no finished runs."]
    if len(recipes) == 1:
        return [f"Recipe (every run; each choice's source: README.md, Reproduction notes): "
                f"{next(iter(recipes))}."]
    return ["Recipes (they differ between runs; each choice's source: README.md, Reproduction "
            "notes):", ""] + [
        f"- rows {', '.join(map(str, rows))}: {recipe}" for recipe, rows in recipes.items()]


def render_csv(table: int, results: list[RowResult], smoke: bool) -> str:
    header = ["table", "row", "experiment", "experiment_id", "label", "status", "smoke", "n_seeds", "seeds",
              "params_printed", "params_ours"]
    for m in METRICS:
        header += [f"{m}_ours_mean", f"{m}_ours_std", f"{m}_paper", f"{m}_diff"]
    header += ["setup", "recipe", "run_dirs", "paper_note"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for index, res in enumerate(results, start=1):
        row = [table, index, res.row.experiment, res.experiment_id, res.row.label, res.status, smoke,
               len(res.runs), " ".join(str(r.seed) for r in res.runs), res.row.params_printed, res.params]
        for m in METRICS:
            mean, std, paper = res.mean(m), res.std(m), res.row.metrics[m]
            row += ["" if mean is None else round(mean, 4), "" if std is None else round(std, 4),
                    res.row.printed.get(m) or paper,
                    "" if mean is None else round(mean - paper, 4)]
        row += ["; ".join(sorted({r.setup for r in res.runs})),
                " | ".join(sorted({r.recipe for r in res.runs})),
                " ".join(display_path(r.run_dir) for r in res.runs), res.row.note]
        writer.writerow(row)
    return buffer.getvalue()


def plot_points(results: list[RowResult]) -> list[dict]:
    points = []
    for res in results:
        point = {
            "label": res.row.label.split(" ", 2)[-1] if res.row.method != "lora" else "LoRA",
            "paper_params": parse_printed_count(res.row.params_printed),
            "paper_bleu": res.row.metrics["BLEU"],
        }
        bleu = res.mean("BLEU")
        if bleu is not None and res.params and "/" not in res.params:
            point.update(our_params=int(res.params), our_bleu=bleu, our_std=res.std("BLEU"))
        points.append(point)
    return points


def render_outputs(table: int, results: list[RowResult], run_root: Path, out_dir: Path, smoke: bool,
                   exact: bool = False) -> dict[Path, bytes]:
    """The table's files; none where no row has a finished run (a launch that failed whole would
    otherwise leave an all-missing table, superseding a good one, as the newest results)."""
    if not any(res.runs for res in results):
        return {}
    outputs = {
        out_dir / f"table{table}.md": render_markdown(table, results, run_root, smoke, exact=exact).encode(),
        out_dir / f"table{table}.csv": render_csv(table, results, smoke).encode(),
    }
    if table in PLOTTED_TABLES:
        outputs[out_dir / f"table{table}.png"] = params_vs_bleu_png(plot_points(results), TABLE_TITLES[table], smoke)
    return outputs


def backup_path(path: Path) -> Path:
    """Where the earlier version of `path` is kept: `<name>.<its mtime>.bak`, never reused."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(path.stat().st_mtime))
    candidate = path.with_name(f"{path.name}.{stamp}.bak")
    counter = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.{stamp}-{counter}.bak")
        counter += 1
    return candidate


def publish(outputs: dict[Path, bytes]) -> list[str]:
    """Write every output atomically; keep differing earlier files as .bak. Returns one message per file."""
    changed = {path: data for path, data in outputs.items()
               if not (path.exists() and path.read_bytes() == data)}
    messages = {path: f"unchanged {display_path(path)}" for path in outputs if path not in changed}
    # Stage every changed file first: a failure while writing leaves results/ untouched; the
    # renames happen together when the block ends.
    with contextlib.ExitStack() as stack:
        for path, data in changed.items():
            stack.enter_context(replacing(path)).write_bytes(data)
        for path in changed:
            if path.exists():
                kept = backup_path(path)
                os.link(path, kept)  # the old bytes stay reachable before the new file replaces them
                messages[path] = f"wrote {display_path(path)} (earlier version kept as {display_path(kept)})"
            else:
                messages[path] = f"wrote {display_path(path)}"
    return [messages[path] for path in outputs]


def default_out_dir(smoke: bool) -> Path:
    return REPO_ROOT / "results" / ("smoke" if smoke else "")


def aggregate(table: int, run_root: Path, out_dir: Path | None = None, smoke: bool = False,
              configs: Mapping[str, Any] | None = None) -> list[str]:
    out = out_dir if out_dir is not None else default_out_dir(smoke)
    results = aggregate_table(table, run_root, smoke, configs)
    outputs = render_outputs(table, results, run_root, out, smoke, exact=configs is not None)
    if not outputs:
        return [f"table {table}: {NO_FINISHED_RUN} {display_path(run_root)}; nothing written "
                f"(the files of {display_path(out)}/table{table}.* are as they were)"]
    # Said here too, not only in the table: the mean of such a row is not the row's number.
    mixed = [f"warning: table {table}, row `{res.row.experiment}`: its runs are of {res.mixed_configs} "
             f"different configs (a sweep over this experiment?) and the mean mixes them; "
             f"`make table{table} ARGS=--no-launch` rebuilds the table from each row's own config"
             for res in results if res.mixed_configs > 1]
    return publish(outputs) + mixed


@exit_on_solo_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Aggregate run dirs into results/tableN.{md,csv,png}.")
    parser.add_argument("table", type=int, help="paper table number, 1-6")
    parser.add_argument("--runs", type=Path, default=None, help="run root (default: runs, or runs/smoke with --smoke)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: results, or results/smoke with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="aggregate profile=tiny smoke runs instead of real ones")
    args = parser.parse_args(argv)
    # A missing default run root is the normal "nothing run yet"; a --runs that names no folder
    # is a typo, and reporting "no finished run" for it would hide that.
    if args.runs is not None and not args.runs.is_dir():
        parser.error(f"--runs {args.runs}: no such folder; give the run root that holds the run dirs (default: runs)")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out}: is a file; give a folder for table{args.table}.{{md,csv,png}}")
    run_root = args.runs or (REPO_ROOT / "runs" / ("smoke" if args.smoke else ""))
    for message in aggregate(args.table, run_root, args.out, args.smoke):
        print(message)


if __name__ == "__main__":
    main(sys.argv[1:])
