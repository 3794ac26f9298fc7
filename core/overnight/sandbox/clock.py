"""The sandbox clock: sandbox time is what every job lifecycle is measured against.

Manual by default (frozen until ``advance`` is called) so tests never wait on wall time;
with a ``speed`` factor it also runs on its own (speed=60: one wall second is one
sandbox minute). ``advance`` works in both modes. The clock is a plain value holder:
the engine persists ``now()`` so a restarted sandbox resumes from the same instant.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class Clock:
    """Thread-safe sandbox clock in Unix seconds (float)."""

    def __init__(self, start: float | None = None, speed: float | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if speed is not None and speed < 0:
            raise ValueError("speed must be >= 0")
        self._lock = threading.Lock()
        self._base = time.time() if start is None else float(start)
        self._speed = speed or 0.0
        self._monotonic = monotonic  # injectable so tests never wait on wall time
        self._anchor = monotonic()

    @property
    def speed(self) -> float | None:
        return self._speed or None

    def now(self) -> float:
        with self._lock:
            return self._now_locked()

    def advance(self, seconds: float) -> float:
        """Move sandbox time forward by ``seconds`` and return the new time."""
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._base = self._now_locked() + seconds
            self._anchor = self._monotonic()
            return self._base

    def _now_locked(self) -> float:
        if not self._speed:
            return self._base
        return self._base + (self._monotonic() - self._anchor) * self._speed
