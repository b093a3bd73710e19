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
    """Wrap a CLI entry point so a SoloError prints `error: <message>` and exits with status 2.

    The metric package's own error (bad reference files, Java missing) is shown the same way.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (SoloError, E2EEvalError) as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
