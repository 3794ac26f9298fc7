"""The ``generate`` hook: one request through the chat completions API, now (online mode).

The body sent is the batch line's ``body`` as ``build_request`` made it, so the answer
is the one a batch would give; the Result is built by the batch path's own parser
(:func:`~overnight_openai.translate.result_from_line`) from the line a batch output or
error file would hold. The SDK's retries are off: the core paces every retry across its
threads. The same code serves OpenAI, the OpenAI-compatible vendors (their own clients,
see :mod:`.vendors`) and Together (its own SDK, which raises the same error classes).

Rate limits: OpenAI's depend on the model and the account's usage tier; the defaults
below are the lowest paid tier's, so a new account is not driven into 429s
(docs/protocols/openai.md, "Online API", has the sources). Override them on the LLM.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Mapping

from overnight.errors import ProviderUnavailable
from overnight.models import OnlineLimits, Result
from overnight.online_failures import REFUSED, raise_if_passing
from overnight.retryafter import retry_after

from overnight_openai.translate import result_from_line

#: OpenAI, usage tier 1 (third-party copies of platform.openai.com's limits page; OpenAI's
#: own figures are per model in the account's console): 500 requests per minute; 30,000
#: tokens per minute for gpt-4o (and o1, o3-mini), 200,000 for gpt-4o-mini. The model is
#: not known here: the lower figure.
OPENAI_LIMITS = OnlineLimits(requests_per_minute=500, tokens_per_minute=30_000, max_concurrency=16)
#: The vendors (docs/protocols/<vendor>.md, "Online API").
VENDOR_LIMITS: Mapping[str, OnlineLimits] = {
    # Groq's free plan (console.groq.com/docs/rate-limits): 30 requests per minute per model;
    # 6,000 tokens per minute for llama-3.1-8b-instant, the smallest figure seen.
    "groq": OnlineLimits(requests_per_minute=30, tokens_per_minute=6_000, max_concurrency=4),
    # Together, DeepInfra, Nebius: no per-tier figures found in the pages searched; conservative
    # (10 requests a second, a token figure no small account should pass), override on the LLM.
    "together": OnlineLimits(requests_per_minute=600, tokens_per_minute=180_000, max_concurrency=16),
    "deepinfra": OnlineLimits(requests_per_minute=600, tokens_per_minute=None, max_concurrency=16),
    "nebius": OnlineLimits(requests_per_minute=600, tokens_per_minute=200_000, max_concurrency=16),
}

TOGETHER = "together"


def generate(provider: str, request: Mapping[str, Any], base: Any, timeout: float | None) -> Result:
    """Send ``request["body"]`` to ``/chat/completions`` with the connection's client ``base``;
    see the ``generate`` hookspec."""
    from overnight_openai.vendors import VENDORS

    sdk, client = _client(provider, base)
    vendor = VENDORS.get(provider)
    label = vendor.label if vendor is not None else "OpenAI"
    body = request["body"]
    custom_id = str(request["custom_id"])
    # model and messages typed, everything else as it is in the batch line.
    extra = {k: v for k, v in body.items() if k not in ("model", "messages")}
    kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    try:
        response = client.chat.completions.with_raw_response.create(
            model=body["model"], messages=body["messages"], extra_body=extra, **kwargs)
    except sdk.APIStatusError as exc:
        return _refused(exc, custom_id, label, body.get("model"))
    except sdk.APIConnectionError as exc:  # APITimeoutError included
        raise ProviderUnavailable(
            f"{label} did not answer a chat completion for {body.get('model')} ({type(exc).__name__}); "
            "overnight sends it again after a pause") from None
    data = json.loads(response.http_response.content)
    return result_from_line({"custom_id": custom_id, "error": None, "response": {
        "status_code": response.http_response.status_code, "request_id": response.headers.get("x-request-id"),
        "body": data}})


def _refused(exc: Any, custom_id: str, label: str, model: Any) -> Result:
    """An HTTP error: an errored Result for this request, or the exception the core waits on."""
    status = int(exc.status_code)
    headers = exc.response.headers
    try:
        body = exc.response.json()
    except ValueError:
        body = {"error": {"message": exc.response.text[:500] or f"HTTP {status}"}}
    message = _message(body) or f"HTTP {status}"
    # A request over the tokens-per-minute limit on its own is a 429 that no wait cures.
    too_large = status == 429 and message.startswith("Request too large")
    if status in REFUSED or too_large:
        return result_from_line({"custom_id": custom_id, "error": None, "response": {
            "status_code": status, "request_id": headers.get("x-request-id"), "body": body}})
    wait = retry_after(headers)
    raise_if_passing(status, message, retry_after=wait, provider=label, call="a chat completion", model=model)
    raise exc


def _message(body: Any) -> str | None:
    inner = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(inner, dict) and isinstance(inner.get("message"), str):
        return inner["message"]
    return None


_lock = threading.Lock()
_once: dict[int, tuple[Any, Any]] = {}


def _client(provider: str, base: Any) -> tuple[Any, Any]:
    """(the SDK module, ``base`` with retries off), built once per client."""
    from overnight_openai import together

    if provider == TOGETHER:
        sdk = together._sdk()
    else:
        import openai as sdk
    with _lock:
        found = _once.get(id(base))
        if found is None or found[0] is not base:  # the pair keeps ``base`` alive: its id stays its own
            found = _once[id(base)] = (base, base.with_options(max_retries=0))
        return sdk, found[1]
