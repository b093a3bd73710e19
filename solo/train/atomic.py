"""Crash-safe writes: a file or a whole directory appears complete or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def fsync_tree(directory: Path) -> None:
    """Flush every file under `directory`, then the directory entries themselves, to disk."""
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for folder in [*sorted(p for p in directory.rglob("*") if p.is_dir()), directory]:
        fsync_dir(folder)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def previous_path(path: Path) -> Path:
    """Where the superseded copy of `path` sits while a replacement is swapped in."""
    return path.with_name(path.name + ".old")


@contextlib.contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces `path` in two renames.

    A crash between the renames leaves `path.old` holding the previous complete copy, which
    `readable_directory` falls back to; a crash while writing leaves only a stale staging folder.
    """
    staging = path.with_name(path.name + ".tmp")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_tree(staging)
    old = previous_path(path)
    if path.exists():
        if old.exists():
            shutil.rmtree(old)
        os.rename(path, old)
    os.rename(staging, path)
    fsync_dir(path.parent)
    if old.exists():
        shutil.rmtree(old)


def readable_directory(path: Path) -> Path | None:
    """The last complete copy written by `atomic_directory` at `path`, or None if there is none."""
    if path.is_dir():
        return path
    old = previous_path(path)
    return old if old.is_dir() else None


def write_text_atomic(path: Path, text: str) -> None:
    staging = path.with_name(path.name + ".tmp")
    with open(staging, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, path)
    fsync_dir(path.parent)


def write_json_atomic(path: Path, obj: object) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
