"""The `data` config group's schema (configs/data/e2e.yaml): every field, its default and its allowed
values, checked before a run starts. `load_split` reads the same keys from the config itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from solo.data import download
from solo.data.batching import BATCH_ORDERS
from solo.schema import Choice, Number, Sequence, Text, allowed, from_mapping

_LIMIT = Number(integer=True, low=1, nullable=True)
_FOLDER = Text(nullable=True)


@dataclass(frozen=True)
class DataSettings:
    setup: str = field(default="lora", metadata=allowed(Choice(("lora", "official"))))
    official_dir: str | None = field(default=None, metadata=allowed(_FOLDER))
    lora_dir: str | None = field(default=None, metadata=allowed(_FOLDER))
    cache_dir: str | None = field(default=None, metadata=allowed(_FOLDER))
    train_split: str = field(default="train", metadata=allowed(Choice(("train", "valid"))))
    max_train_examples: int | None = field(default=None, metadata=allowed(_LIMIT))
    max_valid_examples: int | None = field(default=None, metadata=allowed(_LIMIT))
    max_test_mrs: int | None = field(default=None, metadata=allowed(_LIMIT))
    max_length: int = field(default=512, metadata=allowed(Number(integer=True, low=2)))
    bucket_lengths: tuple[int, ...] | None = field(
        default=None,
        metadata=allowed(Sequence(Number(integer=True, low=1), increasing=True, nullable=True)),
    )
    lora_url: str = field(default=download.LORA_BASE_URL, metadata=allowed(Text()))
    official_url: str = field(default=download.OFFICIAL_ZIP_URL, metadata=allowed(Text()))
    # random: microsoft/LoRA's shuffled sampler; bucketed: length-sorted chunks (faster padding).
    batch_order: str = field(default="random", metadata=allowed(Choice(BATCH_ORDERS)))


def data_settings(data_cfg: Mapping[str, Any] | None) -> DataSettings:
    """The `data` group as checked DataSettings (absent keys take their defaults)."""
    return from_mapping(DataSettings, data_cfg, "data")
