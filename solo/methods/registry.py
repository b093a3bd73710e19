"""`apply_method`: the method a config names, attached to a model; `check_method_config`: its
settings checked without a model."""

from __future__ import annotations

from typing import Any

from torch import nn

from solo.errors import SoloError
from solo.methods.base import Method, plain_config
from solo.methods.full_ft import FullFineTune, FullFineTuneConfig
from solo.methods.lora import LoRAConfig, apply_lora
from solo.methods.solo_connection import SoloConfig, apply_solo

_BUILDERS = {"solo": apply_solo, "lora": apply_lora, "full_ft": FullFineTune}
# Each method's settings checked without a model (what needs the model is checked on attach).
_CONFIGS = {"solo": SoloConfig, "lora": LoRAConfig, "full_ft": FullFineTuneConfig}


def _named(method_cfg: Any) -> tuple[str, dict[str, Any]]:
    cfg = plain_config(method_cfg)
    name = cfg.get("name")
    if name not in _BUILDERS:
        raise SoloError(f"unknown method.name {name!r}; choose one of {', '.join(sorted(_BUILDERS))}")
    return name, cfg


def check_method_config(method_cfg: Any) -> None:
    """Refuse a bad `method` group (unknown name, key or value) before any model is built."""
    name, cfg = _named(method_cfg)
    _CONFIGS[name].from_dict(cfg)


def apply_method(model: nn.Module, method_cfg: Any) -> Method:
    """Attach the method named by `method_cfg.name` (a DictConfig or dict) to `model`."""
    name, cfg = _named(method_cfg)
    return _BUILDERS[name](model, cfg)
