"""Fast JSON for the hot path: orjson, with the standard library's behaviour kept at the edges.

Every request line, stored result and parsed result line goes through here (millions of
times in a big run), so it uses orjson. Values orjson refuses and the standard library
takes (integers over 64 bits, non-string keys, NaN in input) fall back to :mod:`json`,
so nothing that worked before is refused now. Both write compact UTF-8 (no ``\\uXXXX``
escapes for non-ASCII text), so the bytes are the same either way.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import orjson

#: Raised for a text that is not JSON; a subclass of :class:`json.JSONDecodeError`.
JSONDecodeError = json.JSONDecodeError


def dumps(value: Any, *, sort_keys: bool = False, default: Callable[[Any], Any] | None = None) -> bytes:
    """``value`` as compact UTF-8 JSON bytes."""
    # Dates and dataclasses go to ``default`` as they do with the standard library.
    option = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    try:
        return orjson.dumps(value, default=default, option=option | orjson.OPT_SORT_KEYS if sort_keys else option)
    except TypeError:  # orjson.JSONEncodeError: let the standard library decide (it may refuse too)
        return json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False,
                          default=default).encode()


def loads(data: str | bytes) -> Any:
    """Parse one JSON document (``NaN`` and big integers included, like :func:`json.loads`)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
