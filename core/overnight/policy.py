"""How a run treats work that is paid for, unconfirmed or still running: one frozen value.

:meth:`Pipeline.run` (and ``overnight run``'s flags) choose the run-wide choices, each
LLM adds its own (attempts, waiting); the executor reads them from here and nowhere
else, so a new choice is one field, not an argument threaded through four calls.
"""

from __future__ import annotations

from attrs import frozen

from overnight.polling import Backoff

#: Set (to 1) by ``overnight run --retry-failed`` for the script it runs; read by Pipeline.run.
RETRY_FAILED_ENV = "OVERNIGHT_RETRY_FAILED"


@frozen(kw_only=True)
class RunPolicy:
    """What one run of a batch step may do, beyond the requests themselves."""

    #: Use results a previous run already paid for (``run(paid_results="reuse")`` or the cache).
    reuse_paid: bool = True
    #: Resubmit chunks whose submission a crashed run could not confirm (see UnconfirmedSubmission).
    resubmit_unconfirmed: bool = False
    #: Resubmit requests whose results the provider lost (deleted or expired files or jobs);
    #: they were paid for once, so only on the user's explicit request (see LostResults).
    resubmit_lost: bool = False
    #: Give requests that ended as errors one more round of attempts (``run(retry_failed=True)``).
    retry_failed: bool = False
    #: Attempts per request for per-request errors before it ends as an error row.
    max_attempts: int = 3
    #: Jobs a request may go unrun in (expired, cancelled) before it ends as an error row.
    max_unfinished: int = 5
    #: Seconds to wait, polling, for the step's jobs; ``None`` submits and returns.
    block_until_done: float | None = None
    backoff: Backoff = Backoff()
    #: Seconds to wait for another process holding the store's lock.
    lock_timeout: float = 600.0
