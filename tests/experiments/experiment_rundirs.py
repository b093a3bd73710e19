"""Synthetic run dirs laid out per the run-dir contract of docs/DESIGN.md, for aggregation tests."""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def write_run(
    root: Path, experiment_id: str, seed: int, scores: dict[str, float] | None, *,
    trainable: int = 1234, smoke: bool = False, done: bool = True, train_split: str = "train",
    finished: str = "2026-01-01T00:00:00", tag: str = "", settings: dict | None = None,
) -> Path:
    """A run dir as solo.train leaves it; `scores` are fractions like the official scorer's."""
    run_dir = root / experiment_id / f"lora-{seed}{tag}{'s' if smoke else ''}"
    run_dir.mkdir(parents=True)
    config = {
        "experiment_id": experiment_id, "seed": seed, "smoke": smoke, "name": experiment_id,
        "model": {"name": "tiny" if smoke else "gpt2"},
        "data": {"setup": "lora", "train_split": train_split},
        "method": {"name": "solo"}, "trainer": {}, "decode": {},
        **(settings or {}),  # e.g. {"trainer": {"lr": 1e-3}}: a sweep's other config
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "params.json").write_text(json.dumps({"trainable": trainable, "total": 10 * trainable}))
    (run_dir / "meta.json").write_text(json.dumps({"finished": finished, "seed": seed}))
    if scores is not None:
        (run_dir / "scores.json").write_text(json.dumps(scores))
    if done:
        (run_dir / "DONE").write_text("")
    return run_dir


def scores(bleu: float, nist: float = 8.0, meteor: float = 0.45, rouge: float = 0.68, cider: float = 2.2) -> dict:
    return {"BLEU": bleu, "NIST": nist, "METEOR": meteor, "ROUGE_L": rouge, "CIDEr": cider}
