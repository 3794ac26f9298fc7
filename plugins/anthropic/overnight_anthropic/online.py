"""The ``generate`` hook: one request through the Messages API, now (online mode).

The body sent is the batch request's ``params`` as ``build_request`` made them; the
Result is built by the batch path's own parser (:func:`~overnight_anthropic.translate.
result_from_line`) from the results line a batch would hold for it (``succeeded`` with
the message, ``errored`` with the error envelope). The SDK's retries are off: the core
paces every retry across its threads.

The SDK refuses a non-streaming call whose ``max_tokens`` could take longer than ten
minutes unless a timeout is given, so the call always carries one (the core's, else the
client's own).
"""

from __future__ import annotations

import json
import threading
from typing import Any, Mapping

from overnight.errors import ProviderUnavailable
from overnight.models import OnlineLimits, Result
from overnight.online_failures import REFUSED, raise_if_passing
from overnight.retryafter import retry_after

from overnight_anthropic import translate

#: The entry tier (docs.claude.com/en/api/rate-limits; figures as third-party copies of it
#: give them): 50 requests per minute; 30,000 to 50,000 input and 8,000 to 10,000 output
#: tokens per minute, per model. overnight paces one token figure (input + output): the
#: lowest input figure, as the model is not known here.
LIMITS = OnlineLimits(requests_per_minute=50, tokens_per_minute=30_000, max_concurrency=8)



def generate(provider: str, request: Mapping[str, Any], base: Any, timeout: float | None) -> Result:
    """Send ``request["params"]`` to ``/v1/messages`` with the connection's client ``base``;
    see the ``generate`` hookspec."""
    import anthropic

    sdk = _once(base)
    params = request["params"]
    custom_id = str(request["custom_id"])
    typed = ("model", "max_tokens", "messages")
    extra = {k: v for k, v in params.items() if k not in typed}
    try:
        response = sdk.messages.with_raw_response.create(
            model=params["model"], max_tokens=params["max_tokens"], messages=params["messages"], extra_body=extra,
            timeout=timeout if timeout is not None else sdk.timeout)
    except anthropic.APIStatusError as exc:
        return _refused(exc, custom_id, params.get("model"))
    except anthropic.APIConnectionError as exc:  # APITimeoutError included
        raise ProviderUnavailable(
            f"Anthropic did not answer a message for {params.get('model')} ({type(exc).__name__}); "
            "overnight sends it again after a pause") from None
    message = json.loads(response.http_response.content)
    return translate.result_from_line({"custom_id": custom_id, "result": {"type": "succeeded", "message": message}},
                                      custom_id)


def _refused(exc: Any, custom_id: str, model: Any) -> Result:
    status = int(exc.status_code)
    headers = exc.response.headers
    try:
        envelope = exc.response.json()
    except ValueError:
        envelope = {"type": "error", "error": {"type": "api_error", "message": exc.response.text[:500]}}
    if status in REFUSED:
        return translate.result_from_line(
            {"custom_id": custom_id, "result": {"type": "errored", "error": envelope}}, custom_id)
    message = translate.error_text(envelope)
    wait = retry_after(headers)
    # 529 overloaded_error is a passing failure too.
    raise_if_passing(status, message, retry_after=wait, provider="Anthropic", call="a message", model=model)
    raise exc


_lock = threading.Lock()
_clients: dict[int, tuple[Any, Any]] = {}


def _once(base: Any) -> Any:
    """``base`` with retries off, built once per client (the pair keeps ``base`` alive, so its id stays its own)."""
    with _lock:
        found = _clients.get(id(base))
        if found is None or found[0] is not base:
            found = _clients[id(base)] = (base, base.with_options(max_retries=0))
        return found[1]
