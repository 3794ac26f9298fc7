"""The one private converter between the data model and what the store persists.

Everything persisted goes through :data:`converter` and carries :data:`SCHEMA_VERSION`,
so a store written by a newer overnight is refused instead of misread.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import cattrs

SCHEMA_VERSION = 1

T = TypeVar("T")

converter = cattrs.Converter(forbid_extra_keys=False)
# Tuples persist as JSON lists; frozensets as sorted lists.
converter.register_unstructure_hook(frozenset, lambda s: sorted(s))


def dumps(value: Any) -> str:
    """Serialise an attrs value (or plain JSON data) to compact, key-sorted JSON."""
    return json.dumps(converter.unstructure(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def loads(text: str, cls: type[T]) -> T:
    return converter.structure(json.loads(text), cls)
