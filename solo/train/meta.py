"""`meta.json` and `params.json`: where, when and with what a run was made."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

import torch

from solo.atomic import write_json_atomic
from solo.paths import REPO_ROOT
from solo.train.rundir import read_run_json


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def git_state() -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked files differ from it); (None, None) outside a git checkout."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return sha, bool(status.strip())


def machine_description() -> str:
    return f"{platform.node()} ({platform.platform()}, {os.cpu_count()} CPUs)"


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def update_meta(path: Path, **fields: object) -> dict:
    """Merge `fields` into meta.json (creating it); `started` keeps the first start time."""
    meta = read_run_json(path) if path.exists() else {}
    for key, value in fields.items():
        if key == "started" and "started" in meta:
            meta.setdefault("resumed", []).append(value)
            continue
        meta[key] = value
    write_json_atomic(path, meta)
    return meta


def write_params(path: Path, model: torch.nn.Module, trainable: int) -> None:
    total = sum(p.numel() for p in model.parameters())
    write_json_atomic(path, {"trainable": int(trainable), "total": int(total)})
