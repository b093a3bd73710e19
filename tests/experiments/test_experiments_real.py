"""make real's pieces that need no weights: the MR split, the report files, the anchor's isolation."""

from __future__ import annotations

import ast
import csv
import io

import pytest

from solo.data import E2EPair
from solo.errors import SoloError
from solo.experiments.real import ANCHOR_SCRIPT, BANNER, LaneResult, Settings, split_by_mr
from solo.experiments.real_report import (
    diagnostics_png,
    loss_curves_png,
    results_csv,
    results_markdown,
)


def test_split_by_mr_holds_out_whole_mrs():
    pairs = [E2EPair(mr=f"m{i // 3}", ref=f"r{i}") for i in range(12)]  # 4 MRs, 3 refs each
    train, held = split_by_mr(pairs, 1)
    assert {p.mr for p in held} == {"m3"} and len(held) == 3
    assert not {p.mr for p in train} & {p.mr for p in held} and len(train) == 9
    with pytest.raises(SoloError, match="leaves nothing to train on"):
        split_by_mr(pairs, 4)


def test_the_peft_anchor_imports_nothing_from_solo():
    tree = ast.parse(ANCHOR_SCRIPT.read_text())
    modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert "peft" in modules and not [m for m in modules if m.split(".")[0] in ("solo", "bench", "e2e_eval")]


def _results():
    scores = {"BLEU": 0.55, "NIST": 7.1, "METEOR": 0.4, "ROUGE_L": 0.6, "CIDEr": 1.9}
    solo = LaneResult("solo", trainable=68852, dev_curve=[(0, 2.6), (50, 1.9)], train_seconds=100,
                      decode_seconds=50, scores=scores, predictions=["A pub."],
                      diagnostics=[{"step": 5, "solo/D2/lambda": 0.01, "solo/D2/gate_norm": 0.2,
                                    "solo/encoder_norm": 30.0, "solo/decoder_norm": 20.0}])
    zero = LaneResult("zero-shot", dev_curve=[(0, 2.6)], scores={**scores, "BLEU": 0.1}, predictions=["Hello."])
    return [zero, solo]


def test_report_is_bannered_and_scaled():
    results = _results()
    md = results_markdown(results, Settings(), BANNER, notes="found this", n_train=10, n_dev=4, n_test=1,
                          wall_seconds=120, references=[["A pub ."]], mrs=["name : A"], recipe="RECIPE",
                          label_smoothing=0.1).decode()
    assert BANNER in md and "not the paper's setup" in md and "found this" in md
    assert "| 68,852 | 2.600 → 1.900 |" in md and "| 55.00 | 7.10 | 40.00 | 60.00 | 1.90 |" in md
    results[1].resumed_from = 30  # an interrupted lane's time counts from its resume only
    resumed = results_markdown(results, Settings(), BANNER, notes="", n_train=10, n_dev=4, n_test=1,
                               wall_seconds=120, references=[["A pub ."]], mrs=["name : A"], recipe="R",
                               label_smoothing=0.1).decode()
    assert "(from step 30: resumed)" in resumed and "resumed)" not in md
    rows = list(csv.DictReader(io.StringIO(results_csv(results).decode())))
    assert rows[1]["lane"] == "solo" and rows[1]["BLEU"] == "55.00" and rows[0]["BLEU"] == "10.00"
    assert loss_curves_png(results, BANNER).startswith(b"\x89PNG")
    assert diagnostics_png(results[1].diagnostics, BANNER).startswith(b"\x89PNG")


def test_audit_counts_lora_and_solo_on_the_llama_blocks():
    from solo.experiments.real_audit import real_model_audit, real_model_rows

    rows = {label.split()[0]: (measured, formula, where) for label, measured, formula, where in real_model_rows()}
    assert rows["lora"][0] == rows["lora"][1] == 30 * (8 * (576 + 576) + 8 * (576 + 192))
    assert rows["solo"][0] == rows["solo"][1] and rows["solo"][2].split(", ") == [f"D{i}" for i in range(2, 30, 2)]
    assert "MISMATCH" not in real_model_audit()


@pytest.mark.parametrize(("argv", "said"), [
    (["--steps", "0"], "argument --steps: 0 is not allowed; give an integer >= 1"),
    (["--test-mrs", "-1"], "argument --test-mrs: -1 is not allowed; give an integer >= 0"),
    (["--threads", "0"], "argument --threads: 0 is not allowed"),
    (["--lr-solo", "0"], "argument --lr-solo: 0 is not allowed; give a number > 0"),
    (["--batch-size", "x"], "argument --batch-size: 'x' is not an integer"),
    # The lanes' folders are runs/real/<name>/<lane>: this one would have been runs/x/.
    (["--run-name", "../x"], "argument --run-name: '../x' must be a single folder name"),
])
def test_bad_arguments_are_refused_before_anything_loads(argv, said, capsys):
    """--steps 0 and --test-mrs -1 loaded the model and ran on; --threads 0 and --lr-solo 0 were
    silently the defaults."""
    from solo.experiments.real import parse_args

    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    assert said in capsys.readouterr().err.strip().splitlines()[-1]


def test_solo_flags_change_this_run_only_and_are_checked_before_loading():
    """--solo wrote into the module's METHODS (so into every later run in the process) and a bad
    key failed only after the model had loaded, leaving an empty lane folder behind."""
    from solo.experiments.real import METHODS, parse_args

    defaults = {lane: dict(cfg) for lane, cfg in METHODS.items()}
    settings, _, _ = parse_args(["--solo", "lambda_init=0.01"])
    assert settings.methods["solo"] == {**defaults["solo"], "lambda_init": 0.01}
    with pytest.raises(SoloError, match="unknown key.*method.bogus"):
        parse_args(["--solo", "bogus=1"])
    assert METHODS == defaults


def test_a_ctrl_c_in_a_training_lane_stops_after_the_step_with_a_checkpoint(tmp_path, monkeypatch):
    """make real's lanes trained outside `deferred()`, so a Ctrl-C broke off mid-step, wrote no
    checkpoint, and the rerun trained the lane from the start."""
    import os
    import signal
    from types import SimpleNamespace

    from transformers import GPT2Config, GPT2LMHeadModel

    import solo.models
    import solo.train.loop
    from solo.experiments import real
    from solo.train import interrupt

    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=4, n_head=4))
    monkeypatch.setattr(solo.models, "load_backbone", lambda cfg: (model, None))
    monkeypatch.setattr(real, "trainer_config", lambda cfg, settings, lane: None)
    seen = {}

    def train(**arguments):  # the loop polls after each step; here the signal comes mid-step
        os.kill(os.getpid(), signal.SIGINT)
        seen["flag only"] = interrupt.requested()
        raise interrupt.stopped(3, 3)

    monkeypatch.setattr(solo.train.loop, "train", train)
    data = SimpleNamespace(train=None, dev=None)
    with interrupt.stop_on_signals(), pytest.raises(interrupt.Interrupted, match="at step 3"):
        real.run_lane("solo", SimpleNamespace(model=None), Settings(), data, tmp_path / "solo")
    assert seen == {"flag only": True}


def test_the_report_states_the_recipe_the_lanes_ran_with():
    """The report said 'length penalty 0.9' while the lanes decoded with the config's 0.8."""
    from solo.experiments.real import base_config, report_recipe

    recipe = report_recipe(base_config(Settings(), ["decode.length_penalty=0.7"]))
    assert "beam 10, length penalty 0.7, no-repeat 4-gram, <= 64 new tokens" in recipe
    assert recipe.endswith("BLEU/NIST by mteval perl (the scorer's default)")
