"""Deterministic crash points for the reliability suite.

``fault_point("after_intent")`` kills the process with SIGKILL when the environment
variable ``OVERNIGHT_FAULT_POINT`` names that point (``name`` or ``name:N`` for the N-th
time it is reached, counting from 1). Unset, it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "OVERNIGHT_FAULT_POINT"

#: The executor's phase boundaries, in the order a run meets them.
POINTS = (
    "after_intent",  # the intent is committed, nothing sent yet
    "after_upload",  # a plugin uploaded its input file, no job created yet
    "after_create",  # the provider created the job, its id is not committed
    "during_poll",  # between two checks while polling
    "mid_fetch",  # some results of a job are stored, others not
    "during_assembly",  # every result is stored, the output is being assembled
)

_seen: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Die here, now, if the environment asks for it (tests only)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
