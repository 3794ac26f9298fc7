"""The ``generate`` hook: one request through ``models.generate_content``, now (online mode).

The request sent is the batch line's ``request`` as ``build_request`` made it (its
``generationConfig``, ``systemInstruction`` and ``safetySettings`` go into the SDK's
config, as :func:`~overnight_gemini.translate.inline_request` does for inline batches),
with the model the batch gives in its create call. The Result is built by the batch
path's own parser (:func:`~overnight_gemini.translate.parse_response`, as for an inline
batch's response). The SDK's retries are off: the core paces every retry.

A 429 ``RESOURCE_EXHAUSTED`` carries its wait in the body (a ``google.rpc.RetryInfo``
``retryDelay``), not in a Retry-After header (docs/protocols/gemini.md, "Online API").
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from overnight.errors import ProviderUnavailable
from overnight.models import OnlineLimits, Result
from overnight.online_failures import REFUSED, raise_if_passing
from overnight.retryafter import retry_after

from overnight_gemini import options as opts
from overnight_gemini import translate

#: Tier 1 (ai.google.dev/gemini-api/docs/rate-limits): per project and model, e.g. 1,000
#: requests and 1,000,000 input tokens per minute for 2.5 Flash, 150 and 2,000,000 for 2.5
#: Pro; the lowest of each, as the model is not known here.
LIMITS = OnlineLimits(requests_per_minute=150, tokens_per_minute=1_000_000, max_concurrency=16)

#: The request fields that go into the SDK's GenerateContentConfig (REST names).
_CONFIG_FIELDS = ("systemInstruction", "safetySettings", "tools", "toolConfig", "cachedContent")
_DELAY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)s\s*$")


def generate(provider: str, request: Mapping[str, Any], client: Any, timeout: float | None, model: str) -> Result:
    """Send ``request["request"]`` to ``models/{model}:generateContent``; see the ``generate`` hookspec."""
    from google.genai import errors

    key = str(request["key"])
    body = request["request"]
    config: dict[str, Any] = dict(body.get("generationConfig") or {})
    config.update({name: body[name] for name in _CONFIG_FIELDS if name in body})
    config["http_options"] = opts.once(timeout_ms=None if timeout is None else max(1, int(timeout * 1000)))
    try:
        response = client.models.generate_content(model=model, contents=body["contents"], config=config)
    except errors.APIError as exc:
        return _refused(exc, key, model)
    except _transport_errors() as exc:
        raise ProviderUnavailable(f"Gemini did not answer generateContent for {model} ({type(exc).__name__}); "
                                  "overnight sends it again after a pause") from None
    data = response.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"sdk_http_response"})
    return translate.parse_response(key, data, None)


def _refused(exc: Any, key: str, model: str) -> Result:
    code = int(exc.code or 0)
    details = exc.details if isinstance(exc.details, dict) else {}
    given = details.get("error")
    error: dict[str, Any] = given if isinstance(given, dict) else {
        "code": code, "message": str(exc.message or ""), "status": exc.status}
    if code in REFUSED:
        return translate.parse_response(key, None, error)
    headers = getattr(exc.response, "headers", None)
    wait = retry_delay(error)
    if wait is None:
        wait = retry_after(dict(headers) if headers is not None else None)
    message = f"{code} {error.get('status') or ''}: {error.get('message') or ''}".strip()
    raise_if_passing(code, message, retry_after=wait, provider="Gemini", call="generateContent", model=model)
    raise exc


def retry_delay(error: Mapping[str, Any]) -> float | None:
    """The ``retryDelay`` of a ``google.rpc.RetryInfo`` among the error's details ("36s", "45.8s")."""
    for detail in error.get("details") or ():
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DELAY.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Timeouts and lost connections of whichever httpx the SDK runs on."""
    found: list[type[BaseException]] = []
    for name in ("httpx", "httpx2"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        found.append(module.TransportError)
    return tuple(found)
