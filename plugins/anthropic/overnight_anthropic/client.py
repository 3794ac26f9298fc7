"""Client options, credentials, and the SDK client ``connect`` builds.

Options come from ``LLM("anthropic/<model>", **options)``; whatever is absent falls back
to the SDK's own environment variables (``ANTHROPIC_API_KEY``, ``ANTHROPIC_AUTH_TOKEN``,
``ANTHROPIC_BASE_URL``). The common checks are the kit's (:mod:`overnight.client_options`);
one ``anthropic.Anthropic`` is built per run (``connect``), on the first call that needs it.
"""

from __future__ import annotations

from typing import Any, Mapping

import anthropic
from attrs import field, frozen

from overnight import ConfigurationError, MissingCredentials
from overnight.client_options import OptionSchema, secret
from overnight.connection import Connection
from overnight.deadlines import one_attempt_within

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

SCHEMA = OptionSchema("Anthropic", "anthropic", OPTIONS, key_envs=(KEY_ENV,), base_url_envs=(BASE_URL_ENV,))


@frozen
class Settings:
    """The checked options of one LLM; credentials are kept out of ``repr``."""

    api_key: str = secret()
    auth_token: str = secret()
    base_url: str | None = None
    timeout: float | None = None
    max_retries: int | None = None
    default_headers: Mapping[str, str] = field(factory=dict)


def resolve(options: Mapping[str, Any]) -> Settings:
    """Raise ConfigurationError / MissingCredentials for options that cannot work; no network."""
    SCHEMA.refuse_unknown(options)
    api_key = SCHEMA.api_key(options, required=False, envs=())
    auth_token = SCHEMA.api_key(options, name="auth_token", required=False, envs=())
    if api_key and auth_token:
        raise ConfigurationError("give the Anthropic client either api_key or auth_token, not both")
    timeout = SCHEMA.timeout(options)
    retries = SCHEMA.max_retries(options, default=-1)
    headers = SCHEMA.headers(options)
    base_url = SCHEMA.base_url(options, no_suffix="/v1", example="https://api.anthropic.com")
    if not (api_key or auth_token):
        api_key = SCHEMA.api_key(options, required=False)
        auth_token = "" if api_key else SCHEMA.api_key(options, name="auth_token", required=False, envs=(TOKEN_ENV,))
    if not (api_key or auth_token):
        raise MissingCredentials(
            f"No Anthropic API key found. Set the {KEY_ENV} environment variable "
            "(or pass api_key=... to LLM('anthropic/<model>', ...)), then run again."
        )
    return Settings(api_key=api_key, auth_token=auth_token, base_url=base_url, timeout=timeout,
                    max_retries=None if retries < 0 else retries, default_headers=headers)


def validate(options: Mapping[str, Any]) -> None:
    """Raise ConfigurationError / MissingCredentials for options that cannot work; no network."""
    resolve(options)


def build(settings: Settings) -> anthropic.Anthropic:
    """The SDK client for these settings (what ``connect``'s connection builds on first use)."""
    kwargs: dict[str, Any] = {
        "api_key": settings.api_key or None, "auth_token": settings.auth_token or None,
        "base_url": settings.base_url, "timeout": settings.timeout, "max_retries": settings.max_retries,
        "default_headers": dict(settings.default_headers) or None,
    }
    return anthropic.Anthropic(**{k: v for k, v in kwargs.items() if v is not None})


def connect(options: Mapping[str, Any]) -> Connection[Settings]:
    """What the ``connect`` hook returns: the checked settings, the SDK client built on first use."""
    return Connection(resolve(options), build)


def client(options: Mapping[str, Any]) -> anthropic.Anthropic:
    """The SDK client for these options and the current environment (a new one each call).

    Hooks get theirs from ``connect`` (``client.sdk``), built once per run.
    """
    return build(resolve(options))


def bounded(sdk: anthropic.Anthropic, timeout: float | None) -> anthropic.Anthropic:
    """The client for one call that must end within ``timeout`` seconds (see overnight.deadlines)."""
    return one_attempt_within(sdk, timeout)
