"""User-facing errors: one line that names the file or field and the fix, then a non-zero exit."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

from e2e_eval.errors import E2EEvalError

F = TypeVar("F", bound=Callable[..., object])


class SoloError(Exception):
    """An error caused by the user's input or environment, shown without a traceback."""


def exit_on_solo_error(fn: F) -> F:
    """Wrap a CLI entry point so a SoloError prints `error: <message>` and exits with status 2
    (or the error's own `exit_code`: 130/143 for a run stopped by SIGINT/SIGTERM, no prefix).

    The metric package's own error (bad reference files, Java missing) is shown the same way.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (SoloError, E2EEvalError) as err:
            code = getattr(err, "exit_code", 2)
            print(f"error: {err}" if code == 2 else str(err), file=sys.stderr)
            raise SystemExit(code) from None

    return wrapper  # type: ignore[return-value]
