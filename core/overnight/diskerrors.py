"""A full disk, a read-only folder or a denied permission, told apart from other failures.

The same three conditions reach overnight as an ``OSError`` (our own writes: step
outputs, temporary files, the lock file) or as an ``sqlite3`` error (the store's own
writes, which happen inside SQLite). :func:`disk_error` turns either into a
:class:`~overnight.DiskError` that names the path and says what to do.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from typing import Any, NoReturn

from overnight.errors import DiskError

#: errno -> (what happened, what to do).
_AGAIN = (
    "Free some space and run again: the run carries on where it stopped (results not saved yet are "
    "downloaded again, not paid for again)."
)
_KINDS = {
    errno.ENOSPC: ("the disk is full", _AGAIN),
    errno.EDQUOT: ("the disk quota is used up", _AGAIN),
    errno.EFBIG: ("the file is over the size limit", "Raise the file size limit (ulimit -f) and run again."),
    errno.EROFS: (
        "the file system is read-only",
        "Make it writable (or point OVERNIGHT_HOME / cache_dir at a writable folder: copy the store "
        "with it, it holds your job ids) and run again. `overnight status` and `overnight jobs` still work.",
    ),
    errno.EACCES: (
        "permission denied",
        "Give this user write access (or point OVERNIGHT_HOME / cache_dir at a writable folder: copy the store "
        "with it, it holds your job ids) and run again. `overnight status` and `overnight jobs` still work.",
    ),
    errno.EPERM: ("operation not permitted", "Give this user write access and run again."),
}

#: How SQLite reports the same conditions (its extended result code names, Python 3.11+).
_SQLITE_NAMES = {
    "SQLITE_FULL": errno.ENOSPC,
    "SQLITE_READONLY": errno.EROFS,
    "SQLITE_READONLY_DBMOVED": errno.EROFS,
    "SQLITE_READONLY_DIRECTORY": errno.EROFS,
    "SQLITE_READONLY_CANTINIT": errno.EROFS,
    "SQLITE_READONLY_CANTLOCK": errno.EROFS,
    "SQLITE_READONLY_RECOVERY": errno.EROFS,
    "SQLITE_PERM": errno.EACCES,
}
#: ... and by message, for Pythons that do not expose the code.
_SQLITE_MESSAGES = {
    "database or disk is full": errno.ENOSPC,
    "attempt to write a readonly database": errno.EROFS,
}


def disk_errno(exc: BaseException) -> int | None:
    """The errno of a full disk / read-only folder / denied permission behind ``exc``, if it is one."""
    if isinstance(exc, OSError):
        return exc.errno if exc.errno in _KINDS else None
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", None)
        if name in _SQLITE_NAMES:
            return _SQLITE_NAMES[name]
        text = str(exc).lower()
        for message, code in _SQLITE_MESSAGES.items():
            if message in text:
                return code
    return None


def disk_error(path: Any, exc: BaseException, *, done: str | None = None, hint: str | None = None) -> DiskError | None:
    """A :class:`DiskError` for ``exc`` at ``path``, or ``None`` if ``exc`` is something else.

    For SQLite, which hides the errno, a read-only store is told from a denied
    permission by asking the folder.
    """
    code = disk_errno(exc)
    if code is None and getattr(exc, "sqlite_errorname", None) == "SQLITE_CANTOPEN":
        # SQLite cannot open (or create) the file or its -wal/-shm: a folder it may not write?
        folder = os.path.dirname(os.fspath(path)) or "."
        if not os.access(folder, os.W_OK) or _is_readonly_fs(folder):
            code = errno.EROFS
    if code is None:
        return None
    if code == errno.EROFS and isinstance(exc, sqlite3.Error):
        code = _readonly_kind(path)
    problem, what_to_do = _KINDS[code]
    return DiskError(path, f"{problem} ({exc})", done=done, hint=hint if hint and code in (errno.ENOSPC, errno.EDQUOT) else what_to_do)


def raise_on_disk(path: Any, exc: BaseException, *, done: str | None = None, hint: str | None = None) -> NoReturn:
    """Raise the :class:`DiskError` for ``exc`` at ``path`` (caused by it), or ``exc`` itself
    when it is something else than a full disk, a read-only folder or a denied permission."""
    error = disk_error(path, exc, done=done, hint=hint)
    if error is None:
        raise exc
    raise error from exc


def _is_readonly_fs(folder: str) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _readonly_kind(path: Any) -> int:
    folder = os.path.dirname(os.fspath(path)) or "."
    if _is_readonly_fs(folder):
        return errno.EROFS
    writable = os.access(folder, os.W_OK) and (not os.path.exists(path) or os.access(os.fspath(path), os.W_OK))
    return errno.EROFS if writable else errno.EACCES
