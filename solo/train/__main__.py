"""`python -m solo.train [experiment=...] [key=value ...]`: train -> decode -> score one experiment.

`-m` (multirun) sweeps work too: every job lands in its own run directory by config hash.
"""

from __future__ import annotations

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


if __name__ == "__main__":
    main()
