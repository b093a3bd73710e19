"""make sweep: a sweep's run dirs as one table, grouped by config with the seeds pooled."""

from __future__ import annotations

from pathlib import Path

import pytest

from solo.experiments import sweep
from tests.experiments.test_experiments_run_table import _finish

EXPERIMENT = "experiment=table2/solo_r128_s0.6"


def _sweep(tmp_path: Path) -> Path:
    base = [EXPERIMENT, "profile=tiny", f"run_root={tmp_path / 'runs'}"]
    _finish([*base, "method.rank=8", "seed=1"], bleu=0.50)
    _finish([*base, "method.rank=8", "seed=2"], bleu=0.70)
    _finish([*base, "method.rank=32", "seed=1"], bleu=0.90)
    unfinished = _finish([*base, "method.rank=64", "seed=1"], bleu=0.99)
    (unfinished / "DONE").unlink()
    return tmp_path / "runs" / "table2" / "solo_r128_s0.6"


def test_one_row_per_config_with_the_seeds_pooled_and_only_the_varying_settings(tmp_path: Path):
    root = _sweep(tmp_path)
    points = sweep.sweep_points(sweep.find_runs(root))
    text = sweep.render_markdown(root, points)
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0] == "| method.rank | seeds | trainable | BLEU | NIST | METEOR | ROUGE_L | CIDEr |"
    assert table[1].startswith("| 32 | 1 | 99 | 90.00 | 1.000 |")  # best BLEU first
    assert table[2].startswith("| 8 | 1,2 | 99 | 60.00 ± 14.14 | 1.000 ± 0.000 |")
    assert len(table) == 3  # the unfinished rank-64 run is not there
    assert "SMOKE RUNS" in text and "3 finished runs, 2 configs" in text


def test_the_cli_refuses_what_it_cannot_summarise_and_keeps_an_earlier_table(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as stop:
        sweep.main([str(tmp_path / "nope")])
    assert stop.value.code == 2 and "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as stop:
        sweep.main([str(tmp_path / "empty")])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: no finished, scored run under {tmp_path / 'empty'}; nothing to summarise"]
    root = _sweep(tmp_path)
    out = tmp_path / "results" / "sweep.md"
    out.parent.mkdir()
    out.write_text("an earlier table\n")
    sweep.main([str(root), "--out", str(out)])
    assert "| 8 | 1,2 |" in out.read_text() and "| 8 | 1,2 |" in capsys.readouterr().out
    assert [p.read_text() for p in out.parent.glob("sweep.md.*.bak")] == ["an earlier table\n"]
