"""How a run treats work that is paid for, unconfirmed or still running: one frozen value.

:meth:`Pipeline.run` (and ``overnight run``'s flags) choose the run-wide choices, each
LLM adds its own (attempts, waiting); the executor reads them from here and nowhere
else, so a new choice is one field, not an argument threaded through four calls.
"""

from __future__ import annotations

import os
from typing import Any

from attrs import field, frozen

from overnight.errors import ConfigurationError
from overnight.polling import Backoff

#: Set (to 1) by ``overnight run --retry-failed`` for the script it runs; read by Pipeline.run.
RETRY_FAILED_ENV = "OVERNIGHT_RETRY_FAILED"
#: Environment variable overriding :attr:`RunPolicy.create_settle_seconds`.
SETTLE_ENV = "OVERNIGHT_CREATE_SETTLE_SECONDS"
#: A create whose answer was lost can land at the provider seconds (rarely minutes) later.
DEFAULT_CREATE_SETTLE_SECONDS = 300.0
#: How far back (seconds) a run looks at the provider for jobs to adopt; see ``adopt_horizon``.
DEFAULT_ADOPT_HORIZON = 7 * 24 * 3600.0


#: Environment variable overriding :attr:`RunPolicy.adopt_horizon`.
ADOPT_ENV = "OVERNIGHT_ADOPT_HORIZON"


def seconds_from_env(name: str, default: float) -> float:
    """A number of seconds >= 0 from the environment variable ``name``, else ``default``."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigurationError(f"{name} must be a number of seconds >= 0, got {raw!r}")
    return value


@frozen
class Retries:
    """When a request that did not succeed goes again, and when it ends as an error row.

    The executor's rule (from :class:`RunPolicy`); the store applies it to each result
    inside the transaction that records it.
    """

    #: Attempts per request for per-request errors before it ends as an error row.
    max_attempts: int = 3
    #: Jobs a request may go unrun in (expired, cancelled) before it ends as an error row.
    max_unfinished: int = 5

    def gives_up(self, attempts: int, unfinished: int) -> bool:
        """Whether a request with these counts (its latest outcome included) ends as an error row."""
        return attempts >= self.max_attempts or unfinished >= self.max_unfinished


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
    #: Seconds after a create whose answer was lost (or a run killed around a submit)
    #: during which "the provider has no job with this tag" does not count as proof: the
    #: create may still land. Until then the chunk waits; after it, it is submitted again
    #: under the same tag (so a very late duplicate is recognised and cancelled).
    #: ``None``: ``$OVERNIGHT_CREATE_SETTLE_SECONDS``, else 300 s (read when used).
    create_settle_seconds: float | None = None
    #: Before paying for requests no job of this store holds, look at the provider for
    #: overnight jobs created in the last ``adopt_horizon`` seconds that hold them, and
    #: adopt those (providers that declare ``Capabilities.list_jobs``). 0: no listing in
    #: runs (jobs listed by ``overnight adopt`` are still adopted).
    #: ``None``: ``$OVERNIGHT_ADOPT_HORIZON``, else 7 days (read when used).
    adopt_horizon: float | None = None

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

    #: Send the step's requests through the provider's online API, not its batch API
    #: (``LLM(use_offline_batch_generation=False)``; see overnight.online).
    online: bool = False
    #: Online pacing, overriding the plugin's OnlineLimits (``LLM(online_concurrency=...,
    #: requests_per_minute=..., tokens_per_minute=...)``); ``None`` keeps the plugin's figure.
    online_concurrency: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    #: The deadline fallback: seconds after the step's first batch submit
    #: (``LLM(online_fallback_after=...)``) or a Unix time (``LLM(deadline=...)``) after which
    #: its open batch jobs are cancelled, their results kept, and the rest is sent online.
    online_fallback_after: float | None = None
    deadline: float | None = None

    @property
    def retries(self) -> Retries:
        """The retry rule the store applies to this step's results."""
        return Retries(self.max_attempts, self.max_unfinished)

    @property
    def settle_seconds(self) -> float:
        """The settle window in force: the field, else the environment, else the default."""
        if self.create_settle_seconds is not None:
            return self.create_settle_seconds
        return seconds_from_env(SETTLE_ENV, DEFAULT_CREATE_SETTLE_SECONDS)

    @property
    def adopt_seconds(self) -> float:
        """The adoption horizon in force: the field, else the environment, else the default."""
        if self.adopt_horizon is not None:
            return self.adopt_horizon
        return seconds_from_env(ADOPT_ENV, DEFAULT_ADOPT_HORIZON)
