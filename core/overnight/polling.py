"""Waiting for batch jobs: backoff between checks, progress, and Ctrl+C.

The first SIGINT while polling stops after the current check (state is saved) and the
run ends as not finished; a second one aborts at once with KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any, Iterator

from attrs import frozen


@frozen
class Backoff:
    """Seconds between checks: ``initial``, times ``factor`` each time, at most ``maximum``."""

    initial: float = 5.0
    factor: float = 1.5
    maximum: float = 60.0

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay
            delay = min(delay * self.factor, self.maximum)


def wait(stop: threading.Event, seconds: float) -> bool:
    """Wait up to ``seconds``; True when the user asked to stop. Tests replace this."""
    return stop.wait(seconds)


@contextlib.contextmanager
def interruptible() -> Iterator[threading.Event]:
    """Turn the first SIGINT into a stop request; the second raises KeyboardInterrupt."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def on_sigint(signum: int, frame: Any) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # Straight to the file descriptor: the handler may run while the main thread is in
        # the middle of writing to sys.stderr, and a buffered stream refuses a reentrant write.
        with contextlib.suppress(OSError):
            os.write(2, b"\n[overnight] stopping after the current check; state is saved. "
                        b"Press Ctrl+C again to abort now.\n")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def report(message: str) -> None:
    """One progress line on stderr (through the live display while a step waits; none when quiet)."""
    from overnight import progress

    if progress.mode() == "quiet" or progress.event(message):
        return
    print(f"[overnight] {message}", file=sys.stderr, flush=True)
