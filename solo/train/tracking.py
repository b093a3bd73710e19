"""Experiment tracking with wandb (online | offline | disabled); its files live in the run dir."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from solo.errors import SoloError
from solo.schema import Choice, allowed, from_mapping

MODES = ("online", "offline", "disabled")


@dataclass(frozen=True)
class LoggerSettings:
    """The `logger` group (configs/logger/wandb.yaml). Only the mode is restricted: wandb itself
    judges project, entity and tags, and a number is a valid project name."""

    project: Any = "solo"
    entity: Any = None
    mode: str = field(default="offline", metadata=allowed(Choice(MODES)))
    tags: Any = ()
    # null: the runs that differ in the seed only (rundir.seed_group), so wandb charts a seed
    # sweep as one line with its spread; a name groups whatever runs you give it.
    group: Any = None


def logger_settings(logger_cfg: Mapping[str, Any] | None) -> LoggerSettings:
    """The `logger` group checked: SoloError naming logger.<key> for an unknown key or a bad mode."""
    return from_mapping(LoggerSettings, logger_cfg, "logger")


OFFLINE_INSTEAD = "or use logger.mode=offline and `wandb sync <run dir>/wandb/offline-run-*` later"


def check_login(logger_cfg: Mapping[str, Any] | None) -> None:
    """logger.mode=online needs wandb credentials. Where none are stored and there is no terminal
    to ask for them (a sweep's job, a redirected run), wandb.init fails with a traceback after the
    run directory exists; this fails first, with one line. Checks nothing over the network."""
    if logger_settings(logger_cfg).mode != "online":
        return
    import wandb

    try:
        wandb.login(verify=False)
    except wandb.errors.Error as err:
        why = "has no API key here" if isinstance(err, wandb.errors.UsageError) else f"cannot log in ({err})"
        raise SoloError(f"logger.mode=online but wandb {why}: run `wandb login` or set WANDB_API_KEY, "
                        f"{OFFLINE_INSTEAD}") from None


class Tracker:
    """No-op tracker (logger.mode=disabled); `WandbTracker` forwards to a wandb run."""

    def log(self, metrics: dict[str, Any], step: int) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


STEP_KEY = "trainer/step"


class WandbTracker(Tracker):
    """Logs against the trainer's step as a metric, not wandb's own step counter.

    wandb ignores a log whose step is not above the last one it recorded, and a resumed run
    replays the steps between its checkpoint and the crash: with `step=` those replayed values
    would be dropped. As a metric, every log is kept and charts use it as their x-axis.
    """

    def __init__(self, run: Any) -> None:
        self.run = run
        run.define_metric(STEP_KEY)
        run.define_metric("*", step_metric=STEP_KEY)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.run.log({**metrics, STEP_KEY: step})

    def summary(self, values: dict[str, Any]) -> None:
        self.run.summary.update(values)

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


def start_tracking(
    logger_cfg: DictConfig,
    *,
    run_dir: Path,
    run_id: str,
    name: str,
    config: dict,
    group: str | None = None,
    job_type: str | None = None,
    tags: list[str] | None = None,
) -> Tracker:
    """Start (or, for a resumed run dir, continue) the wandb run `run_id` writing under `run_dir/wandb`."""
    settings = logger_settings(logger_cfg)
    if settings.mode == "disabled":
        return Tracker()
    import wandb  # imported here: a disabled run should not pay for it

    try:
        run = wandb.init(
            project=str(settings.project),
            entity=settings.entity,
            mode=settings.mode,
            dir=str(run_dir),
            id=run_id,
            name=name,
            group=str(settings.group) if settings.group is not None else group,
            job_type=job_type,
            resume="allow",
            config=config,
            tags=[*list(settings.tags or []), *(tags or [])],
            # console="off": wandb must not wrap stdout/stderr (the tqdm bar, our one-line errors).
            settings=wandb.Settings(console="off", silent=True),
        )
    except wandb.errors.Error as err:  # e.g. the server unreachable, a project the key cannot write
        said = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise SoloError(f"wandb could not start the run ({said}): check logger.project / "
                        f"logger.entity and the network, {OFFLINE_INSTEAD}; rerun to resume") from None
    return WandbTracker(run)
