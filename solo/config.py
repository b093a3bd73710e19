"""OmegaConf resolvers the config tree uses; import before composing a config."""

from __future__ import annotations

from omegaconf import OmegaConf

from solo.paths import shared_data_dir


def _shared(relative: str = "") -> str:
    return str(shared_data_dir() / relative) if relative else str(shared_data_dir())


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("shared"):
        OmegaConf.register_new_resolver("shared", _shared)


register_resolvers()
