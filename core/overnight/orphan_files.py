"""Input files an interrupted submit left behind, and best-effort deletes (plugin kit).

A plugin that uploads a chunk's input file before creating the job can be stopped between
the two. When ``find_job`` then finds no job under the chunk's tag, no job can need the
file, and the core submits again under a new tag: :func:`delete_orphan_input` removes it.
Files are never billed as jobs, so every delete here is best effort: a failure is logged
(by type, never with a message that might hold a URL with a key) and never raised.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Iterable

log = logging.getLogger(__name__)

#: Recent files searched for the one an interrupted submit left (listings are newest first).
ORPHAN_SEARCH = 1000


def input_name(tag: str) -> str:
    """The name a plugin gives the input file of the chunk tagged ``tag``."""
    return f"{tag}.jsonl"


def delete_quietly(delete: Callable[[], Any], what: str) -> None:
    """Run one cleanup call (``what``: the file, for the log); log a failure, never raise.

    The error that made the cleanup necessary matters more than a leftover file.
    """
    try:
        delete()
    except Exception as exc:
        log.warning("could not delete %s (%s)", what, type(exc).__name__)


def delete_orphan_input(listing: Callable[[], Iterable[Any]], matches: Callable[[Any], bool],
                        delete: Callable[[Any], Any], *, tag: str, label: str, limit: int = ORPHAN_SEARCH) -> int:
    """Delete the files of ``listing()`` that ``matches`` (the input of tag ``tag``); return how many.

    ``listing``: the provider's file listing, newest first (an SDK pager: it is walked
    lazily, at most ``limit`` files); ``delete``: deletes one listed file. Call it only once
    no job carries the tag. Best effort: a failing listing is logged and ends the search.
    """
    deleted = 0
    try:
        for seen, item in enumerate(listing()):
            if seen >= limit:
                break
            if matches(item):
                delete_quietly(functools.partial(delete, item), f"the {label} input file of the interrupted submit {tag}")
                deleted += 1
    except Exception as exc:
        log.warning("could not look for the %s input file of the interrupted submit %s (%s)", label, tag,
                    type(exc).__name__)
    return deleted
