"""The one private converter between the data model and what the store persists.

Everything persisted goes through :data:`converter` and carries :data:`SCHEMA_VERSION`,
so a store written by a newer overnight is refused instead of misread.
"""

from __future__ import annotations

from typing import Any, TypeVar

import cattrs

from overnight import _json

SCHEMA_VERSION = 3  # 2: runs.host, 3: online mode's tables (overnight.store.MIGRATIONS)

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
