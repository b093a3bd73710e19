"""Adapter files: `adapter.safetensors` (trainable tensors only) + `adapter_config.json`.

The JSON holds the method's full config (seeds included, so masks and frozen random weights are
rebuilt rather than stored) and a signature of the backbone it was trained on, so loading onto a
backbone of another shape fails with a message instead of a shape error deep in torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from solo.atomic import replacing, write_json_atomic
from solo.errors import SoloError
from solo.methods.base import Method
from solo.methods.registry import apply_method

WEIGHTS_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter_config.json"
FORMAT = "solo-adapter/1"


def backbone_signature(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    return {
        "model_type": getattr(config, "model_type", type(model).__name__),
        "num_hidden_layers": getattr(config, "num_hidden_layers", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "vocab_size": getattr(config, "vocab_size", None),
    }


def _describe(sig: dict[str, Any]) -> str:
    return f"{sig['model_type']} with {sig['num_hidden_layers']} blocks, d={sig['hidden_size']}, vocab {sig['vocab_size']}"


def save_adapter(method: Method, directory: str | Path, *, overwrite: bool = False) -> Path:
    """Write the method's adapter into `directory` (created); refuses to replace one unless asked."""
    directory = Path(directory)
    if not overwrite and (directory / WEIGHTS_FILE).exists():
        raise SoloError(f"{directory / WEIGHTS_FILE} already exists; choose a new directory (earlier results are never overwritten)")
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in method.adapter_state_dict().items()}
    meta = {
        "format": FORMAT,
        "method": method.settings.to_dict(),
        "backbone": backbone_signature(method.model),
        "trainable": method.num_trainable(),
    }
    # Each file is written whole or not at all, so a crash never leaves a half-written adapter.
    with replacing(directory / WEIGHTS_FILE) as staging:
        save_file(tensors, str(staging), metadata={"format": FORMAT})
    write_json_atomic(directory / CONFIG_FILE, meta)
    return directory


def read_adapter_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise SoloError(f"{path} not found; point to a directory written by save_adapter")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SoloError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "method" not in meta:
        raise SoloError(f"{path} is not a {FORMAT} adapter config")
    return meta


def load_adapter(model: nn.Module, directory: str | Path) -> Method:
    """Attach the saved method to `model` (a fresh backbone) and load its trained tensors."""
    directory = Path(directory)
    meta = read_adapter_config(directory)
    expected, actual = meta.get("backbone", {}), backbone_signature(model)
    if expected != actual:
        raise SoloError(
            f"adapter in {directory} was trained on {_describe(expected)} but the backbone is "
            f"{_describe(actual)}; load it onto the same model (model.* config) it was trained with"
        )
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise SoloError(f"{weights_path} not found; the adapter directory is incomplete")
    method = apply_method(model, meta["method"])
    tensors = load_file(str(weights_path))
    targets = dict(model.named_parameters())
    wanted = method.adapter_state_dict()
    if set(tensors) != set(wanted):
        missing, extra = sorted(set(wanted) - set(tensors)), sorted(set(tensors) - set(wanted))
        method.detach()
        raise SoloError(f"{weights_path} does not match the method: missing {missing[:3]}, unexpected {extra[:3]}")
    for name, tensor in tensors.items():
        if tensor.shape != targets[name].shape:
            method.detach()
            raise SoloError(
                f"{weights_path}: {name} has shape {tuple(tensor.shape)}, the backbone expects "
                f"{tuple(targets[name].shape)}; load it onto the model it was trained with"
            )
    with torch.no_grad():
        for name, tensor in tensors.items():
            targets[name].copy_(tensor)
    method.after_optimizer_step()  # re-assert masks and λ bounds whatever the file holds
    return method
