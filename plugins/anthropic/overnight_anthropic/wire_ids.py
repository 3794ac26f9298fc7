"""Custom ids on the wire: each one carries the job's tag, so a crashed run can find its batch.

The Message Batches API keeps no metadata, but it keeps every request's ``custom_id``
(1-64 characters of ``[A-Za-z0-9_-]``) and returns it with the results. At submit each
core key (a hex digest) is sent as ``<tag digest, 16 chars><key, base64url>``: 43
characters for the core's 40-hex keys. ``find_job`` reads one result line of a batch and
compares its first 16 characters with the digest of the tag it looks for; ``fetch``
decodes the key back. Both parts are fixed-length, so decoding needs no separator.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

TAG_CHARS = 16
MAX_ID = 64
_HEX = re.compile(r"(?:[0-9a-f]{2})+")


def tag_digest(tag: str) -> str:
    """16 base64url characters (96 bits) identifying ``tag``."""
    return base64.urlsafe_b64encode(hashlib.sha256(tag.encode()).digest()[:12]).decode()


def encodable(key: str) -> bool:
    """Whether a core key can travel inside a tagged wire id."""
    return bool(_HEX.fullmatch(key)) and TAG_CHARS + len(_b64(bytes.fromhex(key))) <= MAX_ID


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def encode(tag: str, key: str) -> str:
    """The wire custom id of ``key`` in the job tagged ``tag``."""
    if not encodable(key):
        raise ValueError(f"custom id {key!r} is not a hex digest of at most 72 characters")
    return tag_digest(tag) + _b64(bytes.fromhex(key))


def decode(wire_id: str) -> str | None:
    """The core key inside a wire id, or ``None`` if it is not one of ours."""
    body = wire_id[TAG_CHARS:]
    if len(wire_id) <= TAG_CHARS:
        return None
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        return None
    if _b64(raw) != body:  # not canonical: not produced by encode()
        return None
    return raw.hex()


def carries(wire_id: str, tag: str) -> bool:
    """Whether ``wire_id`` was sent in the job tagged ``tag``."""
    return len(wire_id) > TAG_CHARS and wire_id[:TAG_CHARS] == tag_digest(tag)
