"""Client options for provider plugins: the checks every SDK's options need, said one way.

Part of the plugin kit (with :mod:`overnight.create_once`, :mod:`overnight.orphan_files`,
:mod:`overnight.jsonl` and :mod:`overnight.openai_compat`). A plugin's ``connect`` hook
declares its options once, in an :class:`OptionSchema`, and reads each through it::

    SCHEMA = OptionSchema("Acme", "acme", {"api_key": "...", "timeout": "...", "base_url": "..."},
                          key_envs=("ACME_API_KEY",), base_url_envs=("ACME_BASE_URL",))

    @hookimpl
    def connect(provider, options):
        SCHEMA.refuse_unknown(options)
        return acme_sdk.Client(api_key=SCHEMA.api_key(options), timeout=SCHEMA.timeout(options),
                               base_url=SCHEMA.base_url(options, default="https://api.acme.com"))

Every error is a :class:`~overnight.ConfigurationError` (or
:class:`~overnight.MissingCredentials`) that names the option and, for an unknown one,
the closest known name and the whole list. No message ever holds a key's value: a
malformed key is described by its type only, and :func:`secret` keeps it out of the
``repr`` of the settings value a plugin builds.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

from attrs import field, frozen

from overnight.errors import ConfigurationError, MissingCredentials
from overnight.suggest import did_you_mean

#: The options that hold a credential: their values never appear in a message.
SECRET_OPTIONS = frozenset({"api_key", "auth_token"})


def secret(default: str = "") -> Any:
    """An attrs field for a credential in a plugin's settings value: kept out of ``repr``."""
    return field(default=default, repr=False)


@frozen
class OptionSchema:
    """The client options one provider accepts, and how messages name them."""

    #: How messages name the provider ("OpenAI").
    label: str
    #: The provider name users write in ``LLM("<provider>/<model>")``.
    provider: str
    #: Every option the plugin accepts, with what it is for (shown on a typo).
    options: Mapping[str, str]
    #: The environment variables a key is read from when ``api_key`` is absent, preferred first.
    key_envs: tuple[str, ...] = ()
    #: The environment variables a base URL is read from when ``base_url`` is absent.
    base_url_envs: tuple[str, ...] = ()

    # -- the option set ------------------------------------------------------------------

    def refuse_unknown(self, options: Mapping[str, Any]) -> None:
        """Raise for an option the plugin does not know (a typo, or a generation option)."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = "; ".join(f"{name}: {help}" for name, help in self.options.items())
            raise ConfigurationError(
                f"unknown {self.label} client option(s) {', '.join(map(repr, unknown))} given to "
                f"LLM('{self.provider}/<model>', ...)"
                f"{did_you_mean(unknown[0], self.options)}. Generation options belong in generation_kwargs=...; "
                f"the client options are: {known}."
            )

    def _bad(self, name: str, what: str, value: Any) -> ConfigurationError:
        shown = f"a {type(value).__name__}" if name in SECRET_OPTIONS else repr(value)
        return ConfigurationError(f"the {self.label} option {name!r} must be {what}, got {shown}")

    # -- credentials ---------------------------------------------------------------------

    def api_key(self, options: Mapping[str, Any], *, name: str = "api_key", required: bool = True,
                allow_callable: bool = False, envs: tuple[str, ...] | None = None) -> Any:
        """The key from ``options[name]``, else the first of ``envs`` (:attr:`key_envs`) that is set.

        Raises :class:`~overnight.MissingCredentials` naming the variable to set when there is
        none (unless ``required`` is false: then ``""``), never showing a value.
        """
        value = options.get(name)
        if value is not None and not (isinstance(value, str) or (allow_callable and callable(value))):
            raise self._bad(name, "a string" + (" (or a function returning one)" if allow_callable else ""), value)
        if isinstance(value, str):
            value = value.strip()
        if not value:
            envs = self.key_envs if envs is None else envs
            value = next((os.environ[e].strip() for e in envs if os.environ.get(e, "").strip()), "")
        if not value and required:
            named = " (or ".join(self.key_envs) + ")" * (len(self.key_envs) - 1)
            raise MissingCredentials(
                f"no {self.label} API key: set the {named} environment variable "
                f"or pass api_key=... to LLM('{self.provider}/<model>', ...), then run again."
            )
        return value

    # -- where -----------------------------------------------------------------------------

    def base_url(self, options: Mapping[str, Any], *, default: str | None = None, no_suffix: str | None = None,
                 suffix_is: str | None = None, example: str = "https://...") -> str | None:
        """The base URL from ``options``, else :attr:`base_url_envs`, else ``default``; checked.

        ``no_suffix``: a regular expression the URL must not end with, for SDKs that add that
        path themselves (``r"/v1"``: the SDK's paths start with /v1, so ``.../v1`` would call
        ``/v1/v1/...``); ``suffix_is`` says what it is in the message. Returned without a
        trailing slash.
        """
        value, where = options.get("base_url"), "option 'base_url'"
        if not value:
            env = next((e for e in self.base_url_envs if os.environ.get(e)), None)
            value, where = (os.environ[env], f"${env}") if env else (None, where)
        if not value:
            return default
        if not isinstance(value, str) or not re.match(r"^https?://[^/\s]+", value):
            raise ConfigurationError(f"the {self.label} {where} must be an http(s) URL such as {example}, got {value!r}")
        url = value.rstrip("/")
        found = re.search(f"(?:{no_suffix})$", url) if no_suffix else None
        if found:
            raise ConfigurationError(
                f"the {self.label} {where} {value!r} ends with {found[0]!r}, but the {self.label} SDK adds "
                f"{suffix_is or found[0]} itself: use {url[:found.start()]!r} instead."
            )
        return url

    # -- how -------------------------------------------------------------------------------

    def timeout(self, options: Mapping[str, Any], name: str = "timeout") -> float | None:
        """Seconds per HTTP call: a positive number, or ``None`` for the SDK's own."""
        value = options.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise self._bad(name, "a positive number of seconds", value)
        return float(value)

    def whole(self, options: Mapping[str, Any], name: str, *, default: int, minimum: int = 0) -> int:
        """A whole-number option (``max_retries``, a threshold), at least ``minimum``."""
        value = options.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._bad(name, f"a whole number >= {minimum}", value)
        return value

    def max_retries(self, options: Mapping[str, Any], *, default: int) -> int:
        """SDK retries of a failed HTTP call: a whole number >= 0."""
        return self.whole(options, "max_retries", default=default)

    def headers(self, options: Mapping[str, Any], name: str = "default_headers") -> dict[str, str]:
        """Extra HTTP headers: header names mapped to string values."""
        value = options.get(name)
        if value is None:
            return {}
        if not (isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
            raise ConfigurationError(f"the {self.label} option {name!r} must map header names to string values")
        return dict(value)

    def string(self, options: Mapping[str, Any], name: str, *, env: str | None = None) -> str | None:
        """A plain string option, else the environment variable ``env``, else ``None``."""
        value = options.get(name)
        if value is not None and not isinstance(value, str):
            raise self._bad(name, "a string" + (f" (default: ${env})" if env else ""), value)
        return value or (os.environ.get(env) if env else None) or None

    def choice(self, options: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str | None:
        """One of ``choices``, or ``None`` when absent."""
        value = options.get(name)
        if value is not None and value not in choices:
            raise self._bad(name, f"one of {', '.join(choices)}", value)
        return value
