"""Decoding speed: ours (exact beam search, fast path) vs transformers' `generate`.

    PYTHONPATH=. python bench/bench_decode.py --device cuda --sizes S,M
    PYTHONPATH=. python bench/bench_decode.py --device cpu      # tiny model, few prompts

630 random E2E-like prompts of 20-60 tokens (the size of the E2E test set), random weights,
beam 10, length penalty 0.9, no-repeat-ngram 4, 64 new tokens. Anchor: `model.generate` at
batch 32 (timed on a subset, reported per MR). Ours: solo.decode.beam_search at batch 32 (the
exact search with the model's own forward and HF's DynamicCache, timed on the same subset) and
the same search over SharedPromptGPT2State (one prompt cache per prompt, beam cache written in
place, memory-sized batches) in up to three variants (`--variants`):
- graph: solo.decode.engine.fast_beam_search with decode.cuda_graph=true, the fixed-shape step
  (solo/decode/static_search.py) captured once per batch shape and replayed, flags read every
  `--sync-every` steps; on all prompts, capture time included (CUDA only);
- eager: the same fixed-shape step without the graph (decode.cuda_graph=false);
- per-step: beam_search over SharedPromptGPT2State, host checks every step (the fast path before
  the fixed-shape step).
eager and per-step run on `--slow-mrs` prompts (default: one batch, so the same batch shape as
the graph's) and are reported per MR. Every variant's tokens are checked against the exact
search's on the subset, in the same precision (fp32 is the meaningful check: tf32/bf16 round
differently for different batch shapes and flip near-ties).
`--plain-state` adds the exact search at the fast path's batch size.
Random weights rarely emit eos, so every search runs all 64 steps: the worst case for time.
"""

from __future__ import annotations

import argparse
import copy
import time
import traceback
from functools import partial

import torch

from bench.common import (
    AT_LEAST_0,
    COUNT,
    EOS,
    Row,
    device_name,
    free_memory,
    pick_device,
    print_table,
    random_gpt2,
    random_prompts,
    synchronize,
    write_json,
)
from solo.decode import beam_search
from solo.decode.engine import decode_batch_size, fast_beam_search, use_sdpa
from solo.decode.gpt2_state import SharedPromptGPT2State
from solo.decode.static_search import StaticSearchReport
from solo.train.precision import apply_precision

# The anchor is HF generate, so ours runs the search rule with its semantics.
GENERATE = {"num_beams": 10, "length_penalty": 0.9, "no_repeat_ngram_size": 4}
SEARCH = {**GENERATE, "style": "hf"}
VARIANTS = ("graph", "eager", "per-step")


def hf_generate(model, prompts, batch_size, max_new_tokens, device):
    """transformers' beam search, left-padded batches as its docs prescribe."""
    outputs = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), EOS, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, p in enumerate(chunk):
            ids[row, width - len(p):] = torch.tensor(p)
            mask[row, width - len(p):] = 1
        with torch.inference_mode():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=max_new_tokens, do_sample=False, early_stopping=False,
                                 pad_token_id=EOS, eos_token_id=EOS, **GENERATE)
        outputs.extend(out[:, width:].tolist())
    return outputs


def clock(device, fn):
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def run_size(size, args, device, on_progress=None):
    model = random_gpt2(size, args.config_dir, device).eval()
    use_sdpa(model)
    prompts = random_prompts(args.mrs, seed=args.seed)
    subset = prompts[:args.subset]
    n_new = args.max_new_tokens
    rows, details = [], {}

    anchor_ms = None

    def add(name, seconds, count, **extra):
        """A timed row, with its speed-up over the anchor once the anchor is measured."""
        ms = 1000 * seconds / count
        rows.append(Row(name, {"ms/MR": ms, "MRs": count, f"s per {len(prompts)}": seconds / count * len(prompts),
                               "speed-up": anchor_ms / ms if anchor_ms else None, **extra}))
        return ms

    try:
        apply_precision("fp32", device)
        print(f"[{size}] anchor generate ...", flush=True)
        hf_generate(model, prompts[:2], 2, 4, device)  # warm-up
        seconds, _ = clock(device, lambda: hf_generate(model, subset, 32, n_new, device))
        anchor_ms = add("anchor HF generate fp32, batch 32", seconds, len(subset), **{"speed-up": 1.0})
    except Exception as err:
        traceback.print_exc()
        rows.append(Row("anchor HF generate fp32, batch 32", {"note": f"FAILED {err!s:.60}"}))

    for precision in args.precisions:
        try:
            # bf16 here means bf16 weights and KV cache (scores stay fp32 in the search); the exact
            # search runs on the same bf16 model, so the token check compares like with like.
            searched = copy.deepcopy(model).to(torch.bfloat16) if precision == "bf16" else model
            apply_precision("fp32" if precision == "bf16" else precision, device)
            print(f"[{size}] exact beam search {precision} ...", flush=True)
            beam_search(searched, prompts[:2], eos_id=EOS, pad_id=EOS, max_new_tokens=4, batch_size=2, **SEARCH)
            seconds, exact = clock(device, lambda m=searched: beam_search(
                m, subset, eos_id=EOS, pad_id=EOS, max_new_tokens=n_new, batch_size=32, **SEARCH))
            ms = add(f"ours exact beam search {precision}, batch 32", seconds, len(subset))
            batch = args.batch or decode_batch_size(searched, prompts, SEARCH["num_beams"], n_new)
            if args.plain_state:
                print(f"[{size}] exact beam search {precision}, batch {batch} ...", flush=True)
                seconds, _ = clock(device, lambda m=searched, b=batch: beam_search(
                    m, prompts, eos_id=EOS, pad_id=EOS, max_new_tokens=n_new, batch_size=b, **SEARCH))
                add(f"ours exact beam search {precision}, batch {batch}", seconds, len(prompts))
            details[precision] = {"exact_ms_per_mr": ms, "same_tokens": {}, "checked": len(subset),
                                  "batch": batch}
            for variant in args.variants:
                time_variant(variant, searched, precision, prompts, subset, exact, batch, args,
                             device, add, rows, details[precision])
                if on_progress:
                    on_progress(rows, details)  # a later timeout keeps what was measured
            searched = None  # frees the bf16 copy
        except Exception as err:
            traceback.print_exc()
            rows.append(Row(f"ours {precision}", {"note": f"FAILED {type(err).__name__}: {err!s:.60}"}))
        free_memory(device)
    apply_precision("fp32", device)
    if args.sharpen and "fp32" in args.precisions:
        try:
            rows.append(sharpened_check(model, subset, n_new, args.sharpen, details))
        except Exception as err:
            traceback.print_exc()
            rows.append(Row("check: sharpened", {"note": f"FAILED {type(err).__name__}: {err!s:.60}"}))
    return rows, details


VARIANT_NAMES = {"graph": "CUDA graph", "eager": "fixed-shape step eager",
                 "per-step": "host check every step"}


def time_variant(variant, model, precision, prompts, subset, exact, batch, args, device, add, rows,
                 details) -> None:
    """Time one fast-path variant, check its tokens against the exact search's; a row either way."""
    name = f"ours fast, {VARIANT_NAMES[variant]} {precision}, batch {batch}"
    if variant == "graph" and device.type != "cuda":
        rows.append(Row(name, {"note": "CUDA only"}))
        return
    count = len(prompts) if variant == "graph" else min(len(prompts), args.slow_mrs or batch)
    print(f"[{args.size}] {name}, {count} MRs ...", flush=True)
    report = StaticSearchReport()
    try:
        seconds, fast = clock(device, lambda: fast_variant(variant, model, prompts[:count], batch,
                                                           args.max_new_tokens, args.sync_every, report))
    except Exception as err:
        traceback.print_exc()
        rows.append(Row(name, {"note": f"FAILED {type(err).__name__}: {err!s:.60}"}))
        return
    checked = min(count, len(subset))
    same = sum(a == b for a, b in zip(fast[:checked], exact[:checked], strict=True))
    note = (f"{report.graphs_captured} graphs, capture {report.capture_seconds:.2f} s, "
            f"{report.windows_redone} windows redone" if variant == "graph" else None)
    add(name, seconds, count, **{"same as exact": f"{same}/{checked}", "note": note})
    details["same_tokens"][variant] = same
    details[f"{variant}_s_per_mr"] = seconds / count
    if variant != "per-step":
        details[f"{variant}_report"] = vars(report)


def fast_variant(variant, model, prompts, batch, n_new, sync_every, report):
    """One of the fast path's variants (module doc) over `prompts`."""
    kwargs = dict(eos_id=EOS, pad_id=EOS, max_new_tokens=n_new, batch_size=batch, **SEARCH)
    if variant == "per-step":
        return beam_search(model, prompts, state=partial(SharedPromptGPT2State, max_new_tokens=n_new),
                           **kwargs)
    return fast_beam_search(model, prompts, cuda_graph=variant == "graph", sync_every=sync_every,
                            report=report, **kwargs)


def sharpened_check(model, subset, n_new, factor, details) -> Row:
    """Fast vs exact tokens in fp32 on a copy whose logits are `factor` times as spread.

    Random weights give nearly flat next-token distributions, where rounding differences between
    two correct implementations flip near-ties; a trained model's are peaked. Scaling the final
    layer norm's weight and bias scales the logits, which makes the check about the search, not noise.
    """
    sharp = copy.deepcopy(model)
    with torch.no_grad():
        sharp.transformer.ln_f.weight.mul_(factor)
        sharp.transformer.ln_f.bias.mul_(factor)
    exact = beam_search(sharp, subset, eos_id=EOS, pad_id=EOS, max_new_tokens=n_new, batch_size=32, **SEARCH)
    fast = fast_beam_search(sharp, subset, eos_id=EOS, pad_id=EOS, max_new_tokens=n_new,
                            batch_size=len(subset), **SEARCH)
    same = sum(a == b for a, b in zip(fast, exact, strict=True))
    details["sharpened"] = {"factor": factor, "same_tokens": same, "checked": len(subset)}
    return Row(f"check: fast (batch {len(subset)}) vs exact (batch 32), fp32, logits x{factor:g}",
               {"MRs": len(subset), "same as exact": f"{same}/{len(subset)}"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", default=None, help="comma list of S, M, tiny (default: S,M on CUDA, tiny on CPU)")
    parser.add_argument("--config-dir", default=None)
    parser.add_argument("--mrs", type=COUNT, default=None, help="prompts decoded by the fast path (630 on CUDA)")
    parser.add_argument("--subset", type=COUNT, default=None, help="prompts for the anchor, the exact search and the check")
    parser.add_argument("--max-new-tokens", type=COUNT, default=None)
    parser.add_argument("--batch", type=COUNT, default=None, help="fast-path prompts per batch (default: fit memory)")
    parser.add_argument("--precisions", default="tf32,fp32,bf16",
                        help="fp32 | tf32 (tensor-core fp32 matmuls) | bf16 (bf16 weights and cache)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="fast-path variants: graph (CUDA only), eager, per-step (module doc)")
    parser.add_argument("--sync-every", type=COUNT, default=8, help="decode.sync_every of graph and eager")
    parser.add_argument("--slow-mrs", type=COUNT, default=None,
                        help="prompts for the eager and per-step variants (default: one batch)")
    parser.add_argument("--plain-state", action="store_true",
                        help="also time the exact search (HF cache) on all prompts at the fast batch size")
    parser.add_argument("--sharpen", type=float, default=8.0,
                        help="logit scale of the fp32 token check on a sharpened copy (0: skip)")
    parser.add_argument("--seed", type=AT_LEAST_0, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    sizes = (args.sizes or ("S,M" if cuda else "tiny")).split(",")
    args.mrs = args.mrs or (630 if cuda else 12)
    args.subset = min(args.subset or (64 if cuda else 6), args.mrs)
    args.max_new_tokens = args.max_new_tokens or (64 if cuda else 16)
    args.precisions = [p for p in args.precisions.split(",") if p and (cuda or p == "fp32")]
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown --variants {', '.join(unknown)}; known: {', '.join(VARIANTS)}")

    header = (f"decode, beam 10, {args.max_new_tokens} new tokens, prompts 20-60 tokens, "
              f"device: {device_name(device)}, torch {torch.__version__}")
    print(header, flush=True)
    report = {"device": device_name(device), "torch": torch.__version__, "sizes": {}}
    texts = []
    for size in sizes:
        def save_partial(rows, details, size=size):
            so_far = {**report, "sizes": {**report["sizes"], size: {
                "rows": [{"name": r.name, **r.values} for r in rows], **details}}}
            write_json(args.json, so_far)

        args.size = size.strip()
        rows, details = run_size(args.size, args, device, on_progress=save_partial)
        texts.append(print_table(f"GPT-2 {size} ({header})",
                                 ["ms/MR", "MRs", f"s per {args.mrs}", "speed-up", "same as exact", "note"], rows))
        report["sizes"][size] = {"rows": [{"name": r.name, **r.values} for r in rows], **details}
        report["table"] = "\n".join(texts)
        write_json(args.json, report)  # after each size: a later timeout keeps what was measured


if __name__ == "__main__":
    main()
