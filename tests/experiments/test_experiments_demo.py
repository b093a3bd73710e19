"""The demo's config and its results table (the full demo runs as `make demo`, not here)."""

from __future__ import annotations

from pathlib import Path

from solo.experiments import demo
from solo.experiments.compose import compose_train_config


def test_demo_is_a_short_solo_smoke_run_on_shared_dev_data(shared_data: Path):
    cfg = compose_train_config(list(demo.DEMO_OVERRIDES))
    assert cfg.method.name == "solo" and cfg.model.name == "tiny" and cfg.smoke
    assert cfg.data.train_split == "valid" and Path(cfg.data.lora_dir) == shared_data / "lora-format"
    assert cfg.trainer.max_steps <= 200 and cfg.data.max_test_mrs <= 20
    assert str(cfg.run_root) == "runs/demo"


def test_demo_table_puts_fractions_on_the_paper_scale():
    scores = {"BLEU": 0.1234, "NIST": 1.5, "METEOR": 0.2, "ROUGE_L": 0.3, "CIDEr": 0.05}
    table = demo.render_demo_table(scores, Path("runs/demo/x"), steps=10, test_mrs=5)
    assert "SMOKE RUN, NOT RESULTS" in table
    assert "| BLEU | 12.34 | 67.64 |" in table and "| NIST | 1.50 | 8.64 |" in table
    assert "first 5 test MRs" in table and "runs/demo/x" in table
