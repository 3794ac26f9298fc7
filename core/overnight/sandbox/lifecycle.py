"""Where a job stands at a given sandbox instant: a pure function of its schedule.

Provider-neutral phases: ``validating -> in_progress -> finalizing -> completed``, plus
``failed`` (validation), ``expired`` (window passed or injected), and
``cancelling -> cancelled`` (user or provider cancel). Each provider module maps these
onto its own vocabulary. Requests complete one by one in input order, evenly spread over
the processing span, so a job stopped mid-way (cancel, expiry) has a deterministic
prefix of processed requests: ``processed`` is the size of that prefix.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs

Phase = Literal[
    "validating", "in_progress", "finalizing", "cancelling",
    "completed", "failed", "expired", "cancelled",
]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "expired", "cancelled"})


@attrs.frozen
class Schedule:
    """Everything that decides a job's course; stored with the job."""

    created_at: float
    validated_at: float          # end of validation (includes injected slowness)
    processing: float            # seconds from validated_at to the last request done
    finalizing: float
    cancelling: float
    deadline: float              # completion window end
    total: int
    valid: bool = True           # False: the job fails at validated_at
    stuck: bool = False          # never processes anything (until the deadline)
    expire_fraction: float | None = None   # injected expiry once this share is done
    cancel_fraction: float | None = None   # injected provider cancel at this share
    cancel_requested_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schedule:
        return cls(**data)


@attrs.frozen
class Snapshot:
    """A job's state at one instant."""

    phase: Phase
    processed: int                 # requests done so far (a prefix in input order)
    in_progress_at: float | None
    finalizing_at: float | None
    cancelling_at: float | None
    ended_at: float | None         # time of the terminal phase, once reached

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL


@attrs.frozen
class Ending:
    """How and when a job ends, as far as the schedule says today."""

    outcome: Phase                 # completed | failed | expired | cancelled
    at: float                      # when the terminal phase starts
    processed: int
    cancelling_at: float | None    # start of the cancelling phase, for cancels


def progress(s: Schedule, t: float) -> int:
    """Requests completed by time ``t`` if nothing stops the job."""
    if s.stuck or not s.valid or t < s.validated_at:
        return 0
    if s.processing <= 0:
        return s.total
    return min(s.total, math.floor(s.total * (t - s.validated_at) / s.processing))


def ending(s: Schedule) -> Ending:
    """The earliest event wins; a user cancel only counts if it came before the end."""
    start = s.validated_at
    candidates: list[Ending] = []
    if not s.valid:
        candidates.append(Ending("failed", start, 0, None))
    else:
        if not s.stuck:
            candidates.append(Ending("completed", start + s.processing + s.finalizing, s.total, None))
            if s.expire_fraction is not None:
                candidates.append(Ending(
                    "expired", start + s.expire_fraction * s.processing,
                    math.floor(s.expire_fraction * s.total), None))
            if s.cancel_fraction is not None:
                at = start + s.cancel_fraction * s.processing
                candidates.append(Ending(
                    "cancelled", at + s.cancelling, math.floor(s.cancel_fraction * s.total), at))
        candidates.append(Ending("expired", s.deadline, progress(s, s.deadline), None))
    if s.cancel_requested_at is not None:
        at = s.cancel_requested_at
        candidates.append(Ending("cancelled", at + s.cancelling, progress(s, at), at))

    def starts(e: Ending) -> float:  # a cancel "happens" when it is requested
        return e.cancelling_at if e.cancelling_at is not None else e.at

    return min(candidates, key=starts)


def snapshot(s: Schedule, now: float) -> Snapshot:
    end = ending(s)
    started = s.valid and end.outcome != "failed"
    in_progress_at = s.validated_at if started and now >= s.validated_at and (
        end.cancelling_at is None or end.cancelling_at >= s.validated_at) else None
    fin_start = s.validated_at + s.processing
    finalizing_at = fin_start if (
        in_progress_at is not None and not s.stuck and now >= fin_start and (
            end.outcome == "completed" or (end.cancelling_at is not None and end.cancelling_at >= fin_start))
    ) else None
    if now >= end.at:
        return Snapshot(end.outcome, end.processed, in_progress_at, finalizing_at, end.cancelling_at, end.at)
    if end.cancelling_at is not None and now >= end.cancelling_at:
        return Snapshot("cancelling", end.processed, in_progress_at, finalizing_at, end.cancelling_at, None)
    if now < s.validated_at:
        return Snapshot("validating", 0, None, None, None, None)
    if finalizing_at is not None:
        return Snapshot("finalizing", s.total, in_progress_at, finalizing_at, None, None)
    return Snapshot("in_progress", progress(s, now), in_progress_at, None, None, None)
