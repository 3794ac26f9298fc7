"""How a run treats work that is paid for, unconfirmed or still running: one frozen value.

:meth:`Pipeline.run` (and ``overnight run``'s flags) choose the run-wide choices, each
LLM adds its own (attempts, waiting); the executor reads them from here and nowhere
else, so a new choice is one field, not an argument threaded through four calls.
"""

from __future__ import annotations

from typing import Any

from attrs import field, frozen

from overnight.polling import Backoff


@frozen(kw_only=True)
class RunPolicy:
    """What one run of a batch step may do, beyond the requests themselves."""

    #: Use results a previous run already paid for (``run(paid_results="reuse")`` or the cache).
    reuse_paid: bool = True
    #: Resubmit chunks whose submission a crashed run could not confirm (see UnconfirmedSubmission).
    resubmit_unconfirmed: bool = False
    #: Attempts per request for per-request errors before it ends as an error row.
    max_attempts: int = 3
    #: Jobs a request may go unrun in (expired, cancelled) before it ends as an error row.
    max_unfinished: int = 5
    #: Seconds to wait, polling, for the step's jobs; ``None`` submits and returns.
    block_until_done: float | None = None
    backoff: Backoff = Backoff()
    #: Seconds to wait for another process holding the store's lock.
    lock_timeout: float = 600.0
    #: The model's context window in tokens, overriding the plugin's table (``LLM(context_window=...)``).
    context_window: int | None = None
    #: The account's queue limits for this model (``LLM(max_enqueued_tokens=..., max_queued_requests=...)``);
    #: ``None`` keeps the plugin's (or its environment variable's) figure.
    max_enqueued_tokens: int | None = None
    max_queued_requests: int | None = None
    #: The run's budget across its batch steps (``run(budget_usd=...)``), see overnight.money.Budget.
    budget: Any = field(default=None, eq=False)
    #: Plan the batch steps and record their estimates here instead of submitting (``overnight estimate``).
    estimates: Any = field(default=None, eq=False)
    #: Online prices in USD per million tokens, overriding the price library:
    #: ``{"input_mtok": ..., "output_mtok": ...}`` (``LLM(prices=...)``).
    prices: Any = field(default=None, eq=False)
    #: Output tokens expected per request before any result of the step is collected.
    expected_output_tokens: int | None = None
