"""Tracking: wandb charts use the trainer's step as a metric, so a resumed run's replayed steps are kept."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from solo.errors import SoloError
from solo.train.tracking import STEP_KEY, Tracker, WandbTracker, logger_settings, start_tracking


class RecordingRun:
    def __init__(self) -> None:
        self.logged: list[tuple[dict, dict]] = []
        self.metrics: list[tuple[str, dict]] = []

    def define_metric(self, name: str, **kwargs) -> None:
        self.metrics.append((name, kwargs))

    def log(self, data: dict, **kwargs) -> None:
        self.logged.append((data, kwargs))


def test_steps_are_logged_as_a_metric_and_replayed_steps_are_not_dropped():
    run = RecordingRun()
    tracker = WandbTracker(run)
    assert ("*", {"step_metric": STEP_KEY}) in run.metrics
    for step in (1, 2, 3, 2, 3, 4):  # a crash after step 3, resumed from a checkpoint at step 1
        tracker.log({"train/loss": float(step)}, step=step)
    # No `step=`: wandb would ignore every log whose step is not above the last one it saw.
    assert all(kwargs == {} for _, kwargs in run.logged)
    assert [data[STEP_KEY] for data, _ in run.logged] == [1, 2, 3, 2, 3, 4]


def test_disabled_and_bad_modes(tmp_path):
    cfg = OmegaConf.create({"mode": "disabled"})
    assert type(start_tracking(cfg, run_dir=tmp_path, run_id="x", name="x", config={})) is Tracker
    with pytest.raises(SoloError, match="logger.mode='cloud'"):
        start_tracking(OmegaConf.create({"mode": "cloud"}), run_dir=tmp_path, run_id="x", name="x",
                       config={})


def test_logger_settings_refuse_unknown_keys_and_bad_modes():
    assert logger_settings(OmegaConf.create({"mode": "disabled", "project": 7})).mode == "disabled"
    assert logger_settings(None).mode == "offline"
    with pytest.raises(SoloError, match=r"^logger\.group is not a logger setting; known: entity, mode"):
        logger_settings({"group": "x"})
    with pytest.raises(SoloError, match=r"^logger\.mode='bogus' is not allowed; allowed: one of online"):
        logger_settings({"mode": "bogus"})

