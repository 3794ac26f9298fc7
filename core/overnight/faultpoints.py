"""Deterministic faults for the reliability suite: crashes and failing writes.

``fault_point("after_intent")`` acts when the environment variable
``OVERNIGHT_FAULT_POINT`` names that point: ``name`` or ``name:N`` (the N-th time it is
reached, counting from 1) kills the process with SIGKILL; ``name:N:ACTION`` does
ACTION instead:

* an errno name (``ENOSPC``, ``EROFS``, ``EACCES``, ``EDQUOT``): raise that ``OSError``
  here, as the write that follows would, from the N-th time on (a full disk stays full);
* ``fill``: fill the file system that holds ``OVERNIGHT_HOME`` (a file
  ``.overnight-fault-fill`` in it) and carry on, so that the next real writes, SQLite's
  own included, fail with the real ``ENOSPC``. Refused on a file system over 64 MiB:
  it is meant for a small tmpfs a test mounted.

Unset, it costs one dictionary lookup.
"""

from __future__ import annotations

import errno
import os
import signal

ENV = "OVERNIGHT_FAULT_POINT"
#: The file ``fill`` writes; delete it to "free space".
FILL_NAME = ".overnight-fault-fill"
#: Largest file system ``fill`` agrees to fill.
FILL_LIMIT = 64 << 20

#: The executor's phase boundaries, in the order a run meets them.
POINTS = (
    "after_intent",  # the intent is committed, nothing sent yet
    "after_upload",  # a plugin uploaded its input file, no job created yet
    "after_create",  # the provider created the job, its id is not committed
    "during_poll",  # between two checks while polling
    "mid_fetch",  # some results of a job are stored, others not
    "during_assembly",  # every result is stored, the output is being assembled
    "online_claimed",  # online mode: requests claimed in the store, none sent yet
    "online_committed",  # online mode: a batch of answers committed, the workers not yet released
)
#: Write sites, for the errno actions: each is reached right before the write it names.
WRITE_POINTS = (
    "open_lock",  # opening the store's lock file
    "write_output",  # creating a step's output (temporary file, then rename)
    "spool",  # a plugin spooling a job's input to a temporary file
)

_seen: dict[str, int] = {}


def fault_point(name: str, path: "str | os.PathLike[str] | None" = None) -> None:
    """Act here, now, if the environment asks for it (tests only). ``path``: what a write
    site writes, named in the raised error."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, rest = wanted.partition(":")
    if point != name:
        return
    nth, _, action = rest.partition(":")
    _seen[name] = _seen.get(name, 0) + 1
    count = _seen[name]
    wanted_nth = int(nth or 1)
    if count < wanted_nth:
        return
    if not action:
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "fill":
        if count == wanted_nth:
            _fill()
    else:
        code = getattr(errno, action)
        raise OSError(code, os.strerror(code), None if path is None else os.fspath(path))


def armed(name: str) -> bool:
    """Whether the environment names the point ``name`` now. A loop over millions of rows
    asks once, then reaches the point only if so (the lookup costs a second per million)."""
    return (os.environ.get(ENV) or "").partition(":")[0] == name


def _fill() -> None:
    home = os.environ.get("OVERNIGHT_HOME") or "."
    stats = os.statvfs(home)
    if stats.f_blocks * stats.f_frsize > FILL_LIMIT:
        raise RuntimeError(f"fault point 'fill' refuses to fill {home}: its file system is over 64 MiB")
    block = b"\0" * 65536
    with open(os.path.join(home, FILL_NAME), "ab", buffering=0) as handle:  # unbuffered: nothing left to flush
        try:
            while True:
                handle.write(block)
                handle.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        small = b"\0" * 512
        try:  # the last partial blocks too
            while True:
                handle.write(small)
                handle.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
