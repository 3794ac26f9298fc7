"""Pure translation between overnight's neutral values and Gemini's batch wire format.

Requests: one input line is ``{"key": <custom id>, "request": GenerateContentRequest}``
in REST (lowerCamel) JSON; the model is given once, in the create call's path. Inline
jobs send the same request through the SDK with the key in the request's ``metadata``.
Results: file lines are ``{"key", "response"}`` or ``{"key", "error"}``; inline
responses carry the request's ``metadata`` back. Both are matched by key, never by position.
"""

from __future__ import annotations

from typing import Any, Mapping

from overnight.errors import InvalidRequest
from overnight.models import ChatRequest, JobState, Result, ResultStatus, Usage

#: Gemini-only options users may pass in ``generation_kwargs`` (REST names in brackets):
#: top_k (topK), presence_penalty, frequency_penalty, thinking_config (thinkingConfig,
#: e.g. {"thinkingBudget": 0}), response_schema (an OpenAPI-style Schema, sent as
#: responseSchema), safety_settings (a list, sent as the request's safetySettings).
EXTRA_PARAMS = frozenset(
    {"top_k", "presence_penalty", "frequency_penalty", "thinking_config", "response_schema", "safety_settings"}
)
UNSUPPORTED_PARAMS: frozenset[str] = frozenset()
MAX_STOP_SEQUENCES = 5
MAX_TEMPERATURE = 2.0

_CONFIG_EXTRAS = {"top_k": "topK", "presence_penalty": "presencePenalty",
                  "frequency_penalty": "frequencyPenalty", "thinking_config": "thinkingConfig"}
_ROLES = {"user": "user", "assistant": "model"}
#: Finish reasons that mean the model gave no usable answer.
_BLOCKED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE",
            "MALFORMED_FUNCTION_CALL"}

# --- requests -------------------------------------------------------------------------


def _response_format(value: Any, config: dict[str, Any]) -> None:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return
    if kind == "json_object":
        config["responseMimeType"] = "application/json"
        return
    if kind != "json_schema":
        raise InvalidRequest(
            f"Gemini accepts response_format of type text, json_object or json_schema, got {value!r}",
            field="response_format",
        )
    spec = value.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise InvalidRequest(
            'response_format json_schema needs {"json_schema": {"name": ..., "schema": {...}}}',
            field="response_format",
        )
    # A standard JSON Schema goes in responseJsonSchema; responseSchema takes Gemini's
    # OpenAPI subset only (pass that as the extra option response_schema).
    config["responseMimeType"] = "application/json"
    config["responseJsonSchema"] = schema


def build_line(request: ChatRequest) -> dict[str, Any]:
    """The batch input line for one request, or :class:`InvalidRequest` naming the field."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "system":
            if contents:
                raise InvalidRequest("Gemini takes system messages only before the conversation", field="messages")
            system.append(message.content)
        elif message.role in _ROLES:
            contents.append({"role": _ROLES[message.role], "parts": [{"text": message.content}]})
        else:
            raise InvalidRequest(
                f"Gemini chat messages have roles system, user, assistant, got {message.role!r}", field="messages"
            )
    if not contents:
        raise InvalidRequest("a Gemini request needs at least one user message", field="messages")
    if contents[-1]["role"] != "user":
        raise InvalidRequest("the last message sent to Gemini must be a user message", field="messages")
    params = request.params
    config: dict[str, Any] = {}
    if params.max_tokens is not None:
        config["maxOutputTokens"] = params.max_tokens
    if params.temperature is not None:
        if params.temperature > MAX_TEMPERATURE:
            raise InvalidRequest(f"Gemini's temperature ranges from 0 to 2, got {params.temperature}",
                                 field="temperature")
        config["temperature"] = params.temperature
    if params.top_p is not None:
        config["topP"] = params.top_p
    if params.stop is not None:
        if len(params.stop) > MAX_STOP_SEQUENCES:
            raise InvalidRequest(f"Gemini takes at most {MAX_STOP_SEQUENCES} stop sequences, got {len(params.stop)}",
                                 field="stop")
        config["stopSequences"] = list(params.stop)
    if params.seed is not None:
        config["seed"] = params.seed
    if params.response_format is not None:
        _response_format(params.response_format, config)
    extra = params.extra
    for name, rest in _CONFIG_EXTRAS.items():
        if extra.get(name) is not None:
            config[rest] = extra[name]
    if extra.get("response_schema") is not None:
        if not isinstance(extra["response_schema"], dict):
            raise InvalidRequest("response_schema must be a Schema object (a dict)", field="response_schema")
        config["responseMimeType"] = "application/json"
        config["responseSchema"] = extra["response_schema"]
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    if config:
        body["generationConfig"] = config
    if extra.get("safety_settings") is not None:
        if not isinstance(extra["safety_settings"], list):
            raise InvalidRequest("safety_settings must be a list", field="safety_settings")
        body["safetySettings"] = extra["safety_settings"]
    return {"key": request.custom_id, "request": body}


def inline_request(line: Mapping[str, Any]) -> dict[str, Any]:
    """The SDK's InlinedRequest for one input line (the SDK's models accept REST names)."""
    request = line["request"]
    config: dict[str, Any] = dict(request.get("generationConfig") or {})
    if "systemInstruction" in request:
        config["systemInstruction"] = request["systemInstruction"]
    if "safetySettings" in request:
        config["safetySettings"] = request["safetySettings"]
    item: dict[str, Any] = {"contents": request["contents"], "metadata": {"key": line["key"]}}
    if config:
        item["config"] = config
    return item


# --- job status -----------------------------------------------------------------------

STATES = {
    "JOB_STATE_UNSPECIFIED": JobState.RUNNING,
    "JOB_STATE_QUEUED": JobState.RUNNING,
    "JOB_STATE_PENDING": JobState.RUNNING,
    "JOB_STATE_RUNNING": JobState.RUNNING,
    "JOB_STATE_CANCELLING": JobState.RUNNING,
    "JOB_STATE_PAUSED": JobState.RUNNING,
    "JOB_STATE_UPDATING": JobState.RUNNING,
    "JOB_STATE_SUCCEEDED": JobState.FINISHED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": JobState.FINISHED,
    "JOB_STATE_FAILED": JobState.FAILED,
    "JOB_STATE_CANCELLED": JobState.CANCELLED,
    "JOB_STATE_EXPIRED": JobState.EXPIRED,
}


def state_word(state: Any) -> str:
    """The SDK's JobState (or a raw BATCH_STATE_* string) as a JOB_STATE_* word."""
    word = str(getattr(state, "value", state) or "JOB_STATE_UNSPECIFIED")
    return word.replace("BATCH_STATE_", "JOB_STATE_", 1)


def job_state(state: Any) -> JobState:
    """Gemini's state in overnight's vocabulary; an unknown (future) word is RUNNING, so
    nothing the job may still report is resubmitted and paid twice."""
    return STATES.get(state_word(state), JobState.RUNNING)


# --- results --------------------------------------------------------------------------


def _error_text(error: Mapping[str, Any]) -> str:
    status, code, message = error.get("status"), error.get("code"), error.get("message") or "request failed"
    prefix = " ".join(str(p) for p in (code, status) if p)
    return f"{prefix}: {message}" if prefix else str(message)


def parse_response(key: str, response: Mapping[str, Any] | None, error: Mapping[str, Any] | None) -> Result:
    """One result, from a REST-shaped ``GenerateContentResponse`` or error (``google.rpc.Status``)."""
    if error:
        return Result(custom_id=key, status=ResultStatus.ERRORED, error=_error_text(error), raw=dict(error))
    response = response or {}
    usage_doc = response.get("usageMetadata") or {}
    usage = Usage(input_tokens=int(usage_doc.get("promptTokenCount") or 0),
                  output_tokens=int(usage_doc.get("candidatesTokenCount") or 0)) if usage_doc else None
    candidates = response.get("candidates") or []
    if not candidates:
        reason = (response.get("promptFeedback") or {}).get("blockReason") or "no candidates"
        return Result(custom_id=key, status=ResultStatus.ERRORED, error=f"Gemini returned no answer ({reason})",
                      usage=usage, raw=dict(response))
    first = candidates[0]
    finish = first.get("finishReason")
    parts = (first.get("content") or {}).get("parts") or []
    texts = [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")]
    if not texts and finish in _BLOCKED:
        return Result(custom_id=key, status=ResultStatus.ERRORED, error=f"Gemini blocked the answer ({finish})",
                      usage=usage, finish_reason=finish, raw=dict(response))
    return Result(custom_id=key, status=ResultStatus.SUCCEEDED, text="".join(texts), usage=usage,
                  finish_reason=finish, raw=dict(response))


def parse_file_line(line: Mapping[str, Any]) -> Result | None:
    """One line of a results file; None for a line without a key (it matches no request)."""
    key = line.get("key")
    if key in (None, ""):
        return None
    return parse_response(str(key), line.get("response"), line.get("error"))


def parse_inlined(item: Any) -> Result | None:
    """One SDK ``InlinedResponse``; None when it carries no key in its metadata."""
    key = (item.metadata or {}).get("key")
    if not key:
        return None
    response = item.response.model_dump(mode="json", by_alias=True, exclude_none=True) if item.response else None
    error = item.error.model_dump(mode="json", exclude_none=True) if item.error else None
    return parse_response(str(key), response, error)
