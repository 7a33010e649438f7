"""Stopping cleanly on SIGINT/SIGTERM: finish the step, write a checkpoint, then stop; before the loop, stop at once."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

from ..errors import TrainingInterrupted


@contextlib.contextmanager
def _handling(handler):
    """``handler`` for SIGINT and SIGTERM inside the block; the previous handlers after it."""
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


@contextlib.contextmanager
def stop_on_signals(trainer, announce: bool):
    """SIGINT/SIGTERM set ``trainer.stop_signal``, which the loop reads after each step; a second Ctrl-C
    aborts at once (``KeyboardInterrupt``). Outside the main thread signals cannot be caught: a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if trainer.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.stop_signal = signum
        if announce:
            print(f"\nvmivae: {signal.Signals(signum).name} received: stopping after this step and writing a checkpoint "
                  "(Ctrl-C again aborts at once)", file=sys.stderr, flush=True)

    with _handling(handler):
        yield


@contextlib.contextmanager
def interrupt_outside_loop(detail: dict):
    """Around the work before and after the training loop: SIGINT/SIGTERM raise :class:`TrainingInterrupted`
    at once, so that locks are released and nothing is left half-done. ``detail["text"]`` says what the
    interruption left behind and ``detail.get("step")`` where training was (the caller updates both as
    the run proceeds). A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise TrainingInterrupted(detail.get("step"), signum, detail=detail["text"])

    with _handling(handler):
        yield


@contextlib.contextmanager
def interrupt_as(make):
    """Around a command's work: SIGINT/SIGTERM raise ``make(signum)`` (an :class:`~vmivae.errors.Interrupted`) at once.
    Yields a dict: while ``state["defer"]`` is true (an output being written) a signal is only noted in
    ``state["signum"]``, so that the write finishes whole and the caller says so. A no-op outside the main thread."""
    state = {"defer": False, "signum": None}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, frame):
        if state["defer"]:
            state["signum"] = signum
            return
        raise make(signum)

    with _handling(handler):
        yield state
