"""Stopping cleanly on SIGINT/SIGTERM: finish the step, write a checkpoint, then stop."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading


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

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
