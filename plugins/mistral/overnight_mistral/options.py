"""Client options of the Mistral plugin, and the SDK client ``connect`` builds from them.

Options come from ``LLM("mistral/<model>", api_key=..., base_url=...)``; when absent,
the environment is read (``MISTRAL_API_KEY``; ``MISTRAL_BASE_URL`` is overnight's own
variable, since the SDK reads none for the URL). The common checks are the kit's
(:mod:`overnight.client_options`). Options are never stored; the key lives only in the
run's connection.
"""

from __future__ import annotations

from typing import Any, Mapping

from attrs import frozen

from overnight.client_options import OptionSchema, secret
from overnight.connection import Connection

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

    api_key: str = secret()
    server_url: str | None = None
    server: str | None = None
    timeout_ms: int | None = None
    max_retries: int = 3
    timeout_hours: int = 24
    inline_threshold: int = INLINE_THRESHOLD


SCHEMA = OptionSchema("Mistral", "mistral", KNOWN, key_envs=(KEY_ENV,), base_url_envs=(BASE_URL_ENV,))


def resolve(options: Mapping[str, Any]) -> Settings:
    """Check the options and the environment; raise before any network call."""
    SCHEMA.refuse_unknown(options)
    timeout = SCHEMA.timeout(options)
    return Settings(
        api_key=SCHEMA.api_key(options),
        server_url=SCHEMA.base_url(options, no_suffix="/v1", example="http://127.0.0.1:8000"),
        server=SCHEMA.choice(options, "server", SERVERS),
        timeout_ms=round(timeout * 1000) if timeout is not None else None,
        max_retries=SCHEMA.max_retries(options, default=3),
        timeout_hours=SCHEMA.whole(options, "timeout_hours", default=24, minimum=1),
        inline_threshold=SCHEMA.whole(options, "inline_threshold", default=INLINE_THRESHOLD),
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


# --- the client -----------------------------------------------------------------------


def client(settings: Settings) -> Any:
    """The SDK client for these settings (a new one each call; hooks use ``connect``'s)."""
    from mistralai.client import Mistral

    return Mistral(
        api_key=settings.api_key,
        server_url=settings.server_url,
        server=None if settings.server_url else settings.server,
        retry_config=retry_config(settings.max_retries),
        timeout_ms=settings.timeout_ms,
    )


def connect(options: Mapping[str, Any]) -> Connection[Settings]:
    """What the ``connect`` hook returns: the checked settings, the SDK client built on first use."""
    return Connection(resolve(options), client)
