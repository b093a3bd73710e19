"""Packed training vs the same runs one after another: N runs over one frozen GPT-2.

    PYTHONPATH=. python bench/bench_packed.py --device cuda --size S --counts 1,2,4,8,11
    PYTHONPATH=. python bench/bench_packed.py --device cpu             # tiny model, N = 1, 2, 4

The N runs are Table 2's rows in order (Solo r = 8, 32, 64, 128, 512 at s = 0 and 0.6, then
LoRA r = 8), dropout 0.1, batch 4 each, lengths 40-110 (random weights, fixed seeds). Rows:
- `alone plain xN`: the N runs one after another, each through the trainer's plain eager step
  (solo.train.step.PlainStep), `steps` steps each (each run is timed once; xN sums the first N);
- `alone fast xN` (CUDA): the same through the graphed step (GraphedStep), the best a run alone does;
- `packed plain xN`: the N runs packed (solo.train.packed): one backbone pass per step for all of
  them, then each run's own AdamW update; `steps` joint steps;
- `packed fast xN` (CUDA): the same through the pack's graphed step (one CUDA graph per length
  bucket for the whole joint step), what `launcher=packed` runs on CUDA by default.
Throughput is run-steps per second; "x one" divides by the one-run throughput of the same kind
(plain for packed: both eager) and "x fast one" by the graphed single run. Goals (issue 14, GPT-2 S,
Solo, batch 4): N=4 >= 0.8*4x and N=11 >= 0.6*11x the throughput of one run.
"""

from __future__ import annotations

import argparse
import copy

import torch

from bench.bench_train_step import make_optimizer
from bench.common import (
    COUNT,
    EOS,
    Row,
    add_sweep_arguments,
    device_name,
    e2e_like_batches,
    free_memory,
    random_gpt2,
    save_report,
    sweep_setup,
    timed,
)
from solo.methods import apply_method
from solo.train.graphed_step import GraphedStep
from solo.train.packed import Packer
from solo.train.precision import apply_precision
from solo.train.step import PlainStep

SMOOTHING = 0.1
COLUMNS = ["runs", "ms/joint step", "run-steps/s", "x one", "x fast one", "goal", "met"]
GOALS = {4: 0.8 * 4, 11: 0.6 * 11}


def table2_methods(count: int) -> list[dict]:
    """Table 2's rows, cycled if more are asked for."""
    rows = [{"name": "solo", "rank": r, "sparsity": s, "dropout": 0.1, "init_seed": i}
            for i, (r, s) in enumerate((r, s) for s in (0.0, 0.6) for r in (8, 32, 64, 128, 512))]
    rows.append({"name": "lora", "rank": 8, "alpha": 32, "dropout": 0.1, "targets": ["q", "v"]})
    return [rows[i % len(rows)] for i in range(count)]


def _attach(model, method_cfg):
    torch.manual_seed(1)
    method = apply_method(model, method_cfg)
    optimizer, scheduler = make_optimizer(method.trainable_parameters())
    return method, optimizer, scheduler


def alone_seconds(base, methods, batches, device, precision, fast: bool, steps: int,
                  warmup: int) -> list[float]:
    """Wall seconds of each run's `steps` steps alone (set-up and warm-up not counted): the N
    runs one after another take the sum of the first N."""
    seconds = []
    for method_cfg in methods:
        model = copy.deepcopy(base)
        method, optimizer, scheduler = _attach(model, method_cfg)
        model.train()
        if fast:
            step = GraphedStep(model, method.after_optimizer_step, optimizer, scheduler, pad_id=EOS,
                               label_smoothing=SMOOTHING, precision=precision).step
        else:
            step = PlainStep(model, method.after_optimizer_step, optimizer, scheduler,
                             label_smoothing=SMOOTHING,
                             autocast=apply_precision(precision, device)).step
        for batch in batches[:warmup] + batches:  # every bucket seen before the clock starts
            step(batch)
        seconds.append(timed(device, lambda step=step: [step(b) for b in batches[:steps]]))
        del model, method, optimizer, scheduler, step
        free_memory(device)
    return seconds


def packed_seconds(base, methods, batches, device, precision, steps: int, warmup: int,
                   fast: bool = False) -> float:
    """Wall seconds for `steps` joint steps of the N runs packed over one copy of `base`
    (`fast`: the pack's graphed step, as trainer.fast_step=auto picks on CUDA)."""
    packer = Packer()
    shared = copy.deepcopy(base)
    runs = []
    for method_cfg in methods:
        member = packer.member()
        model = member.join(shared, device, precision)
        method, optimizer, scheduler = _attach(model, method_cfg)
        member.attach(method)
        model.train()
        if fast:
            runs.append(member.graphed_packed_step(optimizer, scheduler, method.after_optimizer_step,
                                                   label_smoothing=SMOOTHING, grad_clip=None,
                                                   pad_id=EOS))
        else:
            runs.append(member.packed_step(PlainStep(model, method.after_optimizer_step, optimizer,
                                                     scheduler, label_smoothing=SMOOTHING)))

    def joint(batch_index: int) -> None:
        for offset, step in enumerate(runs):  # each run its own batch of the same size
            step.step(batches[(batch_index + offset) % len(batches)])
        packer.flush()

    for i in range(warmup + len(batches)):  # every length bucket captured before the clock
        joint(i)
    return timed(device, lambda: [joint(i) for i in range(steps)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sweep_arguments(parser, counts_cuda="1,2,4,8,11")
    parser.add_argument("--batch", type=COUNT, default=4)
    parser.add_argument("--steps", type=COUNT, default=None)
    args = parser.parse_args()

    sweep = sweep_setup(args)
    device, cuda, size, counts, precision = (sweep.device, sweep.cuda, sweep.size, sweep.counts,
                                             sweep.precision)
    steps = args.steps or (30 if cuda else 4)
    warmup = 3 if cuda else 1
    base = random_gpt2(size, args.config_dir, device)
    for p in base.parameters():
        p.requires_grad_(False)
    batches = e2e_like_batches(max(steps, 8) + max(counts), args.batch, seed=0)
    title = (f"packed training, GPT-2 {size}, batch {args.batch} per run, {precision}, "
             f"{device_name(device)}")
    report: dict = {"device": device_name(device), "size": size, "batch": args.batch,
                    "precision": precision, "steps": steps, "rows": []}
    rows: list[Row] = []
    one: dict[str, float] = {}

    def add(name: str, runs: int, seconds: float, joint_steps: int, kind: str) -> None:
        rate = runs * steps / seconds
        if runs == 1 and kind in ("plain", "fast"):
            one[kind] = rate
        x_one = rate / one["plain"] if "plain" in one else None
        x_fast = rate / one["fast"] if "fast" in one else None
        goal = GOALS.get(runs) if kind == "packed" else None
        anchor = x_fast if x_fast is not None else x_one
        values = {"runs": runs, "ms/joint step": 1000 * seconds / joint_steps, "run-steps/s": rate,
                  "x one": x_one, "x fast one": x_fast, "goal": goal,
                  "met": None if goal is None or anchor is None else ("yes" if anchor >= goal else "no")}
        rows.append(Row(name, values))
        report["rows"].append({"name": name, "kind": kind, "n": runs, **values})
        save_report(args.json, report, title, COLUMNS, rows, echo=False)

    methods = table2_methods(max(counts))
    kinds = ["plain", "fast"] if cuda else ["plain"]
    alone: dict[str, list[float]] = {kind: [] for kind in kinds}
    for n in counts:
        free_memory(device)  # the previous pack's trees and optimiser states
        for kind in kinds:
            # Only the runs this row adds: small N's rows are saved before the later runs are timed.
            alone[kind] += alone_seconds(base, methods[len(alone[kind]):n], batches, device,
                                         precision, kind == "fast", steps, warmup)
            add(f"alone {kind} x{n}", n, sum(alone[kind][:n]), n * steps, kind)
        add(f"packed plain x{n}", n, packed_seconds(base, methods[:n], batches, device, precision,
                                                    steps, warmup), steps, "packed")
        if cuda:
            add(f"packed fast x{n}", n, packed_seconds(base, methods[:n], batches, device, precision,
                                                       steps, warmup, fast=True), steps, "packed")
    save_report(args.json, report, title, COLUMNS, rows)


if __name__ == "__main__":
    main()
