"""The `lockstep` launcher: composes every job's config, runs them with run_lockstep.

It does not call the task function (`solo.train.__main__._task`, one experiment to its end):
the jobs must advance together, so it drives `solo.train.pipeline.experiment_steps` directly
through solo.train.lockstep. Torch is imported only when a sweep launches, because Hydra imports
every plugin module at each start of `python -m solo.train`.
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict, read_write

from solo.errors import SoloError, exit_on_solo_error

log = logging.getLogger(__name__)


class LockstepLauncher(Launcher):
    def __init__(self, runs_at_once: int | None = None, pack: bool = False) -> None:
        if runs_at_once is not None and (
            isinstance(runs_at_once, bool) or not isinstance(runs_at_once, int) or runs_at_once < 1
        ):
            raise SoloError(
                f"hydra.launcher.runs_at_once={runs_at_once!r} must be a positive integer or null"
            )
        if not isinstance(pack, bool):
            raise SoloError(f"hydra.launcher.pack={pack!r} must be true or false")
        self.runs_at_once = runs_at_once
        self.pack = pack
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        how = "packed over shared backbones" if self.pack else "in lockstep"
        log.info(f"Launching {len(job_overrides)} jobs {how} in this process")
        jobs = [
            self._compose(initial_job_idx + offset, overrides)
            for offset, overrides in enumerate(job_overrides)
        ]
        # An error for the whole launch (run_lockstep: no Java for the scorer, before any run
        # starts) is one line, as from the task function; Hydra would show a traceback.
        returns, failures, signal_exit = exit_on_solo_error(self._run_groups)(jobs)
        if failures:
            # Hydra would re-raise only the first failure, with a traceback; solo's CLI prints
            # one `error:` line per problem and exits with status 2 (solo.errors), or as the
            # signal that stopped the sweep asks (130/143), like a single run.
            kind = "packed" if self.pack else "lockstep"
            print(f"error: {len(failures)} of {len(jobs)} {kind} runs failed:", file=sys.stderr)
            for line in failures:
                print(f"  {line}", file=sys.stderr)
            if len(returns) < len(jobs):
                print(f"  {len(jobs) - len(returns)} later run(s) not started (the sweep was "
                      "interrupted); rerun the same command to run them", file=sys.stderr)
            raise SystemExit(signal_exit or 2)
        return returns

    def _run_groups(self, jobs: list[DictConfig]) -> tuple[list[JobReturn], list[str], int | None]:
        """Every group's returns and failure lines, and the exit status of the signal that stopped
        the sweep (None if none did): a Ctrl-C stops the runs of its group and starts no later one."""
        group = self.runs_at_once or max(len(jobs), 1)
        returns: list[JobReturn] = []
        failures: list[str] = []
        for start in range(0, len(jobs), group):
            group_returns, group_failures, signal_exit = self._run_group(jobs[start : start + group])
            returns += group_returns
            failures += group_failures
            if signal_exit is not None:
                return returns, failures, signal_exit
        return returns, failures, None

    def _compose(self, idx: int, overrides: Sequence[str]) -> DictConfig:
        assert self.config is not None and self.hydra_context is not None
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        sweep_config = self.hydra_context.config_loader.load_sweep_config(
            self.config, list(overrides)
        )
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = idx
            sweep_config.hydra.job.num = idx
        return sweep_config

    def _run_group(self, configs: list[DictConfig]) -> tuple[list[JobReturn], list[str], int | None]:
        """The jobs' returns, one line per failed job (its run dir and why), and the exit status
        of the signal that stopped them (None if none did)."""
        from solo.train.interrupt import Interrupted
        from solo.train.lockstep import run_lockstep

        assert self.hydra_context is not None
        callbacks = self.hydra_context.callbacks
        configure_log(configs[0].hydra.job_logging, configs[0].hydra.verbose)
        returns, task_cfgs, overrides = [], [], []
        for config in configs:
            ret = JobReturn()
            ret.overrides = list(config.hydra.overrides.task)
            ret.hydra_cfg = copy.deepcopy(config)
            ret.working_dir = str(Path.cwd())
            ret.task_name = str(config.hydra.job.name)
            ret.cfg = task_cfg = copy.deepcopy(config)
            with read_write(task_cfg), open_dict(task_cfg):
                del task_cfg["hydra"]  # what Hydra's run_job hands a task function
            callbacks.on_job_start(config=config, task_function=self.task_function)
            returns.append(ret)
            task_cfgs.append(task_cfg)
            overrides.append(ret.overrides)
        results = run_lockstep(task_cfgs, overrides, pack=self.pack)
        failures = []
        signal_exit = None
        for config, ret, result in zip(configs, returns, results, strict=True):
            if result.error is None:
                ret.status, ret.return_value = JobStatus.COMPLETED, result.run_dir
            else:
                ret.status = JobStatus.FAILED
                ret.return_value = result.exception or SoloError(result.error)
                failures.append(f"{result.label}: {result.error}")
                if isinstance(result.exception, Interrupted) and signal_exit is None:
                    signal_exit = result.exception.exit_code
            callbacks.on_job_end(config=config, job_return=ret)
        return returns, failures, signal_exit
