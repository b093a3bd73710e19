"""Config-group schemas: a dataclass per group, each field with its allowed values, checked up front.

A field's `metadata["allowed"]` is a `Number`, a `Choice` or a `Sequence` spec; `from_mapping`
builds the dataclass from a config group (unknown keys refused, absent keys take the field's
default) and checks every field, so a bad value fails with one line naming `group.key` and what is
allowed before anything is written or loaded. Plain Python only (no OmegaConf): the GPU image
imports this too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from solo.errors import SoloError

T = TypeVar("T")


@dataclass(frozen=True)
class Number:
    """An int (`integer`) or a real number in [low, high] (`open_low`: low itself excluded)."""

    integer: bool = False
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    nullable: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.open_low else '>='} {self._show_bound(self.low)}")
        if self.high is not None:
            bounds.append(f"{'<' if self.open_high else '<='} {self._show_bound(self.high)}")
        text = f"{kind} {' and '.join(bounds)}".rstrip()
        return text + (" or null" if self.nullable else "")

    def _show_bound(self, bound: float) -> str:
        # An integer bound exactly: 2**32 - 1, not 4.29497e+09.
        return str(int(bound)) if self.integer and float(bound).is_integer() else f"{bound:g}"

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (self.open_high and value == self.high)):
            return False
        return True


def argparse_type(spec: Number) -> Callable[[str], int | float]:
    """An argparse `type=` checked by `spec` (argparse names the flag in its one-line error)."""
    import argparse

    kind = "an integer" if spec.integer else "a number"

    def parse(text: str) -> int | float:
        try:
            value = int(text) if spec.integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not spec.accepts(value):
            raise argparse.ArgumentTypeError(f"{text} is not allowed; give {spec.describe()}")
        return value
    return parse


COUNT_ARGUMENT = argparse_type(Number(integer=True, low=1))  # a flag's count, size or length: >= 1


@dataclass(frozen=True)
class Choice:
    """One of `options` (compared with ==, so True/False are options like any other)."""

    options: tuple[Any, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(_show(o) for o in self.options)

    def accepts(self, value: Any) -> bool:
        return any(value == o and type(value) is type(o) for o in self.options)


@dataclass(frozen=True)
class Text:
    nullable: bool = False

    def describe(self) -> str:
        return "a string" + (" or null" if self.nullable else "")

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and bool(value) or (value is None and self.nullable)


@dataclass(frozen=True)
class Sequence:
    """A list of `length` items (None: any non-empty length), each accepted by `item`;
    `increasing`: strictly increasing."""

    item: Number
    length: int | None = None
    increasing: bool = False
    nullable: bool = False

    def describe(self) -> str:
        size = f"{self.length} " if self.length else "a non-empty list of "
        text = f"{'a list of ' if self.length else ''}{size}items, each {self.item.describe()}"
        if self.increasing:
            text += ", increasing"
        return text + (", or null" if self.nullable else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if not isinstance(value, (list, tuple)) or not value:
            return False
        if self.length is not None and len(value) != self.length:
            return False
        if not all(self.item.accepts(v) for v in value):
            return False
        return not self.increasing or all(a < b for a, b in zip(value, value[1:], strict=False))


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def allowed(spec: Number | Choice | Text | Sequence) -> dict[str, Any]:
    """Field metadata: `x: float = field(default=1.0, metadata=allowed(Number(low=0)))`."""
    return {"allowed": spec}


def check_fields(settings: object, group: str) -> None:
    """SoloError for the first field whose value its `allowed` spec refuses."""
    for f in dataclasses.fields(settings):  # type: ignore[arg-type]
        spec = f.metadata.get("allowed")
        value = getattr(settings, f.name)
        if spec is not None and not spec.accepts(value):
            raise SoloError(
                f"{group}.{f.name}={_show(value) if not isinstance(value, str) else repr(value)} "
                f"is not allowed; allowed: {spec.describe()} (default {_show(f.default)})"
            )


def from_mapping(cls: type[T], values: Mapping[str, Any] | None, group: str) -> T:
    """`cls(**values)` with unknown keys refused and every field checked (see `check_fields`)."""
    values = dict(values.items()) if values is not None else {}
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise SoloError(
            f"{group}.{unknown[0]} is not a {group} setting; known: {', '.join(sorted(names))}"
        )
    for key, value in values.items():  # lists (or OmegaConf ListConfigs) become tuples
        if not isinstance(value, (str, bytes, Mapping)) and hasattr(value, "__iter__"):
            values[key] = tuple(value)
    settings = cls(**values)
    check_fields(settings, group)
    return settings
