"""What the online (synchronous) endpoints share: rate limits, per-request faults, latency,
and the count of identical bodies.

* **Rate limits**, as the real APIs apply them: requests and tokens per minute, per API
  key and model, over a sliding 60-second window of the *sandbox* clock (a test moves it
  with ``advance``). A request that would pass a limit is answered 429 with the retry
  delay after which it would fit; a request larger than the token limit on its own can
  never fit (OpenAI answers it 429 "Request too large"). A request weighs its prompt
  tokens plus its ``max_tokens``, as OpenAI estimates it before generating. Set with
  :meth:`OnlineState.set_rate_limit` (control API ``POST /_sandbox/online``); none by default.
* **Per-request errors**: fault rules with ``online_error_rate`` / ``online_error_match``
  (see .faults), answered with the rule's ``error_status``.
* **Latency**: wall seconds each answer is held back (default 0), for benchmarks.
* **Repeats**: the n-th answer to an identical body is the responder's n-th variant, so
  repeated samples differ while every answer stays a pure function of what was sent.

The state lives in memory, one per engine (a restart clears the windows and counts; the
limits and the latency are set again by whoever configures the sandbox).
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
import threading
import weakref
from typing import Any, Deque, Literal, Mapping

import attrs

from .engine import Engine
from .faults import Fault, hash_fraction

WINDOW = 60.0  # seconds: the limits are per minute

Kind = Literal["requests", "tokens"]


@attrs.frozen
class RateLimit:
    """Requests and tokens (input + max output) per minute; None: no limit on that figure."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Window:
    """A key's standing under its limit after one admitted request (for the rate headers)."""

    limit: RateLimit
    requests_remaining: int | None
    tokens_remaining: int | None
    #: Seconds until the window is empty again (the real APIs' "reset" headers).
    requests_reset: float
    tokens_reset: float


class Throttled(Exception):
    """A request over a rate limit: what was exceeded and when it would fit."""

    def __init__(self, kind: Kind, limit: int, used: int, requested: int, retry_after: float | None,
                 window: Window) -> None:
        super().__init__(f"{kind} per minute: limit {limit}, used {used}, requested {requested}")
        self.kind = kind
        self.limit = limit
        self.used = used
        self.requested = requested
        #: None: the request alone is over the limit, it can never fit.
        self.retry_after = retry_after
        self.window = window

    @property
    def too_large(self) -> bool:
        return self.retry_after is None


class OnlineState:
    """Rate limits, windows, latency and repeat counts of one sandbox's online endpoints."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limits: dict[tuple[str, str | None], RateLimit] = {}
        self._windows: dict[tuple[str, str, str], Deque[tuple[float, int]]] = {}
        self._arrivals: collections.Counter[tuple[str, str]] = collections.Counter()
        self._answers: collections.Counter[tuple[str, str]] = collections.Counter()
        #: Wall seconds each online answer is held back.
        self.latency = 0.0

    # --- configuration ----------------------------------------------------------------
    def set_rate_limit(self, provider: str, model: str | None = None, *, requests_per_minute: int | None = None,
                       tokens_per_minute: int | None = None) -> None:
        """Limit ``provider`` (for ``model``, or every model without its own limit); both None: no limit."""
        for name, value in (("requests_per_minute", requests_per_minute), ("tokens_per_minute", tokens_per_minute)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive whole number or null")
        with self._lock:
            if requests_per_minute is None and tokens_per_minute is None:
                self._limits.pop((provider, model), None)
            else:
                self._limits[(provider, model)] = RateLimit(requests_per_minute, tokens_per_minute)

    def clear(self) -> None:
        """No limits, empty windows, no latency; repeat counts kept (answers stay distinct)."""
        with self._lock:
            self._limits.clear()
            self._windows.clear()
            self.latency = 0.0

    def set_latency(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 600:
            raise ValueError("latency must be a number of seconds within [0, 600]")
        self.latency = float(seconds)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            limits = [{"provider": p, "model": m, **limit.to_dict()} for (p, m), limit in sorted(
                self._limits.items(), key=lambda item: (item[0][0], item[0][1] or ""))]
        return {"rate_limits": limits, "latency": self.latency}

    # --- admission --------------------------------------------------------------------
    def admit(self, provider: str, key: str, model: str, tokens: int, now: float,
              oversize: Literal["refuse", "alone"] = "refuse") -> Window | None:
        """Count one request against its key's limits, or raise :class:`Throttled` (nothing counted).

        None when no limit applies (the answer then carries no rate headers). A request
        heavier than the token limit on its own is refused for good (``"refuse"``: OpenAI's
        "Request too large") or admitted alone, into an empty window (``"alone"``: the
        providers that publish no such refusal; the sandbox must not make a request wait
        forever).
        """
        with self._lock:
            limit = self._limits.get((provider, model)) or self._limits.get((provider, None))
            if limit is None:
                return None
            slot = (provider, hashlib.sha256(key.encode("utf-8")).hexdigest(), model)  # keys are never kept
            entries = self._windows.setdefault(slot, collections.deque())
            while entries and entries[0][0] <= now - WINDOW:
                entries.popleft()
            used_requests, used_tokens = len(entries), sum(t for _, t in entries)
            rpm, tpm = limit.requests_per_minute, limit.tokens_per_minute
            if rpm is not None and used_requests + 1 > rpm:
                # Fits once the oldest used_requests - rpm + 1 requests have left the window.
                retry = entries[used_requests - rpm][0] + WINDOW - now
                raise Throttled("requests", rpm, used_requests, 1, max(0.0, retry),
                                self._window(limit, entries, now))
            if tpm is not None and used_tokens + tokens > tpm:
                if tokens > tpm and oversize == "refuse":
                    raise Throttled("tokens", tpm, used_tokens, tokens, None, self._window(limit, entries, now))
                if tokens > tpm and used_tokens == 0:
                    entries.append((now, tokens))
                    return self._window(limit, entries, now)
                freed, retry = 0, entries[-1][0] + WINDOW - now  # at the latest: once the window is empty
                for at, weight in entries:
                    freed += weight
                    if used_tokens - freed + tokens <= tpm:
                        retry = at + WINDOW - now
                        break
                raise Throttled("tokens", tpm, used_tokens, tokens, max(0.0, retry),
                                self._window(limit, entries, now))
            entries.append((now, tokens))
            return self._window(limit, entries, now)

    @staticmethod
    def _window(limit: RateLimit, entries: Deque[tuple[float, int]], now: float) -> Window:
        used_tokens = sum(t for _, t in entries)
        reset = max(0.0, entries[-1][0] + WINDOW - now) if entries else 0.0
        first = max(0.0, entries[0][0] + WINDOW - now) if entries else 0.0
        return Window(
            limit,
            None if limit.requests_per_minute is None else max(0, limit.requests_per_minute - len(entries)),
            None if limit.tokens_per_minute is None else max(0, limit.tokens_per_minute - used_tokens),
            first if limit.requests_per_minute is not None and len(entries) >= limit.requests_per_minute else reset,
            reset,
        )

    # --- repeats ----------------------------------------------------------------------
    def arrival(self, provider: str, digest: str) -> int:
        """How many times this body arrived before (every arrival, answered or not)."""
        with self._lock:
            seen = self._arrivals[(provider, digest)]
            self._arrivals[(provider, digest)] = seen + 1
            return seen

    def variant(self, provider: str, digest: str) -> int:
        """How many times this body was answered before: the variant its answer is."""
        with self._lock:
            seen = self._answers[(provider, digest)]
            self._answers[(provider, digest)] = seen + 1
            return seen


_states: weakref.WeakKeyDictionary[Engine, OnlineState] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()


def state(engine: Engine) -> OnlineState:
    """The online state of ``engine`` (made on first use)."""
    with _states_lock:
        found = _states.get(engine)
        if found is None:
            found = _states[engine] = OnlineState()
        return found


def body_digest(body: Mapping[str, Any]) -> str:
    """Identical bodies (whatever their key order) share a digest."""
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def request_fault(engine: Engine, provider: str, model: str, text: str, digest: str, arrival: int) -> Fault | None:
    """The first online per-request error rule this request falls under (its firing used up)."""

    def fails(rule: Fault) -> bool:
        if not rule.affects_online or not rule.selects_job(provider, model, None):
            return False
        if rule.online_error_match is not None and re.search(rule.online_error_match, text):
            return True
        return rule.online_error_rate > 0 and hash_fraction(f"{digest}:{arrival}") < rule.online_error_rate

    taken = engine._take_faults(fails, True)  # the engine's own rule store and firing counts
    return taken[0][1] if taken else None


def go_duration(seconds: float) -> str:
    """OpenAI's reset format: ``6m0s``, ``1s``, ``20ms``."""
    if seconds < 1:
        return f"{max(0, int(round(seconds * 1000)))}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text
