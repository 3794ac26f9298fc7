"""Client options: validation, environment fallbacks and one cached SDK client per configuration.

Options come from ``LLM("openai/<model>", api_key=..., base_url=..., ...)``; absent ones
fall back to the OpenAI SDK's usual environment variables. Nothing here touches the
network, and no message ever includes a key's value.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # the SDK is imported on the first call that needs a client, not with the plugin
    import openai

from overnight.errors import ConfigurationError, MissingCredentials

if TYPE_CHECKING:
    from overnight_openai.vendors import Vendor

KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
ORG_ENV = "OPENAI_ORG_ID"
PROJECT_ENV = "OPENAI_PROJECT_ID"

#: Metadata keys this plugin writes on every batch (users' ``metadata`` may not use them).
RESERVED_PREFIX = "overnight_"
#: OpenAI allows 16 metadata pairs per batch; the plugin uses 3 of them.
MAX_USER_METADATA = 13

#: Every client option the plugin accepts, with what it is for (shown on a typo).
OPTIONS: dict[str, str] = {
    "api_key": f"the API key (default: ${KEY_ENV})",
    "base_url": f"the API base URL, including /v1 (default: ${BASE_URL_ENV}, else https://api.openai.com/v1)",
    "organization": f"the organization id (default: ${ORG_ENV})",
    "project": f"the project id (default: ${PROJECT_ENV})",
    "timeout": "seconds per HTTP call (default 600)",
    "max_retries": "SDK retries of a failed HTTP call (default 2)",
    "default_headers": "extra HTTP headers sent with every call",
    "http_client": "an httpx client for the SDK (proxies, certificates)",
    "metadata": "extra string labels attached to every batch (up to 13 pairs)",
}


def resolve(options: Mapping[str, Any], vendor: Vendor | None = None) -> dict[str, Any]:
    """Check ``options`` and fill the SDK's settings from them and the environment.

    ``vendor``: an OpenAI-compatible vendor (Groq...), whose own key and base URL
    variables replace OpenAI's, and whose URL is the default. Raises
    :class:`MissingCredentials` without a key, :class:`ConfigurationError` for an
    unknown or malformed option.
    """
    if vendor is not None:
        return _resolve_vendor(options, vendor)
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        known = "\n".join(f"  {name}: {help}" for name, help in OPTIONS.items())
        raise ConfigurationError(
            f"unknown OpenAI client option(s) {', '.join(map(repr, unknown))} given to LLM(...). "
            f"Generation options belong in generation_kwargs=...; the client options are:\n{known}"
        )
    api_key = options.get("api_key") or os.environ.get(KEY_ENV)
    if not api_key:
        raise MissingCredentials(
            f"no OpenAI API key: set the {KEY_ENV} environment variable "
            "or pass api_key=... to LLM('openai/<model>', ...)."
        )
    if not (isinstance(api_key, str) or callable(api_key)):
        raise ConfigurationError("the OpenAI option 'api_key' must be a string (or a function returning one)")
    base_url = options.get("base_url") or os.environ.get(BASE_URL_ENV) or None
    if base_url is not None and (
        not isinstance(base_url, str) or not base_url.startswith(("http://", "https://"))
    ):
        raise ConfigurationError(
            f"the OpenAI option 'base_url' must be an http(s) URL including /v1, got {base_url!r}"
        )
    timeout = options.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigurationError(f"the OpenAI option 'timeout' must be a positive number of seconds, got {timeout!r}")
    max_retries = options.get("max_retries", 2)
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError(f"the OpenAI option 'max_retries' must be an integer >= 0, got {max_retries!r}")
    headers = options.get("default_headers")
    if headers is not None and not (
        isinstance(headers, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        raise ConfigurationError("the OpenAI option 'default_headers' must map header names to string values")
    for name, env in (("organization", ORG_ENV), ("project", PROJECT_ENV)):
        value = options.get(name)
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"the OpenAI option {name!r} must be a string (default: ${env})")
    return {
        "api_key": api_key,
        "base_url": base_url,
        "organization": options.get("organization") or os.environ.get(ORG_ENV) or None,
        "project": options.get("project") or os.environ.get(PROJECT_ENV) or None,
        "timeout": timeout,
        "max_retries": max_retries,
        "default_headers": tuple(sorted((headers or {}).items())),
        "http_client": options.get("http_client"),
        "metadata": user_metadata(options.get("metadata")),
    }


def _resolve_vendor(options: Mapping[str, Any], vendor: Vendor) -> dict[str, Any]:
    """OpenAI's checks with the vendor's variables: its key, its base URL, no OpenAI org or project."""
    for name in ("organization", "project"):
        if options.get(name) is not None:
            raise ConfigurationError(f"the {vendor.label} provider takes no {name!r} option (an OpenAI setting)")
    api_key = options.get("api_key") or os.environ.get(vendor.key_env)
    if not api_key:
        raise MissingCredentials(
            f"no {vendor.label} API key: set the {vendor.key_env} environment variable "
            f"or pass api_key=... to LLM('{vendor.name}/<model>', ...)."
        )
    base_url = options.get("base_url") or os.environ.get(vendor.base_url_env) or vendor.base_url
    if isinstance(base_url, str):
        base_url = vendor.api_url(base_url)
    # OpenAI's own environment must not redirect another vendor's calls (nor lend them a key).
    settings = resolve({**options, "api_key": api_key, "base_url": base_url})
    settings["organization"] = settings["project"] = None
    settings["foreign"] = True  # the SDK would still read OPENAI_ORG_ID / OPENAI_PROJECT_ID
    return settings


def user_metadata(value: Any) -> dict[str, str]:
    """The user's batch labels, checked against OpenAI's metadata rules."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError("the OpenAI option 'metadata' must be a dict of strings")
    if len(value) > MAX_USER_METADATA:
        raise ConfigurationError(f"the OpenAI option 'metadata' holds at most {MAX_USER_METADATA} pairs")
    for key, item in value.items():
        if not (isinstance(key, str) and isinstance(item, str)) or not 0 < len(key) <= 64 or len(item) > 512:
            raise ConfigurationError(
                "the OpenAI option 'metadata' needs string keys of 1-64 characters and string values "
                f"of at most 512 characters (bad pair: {key!r})"
            )
        if key.startswith(RESERVED_PREFIX):
            raise ConfigurationError(f"metadata keys starting with {RESERVED_PREFIX!r} are reserved by overnight")
    return dict(value)


_lock = threading.Lock()


def client_for(options: Mapping[str, Any], vendor: Vendor | None = None) -> openai.OpenAI:
    """The SDK client for these options (and the current environment), built once per process."""
    settings = resolve(options, vendor)
    settings.pop("metadata")
    with _lock:  # one client per configuration even when hooks run on several threads
        return _build(**settings)


@functools.lru_cache(maxsize=32)
def _build(foreign: bool = False, **settings: Any) -> openai.OpenAI:
    import openai

    kwargs = {k: v for k, v in settings.items() if v is not None}
    kwargs["default_headers"] = dict(settings["default_headers"]) or None
    if foreign:  # another vendor: OpenAI's organization and project ids are not its business
        kwargs["default_headers"] = {**(kwargs["default_headers"] or {}), "OpenAI-Organization": openai.Omit(),
                                     "OpenAI-Project": openai.Omit()}
    return openai.OpenAI(**kwargs)


def bounded(client: openai.OpenAI, timeout: float | None) -> openai.OpenAI:
    """The client for one call that must end within ``timeout`` seconds (None: no bound).

    When the bound is shorter than the client's own per-attempt timeout, one attempt
    bounded by it: the core's polling retries at its next check, and SDK retries would
    multiply the wait past the user's deadline (see overnight.hookspecs, "Deadlines").
    """
    if timeout is None:
        return client
    per_attempt = getattr(client.timeout, "read", client.timeout)
    if isinstance(per_attempt, (int, float)) and per_attempt <= timeout:
        return client
    return client.with_options(timeout=timeout, max_retries=0)
