"""The config node `hydra/launcher=lockstep`, which configs/launcher/lockstep.yaml selects."""

from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore


@dataclass
class LockstepLauncherConf:
    _target_: str = "hydra_plugins.solo_lockstep_launcher.lockstep_launcher.LockstepLauncher"
    # Jobs trained together; a longer sweep runs in consecutive groups of this many (null = all),
    # e.g. to fit the runs in the GPU's memory.
    runs_at_once: Optional[int] = None  # noqa: UP045 - Hydra's structured configs need Optional
    # Runs that share a backbone train packed: one backbone pass per step for all of them
    # (solo/train/packed.py); configs/launcher/packed.yaml turns it on.
    pack: bool = False


ConfigStore.instance().store(
    group="hydra/launcher", name="lockstep", node=LockstepLauncherConf, provider="solo"
)
