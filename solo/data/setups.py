"""The two named data setups and `load_split`, which turns the data config into E2E pairs.

`lora` is the paper's setup: microsoft/LoRA's `MR||ref` files (pre-tokenised references, MRs as
`name : X | Type : Y`), scored against that test file's references. `official` is the E2E release
CSVs with raw references. The two give different BLEU/NIST, so a run records which one it used
(`data_cfg.setup`, `setup_description`) and never mixes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from solo.config_values import config_value
from solo.data import download
from solo.data.readers import read_lora_txt, read_official_csv
from solo.data.records import E2EPair
from solo.errors import SoloError
from solo.paths import cache_dir as default_cache_dir

Split = Literal["train", "valid", "test"]
SPLITS: tuple[str, ...] = ("train", "valid", "test")


@dataclass(frozen=True)
class Setup:
    name: str
    description: str
    dir_key: str                      # data config key of a user-supplied folder
    url_key: str                      # data config key overriding the download URL
    default_url: str
    cache_subdir: str
    files: dict[str, str]             # split -> file name
    reader: Callable[[Path], list[E2EPair]]
    fetch: Callable[[Path, str, str], Path]   # (folder, file name, url) -> path, downloading if absent

    def file_url(self, url: str, name: str) -> str:
        """The URL a missing file comes from (the LoRA files one by one, the CSVs inside the zip)."""
        return f"{url.rstrip('/')}/{name}" if self.name == "lora" else url


SETUPS: dict[str, Setup] = {
    "lora": Setup(
        name="lora",
        description="microsoft/LoRA e2e files",
        dir_key="lora_dir",
        url_key="lora_url",
        default_url=download.LORA_BASE_URL,
        cache_subdir="e2e-lora",
        files={"train": "train.txt", "valid": "valid.txt", "test": "test.txt"},
        reader=read_lora_txt,
        fetch=download.ensure_lora_file,
    ),
    "official": Setup(
        name="official",
        description="E2E release CSVs",
        dir_key="official_dir",
        url_key="official_url",
        default_url=download.OFFICIAL_ZIP_URL,
        cache_subdir="e2e-official",
        files={"train": "trainset.csv", "valid": "devset.csv", "test": "testset_w_refs.csv"},
        reader=read_official_csv,
        fetch=download.ensure_official_file,
    ),
}


def load_split(data_cfg: Any, split: Split) -> list[E2EPair]:
    """Read one split of the configured setup as (MR, reference) pairs, in file order.

    Looks in `data_cfg.<setup>_dir` when set, else in the cache (downloading when missing).
    `train_split: valid` makes the dev set stand in for training. Limits: `max_train_examples`
    and `max_valid_examples` keep the first N pairs; `max_test_mrs` keeps every reference of the
    first N unique test MRs, so scoring still sees complete reference sets.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    setup = get_setup(data_cfg)
    source = train_source(data_cfg) if split == "train" else split
    pairs = setup.reader(_locate(data_cfg, setup, source, split))
    return _apply_limit(data_cfg, split, pairs)


def get_setup(data_cfg: Any) -> Setup:
    """The Setup named by `data_cfg.setup` (SoloError for an unknown name)."""
    name = config_value(data_cfg, "setup", "lora")
    if name not in SETUPS:
        raise SoloError(f"data.setup={name!r} is not a data setup; use one of: {', '.join(SETUPS)}")
    return SETUPS[name]


def train_source(data_cfg: Any) -> str:
    """Which file split feeds training: `train`, or `valid` where the training set is absent."""
    source = config_value(data_cfg, "train_split", "train")
    if source not in ("train", "valid"):
        raise SoloError(f"data.train_split={source!r} is not allowed; use train or valid")
    return source


def setup_description(data_cfg: Any) -> str:
    """One line for run metadata and tables, e.g. `lora: microsoft/LoRA e2e files at <dir>`."""
    setup = get_setup(data_cfg)
    text = f"{setup.name}: {setup.description} at {_folder(data_cfg, setup)}"
    if train_source(data_cfg) == "valid":
        text += " (dev set stands in for training)"
    return text


def _locate(data_cfg: Any, setup: Setup, source: str, split: str) -> Path:
    name = setup.files[source]
    all_files = "/".join(setup.files.values())
    train_hint = (
        "; or set data.train_split=valid to let the dev set stand in for training"
        if split == "train" and source == "train" else ""  # not where the dev set already stands in
    )
    explicit = config_value(data_cfg, setup.dir_key)
    if explicit:
        path = Path(str(explicit)).expanduser() / name
        if not path.is_file():
            raise SoloError(
                f"{path} not found: data.{setup.dir_key} must be a folder holding {all_files}, "
                f"or null to use the cache and download{train_hint}"
            )
        return path
    folder = _folder(data_cfg, setup)
    url = str(config_value(data_cfg, setup.url_key) or setup.default_url)
    try:
        return setup.fetch(folder, name, url)
    except download.DownloadError as err:
        raise SoloError(
            f"{name} is not in {folder} and downloading {setup.file_url(url, name)} failed ({err}); "
            f"put the file there or set data.{setup.dir_key} to a folder holding {all_files}{train_hint}"
        ) from None


def _folder(data_cfg: Any, setup: Setup) -> Path:
    explicit = config_value(data_cfg, setup.dir_key)
    if explicit:
        return Path(str(explicit)).expanduser()
    root = config_value(data_cfg, "cache_dir")
    base = Path(str(root)).expanduser() if root else default_cache_dir()
    return base / setup.cache_subdir


_LIMIT_KEYS = {"train": "max_train_examples", "valid": "max_valid_examples", "test": "max_test_mrs"}


def _apply_limit(data_cfg: Any, split: str, pairs: list[E2EPair]) -> list[E2EPair]:
    key = _LIMIT_KEYS[split]
    limit = config_value(data_cfg, key)
    if limit is None:
        return pairs
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise SoloError(f"data.{key}={limit!r} must be a positive integer or null")
    if split != "test":
        return pairs[:limit]
    kept: set[str] = set()
    for pair in pairs:  # the first `limit` unique MRs, in order of first appearance
        if len(kept) == limit:
            break
        kept.add(pair.mr)
    return [pair for pair in pairs if pair.mr in kept]
