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
    with pytest.raises(SoloError, match=r"^logger\.grup is not a logger setting; known: entity, group, mode"):
        logger_settings({"grup": "x"})
    with pytest.raises(SoloError, match=r"^logger\.mode='bogus' is not allowed; allowed: one of online"):
        logger_settings({"mode": "bogus"})



@pytest.fixture()
def no_wandb_credentials(tmp_path, monkeypatch):
    """A machine where nobody ran `wandb login`: no key in the environment, netrc or settings."""
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / "wandb"))


def test_online_without_credentials_is_one_line_before_the_run_dir(
    no_wandb_credentials, shared_data, tmp_path, capsys, fake_scorer
):
    """wandb.init raised UsageError through Hydra after config.yaml, recipe.json and meta.json
    were written; now the run stops before its run directory, saying how to log in."""
    from solo.errors import exit_on_solo_error
    from solo.train.pipeline import run_experiment
    from tests.train.test_train_pipeline import compose_cfg, tiny_overrides

    cfg = compose_cfg(tiny_overrides(shared_data, tmp_path / "runs", "logger.mode=online"))
    with pytest.raises(SystemExit) as exited:
        exit_on_solo_error(run_experiment)(cfg)
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: logger.mode=online but wandb has no API key here: run `wandb login` or set "
        "WANDB_API_KEY, or use logger.mode=offline and `wandb sync <run dir>/wandb/offline-run-*` later")
    assert not (tmp_path / "runs").exists()


def test_online_with_a_key_in_the_environment_passes_the_check(no_wandb_credentials, monkeypatch):
    import wandb

    from solo.train.tracking import check_login

    calls = []
    login = wandb.login
    monkeypatch.setattr(wandb, "login", lambda **kwargs: calls.append(kwargs) or login(**kwargs))
    for mode in ("offline", "disabled"):  # no credentials, and none needed
        check_login(OmegaConf.create({"mode": mode}))
    assert calls == []
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    check_login(OmegaConf.create({"mode": "online"}))  # no network: the key is not verified
    assert calls == [{"verify": False}]


def test_a_wandb_init_that_fails_is_one_line(tmp_path, monkeypatch):
    import wandb

    def init(**kwargs):
        raise wandb.errors.CommError("Network error (ConnectionError), entering retry loop.\nmore")

    monkeypatch.setattr(wandb, "init", init)
    with pytest.raises(SoloError) as err:
        start_tracking(OmegaConf.create({"mode": "online"}), run_dir=tmp_path, run_id="x", name="x",
                       config={})
    assert str(err.value).startswith(
        "wandb could not start the run (Network error (ConnectionError), entering retry loop.): check "
        "logger.project / logger.entity and the network, or use logger.mode=offline")


@pytest.mark.parametrize("chosen", [None, "my-sweep"])
def test_a_run_joins_its_seed_group_unless_logger_group_names_one(tmp_path, monkeypatch, chosen):
    """wandb had no group: a seed sweep's runs charted as unrelated lines, no mean ± std."""
    import wandb

    seen = {}

    class Run(RecordingRun):
        summary: dict = {}

    def init(**kwargs):
        seen.update(kwargs)
        return Run()

    monkeypatch.setattr(wandb, "init", init)
    start_tracking(OmegaConf.create({"mode": "offline", "group": chosen}), run_dir=tmp_path, run_id="x",
                   name="x", config={}, group="table2/solo_r8_s0/lora-0123456789", job_type="solo")
    assert seen["group"] == (chosen or "table2/solo_r8_s0/lora-0123456789") and seen["job_type"] == "solo"
