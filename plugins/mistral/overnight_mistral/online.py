"""The ``generate`` hook: one request through ``chat.complete``, now (online mode).

The body sent is the batch line's ``body`` as ``build_request`` made it, with the model
the batch gives at job level; the Result is built by the batch path's own parser
(:func:`~overnight_mistral.translate.parse_line`) from the line a batch output or error
file would hold. The SDK's retries are off for these calls: the core paces every retry
across its threads.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from overnight.errors import ProviderUnavailable
from overnight.models import JobState, OnlineLimits, Result
from overnight.online_failures import REFUSED, raise_if_passing
from overnight.retryafter import retry_after

from overnight_mistral import options as opts
from overnight_mistral import translate

#: Mistral sets limits per workspace and tier and shows them only in its console
#: (admin.mistral.ai/plateforme/limits), with a requests-per-second limit it does not expose
#: in headers; no published figures found: conservative (one request a second).
LIMITS = OnlineLimits(requests_per_minute=60, tokens_per_minute=500_000, max_concurrency=4)



def generate(provider: str, request: Mapping[str, Any], client: Any, timeout: float | None, model: str) -> Result:
    """Send ``request["body"]`` with ``model`` through ``chat.complete``; see the ``generate`` hookspec."""
    from mistralai.client.basesdk import httpx  # whichever httpx the SDK is built on (httpx2 today)
    from mistralai.client.errors import MistralError

    custom_id = str(request["custom_id"])
    body = {"model": model, **request["body"]}  # a body's own model (never set by build_request) wins
    bound: dict[str, Any] = {"retries": opts.retry_config(0)}
    if timeout is not None:
        bound["timeout_ms"] = max(1, int(timeout * 1000))
    try:
        response = client.chat.complete(**body, **bound)
    except MistralError as exc:
        return _refused(exc, custom_id, model)
    except httpx.TransportError as exc:  # timeouts, refused or dropped connections
        raise ProviderUnavailable(
            f"Mistral did not answer a chat completion for {model} ({type(exc).__name__}); "
            "overnight sends it again after a pause") from None
    data = response.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return translate.parse_line({"custom_id": custom_id, "response": {"status_code": 200, "body": data},
                                 "error": None}, JobState.FINISHED)


def _refused(exc: Any, custom_id: str, model: str) -> Result:
    status = int(exc.status_code)
    http = exc.raw_response
    try:
        body = json.loads(exc.body) if exc.body else {}
    except ValueError:
        body = {"message": exc.body[:500]}
    message = body.get("message") if isinstance(body, dict) else None
    text = message if isinstance(message, str) else json.dumps(message) if message else f"HTTP {status}"
    if status in REFUSED:
        # As a batch's error file holds it: the response, and the error's message.
        return translate.parse_line({"custom_id": custom_id, "response": {"status_code": status, "body": body},
                                     "error": text}, JobState.FINISHED)
    wait = retry_after(http.headers if http is not None else None)
    raise_if_passing(status, text, retry_after=wait, provider="Mistral", call="a chat completion", model=model)
    raise exc
