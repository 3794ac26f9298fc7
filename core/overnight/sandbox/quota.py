"""What real accounts refuse: context windows per request, queue limits per account.

* **Context windows.** Each request's prompt tokens (the responder's rule, that of
  ``overnight.tokens``, plus 4 per message) plus its ``max_tokens`` must fit the model's window
  (:data:`CONTEXT_WINDOWS`, longest prefix wins, :data:`DEFAULT_WINDOW` otherwise). One
  that does not is a per-request error in the provider's own shape (:func:`context_error`):
  a 400 ``context_length_exceeded`` line in OpenAI's error file, an ``errored`` result
  with ``invalid_request_error: prompt is too long`` for Anthropic, a 400 line in
  Mistral's error file, a 400 ``INVALID_ARGUMENT`` response of a Gemini batch (its input
  alone against the model's input limit).
* **Queues.** ``max_enqueued_tokens`` bounds the prompt tokens of a model's unfinished
  jobs (OpenAI: the batch that would pass it fails at validation with
  ``token_limit_exceeded``); ``max_queued_requests`` bounds the requests of unfinished jobs
  (Anthropic and Mistral refuse the create with a 429; Gemini with 429 ``RESOURCE_EXHAUSTED``,
  for either limit). Both are off unless set (``overnight
  sandbox serve --max-enqueued-tokens N --max-queued-requests N`` or ``POST /_sandbox/config``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from .engine import RequestError
from .responder import content_text, conversation, prompt_tokens

#: (prefix, context window) per provider; mirrors the plugins' tables.
CONTEXT_WINDOWS: Mapping[str, tuple[tuple[str, int], ...]] = {
    "openai": (("gpt-3.5-turbo", 16_385), ("gpt-4", 8_192), ("gpt-4-turbo", 128_000), ("gpt-4o", 128_000),
               ("gpt-4.1", 1_047_576), ("gpt-5", 400_000), ("o1", 200_000), ("o3", 200_000),
               ("o4-mini", 200_000)),
    "anthropic": (("claude-", 200_000),),
    "mistral": (("mistral-", 131_072), ("ministral", 131_072), ("open-mistral-nemo", 131_072),
                ("codestral", 262_144), ("magistral", 131_072)),
    # Input limits (Gemini bounds the input alone; see gemini_api.input_limit_error).
    "gemini": (("gemini-", 1_048_576), ("gemini-1.5-pro", 2_097_152)),
}
#: The window of a model no table knows (every model the sandbox serves has one).
DEFAULT_WINDOW = 128_000


@functools.lru_cache(maxsize=1024)  # a pure function of the table; asked once per request
def window(provider: str, model: str | None) -> int:
    best, size = "", DEFAULT_WINDOW
    for prefix, tokens in CONTEXT_WINDOWS.get(provider, ()):
        if (model or "").startswith(prefix) and len(prefix) > len(best):
            best, size = prefix, tokens
    return size


def chat_tokens(messages: Any, system: Any = None) -> int:
    """Prompt tokens of a chat request, as the responder bills them."""
    if not isinstance(messages, list):
        return 0
    return prompt_tokens(conversation([m for m in messages if isinstance(m, Mapping)], system))


def body_tokens(body: Mapping[str, Any]) -> int:
    """Prompt tokens of an OpenAI/Mistral-style body (chat, completions, responses, embeddings)."""
    if "messages" in body:
        return chat_tokens(body.get("messages"))
    for name in ("input", "prompt"):
        value = body.get(name)
        if isinstance(value, str):
            return prompt_tokens([("user", value)])
        if isinstance(value, list):
            return prompt_tokens([("user", v if isinstance(v, str) else content_text(v)) for v in value])
    return 0


def max_tokens(body: Mapping[str, Any], names: Iterable[str]) -> int:
    for name in names:
        if isinstance(body.get(name), int):
            return int(body[name])
    return 0


def context_error(provider: str, model: str | None, prompt: int, output: int) -> RequestError | None:
    limit = window(provider, model)
    if prompt + output <= limit:
        return None
    if provider == "openai":
        return RequestError(
            400,
            f"This model's maximum context length is {limit} tokens. However, you requested {prompt + output} "
            f"tokens ({prompt} in the messages, {output} in the completion). Please reduce the length of the "
            "messages or completion.",
            "invalid_request_error", code="context_length_exceeded", param="messages")
    if provider == "anthropic":
        return RequestError(400, f"prompt is too long: {prompt} tokens > {limit - output} maximum",
                            "invalid_request_error")
    return RequestError(
        400, f"Prompt contains {prompt} tokens and {output} draft tokens, too large for model with {limit} "
             "maximum context length", "invalid_request_error", code="3051")


def token_limit_problem(model: str | None, limit: int) -> dict[str, Any]:
    """The job-level error OpenAI fails a batch with when its enqueued tokens pass the limit."""
    return {
        "code": "token_limit_exceeded", "line": None, "param": None,
        "message": (f"Enqueued token limit reached for {model} in organization org-sandbox. Limit: "
                    f"{limit:,} enqueued tokens. Please try again once some in_progress batches have been "
                    "completed."),
    }
