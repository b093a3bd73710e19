"""Where the project finds its shared data, caches and runs.

Every path a user may need to move is overridable by an environment variable, so the same
code serves a laptop, CI (which lays `../shared` beside the clone) and a cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """The read-only shared data folder: `$SOLO_SHARED_DATA`, else `<repo>/../shared/data`."""
    env = os.environ.get("SOLO_SHARED_DATA")
    return Path(env).expanduser().resolve() if env else (REPO_ROOT.parent / "shared" / "data")


def cache_dir() -> Path:
    """Where downloads (E2E release, microsoft/LoRA files) land: `$SOLO_CACHE`, else ~/.cache/solo."""
    env = os.environ.get("SOLO_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "solo"
