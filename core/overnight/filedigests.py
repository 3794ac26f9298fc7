"""The content identity of input files, with a stat shortcut that is safe to trust.

A file loader's output is cached under a signature that holds a hash of the file's
bytes (SHA-256, streamed), not its size and mtime: a file edited in place with its
timestamps put back (``touch -r``, archives with fixed timestamps, coarse-timestamp
filesystems) is a changed input.

Hashing a large file on every run would be slow, so the digest is remembered in a
small JSON file in the cache directory (``input-digests.json``), under the file's full
stat key: device, inode, size, mtime and ctime (in ns). ``utime``, ``touch -r``,
``tar -x`` and ``cp -p`` cannot put ctime back, so an edit changes the key. The
remembered digest is trusted only when the key matches exactly and the entry was not
"racy" (git's term: the file changed within the timestamp granularity before the hash
was taken, so a later edit could keep every timestamp). And the pipeline re-verifies a
trusted digest (hashing the file again) before it reuses a finished step that depends
on the file: the shortcut only ever saves the hash of a file whose steps all run.

The remembered digests are a cache: a missing, corrupt or unwritable file costs only a
re-hash, never a wrong answer and never a failed run.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

#: Name of the shortcut's file in the cache directory.
FILE_NAME = "input-digests.json"
#: Most files remembered (the least recently used are forgotten first): the file stays small.
MAX_ENTRIES = 512
#: A file changed less than this long before its hash was taken may change again with the
#: same timestamps (FAT keeps mtimes to 2 s): its entry is never trusted.
RACY_NS = 2_000_000_000
#: Bytes read at a time while hashing.
BLOCK = 1 << 20
#: Bump when the digest changes, so remembered digests of another kind are not used.
FORMAT = 1


def hash_file(path: str | os.PathLike[str]) -> str:
    """A hex digest of a file's bytes (SHA-256, 128 bits kept), read in blocks (memory stays flat).

    SHA-256 rather than BLAKE2b: OpenSSL runs it on the CPU's SHA instructions (x86 SHA-NI,
    ARMv8), where it measured faster (tests/benchmarks/bench_input_digest.py). xxhash was
    faster still, but not worth a dependency: a run that hashes an input also parses it."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            h.update(block)
    return h.hexdigest()[:32]


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class FileDigests:
    """The digests of the input files of one run, with the shortcut kept in ``cache_dir``."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None) -> None:
        self.path = Path(cache_dir) / FILE_NAME if cache_dir is not None else None
        self._entries: dict[str, dict[str, Any]] | None = None
        self._dirty = False
        #: Files whose digest this run took from the shortcut, not from their bytes: {path: digest}.
        self.trusted: dict[str, str] = {}

    # -- the shortcut's file ---------------------------------------------------------------

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = {}
            if self.path is not None:
                with contextlib.suppress(OSError, ValueError):
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                    if isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("files"), dict):
                        self._entries = data["files"]
        return self._entries

    def save(self) -> None:
        """Write the shortcut back (atomically); a full or read-only disk just skips it."""
        if not self._dirty or self.path is None or self._entries is None:
            return
        entries = sorted(self._entries.items(), key=lambda kv: kv[1].get("used", 0))[-MAX_ENTRIES:]
        text = json.dumps({"format": FORMAT, "files": dict(entries)}, separators=(",", ":"))
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{FILE_NAME}.{os.getpid()}.", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, self.path)  # readers see the old file or the new one, never half of one
            self._dirty = False
        except OSError:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    # -- digests ---------------------------------------------------------------------------

    def digest(self, path: str | os.PathLike[str]) -> str:
        """The digest of ``path``'s content: from the shortcut when safe, else by hashing it."""
        name = str(Path(path).resolve())
        st = os.stat(name)
        entry = self._load().get(name)
        if entry is not None and entry.get("key") == _stat_key(st) and not entry.get("racy", True):
            entry["used"] = time.time()
            self._dirty = True
            self.trusted[name] = entry["digest"]
            return str(entry["digest"])
        return self._hash(name)

    def verify(self, path: str | os.PathLike[str]) -> bool:
        """Hash a file whose digest came from the shortcut; ``True`` if it is unchanged."""
        name = str(Path(path).resolve())
        trusted = self.trusted.pop(name, None)
        return self._hash(name) == trusted

    def _hash(self, name: str) -> str:
        before = os.stat(name)
        value = hash_file(name)
        after = os.stat(name)
        now = time.time_ns()
        key = _stat_key(after)
        # Changed while hashed, or so recently that another edit could keep its timestamps.
        racy = key != _stat_key(before) or now - max(after.st_mtime_ns, after.st_ctime_ns) < RACY_NS
        self._load()[name] = {"key": key, "digest": value, "racy": racy, "used": now / 1e9}
        self._dirty = True
        return value

    @contextlib.contextmanager
    def active(self) -> Iterator["FileDigests"]:
        """Make these the digests that :func:`content_digest` uses (while signatures are computed)."""
        token = _active.set(self)
        try:
            yield self
        finally:
            _active.reset(token)


_active: contextvars.ContextVar[FileDigests | None] = contextvars.ContextVar("overnight_file_digests", default=None)


def content_digest(path: str | os.PathLike[str]) -> str:
    """The content digest of an input file, through the run's :class:`FileDigests` if any."""
    digests = _active.get()
    if digests is None:
        return hash_file(path)
    return digests.digest(path)
