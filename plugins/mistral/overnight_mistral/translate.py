"""Pure translation between overnight's neutral values and Mistral's batch wire format.

Requests: one input line is ``{"custom_id", "body"}`` with an OpenAI-style chat body
(built by :func:`overnight.openai_compat.chat_body`) minus ``model``, which is given once
at job level. Results: output/error lines share OpenAI's envelope
(``{"custom_id", "response": {"status_code", "body"}, "error"}``), with ``error`` a string.
"""

from __future__ import annotations

from typing import Any

from overnight.errors import InvalidRequest
from overnight.models import ChatRequest, JobState, Result, ResultStatus, evolve
from overnight.openai_compat import chat_body, parse_batch_line

ENDPOINT = "/v1/chat/completions"
TAG_KEY = "overnight_tag"

#: Mistral-only chat options users may pass in ``generation_kwargs``; sent as given.
#: (``n`` is left out on purpose: overnight makes one request per generation.)
EXTRA_PARAMS = frozenset(
    {"presence_penalty", "frequency_penalty", "safe_prompt", "prompt_mode", "reasoning_effort", "prediction"}
)
#: Standard options Mistral cannot honour. ``seed`` is sent as Mistral's ``random_seed``.
UNSUPPORTED_PARAMS: frozenset[str] = frozenset()

_ROLES = ("system", "user", "assistant")
_SCHEMA_KEYS = ("name", "schema", "strict", "description")

# --- requests -------------------------------------------------------------------------


def _response_format(value: Any) -> dict[str, Any]:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind != "json_schema":
        raise InvalidRequest(
            f"Mistral accepts response_format of type text, json_object or json_schema, got {value!r}",
            field="response_format",
        )
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise InvalidRequest(
            'response_format json_schema needs {"json_schema": {"name": ..., "schema": {...}}}',
            field="response_format",
        )
    # Mistral requires a name; OpenAI-style specs may carry keys Mistral rejects.
    schema = {k: spec[k] for k in _SCHEMA_KEYS if spec.get(k) is not None}
    schema.setdefault("name", "response")
    return {"type": "json_schema", "json_schema": schema}


def build_line(request: ChatRequest) -> dict[str, Any]:
    """The batch input line for one request, or :class:`InvalidRequest` naming the field."""
    if not request.messages:
        raise InvalidRequest("a Mistral chat request needs at least one message", field="messages")
    for message in request.messages:
        if message.role not in _ROLES:
            raise InvalidRequest(
                f"Mistral chat messages have roles {', '.join(_ROLES)}, got {message.role!r}", field="messages"
            )
    if request.messages[-1].role == "assistant":
        # Mistral answers "Expected last role User or Tool" for a trailing assistant turn.
        raise InvalidRequest(
            "the last message sent to Mistral must be a user message, not an assistant one",
            field="messages",
        )
    params = request.params  # its standard ranges are the core's, checked once per LLM
    body = chat_body(evolve(request, params=evolve(params, response_format=None)))
    body.pop("model")  # given once at job level (batch.jobs.create(model=...))
    if "seed" in body:
        body["random_seed"] = body.pop("seed")
    if params.response_format is not None:
        body["response_format"] = _response_format(params.response_format)
    return {"custom_id": request.custom_id, "body": body}


# --- job status -----------------------------------------------------------------------

STATES = {
    "QUEUED": JobState.RUNNING,
    "RUNNING": JobState.RUNNING,
    "CANCELLATION_REQUESTED": JobState.RUNNING,
    "SUCCESS": JobState.FINISHED,
    "FAILED": JobState.FAILED,
    "TIMEOUT_EXCEEDED": JobState.EXPIRED,
    "CANCELLED": JobState.CANCELLED,
}


def job_state(status: str) -> JobState:
    """Mistral's status word in overnight's vocabulary.

    An unknown (future) word is RUNNING: reading it as done would resubmit whatever
    the job had not reported yet, and could pay twice; the raw word is shown to the user.
    """
    return STATES.get(str(status), JobState.RUNNING)


# --- results --------------------------------------------------------------------------


def _text(content: Any) -> Any:
    """Message content as text: Mistral may answer with a list of typed chunks."""
    if isinstance(content, list):
        return "".join(
            part.get("text") or "" for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return content


def parse_line(line: dict[str, Any], state: JobState) -> Result:
    """One output or error line (or inline output) of a job that ended in ``state``.

    In an expired or cancelled job, a line with an error but no response is a request
    that never ran: UNFINISHED, so the core resubmits it instead of counting a failure.
    """
    result = parse_batch_line(line)
    if result.ok:
        message = ((result.raw or {}).get("choices") or [{}])[0].get("message") or {}
        return evolve(result, text=_text(message.get("content")))
    response = line.get("response") or {}
    code = int(response.get("status_code") or 0) if isinstance(response, dict) else 0
    if state in (JobState.EXPIRED, JobState.CANCELLED) and code == 0:
        return evolve(result, status=ResultStatus.UNFINISHED)
    error = line.get("error")
    if isinstance(error, str) and error and code:
        return evolve(result, error=f"HTTP {code}: {error}")
    return result


def job_failure(errors: Any) -> str | None:
    """The reasons a job failed, from ``BatchJob.errors`` (``[{message, count}]``)."""
    parts = []
    for error in errors or ():
        message = getattr(error, "message", None) or (error.get("message") if isinstance(error, dict) else None)
        count = getattr(error, "count", None) or (error.get("count") if isinstance(error, dict) else None)
        if message:
            parts.append(f"{message} (x{count})" if count and count > 1 else str(message))
    return "; ".join(parts) or None
