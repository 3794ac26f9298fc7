"""Fewer garbage collections while a batch step streams its requests and results.

CPython collects its youngest generation every 700 container allocations, and the whole
heap whenever enough survivors pile up. A batch step allocates a few dicts per request
and keeps almost none of them, so at a million requests most collections scan the whole
heap (the imported SDKs included) to find nothing: 1.1 of 9 CPU seconds at 100k in
``tests/benchmarks/bench_vs_sdk.py``. While a step streams, the youngest generation is
collected every :data:`YOUNG` allocations instead and the older ones more rarely; cycles
are still collected (memory stays flat), and the process's own thresholds come back when
the last step using this leaves it.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from typing import Iterator

#: Container allocations between two collections of the youngest generation, while streaming.
YOUNG = 20_000
#: Collections of one generation between two of the next, while streaming.
OLDER = 10

_lock = threading.Lock()
_users = 0
_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the collection thresholds for the duration (nested and threaded uses share one)."""
    global _users, _saved
    with _lock:
        if _users == 0:
            before = gc.get_threshold()
            _saved = (before[0], before[1], before[2])
            if before[0]:  # 0: the application turned automatic collection off; leave it so
                gc.set_threshold(max(before[0], YOUNG), max(before[1], OLDER), max(before[2], OLDER))
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
