"""The whole paper on one GPU: estimated wall time of every run of Tables 1-6, from per-step figures.

    PYTHONPATH=. python bench/estimate_paper.py                         # recorded H200 figures
    PYTHONPATH=. python bench/estimate_paper.py --measured bench_out    # + a gpu_all.sh run's JSONs
    PYTHONPATH=. python bench/estimate_paper.py --markdown estimate.md --runs
    PYTHONPATH=. python bench/estimate_paper.py --write-plan            # after changing a config

The runs: every non-cited row of Tables 1-6 for each seed, each row's config composed exactly as
`python -m solo.train` composes it (solo.train.compose) and deduplicated by its run dir
(solo.train.rundir), so a row shared between tables counts once, as run_table trains it once.
Each run's optimiser steps, dev evaluations and test MRs come from its composed config.
Without Hydra (a bare GPU image) the runs are read from bench/paper_runs.json, which
`--write-plan` regenerates; a test keeps it equal to the composed configs.

The figures: per (model size, method, precision path) train ms/step at the benchmark's batch
(or at a run's own batch, `...@4`, where measured there), the eager step (dev loss is an eager
forward), compile seconds per length bucket, decode seconds per 630 MRs, scoring seconds, and the
packed step (launcher=packed: one joint step for all of a pack's runs, graphed on CUDA): its
time for one run and the fraction of it each further run adds. Defaults are the H200 figures of
bench/README.md; `--measured DIR` replaces those that DIR's train_step.json, decode.json and
packed.json (bench/gpu_all.sh's) measured; `--figures FILE` replaces them from a JSON of the same
shape (`--dump-figures` writes the defaults). Every figure used is listed with where it came from.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

try:
    from solo.errors import SoloError, exit_on_solo_error
except ImportError:  # solo.errors imports e2e_eval, whose metric packages a bare GPU image lacks
    class SoloError(Exception):  # type: ignore[no-redef]
        """Bad input: one line, exit status 2 (as solo.errors.SoloError)."""

    def exit_on_solo_error(fn):  # type: ignore[no-redef]
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except SoloError as err:
                print(f"error: {err}", file=sys.stderr)
                raise SystemExit(2) from None
        return wrapper

PLAN_FILE = Path(__file__).resolve().parent / "paper_runs.json"
SEEDS = (1, 2, 3)
# The E2E splits of the paper's set-up (microsoft/LoRA's files; ../shared/paper/README.md): the
# training set is not in the shared data, so its size is stated rather than counted.
TRAIN_PAIRS = 42_061
DEV_PAIRS = 4_672
TEST_MRS = 630
SIZE_OF_MODEL = {"gpt2": "S", "gpt2-medium": "M"}
PATHS = ("fp32", "tf32", "bf16", "bf16+compile")
GOAL_HOURS = 3.0
# bench_decode.py's fast-path rows, the trainer's own first (it graphs on CUDA); rows named
# "ours fast beam search <precision>" (before the variants) rank after these.
DECODE_VARIANTS = {"CUDA graph": 0, "": 1, "fixed-shape step eager": 2, "host check every step": 3}
PACKED_BATCH = 4  # the Solo recipe's batch, bench_packed.py's per-run batch
README = "bench/README.md"
H200_RUN = f"{README}, H200 2026-11-28"


# ---------------------------------------------------------------------------------------------
# The runs


@dataclass(frozen=True)
class PlannedRun:
    """One training run the paper needs: what its composed config makes it do."""

    experiment_id: str
    seed: int
    run_dir: str
    tables: tuple[int, ...]  # every table that reads it, the owner (its experiment_id's) first
    size: str  # "S" | "M"
    method: str
    batch_size: int
    grad_accum: int
    steps: int
    dev_evals: int
    dev_batches: int  # per evaluation
    dev_batch_size: int  # trainer.eval_batch_size (or the training batch)
    test_mrs: int
    precision: str
    compile: bool

    @property
    def owner(self) -> int:
        return self.tables[0]

    @property
    def path(self) -> str:
        """The figures' path id of the config as composed, e.g. "fp32" or "bf16+compile"."""
        return self.precision + ("+compile" if self.compile else "")


def dev_evaluations(steps: int, eval_every: int | None) -> int:
    """As solo.train.loop evaluates: once before training, every `eval_every` steps and at the end."""
    if not eval_every:
        return 0
    return 1 + steps // eval_every + (1 if steps % eval_every else 0)


def _owner_table(experiment_id: str, reading: list[int]) -> int:
    match = re.match(r"table(\d+)/", experiment_id)
    return int(match.group(1)) if match and int(match.group(1)) in reading else reading[0]


def compose_runs(seeds: Iterable[int] = SEEDS, overrides: Iterable[str] = ()) -> list[PlannedRun]:
    """Every (row, seed) run of Tables 1-6 that is not cited, one per distinct run dir."""
    from solo.experiments.tables import TABLE_CONFIGS, table_rows
    from solo.train.compose import compose_train_config
    from solo.train.loop import planned_steps
    from solo.train.rundir import run_dir_for

    found: dict[str, tuple[object, list[int]]] = {}  # run dir -> (config, tables reading it)
    for table in TABLE_CONFIGS:
        for row in table_rows(table):
            if row.cited:
                continue
            for seed in seeds:
                cfg = compose_train_config([f"experiment={row.experiment}", f"seed={seed}", *overrides])
                run_dir = str(run_dir_for(cfg))
                _, reading = found.setdefault(run_dir, (cfg, []))
                if table not in reading:
                    reading.append(table)
    runs = []
    for run_dir, (cfg, reading) in found.items():
        trainer, data = cfg.trainer, cfg.data  # type: ignore[attr-defined]
        model = str(cfg.model.name)  # type: ignore[attr-defined]
        if model not in SIZE_OF_MODEL:
            raise SoloError(f"{run_dir}: model.name={model!r} has no per-step figures; "
                            f"bench/estimate_paper.py knows {sorted(SIZE_OF_MODEL)}")
        batch = int(trainer.batch_size)
        train_pairs = min(TRAIN_PAIRS, int(data.max_train_examples or TRAIN_PAIRS))
        dev_pairs = min(DEV_PAIRS, int(data.max_valid_examples or DEV_PAIRS))
        steps = planned_steps(trainer, math.ceil(train_pairs / batch))
        # eval_max_batches counts training-size batches; the dev loss batches them at eval_batch_size.
        if trainer.get("eval_max_batches"):
            dev_pairs = min(dev_pairs, int(trainer.eval_max_batches) * batch)
        dev_batch = int(trainer.get("eval_batch_size") or batch)
        dev_batches = math.ceil(dev_pairs / dev_batch)
        experiment_id = str(cfg.get("experiment_id"))  # type: ignore[attr-defined]
        owner = _owner_table(experiment_id, reading)
        runs.append(PlannedRun(
            experiment_id=experiment_id, seed=int(cfg.seed), run_dir=run_dir,  # type: ignore[attr-defined]
            tables=(owner, *(t for t in reading if t != owner)), size=SIZE_OF_MODEL[model],
            method=str(cfg.method.name), batch_size=batch,  # type: ignore[attr-defined]
            grad_accum=int(trainer.get("grad_accum") or 1), steps=steps,
            dev_evals=dev_evaluations(steps, trainer.get("eval_every")), dev_batches=dev_batches,
            dev_batch_size=dev_batch,
            test_mrs=min(TEST_MRS, int(data.max_test_mrs or TEST_MRS)),
            precision=str(trainer.precision), compile=bool(trainer.get("compile")),
        ))
    return sorted(runs, key=lambda r: (r.owner, r.experiment_id, r.seed))


def write_plan(runs: list[PlannedRun], path: Path = PLAN_FILE) -> None:
    payload = {
        "about": "every run of the paper's Tables 1-6 (3 seeds), as bench/estimate_paper.py composes "
                 "them; regenerate with `python bench/estimate_paper.py --write-plan`",
        "runs": [dataclasses.asdict(run) for run in runs],
    }
    path.write_text(json.dumps(payload, indent=1) + "\n")


def read_plan(path: Path = PLAN_FILE) -> list[PlannedRun]:
    try:
        records = json.loads(path.read_text())["runs"]
        return [PlannedRun(**{**r, "tables": tuple(r["tables"])}) for r in records]
    except FileNotFoundError:
        raise SoloError(f"{path} not found; run `python bench/estimate_paper.py --write-plan` "
                        "where Hydra is installed") from None
    except (ValueError, KeyError, TypeError) as err:
        raise SoloError(f"{path}: unreadable run plan ({err}); regenerate it with "
                        "`python bench/estimate_paper.py --write-plan`") from None


def paper_runs(overrides: list[str], from_plan: bool = False) -> tuple[list[PlannedRun], str]:
    """The runs, composed when Hydra is importable (and `from_plan` is false), else read from the
    committed plan; and where they came from."""
    try:
        import hydra  # noqa: F401
    except ImportError:
        from_plan = True
    if from_plan:
        if overrides:
            raise SoloError(f"overrides {' '.join(overrides)!r} need Hydra to compose the configs; "
                            f"the committed {PLAN_FILE.name} holds the configs as they are")
        return read_plan(), f"{PLAN_FILE.relative_to(REPO_ROOT)} (the committed plan)"
    where = "composed configs (solo.train.compose)"
    return compose_runs(overrides=overrides), where + (f" with {' '.join(overrides)}" if overrides else "")


# ---------------------------------------------------------------------------------------------
# The figures


@dataclass(frozen=True)
class Figure:
    value: float
    source: str
    measured: bool  # False: an assumption (derived, scaled or guessed), said so in the output


def _m(value: float, source: str) -> Figure:
    return Figure(value, source, True)


def _a(value: float, source: str) -> Figure:
    return Figure(value, source, False)


def recorded_figures() -> dict[str, Figure]:
    """The H200 figures of bench/README.md, and the assumptions that fill what was not measured.

    Keys: train/<size>/<method>/<path> (ms/step at batch `bench_batch`; `...@<batch>` at that
    batch), eager/<size> (our plain eager Solo step, fp32), compile_s/<size> (s per length
    bucket), decode/<size>/<precision> (s per 630 MRs, fast search), packed_base/<size> (ms of a
    packed step of one run, as bench_packed.py measures it; unmeasured, the step alone) and
    packed_marginal (what each further run adds, as a fraction of it), and the scalars below."""
    run1 = f"{H200_RUN}, run 1 (gpu_all.sh train_step, batch 8)"
    run3 = f"{H200_RUN}, run 3 (compiled, one bucket of 112)"
    dec = f"{H200_RUN}, bench_decode.py --batch 128 (fast search, before SharedPromptGPT2State)"
    figures = {
        "bench_batch": _m(8, run1),
        "eager/S": _m(27.46, run1), "eager/M": _m(60.0, run1),
        # The compile ratio: compiled / uncompiled, GPT-2 M Solo bf16, same run.
        "compile_ratio": _m(6.40 / 14.73, run3),
        "compile_s/M": _m(47.0, run3),
        "compile_s/S": _a(23.5, "assumed: half of GPT-2 M's (12 blocks instead of 24)"),
        "decode/S/bf16": _m(13.44, dec), "decode/S/tf32": _m(10.12, dec),
        "decode/M/bf16": _m(23.81, dec), "decode/M/tf32": _m(24.63, dec),
        "decode/S/fp32": _a(10.12, "assumed: as tf32 (fp32 decode not measured on the H200)"),
        "decode/M/fp32": _a(24.63, "assumed: as tf32 (fp32 decode not measured on the H200)"),
        "score_s": _m(6.61, f"{README}, Scoring: each further system in one process, 2 shared cores"),
        "setup_s": _a(20.0, "assumed: backbone load, tokenising 42,061 pairs, graph capture"),
        "buckets": _a(5, "assumed: E2E batches pad to 5 of the default length buckets (64-128)"),
        "dev_forward_fraction": _a(1 / 3, "assumed: a dev batch (eager forward) costs 1/3 of the eager step"),
        "batch_exponent": _a(0.0, "assumed: ms/step ~ (batch/8)^0, i.e. latency-bound (GPT-2 S bf16 "
                                  "7.0 ms vs a ~1 ms FLOP floor); 1 would be token-proportional"),
        "packed_marginal": _a(1 / 15, "assumed: bench_packed.py's goal (11 runs >= 0.6 x 11 x one run's "
                                      "throughput, i.e. a step of 11 costs <= 5/3 of one)"),
        "decode_marginal": _a(1.0, "assumed: packed decoding saves nothing (each further run costs a "
                                   "whole decode) until bench_packed_decode.py measures it on the GPU"),
    }
    for size, method, ms in (("M", "solo", (40.54, 15.78, 14.42)), ("M", "lora", (43.66, 17.44, 15.8)),
                             ("S", "solo", (15.83, 7.541, 7.011)), ("S", "lora", (17.47, 8.44, 7.789))):
        for precision, value in zip(("fp32", "tf32", "bf16"), ms, strict=True):
            figures[f"train/{size}/{method}/{precision}"] = _m(value, run1)
    figures["train/M/solo/bf16+compile"] = _m(6.40, run3)
    return figures


def _rows(report: object) -> list[dict]:
    """Result rows of a bench JSON: a list, {"rows": [...]}, or per size {"sizes": {S: {"rows"}}}."""
    if isinstance(report, list):
        return [r for r in report if isinstance(r, dict)]
    if isinstance(report, dict):
        rows = [r for r in report.get("rows", []) if isinstance(r, dict)]
        for size, part in (report.get("sizes") or {}).items():
            rows += [{"size": size, **r} for r in _rows(part)]
        return rows
    return []


def _read_json(path: Path) -> object | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise SoloError(f"{path}: not JSON ({err}); rerun the benchmark that writes it or remove it") from None


def _gpu_report(path: Path) -> object | None:
    """A benchmark's JSON, or None when absent or measured on a CPU (a dry run's figures say
    nothing about GPU time, and the size-free ones, packing, would pass for GPU figures)."""
    report = _read_json(path)
    if isinstance(report, dict) and str(report.get("device", "")).startswith("CPU"):
        print(f"note: {path} was measured on a CPU; its figures are not used", file=sys.stderr)
        return None
    return report


def measured_figures(folder: Path) -> dict[str, Figure]:
    """What a gpu_all.sh run measured, under the same keys as recorded_figures()."""
    if not folder.is_dir():
        raise SoloError(f"--measured {folder}: no such folder; give the OUT folder of bench/gpu_all.sh")
    found: dict[str, Figure] = {}
    train = _gpu_report(folder / "train_step.json")
    if isinstance(train, dict):
        where = f"{folder}/train_step.json ({train.get('device', '?')})"
        buckets = len(train.get("buckets") or [1]) or 1
        if train.get("batch"):
            found["bench_batch"] = _m(float(train["batch"]), where)
        for row in _rows(train):
            hit = re.fullmatch(r"ours fast (Solo|LoRA) (fp32|tf32|bf16)( compiled)?", str(row.get("name")))
            ms = row.get("ms/step")
            if isinstance(ms, (int, float)) and hit:
                path = hit.group(2) + ("+compile" if hit.group(3) else "")
                found[f"train/{row['size']}/{hit.group(1).lower()}/{path}"] = _m(float(ms), where)
                if hit.group(3) and isinstance(row.get("compile s"), (int, float)):
                    found[f"compile_s/{row['size']}"] = _m(float(row["compile s"]) / buckets, where)
            elif isinstance(ms, (int, float)) and row.get("name") == "ours plain Solo fp32 (eager)":
                found[f"eager/{row['size']}"] = _m(float(ms), where)
        plain, compiled = found.get("train/M/solo/bf16"), found.get("train/M/solo/bf16+compile")
        if plain and compiled:
            found["compile_ratio"] = _m(compiled.value / plain.value, where)
    decode = _gpu_report(folder / "decode.json")
    where = f"{folder}/decode.json ({decode.get('device', '?')})" if isinstance(decode, dict) else ""
    best: dict[str, tuple[int, float, str]] = {}  # key -> (rank, ms/MR, row name)
    for row in _rows(decode):
        hit = re.match(r"ours fast(?:, (.+?))?(?: beam search)? (fp32|tf32|bf16)\b", str(row.get("name")))
        rank = DECODE_VARIANTS.get(hit.group(1) or "", len(DECODE_VARIANTS)) if hit else None
        if rank is not None and isinstance(row.get("ms/MR"), (int, float)):
            key = f"decode/{row['size']}/{hit.group(2)}"
            if key not in best or rank < best[key][0]:
                best[key] = (rank, float(row["ms/MR"]), str(row["name"]))
    for key, (_, ms, name) in best.items():
        found[key] = _m(ms * TEST_MRS / 1000, f"{where}, {name}")
    packed = _gpu_report(folder / "packed.json")
    if isinstance(packed, dict):
        where = f"{folder}/packed.json ({packed.get('device', '?')})"
        size, batch, precision = packed.get("size"), packed.get("batch"), packed.get("precision")
        # ms per joint step by pack width, for each way of stepping (fast = graphed, on CUDA)
        joint: dict[str, dict[int, float]] = {}
        for row in _rows(packed):
            hit = re.fullmatch(r"packed (?:(fast|plain) )?x(\d+)", str(row.get("name")))
            if hit and isinstance(row.get("ms/joint step"), (int, float)):
                joint.setdefault(hit.group(1) or "plain", {})[int(hit.group(2))] = float(row["ms/joint step"])
        kind = "fast" if 1 in joint.get("fast", {}) else "plain"  # launcher=packed graphs it on CUDA
        widths = joint.get(kind, {})
        if 1 in widths:
            found[f"packed_base/{size}"] = _m(widths[1], where + f", packed {kind} x1, batch {batch}, {precision}")
            widest = max(widths)
            if widest > 1:
                found["packed_marginal"] = _m((widths[widest] / widths[1] - 1) / (widest - 1),
                                              where + f", fitted to packed {kind} x1 and x{widest}")
        for row in _rows(packed):  # a run alone at the paper's Solo batch: Table 2's first row
            rate = row.get("run-steps/s")
            if row.get("n") == 1 and isinstance(rate, (int, float)) and rate > 0:
                if row.get("kind") == "fast":
                    found[f"train/{size}/solo/{precision}@{batch}"] = _m(1000 / rate, where + ", alone fast x1")
                elif row.get("kind") == "plain":
                    found[f"eager/{size}@{batch}"] = _m(1000 / rate, where + f", alone plain x1 ({precision})")
    decoded = _gpu_report(folder / "packed_decode.json")
    if isinstance(decoded, dict):
        where = f"{folder}/packed_decode.json ({decoded.get('device', '?')})"
        seconds = {}
        for row in _rows(decoded):
            hit = re.fullmatch(r"packed x(\d+)", str(row.get("name")))
            if hit and isinstance(row.get("s"), (int, float)):
                seconds[int(hit.group(1))] = float(row["s"])
        widest = max(seconds, default=1)
        if 1 in seconds and widest > 1:
            found["decode_marginal"] = _m((seconds[widest] / seconds[1] - 1) / (widest - 1),
                                          where + f", fitted to packed x1 and x{widest}")
    return found


def figures_from_file(path: Path) -> dict[str, Figure]:
    payload = _read_json(path)
    if not isinstance(payload, dict):
        raise SoloError(f"--figures {path}: expected a JSON object of figures (see --dump-figures)")
    try:
        return {key: Figure(float(v["value"]), str(v.get("source", path)), bool(v.get("measured", False)))
                for key, v in payload.items()}
    except (TypeError, KeyError, ValueError) as err:
        raise SoloError(f"--figures {path}: each entry needs a numeric \"value\" ({err}); "
                        "see --dump-figures for the shape") from None


class FigureBook:
    """The figures in use; derives what is missing by the stated assumptions, and remembers which
    figures an estimate read (so the output lists exactly those)."""

    def __init__(self, figures: dict[str, Figure]):
        self.figures = dict(figures)
        self.used: dict[str, Figure] = {}

    def get(self, key: str) -> Figure:
        figure = self.figures.get(key) or self._derive(key)
        self.used[key] = figure
        return figure

    def find(self, key: str) -> Figure | None:
        """The figure if given (measured or in a --figures file), derived never."""
        figure = self.figures.get(key)
        if figure is not None:
            self.used[key] = figure
        return figure

    def at_batch(self, key: str, batch: int) -> float:
        """ms at `batch`: measured there (`key@batch`), else the bench batch's scaled by the
        batch exponent."""
        exact = self.find(f"{key}@{batch}")
        if exact is not None:
            return exact.value
        return self.value(key) * (batch / self.value("bench_batch")) ** self.value("batch_exponent")

    def _derive(self, key: str) -> Figure:
        parts = key.split("/")
        if parts[0] == "train" and parts[-1].endswith("+compile"):
            plain = self.get("/".join([*parts[:-1], parts[-1].removesuffix("+compile")]))
            ratio = self.get("compile_ratio")
            return _a(plain.value * ratio.value, f"assumed: uncompiled x compile_ratio ({ratio.value:.3f})")
        if parts[0] == "packed_base" and len(parts) == 3:  # packed_base/<size>/<precision>
            size, precision = parts[1], parts[2]
            alone = self.at_batch(f"train/{size}/solo/{precision}", PACKED_BATCH)
            measured = [k.split("/")[1] for k in self.figures
                        if re.fullmatch(r"packed_base/[SM]", k) and k != f"packed_base/{size}"]
            if measured:  # the other size's packed step, scaled as the steps alone scale
                other = measured[0]
                ratio = self.value(f"packed_base/{other}") / self.at_batch(f"train/{other}/solo/{precision}", PACKED_BATCH)
                return _a(alone * ratio, f"assumed: a Solo step alone on {size} x packed_base/{other} / "
                                         f"its step alone on {other}")
            return _a(alone, f"assumed: a Solo run's graphed step alone, {precision}, batch {PACKED_BATCH} "
                             "(launcher=packed graphs the joint step on CUDA)")
        raise SoloError(f"no figure {key!r} and no rule to derive it; add it to a --figures file")

    def value(self, key: str) -> float:
        return self.get(key).value


# ---------------------------------------------------------------------------------------------
# The estimate


@dataclass(frozen=True)
class RunTime:
    train_s: float
    dev_s: float
    decode_s: float  # decoding the test MRs and scoring them
    setup_s: float  # loading, tokenising, capturing; compiling on a +compile path

    @property
    def total_s(self) -> float:
        return self.train_s + self.dev_s + self.decode_s + self.setup_s


def run_time(run: PlannedRun, book: FigureBook, path: str) -> RunTime:
    """One run alone on the GPU, on the precision path `path` ("config": the run's own)."""
    path = run.path if path == "config" else path
    precision, compiled = path.removesuffix("+compile"), path.endswith("+compile")
    step_ms = book.at_batch(f"train/{run.size}/{run.method}/{path}", run.batch_size) * run.grad_accum
    dev_ms = book.at_batch(f"eager/{run.size}", run.dev_batch_size) * book.value("dev_forward_fraction")
    decode_s = book.value(f"decode/{run.size}/{precision}") * run.test_mrs / TEST_MRS + book.value("score_s")
    setup_s = book.value("setup_s") + (book.value("buckets") * book.value(f"compile_s/{run.size}") if compiled else 0.0)
    return RunTime(run.steps * step_ms / 1000, run.dev_evals * run.dev_batches * dev_ms / 1000, decode_s, setup_s)


def packed_step_ms(size: str, precision: str, runs: int, book: FigureBook) -> float:
    """One packed step of `runs` runs over one GPT-2 `size` backbone."""
    base = book.find(f"packed_base/{size}") or book.get(f"packed_base/{size}/{precision}")
    return base.value * (1 + (runs - 1) * book.value("packed_marginal"))


def packed_seconds(runs: list[PlannedRun], book: FigureBook, path: str, pack: int) -> tuple[float, float]:
    """Runs of one table trained as launcher=packed trains them: runs over the same backbone
    (model size) share one joint step, `pack` runs at a time (0: all). A pack steps while any
    member still trains, each step costing packed_step_ms of the members still training. The dev
    loss is packed too (each dev batch one forward for every member still evaluating, costing one
    run's dev batch scaled as a packed step), and so is decoding (one search for the pack's runs
    once all have trained: one run's decode, each further run adding decode_marginal of it);
    scoring stays one system at a time; no compiling is counted. Returns (training seconds, the
    rest)."""
    by_size: dict[str, list[PlannedRun]] = {}
    for run in runs:
        by_size.setdefault(run.size, []).append(run)
    train = rest = 0.0
    for size, members in by_size.items():
        width = pack or len(members)
        for start in range(0, len(members), width):
            chunk = members[start:start + width]
            precision = (chunk[0].path if path == "config" else path).removesuffix("+compile")
            done = 0
            for steps in sorted({r.steps * r.grad_accum for r in chunk}):
                active = sum(r.steps * r.grad_accum >= steps for r in chunk)
                train += (steps - done) * packed_step_ms(size, precision, active, book) / 1000
                done = steps
            done = 0
            for evals in sorted({r.dev_evals for r in chunk}):
                evaluating = [r for r in chunk if r.dev_evals >= evals]
                one = max(run_time(r, book, path).dev_s / max(r.dev_evals, 1) for r in evaluating)
                rest += (evals - done) * one * (1 + (len(evaluating) - 1) * book.value("packed_marginal"))
                done = evals
            one = max(book.value(f"decode/{size}/{precision}") * r.test_mrs / TEST_MRS for r in chunk)
            rest += one * (1 + (len(chunk) - 1) * book.value("decode_marginal"))
            rest += len(chunk) * (book.value("score_s") + book.value("setup_s"))
    return train, rest


@dataclass
class TableEstimate:
    table: int
    runs: list[PlannedRun]
    times: list[RunTime]
    packed_train_s: float
    packed_rest_s: float

    @property
    def packed_s(self) -> float:
        return self.packed_train_s + self.packed_rest_s

    @property
    def steps(self) -> int:
        return sum(r.steps for r in self.runs)

    def hours(self, part: str) -> float:
        return sum(getattr(t, part) for t in self.times) / 3600


def estimate(runs: list[PlannedRun], book: FigureBook, path: str, pack: int) -> list[TableEstimate]:
    """Per table, the runs it owns: a shared run counts in the table of its experiment_id (Table 1
    owns none: its rows are Table 2's and 3's)."""
    out = []
    for table in sorted({t for r in runs for t in r.tables}):
        mine = [r for r in runs if r.owner == table]
        out.append(TableEstimate(table, mine, [run_time(r, book, path) for r in mine],
                                 *packed_seconds(mine, book, path, pack)))
    return out


def sharing(table: int, runs: list[PlannedRun]) -> str:
    """Which runs of `table` other tables read, or which other tables' runs it reads."""
    read_by = sorted({t for r in runs if r.owner == table for t in r.tables[1:]})
    reads = [r for r in runs if table in r.tables[1:]]
    parts = [f"read by {', '.join(map(str, read_by))}"] if read_by else []
    if reads:
        parts.append(f"reads {len(reads)} of {', '.join(map(str, sorted({r.owner for r in reads})))}")
    return "; ".join(parts) or "-"


# ---------------------------------------------------------------------------------------------
# The report


def _h(seconds_or_hours: float) -> str:
    return f"{seconds_or_hours:.2f}"


def _path_label(path: str, runs: list[PlannedRun]) -> str:
    if path == "config":
        return f"as the configs compose ({', '.join(sorted({r.path for r in runs}))})"
    precision, compiled = path.removesuffix("+compile"), path.endswith("+compile")
    return f"trainer.precision={precision}" + (" trainer.compile=true" if compiled else "")


def report(runs: list[PlannedRun], runs_from: str, book: FigureBook, path: str, pack: int,
           list_runs: bool = False) -> str:
    tables = estimate(runs, book, path, pack)
    packed_label = f"packed x{pack}" if pack else "packed"
    packed_about = (f"{pack} runs per packed step" if pack
                    else "all of a table's runs in one pack (launcher=packed, runs_at_once null)")
    lines = [
        f"Runs: {len(runs)} (Tables 1-6, non-cited rows, seeds {','.join(map(str, sorted({r.seed for r in runs})))}; "
        f"one per run dir), from {runs_from}. Path: {_path_label(path, runs)}; packed: {packed_about}.",
        "",
        f"| table | runs | shared | optimiser steps | train h | dev loss h | decode + score h "
        f"| setup h | one at a time h | {packed_label}: train h | {packed_label} h |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in tables:
        lines.append(
            f"| {t.table} | {len(t.runs)} | {sharing(t.table, runs)} | {t.steps:,} | "
            f"{_h(t.hours('train_s'))} | {_h(t.hours('dev_s'))} | {_h(t.hours('decode_s'))} | {_h(t.hours('setup_s'))} | "
            f"{_h(t.hours('total_s'))} | {_h(t.packed_train_s / 3600)} | {_h(t.packed_s / 3600)} |")
    one = sum(t.hours("total_s") for t in tables)
    packed = sum(t.packed_s for t in tables) / 3600
    lines.append(
        f"| **all** | **{len(runs)}** | | **{sum(t.steps for t in tables):,}** | "
        f"{_h(sum(t.hours('train_s') for t in tables))} | {_h(sum(t.hours('dev_s') for t in tables))} | "
        f"{_h(sum(t.hours('decode_s') for t in tables))} | {_h(sum(t.hours('setup_s') for t in tables))} | "
        f"**{_h(one)}** | {_h(sum(t.packed_train_s for t in tables) / 3600)} | **{_h(packed)}** |")
    lines += ["", f"Goal: the whole paper <= {GOAL_HOURS:g} h on one H200. One at a time: {_h(one)} h, "
              f"{'met' if one <= GOAL_HOURS else 'NOT met'}; {packed_label}: {_h(packed)} h, "
              f"{'met' if packed <= GOAL_HOURS else 'NOT met'}"
              + ("" if book.get("packed_marginal").measured else " (packed step assumed, not measured)") + "."]

    lines += ["", "Totals by precision path (same figures):", "",
              f"| path | one at a time h | {packed_label} h |", "|---|---|---|"]
    # "config" is each run's own path; a path every run is configured with would repeat it.
    for other in ("config", *(p for p in PATHS if any(r.path != p for r in runs))):
        ts = estimate(runs, book, other, pack)
        lines.append(f"| {_path_label(other, runs)} | {_h(sum(t.hours('total_s') for t in ts))} | "
                     f"{_h(sum(t.packed_s for t in ts) / 3600)} |")

    lines += ["", "Figures used (measured = on a GPU; assumed = derived or guessed, to be measured):", "",
              "| figure | value | kind | source |", "|---|---|---|---|"]
    for key in sorted(book.used):
        fig = book.used[key]
        lines.append(f"| {key} | {fig.value:.4g} | {'measured' if fig.measured else 'assumed'} | {fig.source} |")

    if list_runs:
        lines += ["", "| run dir | tables | model | method | batch | steps | dev evals x batches | test MRs |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in runs:
            lines.append(f"| {r.run_dir} | {','.join(map(str, r.tables))} | GPT-2 {r.size} | {r.method} | "
                         f"{r.batch_size} | {r.steps:,} | {r.dev_evals} x {r.dev_batches} | {r.test_mrs} |")
    return "\n".join(lines)


@exit_on_solo_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measured", type=Path, default=None,
                        help="bench/gpu_all.sh's OUT folder: its JSONs replace the recorded figures they measured")
    parser.add_argument("--figures", type=Path, default=None, help="a JSON of figures (shape: --dump-figures)")
    parser.add_argument("--path", default="bf16+compile", choices=("config", *PATHS),
                        help="precision path of the main table (config: as each run's config says)")
    parser.add_argument("--pack", type=int, default=0,
                        help="runs per packed step (default 0: all of a table's, as launcher=packed)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the report to this file")
    parser.add_argument("--runs", action="store_true", help="list every run too")
    parser.add_argument("--write-plan", action="store_true", help=f"compose the runs and write {PLAN_FILE.name}")
    parser.add_argument("--from-plan", action="store_true",
                        help=f"read the runs from {PLAN_FILE.name} instead of composing them (no Hydra needed)")
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides for every run, as run_table takes them (e.g. trainer.eval_every=5000)")
    parser.add_argument("--dump-figures", type=Path, default=None, help="write the recorded figures as JSON")
    args = parser.parse_args(argv)
    if args.pack < 0:
        raise SoloError(f"--pack {args.pack}: give the runs per packed step, or 0 for all of a table's")
    if args.write_plan:
        if args.overrides:
            raise SoloError(f"--write-plan writes the configs as they are; drop {' '.join(args.overrides)!r}")
        write_plan(compose_runs())
        print(f"wrote {PLAN_FILE}")
        return
    figures = recorded_figures()
    if args.dump_figures:
        args.dump_figures.write_text(json.dumps({k: dataclasses.asdict(v) for k, v in figures.items()}, indent=1))
        print(f"wrote {args.dump_figures}")
        return
    if args.figures:
        figures.update(figures_from_file(args.figures))
    if args.measured:
        figures.update(measured_figures(args.measured))
    runs, runs_from = paper_runs(args.overrides, args.from_plan)
    text = report(runs, runs_from, FigureBook(figures), args.path, args.pack, args.runs)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
