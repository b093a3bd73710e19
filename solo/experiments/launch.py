"""Child processes that a Ctrl-C stops cleanly: the child handles the signal, the parent waits.

Used where one solo command runs another (run_table and the demo launch `python -m solo.train`,
`make real` its peft anchor).
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from solo.paths import REPO_ROOT

STOP_CODES = (128 + signal.SIGINT, 128 + signal.SIGTERM)


def launch(command: list[str], cwd: Path = REPO_ROOT) -> int:
    """Run `command` to its end: its exit status, or 128 + the signal that stopped it.

    A Ctrl-C reaches the child itself (it shares the terminal's process group); a solo command
    finishes its step, checkpoints and exits 130. This process only notes the signal and waits,
    instead of dying of a KeyboardInterrupt traceback while the child is still writing. A SIGTERM
    is passed on, since it usually names this process alone (kill, a container stop). A child
    that exits 0 although a signal came still reports the signal, so the caller starts nothing
    more."""
    received: list[int] = []
    child: subprocess.Popen | None = None

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        if signum == signal.SIGTERM and child is not None and child.poll() is None:
            child.send_signal(signum)

    # Python-level handlers: exec resets caught signals, so the child starts with the defaults
    # and its own interrupt handling works (an ignored SIGINT would stay ignored there).
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        child = subprocess.Popen(command, cwd=cwd)
        code = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if code < 0:  # killed by a signal it did not handle
        return 128 - code
    return 128 + received[0] if received and code == 0 else code
