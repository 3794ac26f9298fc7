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

Each sample of a prompt gets its own answer: ``variant`` (the sample index, which the
sandbox reads from the request's custom id with :func:`sample_variant`) adds
``", sample N"`` to the reference for samples after the first, so ``num_generations=2``
shows two distinct answers. A JSON schema is answered with a value that validates
against it (:func:`fill`); a fault can make an answer break its schema on purpose.

Optionally a :class:`Forwarder` sends each chat request to an OpenAI-compatible server
(Ollama, vLLM, llama.cpp ...) for real generations.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import functools
import hashlib
import json
import math
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from overnight.tokens import text_tokens

Finish = Literal["stop", "length", "stop_sequence"]
JsonSpec = Mapping[str, Any] | bool | None   # None: text; True: any JSON object; a dict: a JSON schema

PROMPT_OVERHEAD = 4  # tokens per message, like the real chat templates add


@attrs.define  # not frozen: one is built per answer, and frozen attrs classes cost twice as much to build
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
    sample = f", sample {variant}" if variant else ""
    return f"Sandbox answer to: {last_user_text(conv)} (ref {digest(conv)}{sample})"


_HEX_KEY = re.compile(r"[0-9a-f]{40}([0-9a-f]{2})")


def sample_variant(custom_id: str) -> int:
    """The sample index a request's custom id carries, 0 when it carries none.

    overnight's request keys (:func:`overnight.identity.request_key`) are 40 hex chars
    for a row's first sample and 42 for the others, the last two being the sample index.
    overnight-anthropic sends each key as 16 tag characters then the key's bytes in
    base64url (``overnight_anthropic.wire_ids``); both forms are read here. Any other
    custom id (a third-party client's) is sample 0.
    """
    match = _HEX_KEY.fullmatch(custom_id)
    if match:
        return int(match.group(1), 16)
    tail = custom_id[16:]
    if len(tail) == 28:  # base64url of 21 bytes, unpadded
        try:
            raw = base64.urlsafe_b64decode(tail + "=" * (-len(tail) % 4))
        except (binascii.Error, ValueError):
            return 0
        return raw[-1] if len(raw) == 21 else 0
    return 0


#: How the sandbox's engine shapes the answers of the request it is answering: the
#: sample ``variant`` and the ``schema_violation`` a fault asks for. A context value, so
#: that the provider dialects (and their shared ``respond`` functions) need no new argument.
_ANSWER: contextvars.ContextVar[tuple[int, str | None]] = contextvars.ContextVar("answer", default=(0, None))


def current_variant() -> int:
    """The sample the request being answered is (0 outside :func:`answering`)."""
    return _ANSWER.get()[0]


class answering:  # noqa: N801 (used as a function)
    """Within this block, :func:`generate` answers sample ``variant`` (unless told otherwise)
    and breaks its JSON schema as ``schema_violation`` says (``"malformed"`` or
    ``"missing_field"``)."""

    # A class, not a @contextmanager: the engine enters one per request it answers, and a
    # generator-based one costs several times more.
    __slots__ = ("_value", "_token")

    def __init__(self, variant: int = 0, schema_violation: str | None = None) -> None:
        self._value = (variant, schema_violation)

    def __enter__(self) -> answering:
        self._token = _ANSWER.set(self._value)
        return self

    def __exit__(self, *_exc: object) -> None:
        _ANSWER.reset(self._token)  # the value before the block, whatever switch() set since

    def switch(self, variant: int = 0, schema_violation: str | None = None) -> None:
        """Answer as ``answering(variant, schema_violation)`` from now on, within this block
        (cheaper than a block per request: most requests answer like the one before)."""
        value = (variant, schema_violation)
        if value != self._value:
            _ANSWER.set(value)
            self._value = value


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


def _resolve(schema: Any, root: Mapping[str, Any]) -> Any:
    """Follow a local ``$ref`` (``#/$defs/X``, ``#/definitions/X``), as pydantic writes them."""
    seen = 0
    while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str) and seen < 32:
        target: Any = root
        for part in schema["$ref"].lstrip("#").strip("/").split("/"):
            target = target.get(part) if isinstance(target, Mapping) and part else target
        schema, seen = target, seen + 1
    return schema


def _string(schema: Mapping[str, Any], answer: str, variant: int) -> str:
    formats = {"date": "2026-01-0%d" % (1 + variant % 9), "date-time": "2026-01-01T00:00:0%dZ" % (variant % 10),
               "time": "00:00:0%d" % (variant % 10), "email": f"sample{variant}@example.com",
               "uuid": "00000000-0000-4000-8000-%012d" % variant, "uri": f"https://example.com/{variant}"}
    text = formats.get(str(schema.get("format")), answer)
    low, high = schema.get("minLength"), schema.get("maxLength")
    if isinstance(high, int) and len(text) > high:
        text = text[:high]
    if isinstance(low, int) and len(text) < low:
        text = text + "x" * (low - len(text))
    return text


def _number(schema: Mapping[str, Any], value: float, integer: bool) -> float:
    low, high = schema.get("minimum"), schema.get("maximum")
    xlow, xhigh = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    step = 1 if integer else 0.5
    if isinstance(xlow, (int, float)) and not isinstance(xlow, bool) and value <= xlow:
        value = xlow + step
    if isinstance(low, (int, float)) and not isinstance(low, bool) and value < low:
        value = low
    if isinstance(xhigh, (int, float)) and not isinstance(xhigh, bool) and value >= xhigh:
        value = xhigh - step
    if isinstance(high, (int, float)) and not isinstance(high, bool) and value > high:
        value = high
    return math.ceil(value) if integer else value


def fill(schema: Any, answer: str, variant: int = 0, *, root: Any = None, depth: int = 0) -> Any:
    """A value that validates against ``schema`` (objects with every property, arrays,
    strings within their lengths and common formats, bounded numbers and integers,
    booleans, enums, consts, nullable types, local ``$ref``s); ``variant`` picks among
    the enum members and varies numbers, so two samples differ."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if not isinstance(schema, Mapping) or depth > 16:
        return answer
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][variant % len(schema["enum"])]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            # Prefer a branch that is not null: an answer, not an absence.
            chosen = next((o for o in options if _resolve(o, root) != {"type": "null"}), options[0])
            return fill(chosen, answer, variant, root=root, depth=depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        return {k: fill(v, answer, variant, root=root, depth=depth + 1) for k, v in props.items()}
    if kind == "array":
        low: int = schema["minItems"] if isinstance(schema.get("minItems"), int) else 0
        high: int = schema["maxItems"] if isinstance(schema.get("maxItems"), int) else max(low, 1)
        count = max(low, min(1, high))
        return [fill(schema.get("items"), answer, variant, root=root, depth=depth + 1) for _ in range(count)]
    if kind == "integer":
        return int(_number(schema, count_tokens(answer) + variant, True))
    if kind == "number":
        return float(_number(schema, float(count_tokens(answer) + variant), False))
    if kind == "boolean":
        return variant % 2 == 0
    if kind == "null":
        return None
    return _string(schema, answer, variant)


def _violate(value: Any, text: str, how: str, schema: Any) -> str:
    """``text`` (the JSON of ``value``) broken as a fault asks: cut short, or without a
    required field (or, when nothing is required, with a field of the wrong type)."""
    if how == "malformed":
        return text[: max(1, len(text) // 2)]
    if isinstance(value, dict):
        required = schema.get("required") if isinstance(schema, Mapping) else None
        names = [n for n in (required or []) if n in value] or list(value)
        if names:
            value = {k: v for k, v in value.items() if k != names[0]}
        else:
            value = {**value, "unexpected": True}
        return json.dumps(value, ensure_ascii=False)
    return json.dumps({"unexpected": value}, ensure_ascii=False)


def _as_json(reply: str, spec: JsonSpec, variant: int = 0, violation: str | None = None) -> str:
    value = {"answer": reply} if spec is True else fill(spec, reply, variant)
    if not isinstance(value, dict) and spec is True:
        value = {"answer": value}
    text = json.dumps(value, ensure_ascii=False)
    return _violate(value, text, violation, spec) if violation else text


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
    if not stop and max_tokens is None:  # the usual request: nothing to apply
        return text, "stop", None
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
    json_format: JsonSpec = None, variant: int | None = None, counted: int | None = None,
) -> Generation:
    """The answer to ``conv``; ``variant`` is the sample (by default the one :func:`answering` set);
    ``counted``: :func:`prompt_tokens` of ``conv`` when the caller counted them already."""
    current, violation = _ANSWER.get()
    variant = current if variant is None else variant
    reply = base_reply(conv, variant)
    if json_format:
        reply = _as_json(reply, json_format, variant, violation)
    text, finish, matched = shape(reply, max_tokens=max_tokens, stop=stop)
    return Generation(text, finish, prompt_tokens(conv) if counted is None else counted, count_tokens(text), matched)


def expected_reply(
    messages: Iterable[Mapping[str, Any]] | str, *, system: Any = None, max_tokens: int | None = None,
    stop: Any = None, response_format: Mapping[str, Any] | None = None, variant: int = 0,
) -> str:
    """The text the sandbox answers to ``messages`` (same options as the request);
    ``variant`` is the sample index (0 for a row's first generation)."""
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
