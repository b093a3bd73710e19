"""`python -m solo.train [experiment=...] [key=value ...]`: train -> decode -> score one experiment.

`-m` (multirun) sweeps work too: every job lands in its own run directory by config hash.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

import solo.config  # noqa: F401  (registers the ${shared:...} resolver before Hydra composes)
from solo.errors import exit_on_solo_error
from solo.paths import REPO_ROOT
from solo.train.pipeline import run_experiment


@exit_on_solo_error
def _task(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    run_experiment(cfg, overrides=list(HydraConfig.get().overrides.task))


main = hydra.main(config_path=str(REPO_ROOT / "configs"), config_name="train", version_base="1.3")(
    _task
)

# Flags that make Hydra compose another config than configs/train.yaml: then Hydra checks alone.
_OTHER_CONFIG = ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd")


@exit_on_solo_error
def check_overrides(argv: list[str]) -> None:
    """Compose and check the config the command line asks for (each value of a sweep) before
    Hydra does, so a typo'd key or option, or a value out of range, is one line naming it and
    the fix, exit 2, before any job has run."""
    from solo.errors import SoloError
    from solo.train.compose import compose_train_config, sweep_jobs
    from solo.train.pipeline import check_config

    if any(arg.split("=", 1)[0] in _OTHER_CONFIG for arg in argv):
        return
    overrides = [arg for arg in argv if arg.startswith("~") or ("=" in arg and not arg.startswith("-"))]
    jobs = sweep_jobs(overrides) or []
    for job in jobs:
        try:
            check_config(compose_train_config(job))
        except SoloError as err:
            raise SoloError(f"{err} in the sweep's job {' '.join(job)}" if len(jobs) > 1
                            else str(err)) from None


def cli(argv: list[str]) -> None:
    """What `python -m solo.train` runs (Hydra reads the command line itself)."""
    try:
        check_overrides(argv)
        main()
    except KeyboardInterrupt:
        # A run stops itself on Ctrl-C (checkpoint, one line: solo.train.interrupt); what gets
        # here is the checking of a sweep's jobs or a launcher's own wait for its workers
        # (launcher=joblib), which Hydra would show as a traceback.
        print("interrupted; rerun the same command to resume (finished runs are skipped, the "
              "others go on from their last checkpoint)", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    cli(sys.argv[1:])
