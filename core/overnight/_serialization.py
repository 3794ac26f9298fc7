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
#: in a job, 9: no plan_items_key index, 10: requests referred to by number, 11: results as columns
#: (overnight.store.MIGRATIONS).
SCHEMA_VERSION = 11

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


def dump_raw(raw: dict[str, Any] | None, text: str | None) -> tuple[int | None, str | None]:
    """A result's raw answer as stored beside its text: ``(text_at, JSON)``.

    When the raw answer holds the text at ``TEXT_PATHS[text_at]``, that place is written
    as null: the answer is stored once, in the text's own column, and reading a result
    without its raw answer parses no JSON at all. The raw dict itself is left as it was.
    """
    if raw is None:
        return None, None
    at = _text_at(raw, text) if text else None
    if at is None:
        return None, _json.dumps(raw).decode()
    holder, last = _text_holder(raw, at)
    # Blanked in place for the one dumps call and put back, not copied along the path.
    holder[last] = None
    try:
        return at, _json.dumps(raw).decode()
    finally:
        holder[last] = text


def load_raw(stored: str | bytes | None, text_at: int | None, text: str | None) -> dict[str, Any] | None:
    """The raw answer :func:`dump_raw` stored, with its text put back."""
    if stored is None:
        return None
    raw: dict[str, Any] = _json.loads(stored)
    if text_at is not None:
        holder, last = _text_holder(raw, text_at)
        holder[last] = text
    return raw


def _text_holder(raw: dict[str, Any], at: int) -> tuple[Any, str | int]:
    """The dict or list in ``raw`` that holds its text at ``TEXT_PATHS[at]``, and the text's
    key or index in it (the path is known to be there)."""
    *path, last = TEXT_PATHS[at]
    holder: Any = raw
    for step in path:
        holder = holder[step]
    return holder, last


_STATUS = {status.value: status for status in ResultStatus}


def load_result(text: str | bytes) -> Result:
    """A result as stores before schema 11 kept it: ``dumps(result)``, with its text possibly
    only inside its raw answer (``text_at``, see TEXT_PATHS). Without cattrs: the store
    wrote every field with its type, so none is converted."""
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


def result_from_columns(key: str, legacy: str | None, status: str | None, text: str | None, error: str | None,
                        finish_reason: str | None, text_at: int | None, raw: str | None, used_in: int | None,
                        used_out: int | None, cost: float | None, online: float | None) -> Result | None:
    """A request's result from the store's columns (overnight.store.ANSWER and FIGURES;
    ``raw`` None when not read), else from its JSON (``legacy``: stored before schema 11,
    :func:`load_result`), else None (no result yet)."""
    if status is None:
        return load_result(legacy) if legacy else None
    return Result(key, _STATUS[status], text, error, None if used_in is None else Usage(used_in, used_out or 0),
                  finish_reason, load_raw(raw, text_at, text), cost, online)
