"""Streaming JSONL for plugins: spool a chunk's lines to a file, parse a byte stream.

Provider batch inputs and outputs are JSONL files that can reach hundreds of MB; these
helpers keep them out of memory.
"""

from __future__ import annotations

import json
import tempfile
from typing import IO, Any, Iterable, Iterator

#: Spooled files stay in memory up to this size, then move to a temporary file.
SPOOL_MEMORY = 8 * 1024 * 1024


def spool(lines: Iterable[dict[str, Any]]) -> IO[bytes]:
    """Write ``lines`` as compact JSONL to a temporary file, rewound for reading."""
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY, mode="w+b")
    for line in lines:
        out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode())
        out.write(b"\n")
    out.seek(0)
    return out


def parse(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """Parse a JSONL byte stream given in arbitrary pieces; blank lines are skipped.

    A final line cut short (a truncated download) raises ``ValueError`` instead of
    being silently dropped or half-read.
    """
    buffer = b""
    for piece in chunks:
        buffer += piece
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            if raw.strip():
                yield json.loads(raw)
    if buffer.strip():
        try:
            yield json.loads(buffer)
        except json.JSONDecodeError as exc:
            raise ValueError(f"the result stream ended in the middle of a line ({exc})") from None
