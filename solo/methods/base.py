"""The interface every fine-tuning method implements, and helpers they share."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from solo.errors import SoloError

if TYPE_CHECKING:
    from solo.methods.packing import PackedTerm


class Method:
    """A fine-tuning method attached to one backbone.

    `settings` is the method's frozen config dataclass, holding everything needed to rebuild the
    method on a fresh backbone (random state included, via seeds); `settings.to_dict()` is its
    JSON-able form (what the adapter file records); `adapter_state_dict` holds the trained values.
    """

    name: str = ""

    def __init__(self, model: nn.Module, settings: Any) -> None:
        self.model = model
        self.settings = settings

    def trainable_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def __repr__(self) -> str:
        parts = [f"{key}={value!r}" for key, value in self.settings.to_dict().items() if key != "name"]
        parts += [f"{key}={value}" for key, value in self.summary().items()]
        return f"{type(self).__name__}({', '.join(parts + [f'trainable={self.num_trainable():,}'])})"

    def summary(self) -> dict[str, str]:
        """What the method attached to, for its repr (e.g. which blocks); nothing by default."""
        return {}

    def num_trainable(self) -> int:
        """Number of trainable scalars (entries a mask keeps at zero are not counted)."""
        return sum(p.numel() for p in self.trainable_parameters())

    def after_optimizer_step(self) -> None:
        """Restore invariants the optimiser may break (call after every `optimizer.step()`)."""

    def diagnostics(self) -> dict[str, float]:
        """Scalars worth watching during training (logged with every log record); none by default."""
        return {}

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The trainable tensors, named as in `model.state_dict()`; what `save_adapter` writes."""
        return {name: p.detach() for name, p in named(self.model, self.trainable_parameters()).items()}

    def rebuilt_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors rebuilt from the config's seeds instead of stored (sparsity masks, frozen
        random weights); the adapter file keeps a hash of each to check the rebuild at load."""
        return {}

    def stored_masks(self) -> dict[str, torch.Tensor]:
        """For each stored tensor (by its `adapter_state_dict` name) that a mask sparsifies, the
        boolean mask of the entries it may hold; a nonzero entry outside it is a wrong file."""
        return {}

    def packed_terms(self) -> list[PackedTerm] | None:
        """What the method adds to the backbone's forward, as terms a packed forward over several
        runs' batches applies to this run's rows (solo.methods.packing); None: it cannot be packed
        (it changes the backbone itself, e.g. full fine-tuning)."""
        return None

    def detach(self) -> None:
        """Remove the method from the backbone, leaving the backbone as it was before attaching."""
        raise NotImplementedError


def named(model: nn.Module, params: Iterable[nn.Parameter]) -> dict[str, nn.Parameter]:
    """`params` (e.g. a method's trainable parameters) by their names in `model`, in model order."""
    wanted = {id(p) for p in params}
    found = {name: p for name, p in model.named_parameters() if id(p) in wanted}
    if len(found) != len(wanted):
        raise ValueError(f"{len(wanted) - len(found)} of the parameters are not the model's")
    return found


def plain_config(method_cfg: Any) -> dict[str, Any]:
    """A DictConfig or mapping as a plain dict (resolved), so methods never see OmegaConf types."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(method_cfg, DictConfig):
            return OmegaConf.to_container(method_cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if not isinstance(method_cfg, Mapping):
        raise SoloError(f"method config must be a mapping with a `name`, got {type(method_cfg).__name__}")
    return dict(method_cfg)


def check_keys(cfg: Mapping[str, Any], allowed: set[str], method: str) -> None:
    """Reject unknown keys so a typo (`sparcity`) fails instead of silently using a default."""
    unknown = sorted(set(cfg) - allowed - {"name"})
    if unknown and not allowed:
        raise SoloError(
            f"method.{unknown[0]} is not a setting of method {method!r}, which takes none "
            f"besides `name`; remove method.{', method.'.join(unknown)}"
        )
    if unknown:
        raise SoloError(
            f"unknown key(s) method.{', method.'.join(unknown)} for method {method!r}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def config_from_dict(cls: type, cfg: Mapping[str, Any], method: str, tuple_fields: tuple[str, ...] = ()):
    """Build and validate a method's config dataclass from a plain dict (lists become tuples)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    check_keys(cfg, fields, method)
    values = {k: v for k, v in cfg.items() if k in fields}
    for key in tuple_fields:
        if values.get(key) is not None:
            if isinstance(values[key], (str, bytes)) or not isinstance(values[key], (list, tuple)):
                raise SoloError(
                    f"method.{key} must be a list (e.g. [{values[key]}]) or null, "
                    f"got {values[key]!r}"
                )
            values[key] = tuple(values[key])
    config = cls(**values)
    config.validate()
    return config


def check_positive_int(value: Any, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SoloError(f"method.{field} must be a positive integer, got {value!r}")


def check_dropout(value: Any) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise SoloError(f"method.dropout must be in [0, 1), got {value!r}")


def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)
