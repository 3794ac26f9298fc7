"""Client options: checks, environment fallbacks, and the SDK client ``connect`` builds.

Options come from ``LLM("openai/<model>", api_key=..., base_url=..., ...)``; absent ones
fall back to the OpenAI SDK's usual environment variables. The common checks are the
kit's (:mod:`overnight.client_options`); nothing here touches the network, and no
message ever includes a key's value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from attrs import field, frozen

if TYPE_CHECKING:  # the SDK is imported on the first call that needs a client, not with the plugin
    import openai

from overnight.client_options import OptionSchema, secret
from overnight.connection import Connection
from overnight.deadlines import one_attempt_within
from overnight.errors import ConfigurationError

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


SCHEMA = OptionSchema("OpenAI", "openai", OPTIONS, key_envs=(KEY_ENV,), base_url_envs=(BASE_URL_ENV,))


@frozen
class Settings:
    """The checked options of one LLM; the key is kept out of ``repr``."""

    api_key: Any = secret()  # a string, or a function returning one (the SDK takes both)
    base_url: str | None = None
    organization: str | None = None
    project: str | None = None
    timeout: float | None = None
    max_retries: int = 2
    default_headers: Mapping[str, str] = field(factory=dict)
    http_client: Any = None
    #: The user's batch labels.
    metadata: Mapping[str, str] = field(factory=dict)
    #: Another vendor's API: OpenAI's organization and project headers are not its business.
    foreign: bool = False
    #: The ``completion_window`` sent with each batch.
    window: str = "24h"


def schema(vendor: Vendor | None) -> OptionSchema:
    """OpenAI's option schema, or a vendor's: its key and base URL variables instead of OpenAI's."""
    if vendor is None:
        return SCHEMA
    return OptionSchema(vendor.label, vendor.name, OPTIONS, key_envs=(vendor.key_env,),
                        base_url_envs=(vendor.base_url_env,))


def resolve(options: Mapping[str, Any], vendor: Vendor | None = None) -> Settings:
    """Check ``options`` and fill the SDK's settings from them and the environment.

    ``vendor``: an OpenAI-compatible vendor (Groq...), whose own key and base URL
    variables replace OpenAI's (OpenAI's environment must not redirect another vendor's
    calls, nor lend them a key), and whose URL is the default. Raises
    :class:`MissingCredentials` without a key, :class:`ConfigurationError` for an
    unknown or malformed option.
    """
    checks = schema(vendor)
    checks.refuse_unknown(options)
    if vendor is not None:
        for name in ("organization", "project"):
            if options.get(name) is not None:
                raise ConfigurationError(f"the {vendor.label} provider takes no {name!r} option (an OpenAI setting)")
    api_key = checks.api_key(options, allow_callable=True)
    base_url = checks.base_url(options, default=vendor.base_url if vendor else None,
                               example="https://api.openai.com/v1")
    if vendor is not None and base_url is not None:
        base_url = vendor.api_url(base_url)
    return Settings(
        api_key=api_key,
        base_url=base_url,
        organization=None if vendor else checks.string(options, "organization", env=ORG_ENV),
        project=None if vendor else checks.string(options, "project", env=PROJECT_ENV),
        timeout=checks.timeout(options),
        max_retries=checks.max_retries(options, default=2),
        default_headers=checks.headers(options),
        http_client=options.get("http_client"),
        metadata=user_metadata(options.get("metadata")),
        foreign=vendor is not None,
        window=vendor.completion_window if vendor else "24h",
    )


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


def build(settings: Settings) -> openai.OpenAI:
    """The SDK client for these settings (what ``connect``'s connection builds on first use)."""
    import openai

    kwargs: dict[str, Any] = {
        "api_key": settings.api_key, "base_url": settings.base_url, "organization": settings.organization,
        "project": settings.project, "timeout": settings.timeout, "http_client": settings.http_client,
    }
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    headers: dict[str, Any] = dict(settings.default_headers)
    if settings.foreign:  # the SDK would still read OPENAI_ORG_ID / OPENAI_PROJECT_ID
        headers.update({"OpenAI-Organization": openai.Omit(), "OpenAI-Project": openai.Omit()})
    return openai.OpenAI(max_retries=settings.max_retries, default_headers=headers or None, **kwargs)


def connect(options: Mapping[str, Any], vendor: Vendor | None = None) -> Connection[Settings]:
    """What the ``connect`` hook returns: the checked settings, the SDK client built on first use."""
    return Connection(resolve(options, vendor), build)


def client_for(options: Mapping[str, Any], vendor: Vendor | None = None) -> openai.OpenAI:
    """The SDK client for these options and the current environment (a new one each call).

    Hooks get theirs from ``connect`` (``client.sdk``), built once per run.
    """
    return build(resolve(options, vendor))


def bounded(client: openai.OpenAI, timeout: float | None) -> openai.OpenAI:
    """The client for one call that must end within ``timeout`` seconds (see overnight.deadlines)."""
    return one_attempt_within(client, timeout)
