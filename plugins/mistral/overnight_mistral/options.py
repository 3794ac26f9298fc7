"""Client options of the Mistral plugin, and the one SDK client per option set.

Options come from ``LLM("mistral/<model>", api_key=..., base_url=...)``; when absent,
the environment is read (``MISTRAL_API_KEY``; ``MISTRAL_BASE_URL`` is overnight's own
variable, since the SDK reads none for the URL). Options are never stored; this module
keeps no key anywhere but in the in-memory client cache.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Mapping

from attrs import field, frozen

from overnight.errors import ConfigurationError, MissingCredentials

KEY_ENV = "MISTRAL_API_KEY"
BASE_URL_ENV = "MISTRAL_BASE_URL"

#: Chunks up to this many requests are sent inline (``requests=[...]``), like the SDK's
#: own batch helper does; bigger ones are uploaded as a JSONL file.
INLINE_THRESHOLD = 1000
#: An inline create is one JSON body: keep it small even when the count is low.
INLINE_MAX_BYTES = 8 * 1024 * 1024

SERVERS = ("global", "eu", "us")
#: The SDK's per-call timeout when none is configured.
SDK_TIMEOUT_MS = 300_000

KNOWN = {
    "api_key": "the Mistral API key (default: $MISTRAL_API_KEY)",
    "base_url": "the API root without /v1, e.g. http://127.0.0.1:8000 (default: $MISTRAL_BASE_URL)",
    "server": "one of global, eu, us (ignored when base_url is set)",
    "timeout": "seconds per HTTP call (default 300)",
    "max_retries": "retries of a call on 429/5xx/connection errors, as a time budget of that many backoffs (default 3; 0 disables)",
    "timeout_hours": "the batch job's window in hours (default 24)",
    "inline_threshold": f"largest job sent inline instead of as a file (default {INLINE_THRESHOLD}; 0: always a file)",
}

@frozen
class Settings:
    """The resolved options; ``api_key`` is excluded from ``repr``."""

    api_key: str = field(default="", repr=False)
    server_url: str | None = None
    server: str | None = None
    timeout_ms: int | None = None
    max_retries: int = 3
    timeout_hours: int = 24
    inline_threshold: int = INLINE_THRESHOLD


def _number(options: Mapping[str, Any], name: str, kind: type, minimum: float) -> Any:
    value = options[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ConfigurationError(f"mistral option {name!r} must be a{'n integer' if kind is int else ' number'}, got {value!r}")
    if value < minimum:
        raise ConfigurationError(f"mistral option {name!r} must be at least {minimum}, got {value!r}")
    return value


def _base_url(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^/\s]+", value):
        raise ConfigurationError(
            f"mistral base_url must be an http(s) URL such as http://127.0.0.1:8000, got {value!r}"
        )
    url = value.rstrip("/")
    if url.endswith("/v1"):
        # The SDK's paths already start with /v1; a base ending in /v1 would call /v1/v1/...
        raise ConfigurationError(
            f"mistral base_url {value!r} ends with /v1, but the Mistral SDK adds /v1 itself: "
            f"use {url[: -len('/v1')] or url!r} instead."
        )
    return url


def resolve(options: Mapping[str, Any]) -> Settings:
    """Check the options and the environment; raise before any network call."""
    unknown = sorted(set(options) - set(KNOWN))
    if unknown:
        known = "; ".join(f"{k}: {v}" for k, v in KNOWN.items())
        from overnight.suggest import did_you_mean

        raise ConfigurationError(f"unknown mistral client option(s) {', '.join(unknown)}"
                                 f"{did_you_mean(unknown[0], KNOWN)}. Known options: {known}.")
    api_key = options.get("api_key") or os.environ.get(KEY_ENV, "")
    if not isinstance(api_key, str):
        raise ConfigurationError("mistral option 'api_key' must be a string")
    if not api_key:
        raise MissingCredentials(
            f"no Mistral API key: set the {KEY_ENV} environment variable "
            'or pass api_key="..." to LLM("mistral/<model>", ...).'
        )
    base = options.get("base_url") or os.environ.get(BASE_URL_ENV) or None
    server = options.get("server")
    if server is not None and server not in SERVERS:
        raise ConfigurationError(f"mistral option 'server' must be one of {', '.join(SERVERS)}, got {server!r}")
    timeout = _number(options, "timeout", float, 0.001) if "timeout" in options else None
    return Settings(
        api_key=api_key,
        server_url=_base_url(base) if base else None,
        server=server,
        timeout_ms=round(timeout * 1000) if timeout is not None else None,
        max_retries=_number(options, "max_retries", int, 0) if "max_retries" in options else 3,
        timeout_hours=_number(options, "timeout_hours", int, 1) if "timeout_hours" in options else 24,
        inline_threshold=(
            _number(options, "inline_threshold", int, 0) if "inline_threshold" in options else INLINE_THRESHOLD
        ),
    )


# --- retries --------------------------------------------------------------------------

INITIAL_MS = 500
MAX_INTERVAL_MS = 8000
JITTER_MS = 250


def _interval(i: int) -> int:
    return min(INITIAL_MS * 2**i, MAX_INTERVAL_MS)


def retry_budget_ms(retries: int) -> int:
    """The SDK bounds retries by elapsed time, not by count: the budget that allows ``retries``.

    The SDK retries while the time since the first attempt is within the budget; so the
    budget lies past the last wanted backoff (with its worst jitter) and half an interval
    short of the next one. A server's Retry-After overrides the backoff, so very short
    Retry-After values can buy more retries within the same budget.
    """
    if retries <= 0:
        return 0
    before_last = sum(_interval(i) + JITTER_MS for i in range(retries - 1))
    return before_last + _interval(retries - 1) // 2


def retry_config(retries: int, *, status_codes: list[str] | None = None, connection_errors: bool = True) -> Any:
    """A backoff RetryConfig (429 and 5xx by default), or the SDK's "no retries"."""
    from mistralai.client.utils import BackoffStrategy, RetryConfig

    if retries <= 0:
        return RetryConfig("none", BackoffStrategy(INITIAL_MS, MAX_INTERVAL_MS, 2, 0), False)
    return RetryConfig(
        "backoff",
        BackoffStrategy(INITIAL_MS, MAX_INTERVAL_MS, 2.0, retry_budget_ms(retries), jitter_ms=JITTER_MS),
        connection_errors,
        status_codes_override=status_codes,
    )


# --- the client cache -----------------------------------------------------------------


_clients: dict[Settings, Any] = {}
_lock = threading.Lock()


def client(settings: Settings) -> Any:
    """The SDK client for these settings, built once per process."""
    with _lock:
        found = _clients.get(settings)
        if found is None:
            from mistralai.client import Mistral

            found = Mistral(
                api_key=settings.api_key,
                server_url=settings.server_url,
                server=None if settings.server_url else settings.server,
                retry_config=retry_config(settings.max_retries),
                timeout_ms=settings.timeout_ms,
            )
            _clients[settings] = found
        return found


def clear_clients() -> None:
    """Forget every cached client (tests; after a key rotation)."""
    with _lock:
        _clients.clear()
