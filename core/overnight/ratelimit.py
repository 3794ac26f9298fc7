"""Pacing of online requests: requests and tokens per minute, and how many at once.

One :class:`Pacer` per provider and model (see :func:`pacer`) is shared by every
thread and every step of the process that calls that model online, so two steps on
the same model share its limits as the provider does.

* Requests and tokens per minute are spaced evenly (a "virtual schedule": each
  request reserves the next free slot of both), never bursted: a provider that quantises
  its per-minute limit to seconds, as OpenAI says it may, sees no burst either. In any
  minute at most ``requests_per_minute`` requests start.
* How many requests are in flight at once is a window between 1 and the concurrency
  asked for. A 429 halves it and holds every sender back for the provider's
  Retry-After (or a doubling pause when it gave none); each success widens it again by
  about one per window of successes (additive increase, multiplicative decrease), and
  the per-minute pace slows to half after a 429 and recovers by 1% per success.

The clock and the sleep are injectable (tests drive them), and default to this
module's :func:`clock` and :func:`sleep`, read at call time so a test can replace them.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

#: The pause after a 429 that gave no Retry-After: doubled on each one in a row, capped.
FIRST_PAUSE = 1.0
MAX_PAUSE = 60.0
#: The slowest the per-minute pace goes after 429s (a share of the declared rate).
MIN_PACE = 1 / 16


def clock() -> float:
    """Seconds on a monotonic clock (tests replace this)."""
    return time.monotonic()


def sleep(seconds: float) -> None:
    """Wait ``seconds`` (tests replace this)."""
    time.sleep(seconds)


class Pacer:
    """Paces one provider and model's online requests (thread-safe)."""

    def __init__(
        self,
        *,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        concurrency: int = 16,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.concurrency = max(1, concurrency)
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        #: The window of requests allowed in flight (AIMD between 1 and ``concurrency``).
        self.window = float(self.concurrency)
        self.in_flight = 0
        #: Share of the declared per-minute rates in force (1: as declared).
        self.pace = 1.0
        #: No request starts before this time (a Retry-After in force).
        self.hold_until = 0.0
        self._pause = FIRST_PAUSE
        # The next free start of the request and token schedules.
        self._next_request = float("-inf")
        self._next_token = float("-inf")
        #: Start times of requests, for tests and benchmarks that check the pace (bounded).
        self.starts: list[float] = []
        self.limited_count = 0

    def now(self) -> float:
        return (self._clock or clock)()

    def _wait(self, seconds: float) -> None:
        (self._sleep or sleep)(seconds)

    def acquire(self, tokens: int = 0, stop: threading.Event | None = None) -> bool:
        """Block until one request of about ``tokens`` tokens may start; False when ``stop`` was set.

        On True the caller holds a slot of the window: call :meth:`release` once the
        request ended (answered, refused or failed).
        """
        with self._cond:
            while self.in_flight >= max(1, int(self.window)):
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.1)
            self.in_flight += 1
        while True:
            if stop is not None and stop.is_set():
                self.release()
                return False
            with self._cond:
                now = self.now()
                start = max(now, self.hold_until)
                if self.requests_per_minute:
                    start = max(start, self._next_request)
                if self.tokens_per_minute and tokens:
                    start = max(start, self._next_token)
                if start <= now:
                    # Reserve the slots: the next request starts one interval later.
                    if self.requests_per_minute:
                        self._next_request = max(self._next_request, now) + 60.0 / (self.requests_per_minute * self.pace)
                    if self.tokens_per_minute and tokens:
                        self._next_token = max(self._next_token, now) + 60.0 * tokens / (
                            self.tokens_per_minute * self.pace)
                    if len(self.starts) < 100_000:
                        self.starts.append(now)
                    return True
                delay = start - now
            # Short steps, so a Ctrl+C or a fresh Retry-After is seen while waiting.
            self._wait(min(delay, 0.25))

    def release(self, *, ok: bool | None = None) -> None:
        """The request holding a slot ended; ``ok``: answered (widen), None: neither."""
        with self._cond:
            self.in_flight = max(0, self.in_flight - 1)
            if ok:
                self.window = min(float(self.concurrency), self.window + 1.0 / max(self.window, 1.0))
                self.pace = min(1.0, self.pace + 0.01)
                self._pause = FIRST_PAUSE
            self._cond.notify_all()

    def limited(self, retry_after: float | None) -> float:
        """A 429: hold every sender back and slow down. Returns the pause applied (seconds)."""
        with self._cond:
            self.limited_count += 1
            if retry_after is not None and retry_after >= 0:
                pause = float(retry_after)
            else:
                pause = self._pause
                self._pause = min(self._pause * 2, MAX_PAUSE)
            self.hold_until = max(self.hold_until, self.now() + pause)
            self.window = max(1.0, self.window / 2)
            self.pace = max(MIN_PACE, self.pace / 2)
            self._cond.notify_all()
            return pause


_pacers: dict[tuple[str, str, int | None, int | None, int], Pacer] = {}
_pacers_lock = threading.Lock()


def pacer(provider: str, model: str, *, requests_per_minute: int | None, tokens_per_minute: int | None,
          concurrency: int) -> Pacer:
    """The process's pacer for ``provider``/``model`` with these figures (created once)."""
    key = (provider, model, requests_per_minute, tokens_per_minute, concurrency)
    with _pacers_lock:
        found = _pacers.get(key)
        if found is None:
            found = _pacers[key] = Pacer(requests_per_minute=requests_per_minute,
                                         tokens_per_minute=tokens_per_minute, concurrency=concurrency)
        return found


def forget() -> None:
    """Drop every pacer (tests: each starts from a fresh pace)."""
    with _pacers_lock:
        _pacers.clear()
