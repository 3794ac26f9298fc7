"""Client options of the Gemini plugin, and the SDK client ``connect`` builds from them.

Options come from ``LLM("gemini/<model>", api_key=..., base_url=...)``; when absent, the
environment is read like the ``google-genai`` SDK does: ``GOOGLE_API_KEY``, else
``GEMINI_API_KEY`` (the SDK prefers the first when both are set), and for the URL
``GEMINI_BASE_URL`` (overnight's name) else ``GOOGLE_GEMINI_BASE_URL`` (the SDK's own).
The common checks are the kit's (:mod:`overnight.client_options`). Options are never
stored; the key lives only in the run's connection.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from attrs import frozen

from overnight.client_options import OptionSchema, secret
from overnight.connection import Connection
from overnight.errors import ConfigurationError

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

    api_key: str = secret()
    base_url: str | None = None
    api_version: str | None = None
    timeout_ms: int | None = None
    max_retries: int = 3
    inline_threshold: int = INLINE_THRESHOLD


SCHEMA = OptionSchema("Gemini", "gemini", KNOWN, key_envs=KEY_ENVS, base_url_envs=BASE_URL_ENVS)


def resolve(options: Mapping[str, Any]) -> Settings:
    """Check the options and the environment; raise before any network call."""
    SCHEMA.refuse_unknown(options)
    api_key = SCHEMA.api_key(options)
    base = SCHEMA.base_url(options, no_suffix=r"/v1(beta)?", suffix_is="the API version (api_version=...)",
                           example="http://127.0.0.1:8000/gemini")
    version = options.get("api_version")
    if version is not None and (not isinstance(version, str) or not re.match(r"^v\d+[a-z0-9]*$", version)):
        raise ConfigurationError(f"gemini option 'api_version' must look like v1 or v1beta, got {version!r}")
    timeout = SCHEMA.timeout(options)
    return Settings(
        api_key=api_key,
        base_url=base + "/" if base else None,  # the SDK joins "{base}{api_version}/..."
        api_version=version,
        timeout_ms=max(1, round(timeout * 1000)) if timeout is not None else None,
        max_retries=SCHEMA.max_retries(options, default=3),
        inline_threshold=SCHEMA.whole(options, "inline_threshold", default=INLINE_THRESHOLD),
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


# --- the client -----------------------------------------------------------------------


def client(settings: Settings) -> Any:
    """The SDK client for these settings (a new one each call; hooks use ``connect``'s)."""
    from google import genai
    from google.genai import types

    http = types.HttpOptions(
        base_url=settings.base_url, api_version=settings.api_version, timeout=settings.timeout_ms,
        # Always set: with retry options the SDK leaves every retry to them.
        retry_options=retry_options(settings.max_retries),
    )
    return genai.Client(api_key=settings.api_key, vertexai=False, http_options=http)


def connect(options: Mapping[str, Any]) -> Connection[Settings]:
    """What the ``connect`` hook returns: the checked settings, the SDK client built on first use."""
    return Connection(resolve(options), client)
