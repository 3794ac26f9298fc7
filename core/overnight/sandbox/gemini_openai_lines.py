"""OpenAI-shaped lines in a Gemini batch input file, as third-party clients send them.

LiteLLM (1.110.2, ``litellm/llms/gemini/batches/transformation.py``) uploads the OpenAI
batch file it is given, ``{"custom_id", "method", "url", "body"}`` lines, unchanged to the
Gemini Files API and creates the batch with ``models/{model}:batchGenerateContent``; it
states that "Gemini accepts OpenAI-shaped rows ... and then writes the output file
OpenAI-shaped too (``{custom_id, response: {status_code, body}}``)", with the usage in
Gemini's words (``promptTokens``, ``completionTokens``, ``totalTokens``). Google's docs
describe the same OpenAI-format files for the OpenAI-compatible batch endpoints
(docs/protocols/gemini.md). The sandbox accepts such a line by its content: the body is
read as a chat completions request and answered as the same model would answer the
native request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .responder import Generation, content_text


def is_openai_line(obj: Any) -> bool:
    """Whether an input line is OpenAI-shaped (a ``custom_id`` and a ``body``, no ``request``)."""
    return isinstance(obj, Mapping) and "request" not in obj and isinstance(obj.get("custom_id"), str) \
        and isinstance(obj.get("body"), Mapping)


def is_openai_output(line: Any) -> bool:
    """Whether a result line is OpenAI-shaped (its ``custom_id`` is kept, not renamed ``key``)."""
    return isinstance(line, Mapping) and isinstance(line.get("response"), Mapping) \
        and "status_code" in line["response"]


def native_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """A chat completions body as the GenerateContentRequest Gemini runs for it."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    for message in body.get("messages") or ():
        if not isinstance(message, Mapping):
            continue
        text = content_text(message.get("content"))
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(text)
        else:
            contents.append({"role": "model" if role == "assistant" else "user", "parts": [{"text": text}]})
    config: dict[str, Any] = {}
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(limit, int):
        config["maxOutputTokens"] = limit
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        spec = fmt.get("json_schema")
        if isinstance(spec, Mapping) and isinstance(spec.get("schema"), Mapping):
            config["responseJsonSchema"] = spec["schema"]
    request: dict[str, Any] = {"contents": contents}
    if system:
        request["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    if config:
        request["generationConfig"] = config
    return request


def openai_output(custom_id: str, g: Generation, model: str, rid: str, created: int) -> dict[str, Any]:
    """The OpenAI-shaped result line of one answered request."""
    body = {
        "id": rid[:24], "object": "chat.completion", "created": created, "model": model.removeprefix("models/"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": g.text},
                     "finish_reason": "length" if g.finish == "length" else "stop"}],
        "usage": {"promptTokens": g.prompt_tokens, "completionTokens": g.completion_tokens,
                  "totalTokens": g.prompt_tokens + g.completion_tokens},
    }
    return {"custom_id": custom_id, "response": {"status_code": 200, "body": body}}


def openai_error(custom_id: str, status: int, code: str, message: str) -> dict[str, Any]:
    """The OpenAI-shaped result line of one request that failed."""
    return {"custom_id": custom_id, "response": {"status_code": status, "body": {
        "error": {"code": status, "message": message, "status": code}}}}
