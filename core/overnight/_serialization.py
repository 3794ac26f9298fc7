"""The one private converter between the data model and what the store persists.

Everything persisted goes through :data:`converter` and carries :data:`SCHEMA_VERSION`,
so a store written by a newer overnight is refused instead of misread.
"""

from __future__ import annotations

from typing import Any, TypeVar

import cattrs

from overnight import _json
from overnight.models import Result, ResultStatus, Usage

#: 2: runs.host, 3: online mode's tables, 4: result figures, 5: requests_to_submit, 6: plan sums and
#: job tokens, 7: a result's text kept once, inside its raw answer, 8: the job index only over requests
#: in a job, 9: no plan_items_key index, 10: requests referred to by number (overnight.store.MIGRATIONS).
SCHEMA_VERSION = 10

T = TypeVar("T")

converter = cattrs.Converter(forbid_extra_keys=False)
# Tuples persist as JSON lists; frozensets as sorted lists.
converter.register_unstructure_hook(frozenset, lambda s: sorted(s))
# Opaque JSON dicts (a result's raw body, a job's plugin data) are JSON data already:
# pass them through instead of walking every nested value (dozens of calls per result).
_JSON_DICT = dict[str, Any]
converter.register_unstructure_hook_func(lambda t: t == _JSON_DICT, lambda value: value)
converter.register_structure_hook_func(lambda t: t == _JSON_DICT, lambda value, _t: dict(value))


def dumps(value: Any) -> str:
    """Serialise an attrs value (or plain JSON data) to compact, key-sorted JSON."""
    return _json.dumps(converter.unstructure(value), sort_keys=True).decode()


def loads(text: str | bytes, cls: type[T]) -> T:
    return converter.structure(_json.loads(text), cls)


#: Where the providers' raw answers hold the whole text, tried in order. A stored result
#: whose text is found at one of them keeps it there only, with ``text_at`` (the index
#: here): the answer is then stored once, not twice. Append only: stores keep the index.
TEXT_PATHS: tuple[tuple[str | int, ...], ...] = (
    ("choices", 0, "message", "content"),  # OpenAI-style chat bodies (OpenAI, Mistral, gateways)
    ("result", "message", "content", 0, "text"),  # an Anthropic results line, one text block
    ("candidates", 0, "content", "parts", 0, "text"),  # a Gemini response, one part
)


def _at(raw: Any, path: tuple[str | int, ...]) -> Any:
    try:
        for step in path:
            raw = raw[step]
    except (KeyError, IndexError, TypeError):
        return None
    return raw


def _text_at(raw: Any, text: str) -> int | None:
    """The index of the TEXT_PATHS entry where ``raw`` holds ``text``, if any."""
    if isinstance(raw, dict):
        for index, path in enumerate(TEXT_PATHS):
            if path[0] in raw and _at(raw, path) == text:
                return index
    return None


def dump_result(result: Result, costs: tuple[float | None, float | None] | None = None) -> str:
    """``dumps(result)`` for a :class:`~overnight.models.Result`, written out by hand.

    One is stored per request (millions in a big run): building the dict directly
    instead of through cattrs is faster and gives the same text. A text that the raw
    answer holds already is not written a second time (``text_at``, see TEXT_PATHS).
    ``costs``: ``(cost_usd, online_cost_usd)`` to store instead of the result's own (the
    price the core gives a result, without building a copy of it).
    """
    usage = result.usage
    text = result.text
    cost, online = (result.cost_usd, result.online_cost_usd) if costs is None else costs
    data = {
        "cost_usd": cost,
        "custom_id": result.custom_id,
        "error": result.error,
        "finish_reason": result.finish_reason,
        "online_cost_usd": online,
        "raw": result.raw,
        "status": result.status.value,
        "text": text,
        "usage": None if usage is None else {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
    }
    if text:
        at = _text_at(result.raw, text)
        if at is not None:
            data["text"], data["text_at"] = None, at
    return _json.dumps(data, sort_keys=True).decode()


_STATUS = {status.value: status for status in ResultStatus}


def load_result(text: str | bytes) -> Result:
    """``loads(text, Result)`` for what :func:`dump_result` wrote, without cattrs (one per row
    read back). The store wrote every field with its type, so none is converted."""
    data = _json.loads(text)
    usage, raw = data.get("usage"), data.get("raw")
    get = data.get
    at = get("text_at")
    return Result(
        str(data["custom_id"]), _STATUS[data["status"]], get("text") if at is None else _at(raw, TEXT_PATHS[at]),
        get("error"),
        None if usage is None else Usage(int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))),
        get("finish_reason"), raw, get("cost_usd"), get("online_cost_usd"),
    )
