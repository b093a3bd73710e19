"""Several training runs on one device: total throughput of N concurrent processes vs one.

    PYTHONPATH=. python bench/bench_concurrency.py --device cuda --counts 1,2,4 --paths fast,plain
    PYTHONPATH=. python bench/bench_concurrency.py --device cpu               # tiny model, N=1,2

Each process trains Solo Connection on GPT-2 S (random weights, batch 8, lengths 40-110) through
the fast step (CUDA graphs) or the plain eager step. All processes finish their set-up and
warm-up first, then start together and run for the same wall time; throughput is the sum of
their steps per second. Goal: N runs give >= 0.8*N times the throughput of one.
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
    batches = e2e_like_batches(32 if device.type == "cuda" else 3, 8, seed=args.seed)
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
    Path(args.out).write_text(json.dumps({"steps": steps, "seconds": elapsed}))


def run_group(count: int, args, workdir: Path) -> dict:
    group = workdir / f"{args.path_now}-{count}"
    group.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    procs = []
    for i in range(count):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--device", args.device,
               "--size", args.size, "--path", args.path_now, "--precision", args.precision,
               "--seconds", str(args.seconds), "--seed", str(i),
               "--ready", str(group / f"ready{i}"), "--go", str(group / "go"), "--out", str(group / f"out{i}.json")]
        procs.append(subprocess.Popen(cmd, env=env))
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
            "per_process": [r["steps"] / r["seconds"] for r in results]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--counts", default=None, help="process counts (default 1,2,4 on CUDA, 1,2 on CPU)")
    parser.add_argument("--paths", default="fast", help="comma list of fast, plain")
    parser.add_argument("--size", default=None)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--setup-timeout", type=float, default=180)
    parser.add_argument("--json", default=None)
    # worker mode
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="fast", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    parser.add_argument("--go", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    args.device = str(device)
    args.size = args.size or ("S" if cuda else "tiny")
    args.seconds = args.seconds or (6.0 if cuda else 3.0)
    if args.worker:
        worker(args)
        return
    counts = [int(c) for c in (args.counts or ("1,2,4" if cuda else "1,2")).split(",")]
    header = (f"concurrent training processes, GPT-2 {args.size}, Solo, batch 8, {args.precision}, "
              f"device: {device_name(device)}, torch {torch.__version__}")
    print(header, flush=True)
    rows, report = [], {"device": device_name(device), "groups": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.paths.split(","):
            args.path_now = path
            single = None
            for count in counts:
                print(f"[{path}] {count} process(es) ...", flush=True)
                result = run_group(count, args, Path(tmp))
                report["groups"][f"{path}-{count}"] = result
                if "error" in result:
                    rows.append(Row(f"{path} x{count}", {"note": result["error"]}))
                    continue
                total = result["steps_per_s"]
                single = single or (total if count == 1 else None)
                scaling = total / single if single else None
                rows.append(Row(f"{path} x{count}", {
                    "steps/s total": total, "steps/s each": total / count,
                    "x one": scaling, "goal": 0.8 * count,
                    "met": None if scaling is None else ("yes" if scaling >= 0.8 * count else "no")}))
                # After each group: a later timeout keeps what was measured.
                save_report(args.json, report, header, CONCURRENCY_COLUMNS, rows, echo=False)
    save_report(args.json, report, header, CONCURRENCY_COLUMNS, rows)


if __name__ == "__main__":
    main()
