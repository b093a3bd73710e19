"""The one error type e2e_eval raises for bad input or a missing runtime."""

from __future__ import annotations


class E2EEvalError(ValueError):
    """Bad input files/arguments or a missing Java runtime; the message is one line with the fix.

    e2e_eval is usable without the rest of the project, so it has its own error class; its CLI
    prints `error: <message>` and exits with status 2, like the project's other CLIs.
    """
