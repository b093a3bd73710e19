"""Run directories: `${run_root}/${name}/<setup>-<hash>/`, one per semantic config, never reused.

The hash covers the resolved config minus keys that cannot change results (logging, where runs
live, the device choice, the decode batch size), so rerunning a command finds its own directory:
a finished one (DONE) is reported and left alone, an unfinished one is resumed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from solo.errors import SoloError
from solo.paths import shared_data_dir

# Dotted paths removed before hashing (docs/DESIGN.md, run directory contract).
NON_SEMANTIC_KEYS: tuple[str, ...] = (
    "logger", "run_root", "trainer.device", "decode.batch_size",
    # The fixed-shape search's speed knobs: same tokens whatever their values (tested).
    "decode.sync_every", "decode.cuda_graph",
    # Dev-loss batching: the same examples, the same per-token mean up to rounding.
    "trainer.eval_batch_size",
)
HASH_LENGTH = 10
DONE_FILE = "DONE"
LOCK_FILE = ".lock"
SHARED_PLACEHOLDER = "<shared>"


def _drop(container: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node = container
    for key in parents:
        node = node.get(key)
        if not isinstance(node, dict):
            return
    node.pop(leaf, None)


def _portable(value: object, shared_prefix: str) -> object:
    """Write paths inside the shared data folder relative to it, so hashes agree across machines."""
    if isinstance(value, dict):
        return {k: _portable(v, shared_prefix) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v, shared_prefix) for v in value]
    if isinstance(value, str) and value.startswith(shared_prefix):
        return SHARED_PLACEHOLDER + value[len(shared_prefix) :]
    return value


# What a `???` key of a config group wants, for the line that asks for it.
_WANTED = {"model.pretrained": "a Hugging Face hub name such as EleutherAI/pythia-160m, or a local folder"}


def check_complete(cfg: DictConfig) -> None:
    """A key the config leaves `???` (configs/model/hf.yaml's model.pretrained) must be given."""
    def missing(node: object, prefix: str) -> Iterator[str]:
        # Unresolved, so that a key interpolating the missing one (tokenizer: ${.pretrained}) is no error here.
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            if value == "???":
                yield f"{prefix}{key}"
            yield from missing(value, f"{prefix}{key}.")

    plain = OmegaConf.to_container(cfg, resolve=False)
    for key in missing({k: v for k, v in plain.items() if k != "hydra"}, ""):  # type: ignore[union-attr]
        raise SoloError(f"{key} is not set; give it on the command line: {key}=<{_WANTED.get(key, 'a value')}>")


def semantic_config(cfg: DictConfig) -> dict:
    """The resolved config as plain data, without the keys that do not change results."""
    check_complete(cfg)
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    container.pop("hydra", None)
    for dotted in NON_SEMANTIC_KEYS:
        _drop(container, dotted)
    return _portable(container, str(shared_data_dir()))  # type: ignore[return-value]


def config_hash(cfg: DictConfig, without: tuple[str, ...] = ()) -> str:
    """The run's identity: a hash of its semantic config (less the dotted keys in `without`)."""
    container = semantic_config(cfg)
    for dotted in without:
        _drop(container, dotted)
    canonical = json.dumps(container, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def seed_group(cfg: DictConfig) -> str:
    """The runs that differ from this one in the seed only, by name: the mean ± std a table reports."""
    return f"{cfg.name}/{cfg.data.setup}-{config_hash(cfg, without=('seed',))}"


def run_dir_for(cfg: DictConfig) -> Path:
    """Where this config's run lives (not created): `${run_root}/${name}/<setup>-<hash>`."""
    for key in ("run_root", "name", "data.setup"):
        if OmegaConf.select(cfg, key) in (None, ""):
            raise SoloError(
                f"config key `{key}` is empty; set it (e.g. {key}=...) on the command line"
            )
    return Path(str(cfg.run_root)) / str(cfg.name) / f"{cfg.data.setup}-{config_hash(cfg)}"


# The groups a run's config.yaml always has: a file without them is not one (or was damaged).
RUN_CONFIG_GROUPS = ("model", "method", "data", "trainer", "decode")
_DAMAGED = "the run dir is damaged; move it out of the run root (or delete it) and rerun its command"


def read_run_config(run_dir: Path) -> DictConfig:
    """`run_dir`'s config.yaml as it trained; one line naming the folder or file when it is no run
    dir or the file is damaged."""
    if not run_dir.is_dir():
        raise SoloError(f"{run_dir}: no such run dir; give a folder under runs/ that holds config.yaml and adapter/")
    path = run_dir / "config.yaml"
    if not path.exists():
        raise SoloError(f"{path} is missing: {run_dir} is not a run dir (give the folder that holds config.yaml)")
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # noqa: BLE001  (yaml and OmegaConf raise several kinds)
        raise SoloError(f"{path}: unreadable ({str(err).splitlines()[0]}); {_DAMAGED}") from None
    missing = [g for g in RUN_CONFIG_GROUPS if not isinstance(cfg, DictConfig) or g not in cfg]
    if missing:
        raise SoloError(f"{path} is not a run's config (no {', '.join(missing)}); {_DAMAGED}")
    return cfg  # type: ignore[return-value]


def read_run_json(path: Path) -> dict:
    """A run dir's JSON record (scores.json, params.json, meta.json) as a dict; one line naming
    the file when it is not one."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f":{err.lineno}" if isinstance(err, json.JSONDecodeError) else ""
        reason = err.msg if isinstance(err, json.JSONDecodeError) else "not UTF-8"
        raise SoloError(f"{path}{where}: damaged ({reason}); {_DAMAGED}") from None
    if not isinstance(value, dict):
        raise SoloError(f"{path}: damaged (not a JSON object); {_DAMAGED}")
    return value


def is_finished(run_dir: Path) -> bool:
    return (run_dir / DONE_FILE).exists()


def _busy(run_dir: Path) -> SoloError:
    return SoloError(
        f"{run_dir} is being written by another process running the same config; "
        "wait for it or change the config"
    )


def refuse_if_claimed(run_dir: Path) -> None:
    """Fail early (before loading anything) when another live process holds `run_dir`."""
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:  # no run dir or no lock yet: nobody holds it
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(run_dir) from None
    finally:
        os.close(fd)


@contextlib.contextmanager
def claimed(run_dir: Path) -> Iterator[Path]:
    """Hold an exclusive lock on `run_dir` (created if needed) while a process writes into it.

    The lock is an flock, so the kernel drops it when the holder dies (even by SIGKILL) and a
    rerun can resume; a second live process on the same config is refused instead of racing.
    """
    _make_run_dir(run_dir)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(run_dir) from None
        yield run_dir
    finally:
        os.close(fd)


def _make_run_dir(run_dir: Path) -> None:
    """`run_dir` and its parents made, or one line naming why run_root cannot hold it: a path
    under a file (run_root=README.md/x) or where the file system makes no folders (/proc/x)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, FileNotFoundError, NotADirectoryError) as err:
        # It failed before making a folder: the first one it tried lies under a file or in a
        # file system that makes none, so nothing is left behind.
        file = next((p for p in (run_dir, *run_dir.parents) if p.exists() and not p.is_dir()), None)
        problem = (
            f"{file} is a file, not a folder" if file is not None
            else f"{err.filename or run_dir} cannot be made ({err.strerror})"
        )
        raise SoloError(
            f"cannot create the run directory {run_dir}: {problem}; set run_root= to a folder "
            "that can hold run directories"
        ) from None


# errno -> (what is wrong, what to do); anything else stays a traceback (a bug, not the disk).
_WRITE_ERRORS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device", "free space there or set run_root= to a disk with room"),
    errno.EDQUOT: ("disk quota exceeded", "free space there or set run_root= to a disk with room"),
    errno.EROFS: ("read-only file system", "set run_root= to a writable folder"),
    errno.EACCES: ("permission denied", "make it writable or set run_root= to a writable folder"),
    errno.EPERM: ("operation not permitted", "make it writable or set run_root= to a writable folder"),
}


def write_error(err: OSError, run_dir: Path) -> OSError | SoloError:
    """A disk problem met while writing a run as one line (path, problem, fix); else `err` itself.
    What was written before stays: every write is atomic, so rerunning resumes."""
    if err.errno not in _WRITE_ERRORS:
        return err
    problem, fix = _WRITE_ERRORS[err.errno]
    where = err.filename or run_dir
    return SoloError(
        f"cannot write {where}: {problem}; {fix}, then rerun the same command (it resumes)"
    )
