"""The deterministic responder: every answer is a pure function of its request.

The reply to a conversation is ``"Sandbox answer to: <last user message> (ref <digest>)"``
where ``digest`` is 8 hex chars of a hash over the whole normalised conversation (system
prompt included), so a test can prove that each row received its own answer:
:func:`expected_reply` computes the same text from the messages a test sent. Request
options are honoured like a model would: ``max_tokens`` cuts the reply after that many
tokens (finish reason "length"), a stop sequence cuts the reply before it (finish reason
"stop"), a JSON response format yields a JSON object string. Tokens are counted as
whitespace-separated words in replies; prompt tokens track the text's length with the
rule overnight's own estimate uses (``overnight.tokens``: about one token per English
word, per 3 digits, per CJK character) plus a small per-message overhead, so a 10 MB
prompt weighs millions of tokens.

Optionally a :class:`Forwarder` sends each chat request to an OpenAI-compatible server
(Ollama, vLLM, llama.cpp ...) for real generations.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import urllib.error
import urllib.request
from typing import Any, Iterable, Literal, Mapping, Sequence

import attrs

Finish = Literal["stop", "length", "stop_sequence"]
JsonSpec = Mapping[str, Any] | bool | None   # None: text; True: any JSON object; a dict: a JSON schema

PROMPT_OVERHEAD = 4  # tokens per message, like the real chat templates add


@attrs.frozen
class Generation:
    """One generated answer with its token accounting."""

    text: str
    finish: Finish
    prompt_tokens: int
    completion_tokens: int
    stop_sequence: str | None = None


class ForwardError(Exception):
    """The forward server failed; the request is reported as errored."""


# --- conversation normalisation -------------------------------------------------------------

def content_text(content: Any) -> str:
    """Text of a message content: a string, or a list of parts/blocks with ``text``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        content = [content]
    if isinstance(content, Sequence):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping):
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif part.get("type") in ("image", "image_url", "input_image"):
                    texts.append("[image]")
        return "\n".join(texts)
    return str(content)


def conversation(messages: Iterable[Mapping[str, Any]] | str, system: Any = None) -> list[tuple[str, str]]:
    """``(role, text)`` pairs; a separate ``system`` (Anthropic style) goes first."""
    conv: list[tuple[str, str]] = []
    if system:
        conv.append(("system", content_text(system)))
    if isinstance(messages, str):
        return conv + [("user", messages)]
    for message in messages:
        conv.append((str(message.get("role", "user")), content_text(message.get("content"))))
    return conv


def last_user_text(conv: Sequence[tuple[str, str]]) -> str:
    for role, text in reversed(conv):
        if role == "user":
            return text
    return ""


def count_tokens(text: str) -> int:
    return len(text.split())


def prompt_tokens(conv: Sequence[tuple[str, str]]) -> int:
    from overnight.tokens import text_tokens

    return sum(text_tokens(text) + PROMPT_OVERHEAD for _, text in conv)


def digest(conv: Sequence[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for role, text in conv:  # length-prefixed, so no two conversations share an encoding
        part = f"{role}\x1f{text}".encode("utf-8")
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:8]


# --- generation ------------------------------------------------------------------------------

def base_reply(conv: Sequence[tuple[str, str]], variant: int = 0) -> str:
    """``variant`` n > 0: the n-th other answer to the same conversation (repeated online requests)."""
    ref = digest(conv) if not variant else f"{digest(conv)}.{variant}"
    return f"Sandbox answer to: {last_user_text(conv)} (ref {ref})"


def json_spec(response_format: Mapping[str, Any] | None) -> JsonSpec:
    """Read an OpenAI/Mistral ``response_format``, a Responses ``text.format`` or an
    Anthropic ``output_format`` into a :data:`JsonSpec`."""
    if not isinstance(response_format, Mapping):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return True
    if kind == "json_schema":
        inner = response_format.get("json_schema")
        schema = inner.get("schema") if isinstance(inner, Mapping) else response_format.get("schema")
        return schema if isinstance(schema, Mapping) else True
    return None


def _fill(schema: Any, answer: str, depth: int = 0) -> Any:
    """A value that fits ``schema`` (a best effort over the common JSON Schema subset)."""
    if not isinstance(schema, Mapping) or depth > 8:
        return answer
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return _fill(schema[key][0], answer, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return {k: _fill(v, answer, depth + 1) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_fill(schema.get("items"), answer, depth + 1)]
    if kind == "integer":
        return count_tokens(answer)
    if kind == "number":
        return float(count_tokens(answer))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return answer


def _as_json(reply: str, spec: JsonSpec) -> str:
    value = {"answer": reply} if spec is True else _fill(spec, reply)
    if not isinstance(value, dict):
        value = {"answer": value}
    return json.dumps(value, ensure_ascii=False)


def _stops(stop: Any) -> list[str]:
    if not stop:
        return []
    if isinstance(stop, str):
        return [stop]
    return [s for s in stop if isinstance(s, str) and s]


@functools.lru_cache(maxsize=256)
def _first_words(n: int) -> re.Pattern[str]:
    # \S and \s are disjoint, so this cannot backtrack badly.
    return re.compile(r"\s*(?:\S+\s+){%d}\S+" % (n - 1))


def shape(text: str, *, max_tokens: int | None, stop: Any) -> tuple[str, Finish, str | None]:
    """Apply stop sequences, then the token budget, to a full reply."""
    finish: Finish = "stop"
    matched = None
    hits = [(text.find(s), s) for s in _stops(stop) if s in text]
    if hits:
        index, matched = min(hits)
        text, finish = text[:index], "stop_sequence"
    if max_tokens is not None and max_tokens >= 0:
        if max_tokens == 0:
            if text.strip():
                text, finish, matched = "", "length", None
        else:
            head = _first_words(max_tokens).match(text)
            if head is not None and text[head.end():].strip():
                text, finish, matched = head.group(0), "length", None
    return text, finish, matched


def generate(
    conv: Sequence[tuple[str, str]], *, max_tokens: int | None = None, stop: Any = None,
    json_format: JsonSpec = None, variant: int | None = None,
) -> Generation:
    reply = base_reply(conv, variant or 0)
    if json_format:
        reply = _as_json(reply, json_format)
    text, finish, matched = shape(reply, max_tokens=max_tokens, stop=stop)
    return Generation(text, finish, prompt_tokens(conv), count_tokens(text), matched)


def expected_reply(
    messages: Iterable[Mapping[str, Any]] | str, *, system: Any = None, max_tokens: int | None = None,
    stop: Any = None, response_format: Mapping[str, Any] | None = None, variant: int = 0,
) -> str:
    """The text the sandbox answers to ``messages`` (same options as the request); ``variant``:
    the answer to the (n+1)-th identical online request."""
    conv = conversation(messages, system)
    return generate(conv, max_tokens=max_tokens, stop=stop, json_format=json_spec(response_format),
                    variant=variant).text


def embedding(text: str, dimensions: int = 16) -> list[float]:
    """A deterministic unit vector for ``text``."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        block = hashlib.sha256(f"{counter}:{text}".encode("utf-8")).digest()
        values.extend((b - 127.5) / 127.5 for b in block)
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


# --- forwarding -----------------------------------------------------------------------------

@attrs.frozen
class Forwarder:
    """Sends chat requests to an OpenAI-compatible ``/chat/completions`` endpoint."""

    url: str
    model: str | None = None
    timeout: float = 120.0

    @property
    def endpoint(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"

    def chat(
        self, conv: Sequence[tuple[str, str]], *, model: str | None, max_tokens: int | None,
        stop: Any, json_format: JsonSpec,
    ) -> Generation:
        payload: dict[str, Any] = {
            "model": self.model or model,
            "messages": [{"role": role, "content": text} for role, text in conv],
        }
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        if _stops(stop):
            payload["stop"] = _stops(stop)
        if json_format:
            payload["response_format"] = {"type": "json_object"}
        request = urllib.request.Request(
            self.endpoint, data=json.dumps(payload).encode("utf-8"),
            headers={"content-type": "application/json", "authorization": "Bearer sandbox"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (user-given URL)
                data = json.loads(response.read())
            choice = data["choices"][0]
            text = content_text(choice["message"].get("content"))
        except (OSError, ValueError, KeyError, IndexError, urllib.error.URLError) as exc:
            raise ForwardError(f"forward server failed: {exc}") from exc
        usage = data.get("usage") or {}
        finish: Finish = "length" if choice.get("finish_reason") == "length" else "stop"
        return Generation(
            text, finish, int(usage.get("prompt_tokens") or prompt_tokens(conv)),
            int(usage.get("completion_tokens") or count_tokens(text)),
        )
