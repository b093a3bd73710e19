"""`make demo`: the whole chain on CPU in a few minutes, no weights needed.

Solo Connection on a tiny random GPT-2 (configs/model/tiny.yaml), a short training on the shared
dev set (standing in for the training set, which is not shipped), beam search over a slice of
the test MRs, the official E2E metrics, and a small results table beside the paper's row. The
run goes through `python -m solo.train` exactly as a real experiment does; its numbers are a
smoke test of the machinery, not results.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from solo.errors import SoloError, exit_on_solo_error
from solo.experiments.aggregate import publish
from solo.experiments.compose import compose_train_config
from solo.experiments.tables import METRICS, PERCENT_METRICS, load_paper_rows
from solo.paths import REPO_ROOT

EXPERIMENT = "table2/solo_r128_s0.6"
DEMO_OVERRIDES: tuple[str, ...] = (
    f"experiment={EXPERIMENT}",
    "profile=tiny",
    "run_root=runs/demo",
    # A frozen random backbone learns slowly (lambda starts at 0.001): a large learning rate makes
    # the short run produce words rather than empty lines.
    "trainer.max_steps=80",
    "trainer.lr=5e-2",
    "trainer.warmup_steps=10",
    "trainer.eval_every=40",
    "trainer.ckpt_every=40",
    "trainer.log_every=25",
    "data.max_train_examples=null",
    "data.max_valid_examples=32",
    "data.max_test_mrs=10",
    "decode.num_beams=4",
    "decode.max_new_tokens=32",
)
RESULTS_FILE = REPO_ROOT / "results" / "smoke" / "demo.md"


def _paper_row():
    return next(r for r in load_paper_rows() if r.experiment == EXPERIMENT)


def render_demo_table(scores: dict[str, float], run_dir: Path, steps: int, test_mrs: int) -> str:
    paper = _paper_row()
    lines = [
        "# Demo — SMOKE RUN, NOT RESULTS",
        "",
        f"Solo Connection (r=128, s=0.6) on a tiny random GPT-2 (4 blocks, d=64), {steps} steps on the "
        f"shared dev set, beam search on the first {test_mrs} test MRs, official E2E metrics. The paper's row "
        "is GPT-2 S with pretrained weights trained on the full training set: shown for the format, "
        "not for comparison.",
        "",
        "| metric | demo | paper (GPT-2 S, Table 2) |",
        "|---|---|---|",
    ]
    for metric in METRICS:
        scale = 100.0 if metric in PERCENT_METRICS else 1.0
        lines.append(f"| {metric} | {scores[metric] * scale:.2f} | {paper.metrics[metric]:g} |")
    lines += ["", f"Run dir: `{run_dir}`", ""]
    return "\n".join(lines)


@exit_on_solo_error
def main() -> None:
    started = time.monotonic()
    from solo.train.rundir import run_dir_for

    cfg = compose_train_config(list(DEMO_OVERRIDES))
    run_dir = (REPO_ROOT / run_dir_for(cfg)).resolve()
    command = [sys.executable, "-m", "solo.train", *DEMO_OVERRIDES]
    print("demo: " + " ".join(["python", *command[1:]]), flush=True)
    if subprocess.run(command, cwd=REPO_ROOT).returncode != 0:
        raise SoloError(f"the demo's training run failed; its run dir is {run_dir} (rerun `make demo` to resume)")
    scores_path = run_dir / "scores.json"
    if not scores_path.exists():
        raise SoloError(f"{scores_path} missing after the run; rerun `make demo` to finish it")
    scores = json.loads(scores_path.read_text())
    table = render_demo_table(scores, run_dir.relative_to(REPO_ROOT), int(cfg.trainer.max_steps), int(cfg.data.max_test_mrs))
    messages = publish({RESULTS_FILE: table.encode()})

    predictions = (run_dir / "predictions.txt").read_text().splitlines()
    print("\n" + table)
    print("first predictions:")
    for line in predictions[:3]:
        print(f"  {line}")
    print(f"\nfinished in {time.monotonic() - started:.0f} s. Outputs:")
    print(f"  run dir:      {run_dir}  (config.yaml, metrics.jsonl, adapter/, predictions.txt, scores.json)")
    for message in messages:
        print(f"  results:      {message}")
    print(
        "\nThe real tables need pretrained GPT-2 weights (hub name or a local folder: "
        "model.pretrained=...) and the E2E training set (downloaded on first use, or data.lora_dir=...):\n"
        "  make table2                      # GPT-2 S rows of Table 2 -> results/table2.{md,csv,png}\n"
        "  make table2 seeds=1,2,3          # mean ± std over three seeds\n"
        "  python -m solo.experiments.run_table 3 launcher=slurm hydra.launcher.partition=gpu\n"
        "  make table1 profile=tiny         # the same machinery as a CPU smoke run -> results/smoke/"
    )


if __name__ == "__main__":
    main()
