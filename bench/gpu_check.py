"""Correctness of the fast training step on the device: loss curves against the plain step.

    PYTHONPATH=. python bench/gpu_check.py --device cuda      # GPT-2 S, 20 steps
    PYTHONPATH=. python bench/gpu_check.py --device cpu       # tiny model (eager fast step)

Dropout off (backbone and method) so both paths compute the same function; Solo with sparsity 0.5
so the in-graph mask re-application and lambda clamp matter; lr 1e-3 so the curve moves. The plain
reference is fp32 eager with the attention mask (solo.train.step.PlainStep); the fast step runs in
fp32 (must match within 1e-4), tf32 and bf16 (reported: whether their curves follow fp32's).
Then both methods trained packed over one backbone (solo.train.packed, fp32) against the same plain
curves (must match within 1e-4). Last, `--compile P,...` adds the fast step with torch.compile inside
the graph in those precisions (one length bucket, 112, so each variant compiles once; fp32 must
match within 1e-4 too).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import traceback

import torch

from bench.common import (
    COUNT,
    EOS,
    Row,
    device_name,
    e2e_like_batches,
    free_memory,
    pick_device,
    random_gpt2,
    save_report,
)
from solo.cuda_graphs import capture
from solo.methods import apply_method
from solo.train.graphed_step import GraphedStep
from solo.train.precision import apply_precision
from solo.train.step import PlainStep

METHODS = {
    "Solo": {"name": "solo", "rank": 32, "sparsity": 0.5, "dropout": 0.0, "init_seed": 0},
    "LoRA": {"name": "lora", "rank": 4, "alpha": 32, "dropout": 0.0},
}
LR = 1e-3


CHECK_COLUMNS = ["max |dloss|", "max |dparam|", "loss first", "loss last", "plain last", "graphs",
               "eager steps", "finite", "pass", "note"]

def attach(base, method_cfg):
    model = copy.deepcopy(base)
    torch.manual_seed(1)
    method = apply_method(model, method_cfg)
    optimizer = torch.optim.AdamW(method.trainable_parameters(), lr=LR, eps=1e-6, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 5))
    return model, method, optimizer, scheduler


def plain_curve(base, method_cfg, batches, device):
    apply_precision("fp32", device)
    model, method, optimizer, scheduler = attach(base, method_cfg)
    model.train()
    step = PlainStep(model, method.after_optimizer_step, optimizer, scheduler, label_smoothing=0.1)
    losses = [step.step(batch) for batch in batches]
    return [float(x) for x in losses], method.adapter_state_dict()


def fast_curve(base, method_cfg, batches, device, precision, compiled=False):
    model, method, optimizer, scheduler = attach(base, method_cfg)
    extra = {"compile": True, "buckets": (112,)} if compiled else {}
    fast = GraphedStep(model, method.after_optimizer_step, optimizer, scheduler, pad_id=EOS,
                       label_smoothing=0.1, precision=precision,
                       log=lambda m: print("  " + m, flush=True), **extra)
    losses = [fast.step(batch) for batch in batches]
    finite = fast.check_finite()
    apply_precision("fp32", device)
    return [float(x) for x in losses], method.adapter_state_dict(), fast, finite


def packed_curves(base, batches, device, fast: bool):
    """Every method of METHODS trained packed over one backbone (solo.train.packed), fp32;
    `fast`: through the pack's graphed step (CUDA graphs on CUDA)."""
    from solo.train.packed import Packer

    apply_precision("fp32", device)
    packer, steps, methods = Packer(), {}, {}
    shared = copy.deepcopy(base)
    for name, cfg in METHODS.items():
        member = packer.member()
        model = member.join(shared, device, "fp32")
        torch.manual_seed(1)
        method = apply_method(model, cfg)
        member.attach(method)
        optimizer = torch.optim.AdamW(method.trainable_parameters(), lr=LR, eps=1e-6, weight_decay=0.01)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 5))
        model.train()
        if fast:
            steps[name] = member.graphed_packed_step(
                optimizer, scheduler, method.after_optimizer_step, label_smoothing=0.1,
                grad_clip=None, pad_id=EOS)
        else:
            steps[name] = member.packed_step(PlainStep(model, method.after_optimizer_step,
                                                       optimizer, scheduler, label_smoothing=0.1))
        methods[name] = method
    losses: dict[str, list[torch.Tensor]] = {name: [] for name in METHODS}
    for batch in batches:
        for name, step in steps.items():
            losses[name].append(step.step(batch))
        packer.flush()
    return {name: ([float(x) for x in losses[name]], methods[name].adapter_state_dict())
            for name in METHODS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", default=None)
    parser.add_argument("--steps", type=COUNT, default=None, help="default 20 on CUDA, 6 on CPU")
    parser.add_argument("--precisions", default="fp32,tf32,bf16")
    parser.add_argument("--compile", default="", help="precisions of compiled variants, e.g. fp32,bf16")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    size = args.size or ("S" if cuda else "tiny")
    args.steps = args.steps or (20 if cuda else 6)
    precisions = [p for p in args.precisions.split(",") if cuda or p == "fp32"]

    base = random_gpt2(size, None, device)
    for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
        setattr(base.config, key, 0.0)
    for module in base.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    # Lengths 40-110 at batch 8 fall in the 80/96/112 buckets: three graphs get captured and replayed.
    batches = e2e_like_batches(args.steps, 8, seed=3)
    header = f"fast step vs plain step, GPT-2 {size}, {args.steps} steps, device: {device_name(device)}"
    print(header, flush=True)
    rows, report = [], {"device": device_name(device), "checks": {}}
    plains = {}
    for name, cfg in METHODS.items():
        try:
            plains[name] = plain_curve(base, cfg, batches, device)
        except Exception as err:
            traceback.print_exc()
            rows.append(Row(f"{name} plain fp32", {"note": f"FAILED {err!s:.60}"}))

    def fast_checks(compiled: bool) -> None:
        for name, (plain, plain_adapter) in plains.items():
            for precision in args.compile.split(",") if compiled else precisions:
                if not precision or not (cuda or precision == "fp32"):
                    continue
                check_fast(name, METHODS[name], plain, plain_adapter, precision, compiled)

    def check_fast(name, cfg, plain, plain_adapter, precision: str, compiled: bool) -> None:
        label = f"{name} fast {precision}" + (" compiled" if compiled else "")
        try:
            losses, adapter, fast, finite = fast_curve(base, cfg, batches, device, precision, compiled)
            loss_diff = max(abs(a - b) for a, b in zip(plain, losses, strict=True))
            param_diff = max(float((adapter[k] - v).abs().max()) for k, v in plain_adapter.items())
            limit = 1e-4 if precision == "fp32" else None
            rows.append(Row(label, {
                "max |dloss|": loss_diff, "max |dparam|": param_diff,
                "loss first": losses[0], "loss last": losses[-1], "plain last": plain[-1],
                "graphs": fast.num_graphs if fast.graphed else "eager", "eager steps": fast.eager_steps,
                "finite": finite,
                "pass": ("yes" if loss_diff < limit else "NO") if limit else "info",
                "note": (fast.fallback_reason or fast.compile_failure or "")[:60] or None}))
            report["checks"][label] = {"plain": plain, "fast": losses, "max_loss_diff": loss_diff,
                                       "max_param_diff": param_diff, "graphed": fast.graphed,
                                       "fallback": fast.fallback_reason}
        except Exception as err:
            traceback.print_exc()
            rows.append(Row(label, {"note": f"FAILED {type(err).__name__}: {err!s:.60}"}))
        free_memory(device)
        # After each check: a later timeout keeps what was measured.
        save_report(args.json, report, header, CHECK_COLUMNS, rows, echo=False)

    fast_checks(compiled=False)
    for fast in (False, True):  # packed runs == the same runs alone (the plain curves above)
        kind = "packed fast" if fast else "packed"
        try:
            for name, (losses, adapter) in packed_curves(base, batches, device, fast).items():
                if name not in plains:
                    continue
                plain, plain_adapter = plains[name]
                loss_diff = max(abs(a - b) for a, b in zip(plain, losses, strict=True))
                param_diff = max(float((adapter[k] - v).abs().max()) for k, v in plain_adapter.items())
                rows.append(Row(f"{name} {kind} fp32", {
                    "max |dloss|": loss_diff, "max |dparam|": param_diff, "loss first": losses[0],
                    "loss last": losses[-1], "plain last": plain[-1],
                    "graphs": "graphed" if fast and cuda else "eager",
                    "pass": "yes" if loss_diff < 1e-4 else "NO"}))
                report["checks"][f"{name} {kind} fp32"] = {
                    "plain": plain, "packed": losses, "max_loss_diff": loss_diff,
                    "max_param_diff": param_diff}
        except Exception as err:
            traceback.print_exc()
            rows.append(Row(f"{kind} fp32", {"note": f"FAILED {type(err).__name__}: {err!s:.60}"}))
        free_memory(device)
        save_report(args.json, report, header, CHECK_COLUMNS, rows, echo=False)
    # Compiling takes tens of seconds per variant on CUDA: last, so a part that runs past its
    # limit has the packed checks already.
    fast_checks(compiled=True)
    if cuda:  # last: a capture that fails on purpose must not cost the checks above
        rows.append(failed_capture_row(device))
    save_report(args.json, report, header, CHECK_COLUMNS, rows)


def failed_capture_row(device: torch.device) -> Row:
    """A capture invalidated by a host read fails, and the stream current before it is current
    again (solo.cuda_graphs.capture; torch's own context would leave its capture stream)."""
    before = torch.cuda.current_stream(device)
    x = torch.ones(4, device=device)
    failed, outcome = False, "captured (expected a failure)"
    try:
        with capture(torch.cuda.CUDAGraph(), device):
            float(x.sum())  # a host read: not allowed while capturing
    except Exception as err:
        failed, outcome = True, f"failed as expected: {type(err).__name__}"
    with contextlib.suppress(RuntimeError):
        torch.cuda.synchronize(device)
    restored = torch.cuda.current_stream(device) == before
    return Row("failed capture keeps the stream", {
        "pass": "yes" if failed and restored else "NO",
        "note": (outcome + ("" if restored else "; capture stream left current"))[:60]})


if __name__ == "__main__":
    main()
