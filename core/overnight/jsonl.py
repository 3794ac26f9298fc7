"""Streaming JSONL for plugins: spool a chunk's lines to a file, parse a byte stream.

Provider batch inputs and outputs are JSONL files that can reach hundreds of MB; these
helpers keep them out of memory.
"""

from __future__ import annotations

import json
import tempfile
from typing import IO, Any, Iterable, Iterator

from overnight import _json
from overnight.diskerrors import raise_on_disk
from overnight.errors import ProviderError
from overnight.faultpoints import fault_point

def spool(lines: Iterable[dict[str, Any]]) -> IO[bytes]:
    """Write ``lines`` as compact JSONL to a temporary file, rewound for reading.

    A real file on disk (not a SpooledTemporaryFile, which is no ``io.IOBase`` before
    Python 3.11 and which SDKs that validate their upload argument refuse).
    """
    return spool_jsonl(_json.dumps(line) + b"\n" for line in lines)


def spool_jsonl(lines: Iterable[bytes]) -> IO[bytes]:
    """Write encoded JSONL lines (``Chunk.jsonl()``) as they are to a temporary file, rewound.

    A full or read-only temporary folder is a :class:`~overnight.DiskError` naming it.
    """
    folder = tempfile.gettempdir()
    try:
        fault_point("spool", folder)
        out = tempfile.TemporaryFile(mode="w+b")
    except OSError as exc:
        raise_on_disk(f"a temporary file in {folder}", exc, hint=_TMP_HINT)
    try:
        out.writelines(lines)
        out.flush()
        out.seek(0)
    except OSError as exc:
        out.close()
        raise_on_disk(f"a temporary file in {folder}", exc, hint=_TMP_HINT)
    return out


#: What to do when the temporary folder (not the cache directory) is full or read-only.
_TMP_HINT = (
    "Free some space there (or point TMPDIR at a folder with room) and run again: nothing was sent "
    "for this job, and the next run checks its tag before submitting it."
)


def parse(
    chunks: Iterable[bytes], *, expected_bytes: int | None = None, source: str = "the result stream"
) -> Iterator[dict[str, Any]]:
    """Parse a JSONL byte stream given in arbitrary pieces; blank lines are skipped.

    A stream cut short raises :class:`~overnight.ProviderError` instead of being silently
    half-read: a final line cut mid-way always, and a stream cut between two lines when
    ``expected_bytes`` (the file size the provider reported) is given. The lines parsed
    before that are yielded, so the caller keeps them.
    """
    buffer = b""
    received = 0
    for piece in chunks:
        received += len(piece)
        buffer += piece
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            if raw.strip():
                yield _json.loads(raw)
    if buffer.strip():
        try:
            yield _json.loads(buffer)
        except json.JSONDecodeError:
            raise ProviderError(f"{source} ended in the middle of a line; run again to fetch it again") from None
    if expected_bytes and received != expected_bytes:
        raise ProviderError(
            f"{source} stopped after {received:,} of {expected_bytes:,} bytes; the results read so far "
            "are kept. Run again to fetch the rest."
        )
