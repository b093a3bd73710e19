"""Aggregation of run dirs into results tables: numbers, missing rows, provenance, no overwrite."""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

import pytest

from solo.errors import SoloError
from solo.experiments import aggregate as agg
from solo.experiments.tables import table_rows
from tests.experiments.experiment_rundirs import scores, write_run

TABLE = 6  # two rows: table6/solo_r128_s0.6_homotopy (alias of a Table 2 row) and the plain vector
HOMOTOPY_ID = "table2/solo_r128_s0.6"  # the alias resolves to the Table 2 experiment
PLAIN_ID = "table6/solo_r128_s0.6_plain_vector"


def csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_mean_and_sample_std_over_seeds_on_paper_scale(run_root: Path):
    bleus = [0.60, 0.62, 0.67]
    for seed, bleu in enumerate(bleus, start=1):
        write_run(run_root, HOMOTOPY_ID, seed, scores(bleu, nist=8.0 + seed / 10))
    results = agg.aggregate_table(TABLE, run_root, smoke=False)
    row = results[0]
    assert [r.seed for r in row.runs] == [1, 2, 3]
    percent = [100 * b for b in bleus]
    assert row.mean("BLEU") == pytest.approx(statistics.fmean(percent))
    assert row.std("BLEU") == pytest.approx(statistics.stdev(percent))
    # NIST stays raw, not x100
    assert row.mean("NIST") == pytest.approx(statistics.fmean([8.1, 8.2, 8.3]))
    paper_bleu = table_rows(TABLE)[0].metrics["BLEU"]
    line = csv_rows(agg.render_csv(TABLE, results, smoke=False))[0]
    assert float(line["BLEU_diff"]) == pytest.approx(statistics.fmean(percent) - paper_bleu, abs=1e-3)
    assert line["n_seeds"] == "3" and line["status"] == "ok"
    md = agg.render_markdown(TABLE, results, run_root, smoke=False)
    mean, std = statistics.fmean(percent), statistics.stdev(percent)
    assert f"{mean:.2f} ± {std:.2f} / {paper_bleu:g}" in md


def test_single_seed_has_no_std(run_root: Path):
    write_run(run_root, HOMOTOPY_ID, 1, scores(0.66))
    row = agg.aggregate_table(TABLE, run_root, smoke=False)[0]
    assert row.std("BLEU") is None
    assert "66.00 / " in agg.render_markdown(TABLE, [row], run_root, smoke=False)


def test_missing_and_unfinished_runs_show_as_missing(run_root: Path):
    write_run(run_root, HOMOTOPY_ID, 1, scores(0.66))
    write_run(run_root, PLAIN_ID, 1, scores(0.10), done=False)  # still running: no DONE
    results = agg.aggregate_table(TABLE, run_root, smoke=False)
    assert results[1].status == "missing" and results[1].mean("BLEU") is None
    line = csv_rows(agg.render_csv(TABLE, results, smoke=False))[1]
    assert line["status"] == "missing" and line["BLEU_ours_mean"] == "" and line["run_dirs"] == ""
    md = agg.render_markdown(TABLE, results, run_root, smoke=False)
    assert "missing / 0.0 |" in md  # the paper's printed 0.0 BLEU beside "missing", no invented number
    assert "missing — no finished run dir" in md


def test_smoke_and_real_runs_never_mix(run_root: Path):
    write_run(run_root, HOMOTOPY_ID, 1, scores(0.50), smoke=True, train_split="valid")
    assert agg.aggregate_table(TABLE, run_root, smoke=False)[0].status == "missing"
    smoke_row = agg.aggregate_table(TABLE, run_root, smoke=True)[0]
    assert smoke_row.mean("BLEU") == pytest.approx(50.0)
    md = agg.render_markdown(TABLE, [smoke_row], run_root, smoke=True)
    assert "SMOKE RUN — NOT RESULTS" in md
    # the data setup of the number is shown: dev standing in for train, and the model used
    assert "lora, valid as train, smoke (tiny)" in md


def test_a_run_trained_on_the_dev_set_is_never_a_paper_result(run_root: Path):
    """make demo's run has a paper row's experiment_id but trains SmolLM2 on the dev set; finished
    last with seed 1, it took the real seed-1 run's place in `python -m solo.experiments.aggregate`."""
    real = [write_run(run_root, HOMOTOPY_ID, seed, scores(bleu)) for seed, bleu in ((1, 0.676), (2, 0.678))]
    demo = write_run(run_root, HOMOTOPY_ID, 1, scores(0.573), train_split="valid", tag="demo",
                     finished="2026-12-03T00:00:00", settings={"model": {"name": "smollm2-135m"}})
    row = agg.aggregate_table(TABLE, run_root, smoke=False)[0]
    assert [r.run_dir for r in row.runs] == real and not row.superseded and [r.run_dir for r in row.stand_ins] == [demo]
    assert row.mean("BLEU") == pytest.approx(67.7)
    md = agg.render_markdown(TABLE, [row], run_root, smoke=False)
    assert f"trained on the valid split, not the training set (make demo's run?), so no paper result, not used: `{demo}`" in md
    assert "67.70 ± 0.14" in md and "valid as train" not in md.split("## Sources")[0]


def test_the_paper_column_is_the_number_as_printed(run_root: Path):
    write_run(run_root, HOMOTOPY_ID, 1, scores(0.66, meteor=0.46))
    results = agg.aggregate_table(TABLE, run_root, smoke=False)
    assert results[0].row.printed["METEOR"] == "45.70"  # tables.csv, as the paper prints it
    assert "46.00 / 45.70 (+0.30)" in agg.render_markdown(TABLE, results, run_root, smoke=False)
    line = csv_rows(agg.render_csv(TABLE, results, smoke=False))[0]
    assert line["METEOR_paper"] == "45.70" and float(line["METEOR_diff"]) == pytest.approx(0.3)
    # The paper's own remark on a row travels with it (Table 6, case 2: "training collapses").
    plain = csv_rows(agg.render_csv(TABLE, results, smoke=False))[1]
    assert plain["paper_note"] == results[1].row.note == "training collapses"
    assert "note on the paper's row (tables.csv): training collapses" in agg.render_markdown(TABLE, results, run_root, smoke=False)


def test_every_number_names_its_run_dirs(run_root: Path):
    dirs = [write_run(run_root, HOMOTOPY_ID, s, scores(0.6)) for s in (1, 2)]
    results = agg.aggregate_table(TABLE, run_root, smoke=False)
    line = csv_rows(agg.render_csv(TABLE, results, smoke=False))[0]
    assert line["run_dirs"].split() == [str(d) for d in dirs]
    md = agg.render_markdown(TABLE, results, run_root, smoke=False)
    assert all(f"`{d}` (seed" in md for d in dirs)


def test_same_seed_rerun_uses_latest_and_lists_superseded(run_root: Path):
    # The later run's dir sorts first by path, so only the finish time can pick it.
    old = write_run(run_root, HOMOTOPY_ID, 1, scores(0.40), finished="2026-01-01T00:00:00", tag="b")
    new = write_run(run_root, HOMOTOPY_ID, 1, scores(0.60), finished="2026-02-01T00:00:00", tag="a")
    row = agg.aggregate_table(TABLE, run_root, smoke=False)[0]
    assert [r.run_dir for r in row.runs] == [new] and row.mean("BLEU") == pytest.approx(60.0)
    assert "superseded" in agg.render_markdown(TABLE, [row], run_root, smoke=False)
    assert str(old) in agg.render_markdown(TABLE, [row], run_root, smoke=False)


def test_cited_rows_are_marked_and_never_matched(run_root: Path):
    write_run(run_root, "table3/full_ft", 1, scores(0.99))
    results = agg.aggregate_table(3, run_root, smoke=False)
    cited = [r for r in results if r.row.method == "full_ft"]
    assert len(cited) == 1 and cited[0].status == "cited" and not cited[0].runs
    md = agg.render_markdown(3, results, run_root, smoke=False)
    assert "cited / 68.2" in md and "99.00" not in md


def test_publish_keeps_earlier_results_and_skips_identical(tmp_path: Path, run_root: Path):
    out = tmp_path / "results"
    write_run(run_root, HOMOTOPY_ID, 1, scores(0.60))
    first = agg.aggregate(TABLE, run_root, out)
    assert all(m.startswith("wrote") for m in first)
    md_path = out / f"table{TABLE}.md"
    before = md_path.read_bytes()
    assert all(m.startswith("unchanged") for m in agg.aggregate(TABLE, run_root, out))
    assert not list(out.glob("*.bak"))
    write_run(run_root, HOMOTOPY_ID, 2, scores(0.64))
    messages = agg.aggregate(TABLE, run_root, out)
    baks = sorted(out.glob(f"table{TABLE}.md.*.bak"))
    assert len(baks) == 1 and baks[0].read_bytes() == before
    assert md_path.read_bytes() != before and "earlier version kept" in " ".join(messages)
    write_run(run_root, HOMOTOPY_ID, 3, scores(0.66))
    agg.aggregate(TABLE, run_root, out)
    assert len(list(out.glob(f"table{TABLE}.md.*.bak"))) == 2  # a third run never clobbers a backup


def test_failure_leaves_results_untouched(tmp_path: Path, run_root: Path):
    out = tmp_path / "results"
    write_run(run_root, HOMOTOPY_ID, 1, scores(0.60))
    agg.aggregate(TABLE, run_root, out)
    snapshot = {p.name: p.read_bytes() for p in out.iterdir()}
    broken = write_run(run_root, PLAIN_ID, 1, scores(0.1))
    (broken / "config.yaml").unlink()  # a damaged finished run dir
    with pytest.raises(SoloError, match="config.yaml missing"):
        agg.aggregate(TABLE, run_root, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == snapshot


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("scores.json", "{bad", r"scores\.json:1: damaged \(Expecting property name"),
        ("params.json", "[1, 2]", r"params\.json: damaged \(not a JSON object\)"),
        ("meta.json", "\udcff", r"meta\.json: damaged \(not UTF-8\)"),
        ("config.yaml", "a: [1", r"config\.yaml: unreadable \(while parsing a flow sequence\)"),
        ("config.yaml", "::\n", r"config\.yaml is not a run's config \(no model, method, data, trainer, decode\)"),
    ],
)
def test_a_damaged_record_in_a_finished_run_dir_is_one_line_naming_it(
    name, content, line, tmp_path: Path, run_root: Path
):
    out = tmp_path / "results"
    write_run(run_root, HOMOTOPY_ID, 1, scores(0.60))
    broken = write_run(run_root, PLAIN_ID, 1, scores(0.1))
    (broken / name).write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(SoloError, match=line) as err:
        agg.aggregate(TABLE, run_root, out)
    assert "move it out of the run root" in str(err.value) and "\n" not in str(err.value)
    assert not out.exists()


def test_no_finished_run_writes_nothing_and_keeps_the_earlier_table(tmp_path: Path, run_root: Path):
    """A launch that failed whole (no weights offline, a refused sbatch) must not leave an
    all-missing table as the newest results, nor new untracked files in results/."""
    out = tmp_path / "results"
    (message,) = agg.aggregate(TABLE, run_root, out)
    assert message.startswith(f"table {TABLE}: no finished run under ") and "nothing written" in message
    assert not out.exists()
    write_run(run_root, HOMOTOPY_ID, 1, scores(0.60))
    agg.aggregate(TABLE, run_root, out)
    snapshot = {p.name: p.read_bytes() for p in out.iterdir()}
    assert agg.aggregate(TABLE, tmp_path / "empty-runs", out)[0].startswith(f"table {TABLE}: no finished run")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == snapshot


@pytest.mark.slow
def test_plot_written_for_tables_2_and_3_only(tmp_path: Path, run_root: Path):
    write_run(run_root, "table2/solo_r8_s0", 1, scores(0.6), trainable=20000)
    def render(table: int) -> dict[Path, bytes]:
        return agg.render_outputs(table, agg.aggregate_table(table, run_root, smoke=False), run_root, tmp_path, smoke=False)

    outputs = render(2)
    png = outputs[tmp_path / "table2.png"]
    assert png.startswith(b"\x89PNG")
    assert render(2)[tmp_path / "table2.png"] == png
    write_run(run_root, HOMOTOPY_ID, 1, scores(0.6))
    others = render(TABLE)
    assert others and not any(p.suffix == ".png" for p in others)


def test_cli_rejects_unknown_table(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        agg.main(["9", "--runs", str(tmp_path), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "table 9 does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--runs", "--out"])
def test_cli_refuses_a_runs_folder_that_is_not_there_and_an_out_that_is_a_file(tmp_path: Path, capsys, flag):
    """--runs runz (a typo) used to report 'no finished run' and exit 0, as if nothing had run yet."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    bad = {"--runs": tmp_path / "runz", "--out": a_file}[flag]
    argv = ["2", "--runs", str(tmp_path), "--out", str(tmp_path / "o")]
    argv[argv.index(flag) + 1] = str(bad)
    with pytest.raises(SystemExit) as exit_info:
        agg.main(argv)
    assert exit_info.value.code == 2
    assert f"{flag} {bad}" in capsys.readouterr().err
    assert a_file.read_text() == "mine\n" and not (tmp_path / "o").exists()


def test_the_cli_warns_when_a_rows_runs_are_of_different_configs(run_root: Path):
    """Matching by experiment_id alone (the standalone CLI), a sweep over a row's experiment mixed
    into its mean or superseded its run without a word."""
    write_run(run_root, HOMOTOPY_ID, 1, scores(0.60), finished="2026-01-01T00:00:00")
    write_run(run_root, HOMOTOPY_ID, 2, scores(0.10), finished="2026-01-02T00:00:00", settings={"trainer": {"lr": 1e-3}})
    row = agg.aggregate_table(TABLE, run_root, smoke=False)[0]
    assert row.mixed_configs == 2
    md = agg.render_markdown(TABLE, [row], run_root, smoke=False)
    assert "**warning: these runs are of 2 different configs**" in md and f"`make table{TABLE} ARGS=--no-launch`" in md
    # ... and says so where it is run, not only inside the table
    printed = agg.aggregate(TABLE, run_root, run_root.parent / "out")
    assert [m for m in printed if m.startswith("warning:")] == [
        f"warning: table {TABLE}, row `{row.row.experiment}`: its runs are of 2 different configs (a sweep over "
        f"this experiment?) and the mean mixes them; `make table{TABLE} ARGS=--no-launch` rebuilds the table "
        "from each row's own config"]
    older = write_run(run_root, HOMOTOPY_ID, 1, scores(0.50), finished="2025-12-01T00:00:00",
                      tag="x", settings={"trainer": {"lr": 5e-4}})
    md = agg.render_markdown(TABLE, agg.aggregate_table(TABLE, run_root, smoke=False)[:1], run_root, smoke=False)
    assert f"superseded (same seed, finished earlier; another config: a rerun after a change, or a sweep's run): `{older}`" in md


def test_one_config_over_seeds_is_no_warning(run_root: Path):
    write_run(run_root, HOMOTOPY_ID, 1, scores(0.60))
    write_run(run_root, HOMOTOPY_ID, 2, scores(0.62))
    row = agg.aggregate_table(TABLE, run_root, smoke=False)[0]
    assert row.mixed_configs == 1 and "warning" not in agg.render_markdown(TABLE, [row], run_root, smoke=False)
    assert not any(m.startswith("warning:") for m in agg.aggregate(TABLE, run_root, run_root.parent / "out"))
