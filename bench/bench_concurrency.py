"""Several training runs on one device: total throughput of N runs vs one, two ways side by side.

    PYTHONPATH=. python bench/bench_concurrency.py --device cuda --counts 1,2,4 --paths fast,plain
    PYTHONPATH=. python bench/bench_concurrency.py --device cpu               # tiny model, N=1,2
    PYTHONPATH=. python bench/bench_concurrency.py --modes lockstep          # one mode only

Each run trains Solo Connection on GPT-2 S (random weights, batch 8, lengths 40-110) through the
fast step (CUDA graphs) or the plain eager step. Two modes:
- processes (rows `fast xN`): N processes, one run each; on one GPU they only time-slice it;
- lockstep (rows `lockstep xN`, `lockstep plain xN`): N runs in one process, one step of each
  in turn, each run's work on its own CUDA stream with its RNG state swapped in, as
  solo.train.lockstep (`launcher=lockstep`) trains them, so their graphs can overlap on the GPU;
- batch (rows `one run, batch 8xN`): one run at N times the batch, its steps counted N times:
  what N runs packed into one batched step (one backbone pass for all) could reach at best,
  measured so the next step after lockstep can be chosen from figures.
Every run finishes its set-up and warm-up first, then all start together and run for the same
wall time; throughput is the sum of their steps per second. "x one" divides by one process's.
Goal: N runs give >= 0.8*N times the throughput of one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import (
    REPO_ROOT,
    SECONDS,
    Row,
    device_name,
    e2e_like_batches,
    pick_device,
    save_report,
)

CONCURRENCY_COLUMNS = ["steps/s total", "steps/s each", "x one", "goal", "met", "note"]

def worker(args) -> None:
    from bench.bench_train_step import SOLO, ours_fast, ours_plain
    from bench.common import random_gpt2, synchronize

    device = pick_device(args.device)
    base = random_gpt2(args.size, None, device)
    if args.path == "fast":
        model, step, _ = ours_fast(base, device, SOLO, args.precision)
    else:
        model, step, _ = ours_plain(base, device, SOLO, args.precision)
    del base
    batches = e2e_like_batches(32 if device.type == "cuda" else 3, 8 * args.batch_mult, seed=args.seed)
    for batch in batches:  # a full pass: every length bucket is captured before the clock starts
        step(batch)
    synchronize(device)
    Path(args.ready).write_text("ready")
    while not Path(args.go).exists():
        time.sleep(0.005)
    # Check the clock every few steps on the GPU (each check drains the queue), every step on CPU.
    chunk = 8 if device.type == "cuda" else 1
    start = time.perf_counter()
    steps = 0
    while True:
        for i in range(chunk):
            step(batches[(steps + i) % len(batches)])
        steps += chunk
        synchronize(device)
        if time.perf_counter() - start >= args.seconds:
            break
    elapsed = time.perf_counter() - start
    Path(args.out).write_text(json.dumps({"steps": steps * args.batch_mult, "seconds": elapsed}))


def lockstep_worker(args) -> None:
    """`args.lockstep` runs in this process, advanced round robin, each on its own CUDA stream."""
    from bench.bench_train_step import SOLO, ours_fast, ours_plain
    from bench.common import random_gpt2, synchronize
    from solo.train.lockstep import RunState, on_stream

    device = pick_device(args.device)
    cuda = device.type == "cuda"
    runs = []
    for i in range(args.lockstep):
        state = RunState(cuda)
        state.restore()  # the run's own generator states, so its graphs register (and replay) those
        stream = torch.cuda.Stream(device=device) if cuda else None
        with on_stream(stream):
            base = random_gpt2(args.size, None, device, seed=i)
            build = ours_fast if args.path == "fast" else ours_plain
            _, step, _ = build(base, device, SOLO, args.precision)
            del base
            batches = e2e_like_batches(32 if cuda else 3, 8, seed=i)
            for batch in batches:  # every length bucket captured (on this run's stream)
                step(batch)
        state.capture()
        runs.append((state, stream, step, batches))
    synchronize(device)
    Path(args.ready).write_text("ready")
    while not Path(args.go).exists():
        time.sleep(0.005)
    chunk = 8 if cuda else 1
    steps = [0] * len(runs)
    start = time.perf_counter()
    while True:
        for _ in range(chunk):
            for k, (state, stream, step, batches) in enumerate(runs):
                state.restore()
                with on_stream(stream):
                    step(batches[steps[k] % len(batches)])
                state.capture()
                steps[k] += 1
        synchronize(device)
        if time.perf_counter() - start >= args.seconds:
            break
    elapsed = time.perf_counter() - start
    Path(args.out).write_text(json.dumps({"steps": sum(steps), "seconds": elapsed,
                                          "per_run": [n / elapsed for n in steps]}))


def run_group(count: int, args, workdir: Path, mode: str = "processes") -> dict:
    """`count` runs as `count` processes, as one process with `count` runs (lockstep), or as one
    run at `count` times the batch (batch)."""
    lockstep = mode == "lockstep"
    group = workdir / f"{args.path_now}-{count}-{mode}"
    group.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    procs = []
    for i in range(count if mode == "processes" else 1):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--device", args.device,
               "--size", args.size, "--path", args.path_now, "--precision", args.precision,
               "--seconds", str(args.seconds), "--seed", str(i),
               "--ready", str(group / f"ready{i}"), "--go", str(group / "go"), "--out", str(group / f"out{i}.json")]
        if lockstep:
            cmd += ["--lockstep", str(count)]
        if mode == "batch":
            cmd += ["--batch-mult", str(count)]
        procs.append(subprocess.Popen(cmd, env=env))
    count = len(procs)
    deadline = time.time() + args.setup_timeout
    while not all((group / f"ready{i}").exists() for i in range(count)):
        if time.time() > deadline or any(p.poll() not in (None, 0) for p in procs):
            for p in procs:
                p.kill()
            return {"error": "a worker failed or did not get ready in time"}
        time.sleep(0.05)
    (group / "go").write_text("go")
    for p in procs:
        p.wait()
    results = [json.loads((group / f"out{i}.json").read_text()) for i in range(count) if (group / f"out{i}.json").exists()]
    if len(results) != count:
        return {"error": "a worker died while measuring"}
    return {"steps_per_s": sum(r["steps"] / r["seconds"] for r in results),
            "per_process": [r["steps"] / r["seconds"] for r in results],
            **({"per_run": results[0]["per_run"]} if lockstep else {})}


def row_name(path: str, count: int, mode: str) -> str:
    if mode == "processes":
        return f"{path} x{count}"
    if mode == "batch":
        return f"one run, batch 8x{count}" + ("" if path == "fast" else f" {path}")
    return f"lockstep x{count}" if path == "fast" else f"lockstep {path} x{count}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--counts", default=None, help="process counts (default 1,2,4 on CUDA, 1,2 on CPU)")
    parser.add_argument("--paths", default="fast", help="comma list of fast, plain")
    parser.add_argument("--modes", default="processes,lockstep",
                        help="comma list of processes, lockstep, batch")
    parser.add_argument("--size", default=None)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--seconds", type=SECONDS, default=None)
    parser.add_argument("--setup-timeout", type=SECONDS, default=180)
    parser.add_argument("--json", default=None)
    # worker mode
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="fast", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    parser.add_argument("--go", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--lockstep", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--batch-mult", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    args.device = str(device)
    args.size = args.size or ("S" if cuda else "tiny")
    args.seconds = args.seconds or (6.0 if cuda else 3.0)
    if args.worker:
        if args.lockstep:
            lockstep_worker(args)
        else:
            worker(args)
        return
    counts = [int(c) for c in (args.counts or ("1,2,4" if cuda else "1,2")).split(",")]
    modes = args.modes.split(",")
    if not set(modes) <= {"processes", "lockstep", "batch"}:
        parser.error(f"--modes={args.modes}: a comma list of processes, lockstep, batch")
    header = (f"concurrent training runs, GPT-2 {args.size}, Solo, batch 8, {args.precision}, "
              f"device: {device_name(device)}, torch {torch.__version__}")
    print(header, flush=True)
    rows, report = [], {"device": device_name(device), "groups": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.paths.split(","):
            args.path_now = path
            single = None  # one run alone (one process): the "x one" reference of both modes
            groups = [(mode, count) for mode in ("processes", "lockstep", "batch") if mode in modes
                      for count in counts if not (mode == "batch" and count == 1)]
            for mode, count in groups:
                name = row_name(path, count, mode)
                print(f"[{name}] {count} run(s), {mode} ...", flush=True)
                result = run_group(count, args, Path(tmp), mode=mode)
                report["groups"][f"{path}-{count}" + ("" if mode == "processes" else f"-{mode}")] = result
                if "error" in result:
                    rows.append(Row(name, {"note": result["error"]}))
                    continue
                total = result["steps_per_s"]
                if count == 1 and (single is None or mode == "processes"):
                    single = total
                scaling = total / single if single else None
                rows.append(Row(name, {
                    "steps/s total": total, "steps/s each": total / count,
                    "x one": scaling, "goal": 0.8 * count,
                    "met": None if scaling is None else ("yes" if scaling >= 0.8 * count else "no")}))
                # After each group: a later timeout keeps what was measured.
                save_report(args.json, report, header, CONCURRENCY_COLUMNS, rows, echo=False)
    save_report(args.json, report, header, CONCURRENCY_COLUMNS, rows)


if __name__ == "__main__":
    main()
