"""Ctrl-C (SIGINT) and SIGTERM as a clean stop: the training loop finishes its optimiser step,
writes a checkpoint and stops with one line; the rerun of the same command resumes there.

    with stop_on_signals():          # the CLI run (solo.train.pipeline.run_experiment)
        with deferred():             # around the training loop, which polls after each step:
            ... if requested(): save a checkpoint; raise stopped(step, resume_step)

Outside `deferred()` (loading, decoding, scoring) a signal stops at once with `Interrupted`;
a second signal during training does too. Exit status 128 + the signal: 130 for SIGINT,
143 for SIGTERM, as a shell reports a process the signal killed.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from solo.errors import SoloError

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []  # signals received since stop_on_signals was entered
_deferring = [0]  # > 0 inside deferred(): the first signal waits for the next poll


class Interrupted(SoloError):
    """The run was stopped by a signal; `exit_code` is 128 + the signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def _handle(signum: int, frame: object) -> None:
    _received.append(signum)
    if _deferring[0] and len(_received) == 1:
        return
    raise Interrupted(
        "interrupted before the run finished; rerun the same command to resume (the last "
        "checkpoint, a saved adapter and written predictions are kept)",
        signum,
    )


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Install the handlers (main thread only; elsewhere Python keeps its own) and remove them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handle) for s in SIGNALS}
    _received.clear()
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _received.clear()


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """While inside, the first signal only sets the flag that `requested()` reads."""
    _deferring[0] += 1
    try:
        yield
    finally:
        _deferring[0] -= 1


def requested() -> bool:
    """Whether a signal asked the run to stop."""
    return bool(_received)


def stopped(step: int, resume_step: int | None) -> Interrupted:
    """The error a polling loop raises once it has saved what it can."""
    resume = f"step {resume_step}" if resume_step is not None else "the start (no checkpoint)"
    return Interrupted(
        f"interrupted at step {step}; rerun the same command to resume from {resume}",
        _received[0] if _received else signal.SIGINT,
    )
