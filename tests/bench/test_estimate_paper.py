"""bench/estimate_paper.py: the paper's runs as run_table would train them, and the arithmetic on them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import estimate_paper as ep
from solo.experiments.run_table import plan_table
from solo.experiments.tables import TABLE_CONFIGS, table_rows
from solo.train.compose import compose_train_config

SEEDS = [1, 2, 3]


@pytest.fixture(scope="module")
def composed() -> list[ep.PlannedRun]:
    """The runs composed from the configs now (about 10 s of Hydra composing)."""
    return ep.compose_runs(SEEDS)


@pytest.fixture(scope="module")
def runs() -> list[ep.PlannedRun]:
    """The committed plan (test_the_committed_plan_is_the_composed_one keeps it current)."""
    return ep.read_plan()


@pytest.mark.slow
def test_the_committed_plan_is_the_composed_one(composed):
    assert ep.read_plan() == composed, "configs changed: run `python bench/estimate_paper.py --write-plan`"


@pytest.mark.slow
def test_runs_are_the_distinct_run_dirs_of_run_tables_plans(composed, tmp_path: Path):
    # run_table's own plan for every table and seed, under an empty run root (so nothing is finished)
    planned: set[Path] = set()
    for table in TABLE_CONFIGS:
        plan = plan_table(table, SEEDS, [f"run_root={tmp_path}"])
        assert not plan.finished
        planned.update(run_dir.relative_to(tmp_path) for _, _, run_dir in plan.todo)
    ours = [Path(r.run_dir).relative_to("runs") for r in composed]
    assert len(ours) == len(set(ours))
    assert set(ours) == planned
    # and by the tables' own listing: one run per distinct non-cited experiment_id and seed
    ids = {ep_id for t in TABLE_CONFIGS for row in table_rows(t) if not row.cited
           for ep_id in [compose_train_config([f"experiment={row.experiment}"]).experiment_id]}
    assert len(composed) == len(ids) * len(SEEDS)


def test_a_shared_row_counts_once_in_the_table_of_its_experiment(runs):
    shared = [r for r in runs if r.experiment_id == "table2/solo_r128_s0.6"]
    assert len(shared) == len(SEEDS)
    assert all(r.owner == 2 and set(r.tables) == {1, 2, 6} for r in shared)
    assert not [r for r in runs if r.owner == 1]  # Table 1 re-runs nothing of its own


@pytest.mark.parametrize("experiment", ["table3/solo_r64_s0.6", "table2/lora_r8"])
def test_steps_and_evaluations_follow_the_composed_trainer_config(runs, experiment):
    trainer = compose_train_config([f"experiment={experiment}"]).trainer
    expected_steps = trainer.max_steps or trainer.epochs * math.ceil(ep.TRAIN_PAIRS / trainer.batch_size) // trainer.grad_accum
    run = next(r for r in runs if r.experiment_id == experiment)
    assert (run.batch_size, run.steps) == (trainer.batch_size, expected_steps)
    # solo.train.loop evaluates at step 0, at every multiple of eval_every and at the last step
    expected_evals = 1 + len(range(trainer.eval_every, expected_steps + 1, trainer.eval_every))
    expected_evals += expected_steps % trainer.eval_every != 0
    assert run.dev_evals == expected_evals
    assert run.dev_batch_size == trainer.eval_batch_size
    assert run.dev_batches == math.ceil(ep.DEV_PAIRS / trainer.eval_batch_size)


@pytest.mark.slow
def test_overrides_reach_every_run():
    runs = ep.compose_runs([1], ["trainer.max_steps=1234", "trainer.eval_every=500", "trainer.grad_accum=2"])
    assert {(r.steps, r.dev_evals, r.grad_accum) for r in runs} == {(1234, 1 + 2 + 1, 2)}


def _book(**values: float) -> ep.FigureBook:
    figures = ep.recorded_figures()
    figures.update({k: ep.Figure(v, "test", True) for k, v in values.items()})
    return ep.FigureBook(figures)


def test_one_run_adds_up_its_parts(runs):
    run = next(r for r in runs if r.size == "M" and r.method == "solo")
    book = _book(**{"train/M/solo/bf16": 10.0, "eager/M": 30.0, "decode/M/bf16": 21.0}, batch_exponent=1.0,
                 dev_forward_fraction=0.5, score_s=3.0, setup_s=4.0)
    t = ep.run_time(run, book, "bf16")
    scale = run.batch_size / 8  # batch_exponent 1: ms/step proportional to the batch
    assert t.train_s == pytest.approx(run.steps * 10.0 * scale / 1000)
    dev_scale = run.dev_batch_size / 8
    assert t.dev_s == pytest.approx(run.dev_evals * run.dev_batches * 15.0 * dev_scale / 1000)
    assert (t.decode_s, t.setup_s) == (pytest.approx(21.0 + 3.0), 4.0)


def test_a_pack_steps_while_any_member_trains(runs):
    table2 = [r for r in runs if r.owner == 2]  # LoRA (26,290 steps) and Solo (52,580) runs, GPT-2 S
    book = _book(**{"packed_base/S": 20.0}, packed_marginal=0.1, setup_s=4.0)
    short = min(r.steps for r in table2)
    long_runs = [r for r in table2 if r.steps > short]
    assert 0 < len(long_runs) < len(table2) and len({r.steps for r in long_runs}) == 1
    train_s = (short * 20.0 * (1 + (len(table2) - 1) * 0.1)
               + (long_runs[0].steps - short) * 20.0 * (1 + (len(long_runs) - 1) * 0.1)) / 1000
    alone = [ep.run_time(r, book, "bf16") for r in table2]
    # The dev loss is packed too: every run's evaluation costs the same (same dev set and eval
    # batch), the LoRA runs stop evaluating when they stop training.
    per_eval = {round(t.dev_s / r.dev_evals, 9) for t, r in zip(alone, table2, strict=True)}
    assert len(per_eval) == 1
    d = per_eval.pop()
    few, many = min(r.dev_evals for r in table2), long_runs[0].dev_evals
    dev_s = few * d * (1 + (len(table2) - 1) * 0.1) + (many - few) * d * (1 + (len(long_runs) - 1) * 0.1)
    expected = train_s + dev_s + sum(t.decode_s + 4.0 for t in alone)
    assert sum(ep.packed_seconds(table2, book, "bf16", pack=0)) == pytest.approx(expected)
    # one run per pack: each run trains alone through the packed step, its own length
    solo = sum(r.steps * 20.0 / 1000 for r in table2) + sum(t.dev_s + t.decode_s + 4.0 for t in alone)
    assert sum(ep.packed_seconds(table2, book, "bf16", pack=1)) == pytest.approx(solo)
    # Packed decoding: one search for the pack, each further run adding a quarter of a decode;
    # every run still scored on its own.
    cheaper = _book(**{"packed_base/S": 20.0}, packed_marginal=0.1, setup_s=4.0, decode_marginal=0.25)
    one = cheaper.value("decode/S/bf16")
    saved = (len(table2) - 1) * one * 0.75
    assert sum(ep.packed_seconds(table2, cheaper, "bf16", pack=0)) == pytest.approx(expected - saved)


def _write(path: Path, payload: object) -> None:
    path.write_text(json.dumps(payload))


def _packed_json(path: Path, device: str = "GPU X", one: float = 30.0, eleven: float = 60.0) -> None:
    """What bench/bench_packed.py writes (GPT-2 S, batch 4 per run): the graphed (fast) pack's
    rows are the ones launcher=packed runs on CUDA; the plain ones must not be taken for them."""
    def packed(kind, n, ms):
        return {"name": f"packed {kind} x{n}", "kind": "packed", "n": n, "run-steps/s": 1000 * n / ms, "ms/joint step": ms}

    _write(path / "packed.json", {"device": device, "size": "S", "batch": 4, "precision": "bf16", "rows": [
        {"name": "alone plain x1", "kind": "plain", "n": 1, "run-steps/s": 40.0, "ms/joint step": 25.0},
        {"name": "alone fast x1", "kind": "fast", "n": 1, "run-steps/s": 125.0, "ms/joint step": 8.0},
        packed("plain", 1, 3 * one), packed("fast", 1, one),
        packed("plain", 11, 2 * eleven), packed("fast", 11, eleven),
    ]})


def test_measured_jsons_replace_the_recorded_figures(tmp_path: Path):
    # the shapes bench_train_step.py, bench_decode.py and bench_packed.py write
    _write(tmp_path / "train_step.json", {"device": "GPU X", "batch": 8, "buckets": [112], "sizes": {
        "M": {"rows": [{"name": "ours fast Solo bf16 compiled", "ms/step": 5.0, "compile s": 40.0},
                       {"name": "ours fast Solo bf16", "ms/step": 12.5},
                       {"name": "ours plain Solo fp32 (eager)", "ms/step": 50.0}]}}})
    _write(tmp_path / "decode.json", {"device": "GPU X", "sizes": {  # the trainer decodes through the graph
        "S": {"rows": [{"name": "ours fast, fixed-shape step eager bf16, batch 210", "ms/MR": 9.0, "MRs": 210},
                       {"name": "ours fast, CUDA graph bf16, batch 210", "ms/MR": 2.0, "MRs": 630},
                       {"name": "ours fast, host check every step bf16, batch 210", "ms/MR": 7.0, "MRs": 210}]},
        "M": {"rows": [{"name": "ours fast beam search tf32, batch 128", "ms/MR": 39.1, "MRs": 630}]}}})
    _packed_json(tmp_path)
    _write(tmp_path / "packed_decode.json", {"device": "GPU X", "rows": [  # bench_packed_decode.py's
        {"name": "alone x1", "s": 1.0}, {"name": "packed x1", "s": 1.0},
        {"name": "alone x11", "s": 11.0}, {"name": "packed x11", "s": 4.0}]})
    found = ep.measured_figures(tmp_path)
    assert found["decode_marginal"].value == pytest.approx((4.0 / 1.0 - 1) / 10)
    assert found["train/M/solo/bf16+compile"].value == 5.0 and found["train/M/solo/bf16+compile"].measured
    assert found["compile_s/M"].value == 40.0 and found["eager/M"].value == 50.0
    assert found["compile_ratio"].value == pytest.approx(0.4)
    assert found["decode/S/bf16"].value == pytest.approx(2.0 * 630 / 1000)
    assert found["decode/M/tf32"].value == pytest.approx(39.1 * 630 / 1000)  # the rows' names before the variants
    assert found["packed_base/S"].value == 30.0
    assert found["packed_marginal"].value == pytest.approx((60.0 / 30.0 - 1) / 10)
    assert found["train/S/solo/bf16@4"].value == pytest.approx(8.0) and found["eager/S@4"].value == pytest.approx(25.0)
    book = ep.FigureBook({**ep.recorded_figures(), **found})
    recorded = ep.recorded_figures()["train/M/lora/bf16"].value
    assert book.value("train/M/lora/bf16+compile") == pytest.approx(recorded * 0.4)  # recorded x measured ratio
    assert book.at_batch("train/S/solo/bf16", 4) == pytest.approx(8.0)  # measured at the run's batch
    # GPT-2 M's packed step, unmeasured: its step alone scaled as S's packed step is to S's alone
    assert ep.packed_step_ms("M", "bf16", 1, book) == pytest.approx(12.5 * 30.0 / 8.0)


def test_the_report_reads_measured_figures_and_says_whether_the_goal_holds(tmp_path: Path, capsys):
    _packed_json(tmp_path, one=0.001, eleven=0.002)  # a packed step that costs (next to) nothing
    markdown = tmp_path / "estimate.md"
    ep.main(["--from-plan", "--measured", str(tmp_path), "--markdown", str(markdown)])
    text = markdown.read_text()
    assert text.strip() == capsys.readouterr().out.strip()
    assert "| packed_base/S | 0.001 | measured |" in text
    goal = next(line for line in text.splitlines() if line.startswith("Goal:"))
    assert "NOT met" in goal and "assumed" not in goal
    cells = [c.strip(" *") for c in text.split("| **all** |")[1].splitlines()[0].split("|")]
    train, one, packed = float(cells[3]), float(cells[7]), float(cells[9])
    assert packed < one - 0.99 * train  # the measured packed step took nearly all training time off


@pytest.mark.parametrize("name, content, needle", [
    ("train_step.json", "{not json", "train_step.json: not JSON"),
    (None, None, "no such folder"),
])
def test_bad_measured_input_is_one_line_and_exit_2(tmp_path: Path, capsys, name, content, needle):
    folder = tmp_path / "out"
    if name:
        folder.mkdir()
        (folder / name).write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        ep.main(["--from-plan", "--measured", str(folder)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_figures_measured_on_a_cpu_are_not_used(tmp_path: Path):
    # a dry run of gpu_all.sh (DEVICE=cpu): packed_marginal has no size key, so a CPU figure would pass for a GPU one
    _packed_json(tmp_path, device="CPU (x86_64, 2 threads)")
    assert ep.measured_figures(tmp_path) == {}
