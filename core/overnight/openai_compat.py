"""OpenAI-style chat bodies and batch result lines, for plugins of compatible providers.

OpenAI's ``/v1/chat/completions`` body and its batch output envelope
(``{"custom_id", "response": {"status_code", "body"}, "error"}``) are shared by Mistral
and by many OpenAI-compatible gateways; a plugin for one of them reuses these.
"""

from __future__ import annotations

from typing import Any

from overnight.models import ChatRequest, Result, ResultStatus, Usage

#: Top-level error codes meaning "never ran" rather than "failed".
UNFINISHED_CODES = frozenset({"batch_expired", "batch_cancelled", "request_timeout"})


def chat_body(request: ChatRequest, *, max_tokens_field: str = "max_tokens") -> dict[str, Any]:
    """The chat-completions request body for one neutral request."""
    params = request.params
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    if params.max_tokens is not None:
        body[max_tokens_field] = params.max_tokens
    for name in ("temperature", "top_p", "seed", "response_format"):
        value = getattr(params, name)
        if value is not None:
            body[name] = value
    if params.stop:
        body["stop"] = list(params.stop)
    body.update(params.extra)
    return body


def parse_chat_completion(custom_id: str, body: dict[str, Any]) -> Result:
    """A successful chat completion as a Result (first choice; usage and finish reason)."""
    choices = body.get("choices") or [{}]
    choice = choices[0]
    usage = body.get("usage") or {}
    # Positional: one is built per result, and keyword arguments cost a third of the call.
    return Result(
        custom_id,
        ResultStatus.SUCCEEDED,
        (choice.get("message") or {}).get("content"),
        None,  # error
        Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
        choice.get("finish_reason"),
        body,  # raw
    )


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        inner = error.get("error", error)
        if isinstance(inner, dict):
            code = inner.get("code") or inner.get("type")
            message = inner.get("message") or str(inner)
            return f"{code}: {message}" if code else str(message)
    return str(error)


def parse_batch_line(line: dict[str, Any]) -> Result:
    """One line of an OpenAI-style batch output or error file as a Result."""
    custom_id = str(line.get("custom_id"))
    error = line.get("error")
    response = line.get("response") or {}
    if error:
        code = error.get("code") if isinstance(error, dict) else None
        if code in UNFINISHED_CODES:
            return Result(custom_id=custom_id, status=ResultStatus.UNFINISHED, error=_error_text(error), raw=line)
        return Result(custom_id=custom_id, status=ResultStatus.ERRORED, error=_error_text(error), raw=line)
    status = int(response.get("status_code") or 0)
    body = response.get("body") or {}
    if status >= 400 or not isinstance(body, dict) or "choices" not in body:
        return Result(
            custom_id=custom_id,
            status=ResultStatus.ERRORED,
            error=f"HTTP {status}: {_error_text(body)}" if body else f"HTTP {status}",
            raw=line,
        )
    return parse_chat_completion(custom_id, body)
