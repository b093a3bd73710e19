"""Packed training on real pretrained weights: `make real`'s LoRA and Solo lanes, alone and packed.

    PYTHONPATH=. python bench/packed_real.py [--steps 20] [--markdown results/real/packed.md]

SmolLM2-135M-Instruct (real weights, Llama-style: rotary positions, q/v projections), the E2E dev
set as training data as in `make real` (NOT the paper's GPT-2 set-up). Both lanes train `steps`
steps alone, one after the other, then packed over one backbone (solo.train.packed), on the same
batches in the same order, with dropout off so that both compute the same function (with dropout
on, a packed run's masks come from its pack's joint seed, not its own stream). Prints per run the
largest difference in training loss, dev loss and adapter entries, and the wall times (CPU, fp32).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch

from solo.experiments.real import METHODS, Data, Settings, base_config, trainer_config
from solo.methods import apply_method
from solo.models import load_backbone
from solo.schema import COUNT_ARGUMENT
from solo.train.lockstep import drive
from solo.train.loop import train, train_steps
from solo.train.metrics import MetricsFile
from solo.train.packed import Packer
from solo.train.tracking import Tracker

CPU = torch.device("cpu")
LANES = ("lora", "solo")


def _method(model, lane: str):
    torch.manual_seed(1)  # LoRA's A and Solo's init seed come from the global RNG
    return apply_method(model, {**METHODS[lane], "dropout": 0.0})


def _records(run_dir: Path) -> list[dict]:
    return MetricsFile(run_dir / "metrics.jsonl").records()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=COUNT_ARGUMENT, default=20)
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args()
    settings = Settings(steps=args.steps, test_mrs=0, eval_every=max(1, args.steps // 2), log_every=1)
    cfg = base_config(settings)
    backbone, tokenizer = load_backbone(cfg.model)
    data = Data(cfg, tokenizer, settings)
    root = Path(tempfile.mkdtemp(prefix="packed_real_"))
    trainer = {lane: trainer_config(cfg, settings, lane) for lane in LANES}

    alone, alone_seconds = {}, 0.0
    for lane in LANES:
        model = copy.deepcopy(backbone)
        method = _method(model, lane)
        started = time.perf_counter()
        train(model=model, params=method.trainable_parameters(),
              after_optimizer_step=method.after_optimizer_step, train_batches=data.train,
              dev_batches=data.dev, trainer_cfg=trainer[lane], run_dir=root / f"alone-{lane}",
              tracker=Tracker(), device=CPU)
        alone_seconds += time.perf_counter() - started
        alone[lane] = method.adapter_state_dict()

    packer, runs, packed = Packer(), [], {}
    for lane in LANES:
        member = packer.member()
        model = member.join(copy.deepcopy(backbone), CPU, "fp32")
        method = _method(model, lane)
        member.attach(method)
        packed[lane] = method
        runs.append((member, train_steps(
            model=model, params=method.trainable_parameters(),
            after_optimizer_step=method.after_optimizer_step, train_batches=data.train,
            dev_batches=data.dev, trainer_cfg=trainer[lane], run_dir=root / f"packed-{lane}",
            tracker=Tracker(), device=CPU, make_step=member.make_step,
            queue_dev_loss=member.dev_loss_queue())))
    started = time.perf_counter()
    failures = [out for out in drive(packer, runs) if isinstance(out, BaseException)]
    packed_seconds = time.perf_counter() - started
    if failures:
        raise failures[0]

    lines = [
        f"# Packed training on real weights ({args.steps} steps, CPU fp32, dropout off)", "",
        "SmolLM2-135M-Instruct (real pretrained weights, Q4_1 GGUF), E2E dev set as training data "
        "(`make real`'s split) — not the paper's GPT-2 set-up. Each lane trained alone, then both "
        "packed over one backbone, same batches in the same order. Command: "
        f"`PYTHONPATH=. python bench/packed_real.py --steps {args.steps}`.", "",
        "| run | max \\|Δ train loss\\| | max \\|Δ dev loss\\| | max \\|Δ adapter\\| | final train loss |",
        "|---|---|---|---|---|",
    ]
    for lane in LANES:
        a, p = _records(root / f"alone-{lane}"), _records(root / f"packed-{lane}")
        train_diff = max(abs(x["loss"] - y["loss"]) for x, y in zip(a, p, strict=True) if "loss" in x)
        dev_diff = max(abs(x["dev_loss"] - y["dev_loss"]) for x, y in zip(a, p, strict=True)
                       if "dev_loss" in x)
        adapter = packed[lane].adapter_state_dict()
        param_diff = max(float((alone[lane][k] - v).abs().max()) for k, v in adapter.items())
        last = [r["loss"] for r in p if "loss" in r][-1]
        lines.append(f"| {lane} | {train_diff:.2e} | {dev_diff:.2e} | {param_diff:.2e} | {last:.4f} |")
    lines += ["", f"Wall time (2 CPU cores, {torch.get_num_threads()} threads; timing only, other "
              f"work may have shared the cores): alone, one after the other {alone_seconds:.1f} s; "
              f"packed {packed_seconds:.1f} s ({alone_seconds / packed_seconds:.2f}x)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
