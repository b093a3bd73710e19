"""solo.train.interrupt: a signal during training is a flag the loop polls, elsewhere a clean stop."""

from __future__ import annotations

import os
import signal

import pytest

from solo.train import interrupt


def _send(signum: int) -> None:
    os.kill(os.getpid(), signum)  # delivered before the next bytecode of the main thread


def test_a_signal_outside_training_stops_at_once_with_its_exit_status():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(interrupt.Interrupted) as err:
        with interrupt.stop_on_signals():
            _send(signal.SIGTERM)
    assert err.value.exit_code == 143 and "rerun the same command to resume" in str(err.value)
    assert signal.getsignal(signal.SIGINT) is before  # handlers put back
    assert not interrupt.requested()


def test_during_training_the_first_signal_waits_for_the_poll_and_a_second_stops():
    with interrupt.stop_on_signals():
        with interrupt.deferred():
            _send(signal.SIGINT)
            assert interrupt.requested()
            stop = interrupt.stopped(7, 7)
            assert stop.exit_code == 130
            assert str(stop) == "interrupted at step 7; rerun the same command to resume from step 7"
            with pytest.raises(interrupt.Interrupted):
                _send(signal.SIGINT)
    assert not interrupt.requested()
