"""Translation between overnight's neutral values and Anthropic Message Batches JSON.

Requests: a :class:`~overnight.ChatRequest` becomes one batch request
``{"custom_id", "params"}`` where ``params`` is a Messages API body. Results: one line of
a batch's results stream becomes a :class:`~overnight.Result`. Statuses: a
``MessageBatch`` becomes a :class:`~overnight.JobStatus`. Everything here is pure.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import anthropic

from overnight import ChatRequest, InvalidRequest, JobState, JobStatus, Result, ResultStatus, Usage

from overnight_anthropic import wire_ids

#: ``max_tokens`` is mandatory for Anthropic; used when the user gives none.
DEFAULT_MAX_TOKENS = 1024

#: Messages API options passed through from ``generation_kwargs`` as they are.
EXTRA_PARAMS = frozenset({"thinking", "metadata", "output_config", "cache_control", "inference_geo"})

#: Standard options Anthropic cannot honour. API version 2026-10-21 (the one SDK 2.x
#: sends) refuses ``temperature`` and ``top_p`` with a 400, and the SDK no longer
#: models them; there is no seed at all.
UNSUPPORTED_PARAMS = frozenset({"seed", "temperature", "top_p"})

#: Models without structured outputs (``output_config.format``): they came with the Claude
#: 4.5 generation (Sonnet 4.5, Haiku 4.5, Opus 4.5; Opus 4.1 in beta); see docs/protocols/anthropic.md.
NO_SCHEMA_MODELS = re.compile(r"^claude-(2|3|instant)|^claude-(sonnet|opus)-4-(0|2025)")

# --- requests -------------------------------------------------------------------------


def build_line(request: ChatRequest) -> dict[str, Any]:
    """One batch request: ``{"custom_id", "params"}`` (raises InvalidRequest)."""
    # The wire id (tag digest + key, see wire_ids) must fit Anthropic's 1-64 [A-Za-z0-9_-].
    if not wire_ids.encodable(request.custom_id):
        raise InvalidRequest(
            f"custom id {request.custom_id!r} is not a hex digest of at most 72 characters; "
            "overnight's request keys always are, so this is a bug in the caller",
            field="custom_id",
        )
    return {"custom_id": request.custom_id, "params": build_params(request)}


def build_params(request: ChatRequest) -> dict[str, Any]:
    """The Messages API body of one request."""
    # UNSUPPORTED_PARAMS, undeclared extras and the standard ranges (max_tokens >= 1, stop
    # non-empty) never get here: the core refuses them once per run, before calling this for
    # any row (raising here too would repeat it per row).
    p = request.params
    system, messages = _split_system(request)
    max_tokens = DEFAULT_MAX_TOKENS if p.max_tokens is None else p.max_tokens
    params: dict[str, Any] = {"model": request.model, "max_tokens": max_tokens}
    if system:
        params["system"] = system
    params["messages"] = messages
    if p.stop:
        params["stop_sequences"] = list(p.stop)
    extra = dict(p.extra)
    output_config = dict(extra.pop("output_config", None) or {})
    if p.response_format is not None:
        if "format" in output_config:
            raise InvalidRequest(
                "give the output format either as response_format or as output_config['format'], not both",
                field="response_format",
            )
        if NO_SCHEMA_MODELS.match(request.model):
            raise InvalidRequest(
                f"{request.model} has no structured outputs (they start with the Claude 4.5 models): use e.g. "
                "claude-sonnet-4-5 or claude-haiku-4-5, or drop response_format",
                field="response_format",
            )
        output_config["format"] = output_format(p.response_format)
    if output_config:
        params["output_config"] = output_config
    params.update(extra)
    return params


def _split_system(request: ChatRequest) -> tuple[str, list[dict[str, str]]]:
    """Leading system messages become the top-level ``system``; the rest stay turns."""
    system: list[str] = []
    turns: list[dict[str, str]] = []
    for message in request.messages:
        if message.role == "system":
            if turns:
                raise InvalidRequest(
                    "Anthropic takes one system prompt before the conversation; move system "
                    "messages to the start (a system message after a user/assistant turn cannot be sent)",
                    field="messages",
                )
            system.append(message.content)
        elif message.role in ("user", "assistant"):
            turns.append({"role": message.role, "content": message.content})
        else:
            raise InvalidRequest(
                f"unknown message role {message.role!r}; use system, user or assistant", field="messages"
            )
    if not turns:
        raise InvalidRequest("a request needs at least one user message besides the system prompt", field="messages")
    return "\n\n".join(system), turns


def output_format(response_format: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI-style ``response_format`` → Anthropic ``output_config.format``.

    Anthropic's structured output enforces a JSON schema; there is no schema-less
    "any JSON object" mode, so ``json_object`` is refused rather than guessed.
    """
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "json_schema":
        inner = response_format.get("json_schema")
        schema = inner.get("schema") if isinstance(inner, Mapping) else response_format.get("schema")
        if isinstance(schema, Mapping):
            # The SDK's own transform (what messages.parse sends): every object closed, and the
            # keywords Anthropic does not enforce (minimum, maxLength, ...) moved into the
            # description. overnight still validates each answer against the full schema.
            try:
                return {"type": "json_schema", "schema": anthropic.transform_schema(dict(schema))}
            except (ValueError, TypeError, KeyError) as exc:
                raise InvalidRequest(
                    f"Anthropic structured output cannot take this schema ({exc})", field="response_format"
                ) from None
        raise InvalidRequest(
            "response_format json_schema needs a schema: {'type': 'json_schema', "
            "'json_schema': {'name': ..., 'schema': {...}}}",
            field="response_format",
        )
    if kind == "text":
        raise InvalidRequest("response_format {'type': 'text'} is the default; remove it", field="response_format")
    raise InvalidRequest(
        f"Anthropic structured output needs a JSON schema (got type {kind!r}); pass "
        "response_format={'type': 'json_schema', 'json_schema': {'name': ..., 'schema': {...}}}",
        field="response_format",
    )


# --- results --------------------------------------------------------------------------


def result_from_line(line: Mapping[str, Any], custom_id: str) -> Result:
    """One results line (``{"custom_id", "result": {"type", ...}}``) as a Result.

    ``custom_id`` is the core's id for the line (the plugin decodes the wire id).
    """
    raw = dict(line)
    result = line.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        return _succeeded(custom_id, result.get("message") or {}, raw)
    if kind == "errored":
        return Result(custom_id=custom_id, status=ResultStatus.ERRORED, error=error_text(result.get("error")), raw=raw)
    if kind in ("canceled", "expired"):  # never run: the core submits these again
        return Result(custom_id=custom_id, status=ResultStatus.UNFINISHED, error=f"request {kind}", raw=raw)
    return Result(
        custom_id=custom_id, status=ResultStatus.ERRORED, error=f"unknown Anthropic result type {kind!r}", raw=raw
    )


def _succeeded(custom_id: str, message: Mapping[str, Any], raw: dict[str, Any]) -> Result:
    blocks = message.get("content") or []
    text = "".join(b.get("text") or "" for b in blocks if isinstance(b, Mapping) and b.get("type") == "text")
    usage = message.get("usage") or {}
    # Cache reads and writes are prompt tokens too; Anthropic counts them apart.
    prompt = sum(
        int(usage.get(k) or 0)
        for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    return Result(
        custom_id=custom_id,
        status=ResultStatus.SUCCEEDED,
        text=text,
        usage=Usage(input_tokens=prompt, output_tokens=int(usage.get("output_tokens") or 0)),
        finish_reason=message.get("stop_reason"),
        raw=raw,
    )


def error_text(envelope: Any) -> str:
    """The message of an ``errored`` result's error envelope ``{type: "error", error: {type, message}}``."""
    if not isinstance(envelope, Mapping):
        return "the request failed (no error details)"
    inner = envelope.get("error")
    if isinstance(inner, Mapping):  # the documented nested envelope
        kind, message = inner.get("type"), inner.get("message")
    else:  # a flat error object, tolerated
        kind, message = envelope.get("type"), envelope.get("message")
    message = message or "no message"
    return f"{kind}: {message}" if kind and kind != "error" else str(message)


# --- statuses -------------------------------------------------------------------------


def job_status(batch: Mapping[str, Any]) -> JobStatus:
    """A ``MessageBatch`` as a JobStatus.

    ``in_progress`` and ``canceling`` are RUNNING. An ``ended`` batch is EXPIRED when any
    request expired, else CANCELLED when any was canceled, else FINISHED; in all three
    cases every finished request is fetched and the rest are resubmitted. (Anthropic has
    no batch-level failure: a rejected batch is refused when it is created.)
    """
    status = str(batch.get("processing_status") or "")
    counts = {k: int(v or 0) for k, v in (batch.get("request_counts") or {}).items()}
    total = sum(counts.get(k, 0) for k in ("processing", "succeeded", "errored", "canceled", "expired"))
    succeeded, errored = counts.get("succeeded", 0), counts.get("errored", 0)
    expired, canceled = counts.get("expired", 0), counts.get("canceled", 0)
    common: dict[str, Any] = {"total": total, "completed": succeeded, "failed": errored, "raw_status": status}
    if status != "ended":
        # Includes unknown future words: never treat what we do not know as done.
        return JobStatus(state=JobState.RUNNING, **common)
    if expired:
        return JobStatus(
            state=JobState.EXPIRED, message=f"{expired} of {total} requests expired before they ran", **common
        )
    if canceled:
        return JobStatus(
            state=JobState.CANCELLED, message=f"{canceled} of {total} requests were canceled", **common
        )
    return JobStatus(state=JobState.FINISHED, **common)
