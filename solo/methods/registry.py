"""`apply_method`: the method a config names, attached to a model."""

from __future__ import annotations

from typing import Any

from torch import nn

from solo.errors import SoloError
from solo.methods.base import Method, plain_config
from solo.methods.full_ft import FullFineTune
from solo.methods.lora import apply_lora
from solo.methods.solo_connection import apply_solo

_BUILDERS = {"solo": apply_solo, "lora": apply_lora, "full_ft": FullFineTune}


def apply_method(model: nn.Module, method_cfg: Any) -> Method:
    """Attach the method named by `method_cfg.name` (a DictConfig or dict) to `model`."""
    cfg = plain_config(method_cfg)
    name = cfg.get("name")
    if name not in _BUILDERS:
        raise SoloError(f"unknown method.name {name!r}; choose one of {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[name](model, cfg)
