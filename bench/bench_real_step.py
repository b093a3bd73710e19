"""CPU training step on real weights (SmolLM2-135M): ours vs raw transformers + peft, same batches.

    PYTHONPATH=. python bench/bench_real_step.py [--steps 6] [--threads 2]

Batches: the first dev-set pairs in SmolLM2's chat format, batch 4 (as `make real`). Raw: the
transformers model with peft's LoRA (r=8, α=32 on q_proj/v_proj), its logits, torch's
label-smoothed cross-entropy on the target tokens, backward, AdamW. Ours: solo's LoRA and Solo
Connection through solo.train.step.PlainStep (the loop's CPU step).
The variants take turns step by step, so a machine whose load changes slows them alike; the
median step is reported. Goal: ours (LoRA) <= 1.1x raw.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from bench.common import AT_LEAST_0, COUNT, REPO_ROOT

SMOOTHING, LR = 0.1, 2e-4


def real_batches(tokenizer, count: int, batch_size: int):
    from solo.data import TrainBatches, encode_pairs, read_lora_txt
    from solo.paths import shared_data_dir

    pairs = read_lora_txt(shared_data_dir() / "lora-format" / "valid.txt")[: count * batch_size]
    batches = TrainBatches(encode_pairs(tokenizer, pairs, 512), batch_size, 1, pad_id=int(tokenizer.pad_token_id))
    return [batches.collate(indices) for indices in batches.epoch(0)[:count]]


def raw_step(model, optimizer):
    def step(batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        labels = batch["input_ids"][:, 1:].masked_fill(batch["loss_mask"][:, 1:] == 0, -100)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                               ignore_index=-100, label_smoothing=SMOOTHING)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)
    return step


def ours_step(model, method):
    from solo.train.optim import build_optimizer, build_scheduler
    from solo.train.step import PlainStep

    optimizer = build_optimizer(method.trainable_parameters(), OmegaConf.create({"lr": LR, "weight_decay": 0.01}))
    plain = PlainStep(model, method.after_optimizer_step, optimizer, build_scheduler(optimizer, 0, 10_000),
                      label_smoothing=SMOOTHING)
    return lambda batch: float(plain.step(batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=COUNT, default=6)
    parser.add_argument("--warmup", type=AT_LEAST_0, default=2)
    parser.add_argument("--threads", type=COUNT)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from peft import LoraConfig, get_peft_model

    from solo.methods import apply_method
    from solo.models import load_backbone

    torch.manual_seed(0)
    base, tokenizer = load_backbone(OmegaConf.load(REPO_ROOT / "configs" / "model" / "smollm2-135m.yaml"))
    batches = real_batches(tokenizer, args.warmup + args.steps, 4)
    raw_model = get_peft_model(copy.deepcopy(base), LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1,
                                                               target_modules=["q_proj", "v_proj"]))
    raw_params = [p for p in raw_model.parameters() if p.requires_grad]
    lora_model, solo_model = copy.deepcopy(base), copy.deepcopy(base)
    variants = {
        "raw transformers + peft LoRA": raw_step(raw_model, torch.optim.AdamW(raw_params, lr=LR, eps=1e-6, weight_decay=0.01)),
        "ours LoRA (plain step)": ours_step(lora_model, apply_method(lora_model, {"name": "lora", "rank": 8, "alpha": 32})),
        "ours Solo r=128 s=0.6 (plain step)": ours_step(solo_model, apply_method(solo_model, {"name": "solo", "rank": 128, "sparsity": 0.6, "init_seed": 0})),
    }
    for model in (raw_model, lora_model, solo_model):
        model.train()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for index, batch in enumerate(batches):
        for name, step in variants.items():
            started = time.perf_counter()
            step(batch)
            if index >= args.warmup:
                times[name].append(time.perf_counter() - started)
    tokens = statistics.mean(int(b["attention_mask"].sum()) for b in batches)
    raw = statistics.median(times["raw transformers + peft LoRA"])
    print(f"SmolLM2-135M, CPU, {torch.get_num_threads()} threads, batch 4 (~{tokens:.0f} tokens), "
          f"median of {args.steps} interleaved steps")
    print(f"{'variant':<38} {'s/step':>8} {'vs raw':>7}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<38} {median:>8.3f} {median / raw:>6.2f}x")


if __name__ == "__main__":
    main()
