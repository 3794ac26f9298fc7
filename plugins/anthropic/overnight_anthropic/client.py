"""Client options, credentials and the cached SDK client.

Options come from ``LLM("anthropic/<model>", **options)``; whatever is absent falls back
to the SDK's own environment variables (``ANTHROPIC_API_KEY``, ``ANTHROPIC_AUTH_TOKEN``,
``ANTHROPIC_BASE_URL``). One ``anthropic.Anthropic`` is built per distinct options and
environment, per process, and reused by every hook call.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import Any, Mapping

import anthropic

from overnight import ConfigurationError, MissingCredentials

KEY_ENV = "ANTHROPIC_API_KEY"
TOKEN_ENV = "ANTHROPIC_AUTH_TOKEN"
BASE_URL_ENV = "ANTHROPIC_BASE_URL"
SECRET_ENV = (KEY_ENV, TOKEN_ENV)

#: Client options a user may give, with what each must be.
OPTIONS: dict[str, str] = {
    "api_key": "an Anthropic API key (default: $ANTHROPIC_API_KEY)",
    "auth_token": "a bearer token instead of an API key (default: $ANTHROPIC_AUTH_TOKEN)",
    "base_url": "the API root without /v1 (default: $ANTHROPIC_BASE_URL or https://api.anthropic.com)",
    "timeout": "seconds per HTTP call (SDK default 600)",
    "max_retries": "SDK retries of 408/409/429/5xx and connection errors (SDK default 2)",
    "default_headers": "extra HTTP headers sent with every call",
}

_clients: dict[str, anthropic.Anthropic] = {}
_lock = threading.Lock()


def validate(options: Mapping[str, Any]) -> None:
    """Raise ConfigurationError / MissingCredentials for options that cannot work; no network."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        known = "; ".join(f"{k}: {v}" for k, v in OPTIONS.items())
        from overnight.suggest import did_you_mean

        raise ConfigurationError(f"unknown Anthropic client option(s) {unknown}{did_you_mean(unknown[0], OPTIONS)}. "
                                 f"Known options: {known}.")
    for name in ("api_key", "auth_token"):
        if options.get(name) is not None and not isinstance(options[name], str):
            raise ConfigurationError(f"the Anthropic option {name!r} must be a string")
    if options.get("api_key") and options.get("auth_token"):
        raise ConfigurationError("give the Anthropic client either api_key or auth_token, not both")
    timeout = options.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigurationError(f"the Anthropic option 'timeout' must be a positive number of seconds, got {timeout!r}")
    retries = options.get("max_retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
        raise ConfigurationError(f"the Anthropic option 'max_retries' must be a whole number >= 0, got {retries!r}")
    headers = options.get("default_headers")
    if headers is not None and not (
        isinstance(headers, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        raise ConfigurationError("the Anthropic option 'default_headers' must map header names to string values")
    _check_base_url(options.get("base_url"), "the base_url option")
    _check_base_url(os.environ.get(BASE_URL_ENV), f"${BASE_URL_ENV}")
    if not (options.get("api_key") or options.get("auth_token") or os.environ.get(KEY_ENV) or os.environ.get(TOKEN_ENV)):
        raise MissingCredentials(
            f"No Anthropic API key found. Set the {KEY_ENV} environment variable "
            "(or pass api_key=... to LLM('anthropic/<model>', ...)), then run again."
        )


def _check_base_url(url: Any, where: str) -> None:
    if url is None or url == "":
        return
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"{where} must be an http(s) URL, got {url!r}")
    if url.rstrip("/").endswith("/v1"):
        # The SDK's paths already start with /v1: ".../v1" would call /v1/v1/messages/batches.
        raise ConfigurationError(
            f"{where} must not end in /v1 (the Anthropic SDK adds it): use {url.rstrip('/')[:-3]!r}"
        )


def client(options: Mapping[str, Any]) -> anthropic.Anthropic:
    """The SDK client for these options and the current environment (cached)."""
    validate(options)
    ident = _identity(options)
    with _lock:
        found = _clients.get(ident)
        if found is None:
            kwargs: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
            found = _clients[ident] = anthropic.Anthropic(**kwargs)
        return found


def bounded(sdk: anthropic.Anthropic, timeout: float | None) -> anthropic.Anthropic:
    """The client for one call that must end within ``timeout`` seconds (None: no bound).

    When the bound is shorter than the client's per-attempt timeout: one attempt bounded
    by it (the core's polling retries at its next check; SDK retries would multiply the
    wait past the user's deadline; see overnight.hookspecs, "Deadlines").
    """
    if timeout is None:
        return sdk
    per_attempt = getattr(sdk.timeout, "read", sdk.timeout)
    if isinstance(per_attempt, (int, float)) and per_attempt <= timeout:
        return sdk
    return sdk.with_options(timeout=timeout, max_retries=0)


def _identity(options: Mapping[str, Any]) -> str:
    """A digest of everything the client depends on (so no secret is kept as a dict key)."""
    env = {name: os.environ.get(name) for name in (KEY_ENV, TOKEN_ENV, BASE_URL_ENV, "ANTHROPIC_CUSTOM_HEADERS")}
    text = json.dumps([sorted(options.items()), env], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def clear_cache() -> None:
    """Forget the cached clients (tests; after rotating a key)."""
    with _lock:
        for c in _clients.values():
            c.close()
        _clients.clear()
