"""Pure translation between overnight's neutral values and OpenAI's batch wire format.

Requests become ``/v1/chat/completions`` input lines, batch objects become
:class:`~overnight.JobStatus`, output and error file lines become
:class:`~overnight.Result`. No network, no clock.
"""

from __future__ import annotations

import re
from typing import Any, Final

from overnight.errors import InvalidRequest
from overnight.models import ChatRequest, JobState, JobStatus, Result, evolve
from overnight.openai_compat import chat_body, parse_batch_line
from overnight.structured import strict_mode_problem

ENDPOINT: Final = "/v1/chat/completions"
#: The chat completions API takes at most this many stop sequences.
MAX_STOP = 4
ROLES = frozenset({"system", "developer", "user", "assistant"})
_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Models that answer a json_schema response format with "Invalid parameter:
#: 'response_format' of type 'json_schema' is not supported with this model": Structured
#: Outputs came with gpt-4o-2024-08-06 (docs/protocols/openai.md).
NO_SCHEMA_MODELS = re.compile(r"^(gpt-3\.5|gpt-4$|gpt-4-|gpt-4o-2024-05-13$|chatgpt-4o)")

#: OpenAI chat options passed through from ``generation_kwargs`` as they are.
EXTRA_PARAMS = frozenset(
    {
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "reasoning_effort",
        "verbosity",
        "user",
        "safety_identifier",
        "prompt_cache_key",
    }
)

#: Batch statuses of a job still moving.
RUNNING_STATUSES = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
_TERMINAL = {
    "completed": JobState.FINISHED,
    "failed": JobState.FAILED,
    "expired": JobState.EXPIRED,
    "cancelled": JobState.CANCELLED,
}


def build_line(request: ChatRequest) -> dict[str, Any]:
    """One batch input line for ``request``; InvalidRequest names the field OpenAI would refuse.

    ``max_tokens`` is sent as ``max_completion_tokens``: OpenAI deprecated ``max_tokens``
    for chat completions and its reasoning models (o-series, gpt-5) reject it, while
    every current chat model accepts ``max_completion_tokens``.
    """
    _check(request)
    body = chat_body(request, max_tokens_field="max_completion_tokens")
    if "response_format" in body:
        body["response_format"] = _response_format(body["response_format"], request)
    return {"custom_id": request.custom_id, "method": "POST", "url": ENDPOINT, "body": body}


def _check(request: ChatRequest) -> None:
    if not request.messages:
        raise InvalidRequest("an OpenAI chat request needs at least one message", field="messages")
    for message in request.messages:
        if message.role not in ROLES:
            raise InvalidRequest(
                f"OpenAI chat messages take the roles {', '.join(sorted(ROLES))}, not {message.role!r}",
                field="messages",
            )
    # The standard ranges (stop non-empty, max_tokens >= 1, temperature >= 0, top_p in [0, 1])
    # are the core's, checked once per LLM (overnight.models.standard_param_problems).
    params = request.params
    if params.stop is not None and len(params.stop) > MAX_STOP:
        raise InvalidRequest(f"OpenAI takes at most {MAX_STOP} stop sequences, got {len(params.stop)}", field="stop")
    if params.temperature is not None and params.temperature > 2:
        raise InvalidRequest(f"OpenAI's temperature is within [0, 2], got {params.temperature}", field="temperature")


def _response_format(value: Any, request: ChatRequest) -> dict[str, Any]:
    """Check a response format; give a JSON schema the name OpenAI requires when it has none."""
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return value
    if kind == "json_object":
        # OpenAI rejects JSON mode unless the conversation mentions JSON; fail before paying.
        if not any("json" in m.content.lower() for m in request.messages):
            raise InvalidRequest(
                "OpenAI's JSON mode needs the word 'JSON' in the prompt or system prompt "
                "(or use a json_schema response format)",
                field="response_format",
            )
        return value
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise InvalidRequest(
                "a json_schema response format needs {'type': 'json_schema', "
                "'json_schema': {'name': ..., 'schema': {...}}}",
                field="response_format",
            )
        name = spec.get("name", "response")
        if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
            raise InvalidRequest(
                f"OpenAI schema names are 1-64 letters, digits, '_' or '-', got {name!r}", field="response_format"
            )
        if NO_SCHEMA_MODELS.match(request.model):
            raise InvalidRequest(
                f"{request.model} cannot follow a JSON schema (OpenAI's Structured Outputs start with "
                "gpt-4o-2024-08-06): use a model such as gpt-4o-mini, gpt-4.1 or gpt-5, or drop response_format",
                field="response_format",
            )
        if spec.get("strict") is True:
            problem = strict_mode_problem(spec["schema"])
            if problem is not None:
                where, rule = problem
                place = "/".join(where) or "the root"
                raise InvalidRequest(
                    f"OpenAI's strict mode refuses the schema {name!r} at {place}: {rule} Give every object "
                    "\"additionalProperties\": false and list all its properties in \"required\" (an optional "
                    "one becomes nullable, e.g. {\"type\": [\"string\", \"null\"]}), or pass a pydantic model, "
                    "which overnight makes strict",
                    field="response_format",
                )
        return {**value, "json_schema": {**spec, "name": name}}
    raise InvalidRequest(
        f"OpenAI response formats are text, json_object and json_schema, got {value!r}", field="response_format"
    )


def job_status(batch: Any) -> JobStatus:
    """A Batch object (from the SDK) in the core's vocabulary."""
    status = str(batch.status or "")
    counts = batch.request_counts
    total = int(getattr(counts, "total", 0) or 0)
    completed = int(getattr(counts, "completed", 0) or 0)
    failed = int(getattr(counts, "failed", 0) or 0)
    if status in _TERMINAL:
        state = _TERMINAL[status]
    else:
        # validating, in_progress, finalizing, cancelling, and any status added later:
        # keep checking rather than guess that the job is over.
        state = JobState.RUNNING
    message = failure_message(batch) if state is JobState.FAILED else None
    quota = state is JobState.FAILED and any(code == QUOTA_CODE for code in _error_codes(batch))
    return JobStatus(state=state, total=total, completed=completed, failed=failed, raw_status=status,
                     message=message, quota=quota)


#: The code of a batch failed because the organisation's enqueued tokens for the model would
#: pass its limit ("Enqueued token limit reached for <model> ..."): a quota, not bad input.
QUOTA_CODE = "token_limit_exceeded"


def _error_codes(batch: Any) -> list[str]:
    data = list(getattr(batch.errors, "data", None) or []) if getattr(batch, "errors", None) else []
    return [str(getattr(e, "code", "") or "") for e in data]


def failure_message(batch: Any, shown: int = 3) -> str:
    """Why OpenAI rejected a batch, from its ``errors.data`` (line numbers included)."""
    data = list(getattr(batch.errors, "data", None) or []) if batch.errors else []
    if not data:
        return f"OpenAI rejected batch {batch.id} without giving a reason"
    parts = []
    for error in data[:shown]:
        where = f"line {error.line}: " if getattr(error, "line", None) is not None else ""
        code = f"{error.code}: " if getattr(error, "code", None) else ""
        parts.append(f"{where}{code}{error.message or ''}".strip())
    more = f" (and {len(data) - shown} more)" if len(data) > shown else ""
    return f"OpenAI rejected batch {batch.id}: " + "; ".join(parts) + more


def result_from_line(line: dict[str, Any]) -> Result:
    """One output or error file line as a Result.

    Success lines carry the completion; error-file lines with ``status_code >= 400`` are
    request errors (retried by the core); top-level ``batch_expired`` /
    ``batch_cancelled`` errors mean the request never ran (resubmitted).
    """
    result = parse_batch_line(line)
    if result.ok and result.text is None and isinstance(result.raw, dict):
        # A refusal is a paid, final answer: keep it as such, but say why there is no text.
        message = ((result.raw.get("choices") or [{}])[0] or {}).get("message") or {}
        if message.get("refusal"):
            result = evolve(result, error=f"refusal: {message['refusal']}")
    return result
