"""Crash-safe writes, the one implementation every writer uses: a file or a whole directory
appears complete or not at all.

- `replacing(path)`: a temporary path beside `path` to write; on success it is flushed to disk
  and renamed onto `path` (`exclusive=True`: never onto an existing file); on error it is removed;
- `write_text_atomic` / `write_bytes_atomic` / `write_json_atomic`: one call of that;
- `atomic_directory(path)`: the same for a whole folder (checkpoints, adapters), with
  `readable_directory` finding the last complete copy after a crash between its two renames.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
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


@contextlib.contextmanager
def replacing(path: Path, *, exclusive: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary path in `path`'s folder (so the rename is atomic) for the caller
    to write; on a clean exit flush it and move it onto `path`. `exclusive`: FileExistsError
    instead if `path` exists (a hard link refuses it even when another writer races this one).
    The temporary file never outlives the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name no other writer uses; created by the caller's write, so with the usual permissions
    # (mkstemp would make it owner-only).
    staging = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        yield staging
        with open(staging, "rb") as handle:
            os.fsync(handle.fileno())
        if exclusive:
            if path.exists():
                raise FileExistsError(path)
            try:
                os.link(staging, path)
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links: rename (checked just above)
                os.replace(staging, path)
        else:
            os.replace(staging, path)
        fsync_dir(path.parent)
    finally:
        staging.unlink(missing_ok=True)  # no-op once renamed


def write_text_atomic(path: Path, text: str, *, exclusive: bool = False) -> Path:
    """`text` (UTF-8, "\n" line ends) as the whole of `path`, atomically; see `replacing`."""
    with replacing(path, exclusive=exclusive) as staging:
        staging.write_text(text, encoding="utf-8", newline="\n")
    return Path(path)


def write_bytes_atomic(path: Path, data: bytes, *, exclusive: bool = False) -> Path:
    with replacing(path, exclusive=exclusive) as staging:
        staging.write_bytes(data)
    return Path(path)


def write_json_atomic(path: Path, obj: object) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
