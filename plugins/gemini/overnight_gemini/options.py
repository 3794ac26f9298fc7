"""Client options of the Gemini plugin, and the one SDK client per option set.

Options come from ``LLM("gemini/<model>", api_key=..., base_url=...)``; when absent, the
environment is read like the ``google-genai`` SDK does: ``GOOGLE_API_KEY``, else
``GEMINI_API_KEY`` (the SDK prefers the first when both are set), and for the URL
``GEMINI_BASE_URL`` (overnight's name) else ``GOOGLE_GEMINI_BASE_URL`` (the SDK's own).
Options are never stored; the key lives only in the in-memory client cache.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any, Mapping

from attrs import field, frozen

from overnight.errors import ConfigurationError, MissingCredentials

KEY_ENVS = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
BASE_URL_ENVS = ("GEMINI_BASE_URL", "GOOGLE_GEMINI_BASE_URL")

#: Chunks of up to this many requests and bytes are sent inline; bigger ones as a file.
#: The API caps a whole inline create at 20 MB; a finished inline job also returns every
#: response in each GET, so inline stays for small chunks.
INLINE_THRESHOLD = 1000
INLINE_MAX_BYTES = 10 * 1024 * 1024

#: Statuses the SDK may retry on reads (never on the create; see plugin.submit).
RETRY_STATUS = [408, 429, 500, 502, 503, 504]

KNOWN = {
    "api_key": "the Gemini API key (default: $GOOGLE_API_KEY, else $GEMINI_API_KEY)",
    "base_url": "the API root the SDK adds /v1/ to, e.g. http://127.0.0.1:8000/gemini "
                "(default: $GEMINI_BASE_URL, else $GOOGLE_GEMINI_BASE_URL)",
    "api_version": "the REST version, e.g. v1beta (default: the SDK's)",
    "timeout": "seconds per HTTP call",
    "max_retries": "retries of a read on 408/429/5xx/connection errors (default 3; 0 disables)",
    "inline_threshold": f"largest job sent inline instead of as a file (default {INLINE_THRESHOLD}; 0: always a file)",
}


@frozen
class Settings:
    """The resolved options; ``api_key`` is excluded from ``repr``."""

    api_key: str = field(default="", repr=False)
    base_url: str | None = None
    api_version: str | None = None
    timeout_ms: int | None = None
    max_retries: int = 3
    inline_threshold: int = INLINE_THRESHOLD


def _whole(options: Mapping[str, Any], name: str, minimum: int) -> int:
    value = options[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"gemini option {name!r} must be a whole number >= {minimum}, got {value!r}")
    return value


def _base_url(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^/\s]+", value):
        raise ConfigurationError(
            f"gemini base_url must be an http(s) URL such as http://127.0.0.1:8000/gemini, got {value!r}"
        )
    url = value.rstrip("/")
    if re.search(r"/v1(beta)?$", url):
        # The SDK joins "{base}/{api_version}/...": a base ending in a version calls /v1/v1/...
        raise ConfigurationError(
            f"gemini base_url {value!r} ends with an API version, which the SDK adds itself: "
            f"use {re.sub(r'/v1(beta)?$', '', url)!r} (and api_version=... if needed)."
        )
    return url + "/"


def resolve(options: Mapping[str, Any]) -> Settings:
    """Check the options and the environment; raise before any network call."""
    unknown = sorted(set(options) - set(KNOWN))
    if unknown:
        known = "; ".join(f"{k}: {v}" for k, v in KNOWN.items())
        raise ConfigurationError(f"unknown gemini client option(s) {', '.join(unknown)}. Known options: {known}.")
    api_key = options.get("api_key") or next((os.environ[e] for e in KEY_ENVS if os.environ.get(e)), "")
    if not isinstance(api_key, str):
        raise ConfigurationError("gemini option 'api_key' must be a string")
    if not api_key.strip():
        raise MissingCredentials(
            f"no Gemini API key: set the {KEY_ENVS[1]} (or {KEY_ENVS[0]}) environment variable "
            'or pass api_key="..." to LLM("gemini/<model>", ...).'
        )
    base = options.get("base_url") or next((os.environ[e] for e in BASE_URL_ENVS if os.environ.get(e)), None)
    version = options.get("api_version")
    if version is not None and (not isinstance(version, str) or not re.match(r"^v\d+[a-z0-9]*$", version)):
        raise ConfigurationError(f"gemini option 'api_version' must look like v1 or v1beta, got {version!r}")
    timeout = options.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigurationError(f"gemini option 'timeout' must be a positive number of seconds, got {timeout!r}")
    return Settings(
        api_key=api_key.strip(),
        base_url=_base_url(base) if base else None,
        api_version=version,
        timeout_ms=max(1, round(timeout * 1000)) if timeout is not None else None,
        max_retries=_whole(options, "max_retries", 0) if "max_retries" in options else 3,
        inline_threshold=(
            _whole(options, "inline_threshold", 0) if "inline_threshold" in options else INLINE_THRESHOLD
        ),
    )


def retry_options(retries: int, status_codes: list[int] | None = None) -> Any:
    """The SDK's retry policy: ``retries`` retries with short backoff; 0 = one attempt."""
    from google.genai import types

    return types.HttpRetryOptions(
        attempts=retries + 1, initial_delay=0.5, max_delay=8.0, exp_base=2.0, jitter=0.25,
        http_status_codes=status_codes or RETRY_STATUS,
    )


def once(timeout_ms: int | None = None) -> Any:
    """Per-call HTTP options for a call that must run exactly once (the create, or a call
    bounded by the core's deadline: then ``timeout_ms``)."""
    from google.genai import types

    return types.HttpOptions(retry_options=types.HttpRetryOptions(attempts=1), timeout=timeout_ms)


# --- the client cache -----------------------------------------------------------------


_clients: dict[Settings, Any] = {}
_lock = threading.Lock()


def client(settings: Settings) -> Any:
    """The SDK client for these settings, built once per process."""
    with _lock:
        found = _clients.get(settings)
        if found is None:
            from google import genai
            from google.genai import types

            http = types.HttpOptions(
                base_url=settings.base_url, api_version=settings.api_version, timeout=settings.timeout_ms,
                # Always set: with retry options the SDK leaves every retry to them.
                retry_options=retry_options(settings.max_retries),
            )
            found = genai.Client(api_key=settings.api_key, vertexai=False, http_options=http)
            _clients[settings] = found
        return found


def clear_clients() -> None:
    """Forget every cached client (tests; after a key rotation)."""
    with _lock:
        _clients.clear()
