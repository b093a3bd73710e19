"""Compose the training config the way `python -m solo.train` would, without running it."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import solo.config  # noqa: F401  (registers ${shared:...} before anything resolves)
from solo.errors import SoloError
from solo.paths import REPO_ROOT

CONFIG_DIR = REPO_ROOT / "configs"


def compose_train_config(overrides: list[str]) -> DictConfig:
    """configs/train.yaml with Hydra command-line style overrides applied."""
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="solo"):
            return compose(config_name="train", overrides=list(overrides))
    except HydraException as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SoloError(f"config overrides {' '.join(overrides)!r}: {first_line}") from None
