"""Packed decoding vs the same runs decoded one after another: N runs' adapters over one GPT-2.

    PYTHONPATH=. python bench/bench_packed_decode.py --device cuda --counts 1,4,11
    PYTHONPATH=. python bench/bench_packed_decode.py --device cpu      # tiny model, N = 1, 2, 4

The N runs are Table 2's rows (bench/bench_packed.py: Solo r = 8 ... 512 at s = 0 and 0.6, then
LoRA r = 8) on random weights, each run's adapter its freshly initialised one. Every run decodes
the same `--mrs` random E2E-like prompts with the paper-table recipe (configs/decode: the lora
rule, beam 10, 64 new tokens) through the fast engine (solo.decode.engine.fast_beam_search: the
fixed-shape step, a CUDA graph per batch shape on CUDA, memory-sized batches). Rows:
- `alone xN`: the first N runs one after another, each decoded on its own module tree (each run
  timed once; xN sums the first N), graph captures included, as a table's runs pay them;
- `packed xN`: one search for all N (solo.decode.beam_search.PackedDecoding: each prompt once per
  run, member by member, each run's adapter on its own rows), what `launcher=packed` runs once a
  pack's runs have all finished training.
"x alone" is alone xN's seconds over packed xN's. "same as alone" counts runs x prompts whose
tokens equal the run decoded alone: fp32 is the meaningful check (bf16 rounds differently for
different batch shapes and flips near-ties of random weights' flat distributions); the tests
check exactness in fp64 (tests/decode/test_decode_packed.py).
"""

from __future__ import annotations

import argparse

import torch

from bench.bench_packed import table2_methods
from bench.common import (
    COUNT,
    EOS,
    Row,
    add_sweep_arguments,
    device_name,
    random_gpt2,
    random_prompts,
    save_report,
    sweep_setup,
    timed,
)
from solo.decode.beam_search import PackedDecoding
from solo.decode.engine import fast_beam_search
from solo.decode.static_search import StaticSearchReport
from solo.methods import apply_method
from solo.methods.packing import PackedForward, shared_copy

# configs/decode/default.yaml, the paper-table recipe.
RECIPE = {"num_beams": 10, "length_penalty": 0.8, "no_repeat_ngram_size": 4, "style": "lora"}
COLUMNS = ["runs", "MRs per run", "s", "ms per run-MR", "x alone", "same as alone", "note"]


def decode(model, prompts, max_new_tokens: int, packed: PackedDecoding | None = None,
           report: StaticSearchReport | None = None):
    return fast_beam_search(model, prompts, eos_id=EOS, pad_id=EOS, max_new_tokens=max_new_tokens,
                            packed=packed, report=report, **RECIPE)


def graph_note(report: StaticSearchReport) -> str:
    """Whether the search ran as CUDA graphs: a failed capture falls back (auto) silently but for
    a log line, and would show here only as slower figures."""
    if report.fallback:
        return f"eager: {report.fallback}"
    return f"{report.graphs_captured} graphs, {report.graph_replays} replays"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sweep_arguments(parser, counts_cuda="1,4,11")
    parser.add_argument("--mrs", type=COUNT, default=None, help="prompts per run (210 on CUDA, 8 on the CPU)")
    parser.add_argument("--max-new-tokens", type=COUNT, default=None, help="64 on CUDA, 16 on the CPU")
    args = parser.parse_args()

    sweep = sweep_setup(args)
    device, cuda, size, counts, precision = (sweep.device, sweep.cuda, sweep.size, sweep.counts,
                                             sweep.precision)
    mrs = args.mrs or (210 if cuda else 8)
    new_tokens = args.max_new_tokens or (64 if cuda else 16)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    base = random_gpt2(size, args.config_dir, device).to(dtype).eval()
    prompts = random_prompts(mrs, seed=0)
    title = (f"packed decoding, GPT-2 {size}, {mrs} MRs per run, beam 10, {new_tokens} new tokens, "
             f"{precision}, {device_name(device)}")
    report: dict = {"device": device_name(device), "size": size, "mrs": mrs, "precision": precision,
                    "max_new_tokens": new_tokens, "rows": []}
    rows: list[Row] = []

    forward = PackedForward(base)
    trees = []
    for index, method_cfg in enumerate(table2_methods(max(counts))):
        tree = shared_copy(base)
        torch.manual_seed(index)
        method = apply_method(tree, method_cfg)
        tree.to(dtype).eval()
        forward.add_member(index, method.packed_terms())
        trees.append(tree)

    decode(base, prompts[:2], 2)  # CUDA context, kernels: not a run's cost
    alone_seconds, alone_tokens = [], []
    for tree in trees:
        out: list = []
        alone_seconds.append(timed(device, lambda tree=tree, out=out: out.extend(
            decode(tree, prompts, new_tokens))))
        alone_tokens.append(out)

    def add(name: str, n: int, seconds: float, x_alone: float | None, same: str | None,
            note: str | None = None) -> None:
        values = {"runs": n, "MRs per run": mrs, "s": seconds,
                  "ms per run-MR": 1000 * seconds / (n * mrs), "x alone": x_alone,
                  "same as alone": same, "note": note}
        rows.append(Row(name, values))
        report["rows"].append({"name": name, **values})
        save_report(args.json, report, title, COLUMNS, rows, echo=False)

    for n in counts:
        alone = sum(alone_seconds[:n])
        add(f"alone x{n}", n, alone, None, None, "one after another")
        out: list = []
        searched = StaticSearchReport()
        seconds = timed(device, lambda n=n, out=out, searched=searched: out.extend(decode(
            base, prompts, new_tokens, PackedDecoding(forward, tuple(range(n))), searched)))
        same = sum(a == b for run, own in zip(out, alone_tokens, strict=False)
                   for a, b in zip(run, own, strict=True))
        add(f"packed x{n}", n, seconds, alone / seconds, f"{same}/{n * mrs}",
            graph_note(searched) if cuda else None)
    save_report(args.json, report, title, COLUMNS, rows)


if __name__ == "__main__":
    main()
