"""The independent anchor of `make real`: the same LoRA fine-tune with peft, importing nothing from solo.

    python bench/peft_anchor_real.py SPEC.json OUT_DIR

SPEC.json (written by solo.experiments.real) holds only data and numbers: the converted model
folder, the training batches as token ids and loss masks in solo's order, the held-out examples,
the test prompts as token ids, and the hyper-parameters. Everything else is done here with the
libraries alone: peft's LoRA on q_proj/v_proj, torch's AdamW, a linear warm-up/decay schedule,
torch's label-smoothed cross-entropy on the target tokens, transformers' beam search
(`generate`). Writes OUT_DIR/anchor.json: the dev-loss curve, the predictions, timings.

Two known differences from solo, both on the decoding side: transformers' no-repeat-n-gram rule
counts the prompt's tokens too (microsoft/LoRA's and solo's default do the same), and its beam
search finishes a beam when `num_beams` hypotheses are done, as solo's does.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer


def pad(examples: list, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids, attention mask and loss mask of (ids, mask) pairs."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    target = torch.zeros((len(examples), width), dtype=torch.float32)
    for row, (tokens, mask) in enumerate(examples):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        attention[row, : len(tokens)] = 1
        target[row, : len(mask)] = torch.tensor(mask, dtype=torch.float32)
    return ids, attention, target


def target_loss(model, batch, smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed loss over target tokens, their count): position t predicts token t+1."""
    ids, attention, target = batch
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
    labels = ids[:, 1:].masked_fill(target[:, 1:] == 0, -100)
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                            ignore_index=-100, label_smoothing=smoothing, reduction="sum")
    return total, (labels != -100).sum()


@torch.no_grad()
def dev_loss(model, examples: list, batch_size: int, pad_id: int) -> float:
    model.eval()
    total, count = 0.0, 0
    ordered = sorted(examples, key=lambda e: len(e[0]))
    for start in range(0, len(ordered), batch_size):
        loss, n = target_loss(model, pad(ordered[start: start + batch_size], pad_id), 0.0)
        total, count = total + float(loss), count + int(n)
    model.train()
    return total / max(count, 1)


@torch.no_grad()
def generate(model, tokenizer, prompts: list, settings: dict, eos_id: int, pad_id: int) -> list[str]:
    model.eval()
    texts = []
    for start in range(0, len(prompts), 8):
        chunk = prompts[start: start + 8]
        width = max(len(p) for p in chunk)
        ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in chunk])  # left padding
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
        out = model.generate(input_ids=ids, attention_mask=attention, do_sample=False,
                             num_beams=settings["num_beams"], length_penalty=settings["length_penalty"],
                             no_repeat_ngram_size=settings["no_repeat_ngram_size"],
                             max_new_tokens=settings["max_new_tokens"], eos_token_id=eos_id,
                             pad_token_id=pad_id, early_stopping=True)
        for row in out[:, width:]:
            text = tokenizer.decode(row, skip_special_tokens=True).strip()
            texts.append(" ".join(text.split("\n\n")[0].split()))
        print(f"peft anchor: decoded {len(texts)}/{len(prompts)}", flush=True)
    return texts


def main(spec_path: str, out_dir: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(int(spec["threads"]))
    random.seed(spec["seed"])
    torch.manual_seed(spec["seed"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"])
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    lora = spec["lora"]
    model = get_peft_model(model, LoraConfig(r=lora["rank"], lora_alpha=lora["alpha"],
                                             lora_dropout=lora["dropout"], bias="none",
                                             target_modules=["q_proj", "v_proj"]))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=spec["lr"], betas=tuple(spec["betas"]), eps=spec["eps"],
                                  weight_decay=spec["weight_decay"])
    steps, warmup = len(spec["train_batches"]), spec["warmup_steps"]
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: s / max(1, warmup) if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)))
    pad_id, batch_size = spec["pad_id"], spec["batch_size"]
    curve = [(0, dev_loss(model, spec["dev_examples"], batch_size, pad_id))]
    print(f"peft anchor: step 0 dev loss {curve[-1][1]:.4f}", flush=True)
    started = time.perf_counter()
    model.train()
    for step, examples in enumerate(spec["train_batches"], start=1):
        total, count = target_loss(model, pad(examples, pad_id), spec["label_smoothing"])
        (total / count.clamp(min=1)).backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % spec["eval_every"] == 0 or step == steps:
            curve.append((step, dev_loss(model, spec["dev_examples"], batch_size, pad_id)))
            print(f"peft anchor: step {step} dev loss {curve[-1][1]:.4f}", flush=True)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    predictions = generate(model, tokenizer, spec["prompts"], spec["decode"], spec["eos_id"], pad_id)
    result = {"trainable": sum(p.numel() for p in trainable), "dev_curve": curve,
              "train_seconds": train_seconds, "decode_seconds": time.perf_counter() - started,
              "predictions": predictions}
    Path(out_dir, "anchor.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    try:
        main(*sys.argv[1:3])
    except KeyboardInterrupt:  # make real's Ctrl-C reaches this process too; it says what stopped
        print("peft anchor: interrupted", file=sys.stderr)
        sys.exit(130)
