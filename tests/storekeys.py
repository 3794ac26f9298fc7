"""Store tests name requests by key; the store's intents take request numbers."""

from __future__ import annotations

from typing import Any, Sequence


def request_ids(store: Any, keys: Sequence[str]) -> list[int]:
    """The numbers of the requests with these keys, in the keys' order (as pending_lines gives them)."""
    rows = store._query(f"SELECT key, id FROM requests WHERE key IN ({','.join('?' * len(keys))})", list(keys))
    numbers = {row["key"]: row["id"] for row in rows}
    return [numbers[key] for key in keys]
