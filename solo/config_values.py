"""Reading one value of a config group, whatever holds it: a DictConfig, a dict or an attribute
namespace. Plain Python, so modules the GPU image imports (no OmegaConf there) can use it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def config_value(cfg: Any, key: str, default: Any = None) -> Any:
    """`cfg[key]` if present, else `default`; a DictConfig is a Mapping, a namespace uses getattr."""
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)
