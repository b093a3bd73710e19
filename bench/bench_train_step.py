"""Training step speed: ours (fast step, Solo Connection and LoRA) vs transformers + peft LoRA.

    PYTHONPATH=. python bench/bench_train_step.py --device cuda --sizes S,M
    PYTHONPATH=. python bench/bench_train_step.py --device cpu            # tiny model, few steps
    PYTHONPATH=. python bench/bench_train_step.py --device cuda --sizes M --precisions bf16 --compile \
        --variants anchor,fast-solo-bf16,fast-solo-bf16-compile --buckets 112   # a chosen subset

Batch 8, lengths uniform in 40-110 tokens (fixed seed), random weights. Anchor: peft LoRA on
c_attn (r=4, alpha=32, dropout 0.1), eager fp32, per-batch padding and padded to 512 (as
microsoft/LoRA does). Ours: solo.train.graphed_step.GraphedStep (CUDA graph per length bucket, fused
AdamW, SDPA, no host syncs) in fp32, tf32 and bf16, plus our plain eager step for reference.
Prints ms/step, tokens/s and the speed-up over the per-batch-padding anchor, and checks that
our LoRA and peft's start from the same loss (both add exactly zero at initialisation).
`--compile` adds fast-step variants whose forward + loss go through torch.compile (inductor) before
the CUDA-graph capture; `--variants` keeps only the listed variant ids (see `variant_list`);
`--buckets` sets the fast step's length buckets (one bucket = one capture and one compilation).
"""

from __future__ import annotations

import argparse
import contextlib
import traceback

import torch

from bench.common import (
    AT_LEAST_0,
    COUNT,
    EOS,
    Row,
    device_name,
    e2e_like_batches,
    free_memory,
    pick_device,
    print_table,
    random_gpt2,
    timed,
    write_json,
)
from solo.data.buckets import DEFAULT_BUCKETS, pick_bucket
from solo.methods import apply_method
from solo.train.graphed_step import GraphedStep
from solo.train.loss import label_smoothed_loss
from solo.train.precision import apply_precision
from solo.train.step import PlainStep

SOLO = {"name": "solo", "rank": 128, "sparsity": 0.0, "dropout": 0.1, "init_seed": 0}
LORA = {"name": "lora", "rank": 4, "alpha": 32, "dropout": 0.1, "targets": ["q", "v"]}
LR, WEIGHT_DECAY, EPS, SMOOTHING = 2e-4, 0.01, 1e-6, 0.1


def make_optimizer(params):
    optimizer = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=EPS, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 500))
    return optimizer, scheduler


def to_device(batch, device):
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def eval_loss(model, batch, device) -> float:
    """Loss without dropout, for comparing two models' starting points."""
    was = model.training
    model.eval()
    with torch.no_grad():
        b = to_device(batch, device)
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False).logits
        value = float(label_smoothed_loss(logits, b["input_ids"], b["loss_mask"], SMOOTHING))
    model.train(was)
    return value


def anchor_peft(base, device):
    """transformers + peft LoRA, the way its users train: eager fp32, AdamW (for-each)."""
    import copy

    from peft import LoraConfig, get_peft_model

    apply_precision("fp32", device)
    model = get_peft_model(copy.deepcopy(base), LoraConfig(
        r=4, lora_alpha=32, lora_dropout=0.1, target_modules=["c_attn"], fan_in_fan_out=True,
        bias="none"))
    optimizer, scheduler = make_optimizer([p for p in model.parameters() if p.requires_grad])
    model.train()

    return model, eager_step(model, optimizer, scheduler, device), {}


def eager_step(model, optimizer, scheduler, device, autocast=contextlib.nullcontext, after_step=None):
    """One plain eager training step (forward, label-smoothed loss, backward, AdamW, schedule)."""

    def step(batch):
        b = to_device(batch, device)
        with autocast():
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False).logits
        loss = label_smoothed_loss(logits, b["input_ids"], b["loss_mask"], SMOOTHING)
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if after_step:
            after_step()
        return loss.detach()

    return step


def ours_plain(base, device, method_cfg, precision="fp32"):
    """Our method through the trainer's plain eager step (solo.train.step.PlainStep)."""
    import copy

    autocast = apply_precision(precision, device)
    model = copy.deepcopy(base)
    torch.manual_seed(1)
    method = apply_method(model, method_cfg)
    optimizer, scheduler = make_optimizer(method.trainable_parameters())
    model.train()

    step = PlainStep(model, method.after_optimizer_step, optimizer, scheduler,
                     label_smoothing=SMOOTHING, autocast=autocast)
    return model, step.step, {}


def ours_fast(base, device, method_cfg, precision, buckets=DEFAULT_BUCKETS, compile=False):  # noqa: A002
    import copy

    model = copy.deepcopy(base)
    torch.manual_seed(1)
    method = apply_method(model, method_cfg)
    optimizer, scheduler = make_optimizer(method.trainable_parameters())
    fast = GraphedStep(model, method.after_optimizer_step, optimizer, scheduler, pad_id=EOS,
                       label_smoothing=SMOOTHING, buckets=buckets, precision=precision,
                       compile=compile, log=lambda m: print("  " + m, flush=True))
    return model, fast.step, {"fast": fast}


def measure(step, batches, warmup, steps, device, buckets=DEFAULT_BUCKETS):
    # Warm up on the first batches plus one batch of every length bucket that occurs, so no CUDA
    # graph capture falls inside the timed steps.
    first_of_bucket = {}
    for batch in batches:
        first_of_bucket.setdefault(pick_bucket(batch["input_ids"].shape[1], buckets), batch)
    for batch in batches[:warmup] + list(first_of_bucket.values()):
        step(batch)
    timed_batches = batches[warmup:warmup + steps]
    seconds = timed(device, lambda: [step(b) for b in timed_batches])
    tokens = sum(int(b["attention_mask"].sum()) for b in timed_batches)
    return 1000.0 * seconds / len(timed_batches), tokens / seconds


def variant_list(base, device, args) -> list[tuple[str, str, callable, bool]]:
    """(id for --variants, table name, builder, padded-to-pad-length data?) in the order run."""
    buckets = args.buckets
    variants = [
        ("anchor", "anchor peft LoRA fp32, per-batch pad", lambda: anchor_peft(base, device), False),
        ("anchor-pad", f"anchor peft LoRA fp32, pad {args.pad_length}", lambda: anchor_peft(base, device), True),
        ("plain-solo", "ours plain Solo fp32 (eager)", lambda: ours_plain(base, device, SOLO), False),
    ]
    for precision in args.precisions:
        for label, cfg in (("LoRA", LORA), ("Solo", SOLO)):
            key = f"fast-{label.lower()}-{precision}"
            variants.append((key, f"ours fast {label} {precision}",
                             lambda p=precision, c=cfg: ours_fast(base, device, c, p, buckets), False))
    if args.compile:
        for precision in args.precisions:
            for label, cfg in (("Solo", SOLO), ("LoRA", LORA)):  # Solo first: it carries the goal
                key = f"fast-{label.lower()}-{precision}-compile"
                variants.append((key, f"ours fast {label} {precision} compiled",
                                 lambda p=precision, c=cfg: ours_fast(base, device, c, p, buckets, compile=True),
                                 False))
    if args.variants:
        known = [v[0] for v in variants]
        unknown = [k for k in args.variants if k not in known]
        if unknown:
            raise SystemExit(f"unknown --variants {unknown}; known here: {', '.join(known)}")
        variants = [v for v in variants if v[0] in args.variants]
    return variants


def run_size(size, args, device, on_row=lambda rows: None) -> tuple[list[Row], dict]:
    base = random_gpt2(size, args.config_dir, device)
    n = args.warmup + args.steps
    batches = e2e_like_batches(n, args.batch, seed=args.seed)
    # The padded anchor counts the same real tokens as the others (pad_to keeps the lengths).
    padded = e2e_like_batches(n, args.batch, seed=args.seed, pad_to=args.pad_length)

    rows, details = [], {}
    anchor_ms = None
    start_losses = {}
    for _key, name, build, pads in variant_list(base, device, args):
        print(f"[{size}] {name} ...", flush=True)
        data = padded if pads else batches
        try:
            model, step, extra = build()
            if "LoRA" in name and ("fp32" in name):
                start_losses[name] = eval_loss(model, batches[0], device)
            ms, tok_s = measure(step, data, args.warmup, args.steps, device, args.buckets or None)
            values = {"ms/step": ms, "tokens/s": tok_s}
            fast = extra.get("fast")
            if fast is not None:
                values["graphs"] = fast.num_graphs if fast.graphed else "eager"
                values["capture s"] = fast.capture_seconds
                if "compiled" in name:
                    values["compile s"] = fast.compile_seconds
                reason = fast.fallback_reason or fast.compile_failure
                if reason:
                    values["note"] = reason[:60]
            if anchor_ms is None and name.startswith("anchor"):
                anchor_ms = ms
            values["speed-up"] = anchor_ms / ms if anchor_ms else None
            rows.append(Row(name, values))
            del model, step, extra
        except Exception as err:  # keep measuring the other variants
            traceback.print_exc()
            rows.append(Row(name, {"note": f"FAILED {type(err).__name__}: {str(err)[:60]}"}))
        print(f"[{size}] {name}: {rows[-1].values}", flush=True)
        on_row(rows)
        if "compiled" in name:
            import torch._dynamo

            torch._dynamo.reset()  # drop this model's compiled graphs and guards before the next
        free_memory(device)
        apply_precision("fp32", device)
    anchor_loss = start_losses.get("anchor peft LoRA fp32, per-batch pad")
    ours_loss = start_losses.get("ours fast LoRA fp32")
    if anchor_loss is not None and ours_loss is not None:
        details["start_loss"] = {"anchor_peft_lora": anchor_loss, "ours_lora": ours_loss,
                                 "abs_diff": abs(anchor_loss - ours_loss)}
    return rows, details


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", default=None, help="comma list of S, M, tiny (default: S,M on CUDA, tiny on CPU)")
    parser.add_argument("--config-dir", default=None, help="folder with gpt2.json / gpt2-medium.json (optional)")
    parser.add_argument("--batch", type=COUNT, default=8)
    parser.add_argument("--steps", type=COUNT, default=None)
    parser.add_argument("--warmup", type=AT_LEAST_0, default=None)
    parser.add_argument("--precisions", default="fp32,tf32,bf16")
    parser.add_argument("--pad-length", type=COUNT, default=512)
    parser.add_argument("--seed", type=AT_LEAST_0, default=0)
    parser.add_argument("--compile", action="store_true",
                        help="add fast-step variants run through torch.compile (ids fast-<method>-<precision>-compile)")
    parser.add_argument("--variants", default=None,
                        help="comma list of variant ids to run, e.g. anchor,fast-solo-bf16,fast-solo-bf16-compile")
    parser.add_argument("--buckets", default=None,
                        help="comma list of fast-step length buckets (default: solo.data.buckets.DEFAULT_BUCKETS)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    args.buckets = tuple(int(b) for b in args.buckets.split(",")) if args.buckets else DEFAULT_BUCKETS
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    sizes = (args.sizes or ("S,M" if cuda else "tiny")).split(",")
    args.steps = args.steps or (40 if cuda else 3)
    args.warmup = args.warmup or (8 if cuda else 1)
    args.precisions = [p for p in args.precisions.split(",") if p and (cuda or p == "fp32")]
    if not cuda:
        args.pad_length = min(args.pad_length, 128)  # tiny CPU model: keep the padded anchor cheap

    header = f"train step, batch {args.batch}, lengths 40-110, device: {device_name(device)}, torch {torch.__version__}"
    print(header, flush=True)
    report = {"device": device_name(device), "torch": torch.__version__, "batch": args.batch,
              "steps": args.steps, "buckets": list(args.buckets), "sizes": {}}
    texts = []
    columns = ["ms/step", "tokens/s", "speed-up", "graphs", "capture s"]
    columns += ["compile s"] if args.compile else []
    columns += ["note"]
    for size in sizes:
        def keep(rows, size=size):  # after each variant: a later timeout keeps what was measured
            report["sizes"][size] = {"rows": [{"name": r.name, **r.values} for r in rows]}
            write_json(args.json, report)

        rows, details = run_size(size.strip(), args, device, keep)
        texts.append(print_table(f"GPT-2 {size} ({header})", columns, rows))
        if "start_loss" in details:
            sl = details["start_loss"]
            line = (f"start loss (no dropout): peft LoRA {sl['anchor_peft_lora']:.6f}  ours LoRA "
                    f"{sl['ours_lora']:.6f}  |diff| {sl['abs_diff']:.2e}")
            print(line, flush=True)
            texts.append(line)
        report["sizes"][size] = {"rows": [{"name": r.name, **r.values} for r in rows], **details}
        report["table"] = "\n".join(texts)
        write_json(args.json, report)  # after each size: a later timeout keeps what was measured


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
