"""Online mode and the deadline fallback: a step's requests through the provider's online API.

``LLM(..., use_offline_batch_generation=False)`` sends the step's requests one by one
through the plugin's ``generate`` hook; ``LLM(..., online_fallback_after=<seconds>)`` or
``deadline=`` runs the step in batch and, once its batch part has run that long, cancels
the open batch jobs, keeps every result they return and sends online only what is still
without a result. Both go through the same plan as batch (validated before any spend)
and the same store, under the same content-addressed request keys: a request answered
either way is never paid for again, whichever way the step runs next.

How a request travels online (:class:`OnlineRunner`):

* it is *claimed* in the store (state ``online``, a row in ``online_claims`` naming this
  runner), so no batch submit and no other sender takes it;
* a worker thread waits for the :class:`~overnight.ratelimit.Pacer` of the provider and
  model (requests and tokens per minute, requests in flight), calls ``generate``, and
  rides out 429s (``RateLimited``: the pacer holds every thread for the Retry-After and
  slows down; no attempt counted) and outages (``ProviderUnavailable``: a few tries with
  backoff, then one failed attempt);
* the answer is priced at online prices and committed by the main thread, a few at a
  time, as answers arrive; an error counts one attempt, as in batch (``max_attempts``,
  then an explicit error row; ``run(retry_failed=True)`` gives error rows another round).

A kill loses at most the requests in flight (their answers were possibly billed and
never stored); the next run releases the dead runner's claims (same host: at once, the
process is gone; another host: after :data:`LEASE` seconds without a heartbeat) and
sends them again. The first Ctrl+C stops at once: nothing more is sent, answers of
requests in flight are still stored if they come before the process exits, and the step
raises :class:`~overnight.OnlineGenerationNotFinished`; a rerun sends the rest.
"""

from __future__ import annotations

import datetime
import json
import os
import queue
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable

from attrs import frozen

from overnight import polling, progress, ratelimit
from overnight import store as st
from overnight.faultpoints import fault_point
from overnight.errors import (
    ConfigurationError,
    OnlineGenerationNotFinished,
    OvernightError,
    ProviderError,
    ProviderNotFound,
    ProviderUnavailable,
    RateLimited,
)
from overnight.models import ProviderInfo, Result, ResultStatus, evolve
from overnight.money import DEFAULT_EXPECTED_OUTPUT, usd
from overnight.store import JobRecord

if TYPE_CHECKING:
    from overnight.executor import BatchExecutor

#: Seconds without a heartbeat after which another host's online claims are released.
LEASE = 300.0
#: How often a runner refreshes its claims (seconds).
HEARTBEAT = LEASE / 6
#: Tries of one request while the provider is unavailable (5xx, timeouts) before it counts one failed attempt.
MAX_UNAVAILABLE = 4
#: Backoff between those tries (seconds): FIRST, doubled each time, at most MAX.
UNAVAILABLE_FIRST = 1.0
UNAVAILABLE_MAX = 30.0
#: 429s in a row on one request after which the run stops (the provider's limit is far
#: below what was declared, or the account is out of quota): a quota is not a failure, so
#: no attempt is counted; the requests go back to the queue for the next run.
MAX_RATE_LIMITED = 50
#: Seconds the online call may take when the LLM sets no ``timeout`` client option.
DEFAULT_TIMEOUT = 600.0
#: The longest a run waits for batch jobs it cancelled at the deadline to end (seconds).
CANCEL_WAIT = 3600.0
#: Progress is redrawn at most this often while sending (seconds).
PROGRESS_PERIOD = 1.0

_HOST = socket.gethostname()
#: Tokens of the runners of this process that still have a request in flight.
_live: set[str] = set()
_live_lock = threading.Lock()


# -- settings and checks ---------------------------------------------------------------------


def check_online_options(provider: str, *, online: bool, fallback: bool) -> None:
    """Refuse, at LLM creation, an online option the provider's plugin cannot serve.

    A provider not installed yet is left to ``LLM.load`` (which names the package)."""
    from overnight import plugins

    try:
        info = plugins.get_registry().info(provider)
    except ProviderNotFound:
        return
    check_info(info, online=online, fallback=fallback)


def check_info(info: ProviderInfo, *, online: bool, fallback: bool) -> None:
    caps = info.capabilities
    if (online or fallback) and not caps.online:
        what = "use_offline_batch_generation=False" if online else "online_fallback_after= / deadline="
        raise ConfigurationError(
            f"{what} needs the {info.name} provider's online API, and its plugin does not offer one "
            "(Capabilities.online). Upgrade the plugin, or use the batch API "
            "(use_offline_batch_generation=True, no fallback). Nothing was sent."
        )
    if fallback and not online and not caps.cancel:
        raise ConfigurationError(
            f"online_fallback_after= / deadline= cancels the batch jobs still open at the deadline, and the "
            f"{info.name} plugin cannot cancel jobs (Capabilities.cancel). Without cancelling, finishing online "
            "could pay twice for the same request; drop the option. Nothing was sent."
        )


def deadline_seconds(deadline: Any) -> float | None:
    """``LLM(deadline=...)`` as Unix seconds: a datetime (naive is local time) or a number."""
    if deadline is None:
        return None
    if isinstance(deadline, datetime.datetime):
        return deadline.timestamp()
    if isinstance(deadline, (int, float)) and not isinstance(deadline, bool) and deadline > 0:
        return float(deadline)
    raise ConfigurationError(
        f"deadline must be a datetime or Unix seconds (e.g. time.time() + 3600), got {deadline!r}"
    )


@frozen
class OnlineSettings:
    concurrency: int
    requests_per_minute: int | None
    tokens_per_minute: int | None
    timeout: float


def settings(executor: "BatchExecutor") -> OnlineSettings:
    """The pacing in force: the LLM's figures, else the plugin's OnlineLimits."""
    limits = executor.provider.info.online_limits
    policy = executor.policy
    concurrency = policy.online_concurrency or limits.max_concurrency or 1
    timeout = executor.options.get("timeout")
    return OnlineSettings(
        concurrency=max(1, int(concurrency)),
        requests_per_minute=policy.requests_per_minute or limits.requests_per_minute,
        tokens_per_minute=policy.tokens_per_minute or limits.tokens_per_minute,
        timeout=float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else DEFAULT_TIMEOUT,
    )


# -- claims of dead runners ------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _stale(owner: dict[str, Any]) -> bool:
    """Whether the runner holding these claims is certainly gone (or silent past the lease)."""
    host, _, rest = str(owner["owner"]).partition(":")
    pid_text, _, token = rest.partition(":")
    if host == _HOST and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid():
            with _live_lock:
                return token not in _live
        if not _pid_alive(pid):
            return True
    return time.time() - float(owner["at"]) > LEASE


def release_stale(store: st.Store, plan_id: str) -> int:
    """Give back the claims of runners that died (killed, crashed) on this plan's requests."""
    released = 0
    for owner in store.online_owners(plan_id):
        if _stale(owner):
            released += store.release_online(owner["owner"])
    if released:
        polling.report(f"released {released} online request(s) an interrupted run had in flight; sending them again")
    return released


# -- the runner --------------------------------------------------------------------------------


class _Stopped(Exception):
    """A worker saw the stop signal before sending."""


class OnlineRunner:
    """Sends one step's requests still without a result through ``generate``, to the end."""

    def __init__(self, executor: "BatchExecutor") -> None:
        self.ex = executor
        self.store = executor.store
        self.provider = executor.provider
        self.policy = executor.policy
        self.step = executor.step
        self.plan_id = executor.plan_id
        self.settings = settings(executor)
        self.token = uuid.uuid4().hex[:12]
        self.owner = f"{_HOST}:{os.getpid()}:{self.token}"
        self._results: queue.SimpleQueue[
            tuple[str, Result | None, float | None, BaseException | None, threading.Event]] = queue.SimpleQueue()
        self._halt = threading.Event()
        self._detached = False
        self._deliver = threading.Lock()
        self._running = 0
        self._pacers: dict[str, ratelimit.Pacer] = {}
        #: Answers stored by this runner (successes, errors) and requests sent again after an error.
        self.answered = 0
        self.failed = 0
        self._told_limited = False

    # -- pacing and money --------------------------------------------------------------------

    def _pacer(self, model: str) -> ratelimit.Pacer:
        if model not in self._pacers:
            s = self.settings
            self._pacers[model] = ratelimit.pacer(
                self.provider.name, model, requests_per_minute=s.requests_per_minute,
                tokens_per_minute=s.tokens_per_minute, concurrency=s.concurrency,
            )
        return self._pacers[model]

    def _priced(self, result: Result, model: str) -> tuple[Result, float | None]:
        """The result at online prices (``cost_usd`` is what was billed: the online price)."""
        rates = self.ex.accounting.rates(model)
        if rates is None or not result.ok or result.usage is None:
            return result, None
        _, online = rates.bill(result.usage)
        return evolve(result, cost_usd=online, online_cost_usd=online), online

    # -- one request, in a worker thread -----------------------------------------------------

    def _send(self, row: dict[str, Any]) -> None:
        key = row["key"]
        try:
            result, cost = self._priced(evolve(self._answer(row), custom_id=key), str(row["model"]))
        except _Stopped:
            self._hand_over(key, None, None, None)
            return
        except BaseException as exc:  # a 401, a wrong URL, a plugin bug: the run stops with it
            self._halt.set()
            if not isinstance(exc, OvernightError) and isinstance(exc, Exception):
                wrapped = ProviderError(
                    f"step {self.step!r}: the {self.provider.name} online API failed ({type(exc).__name__}: "
                    f"{exc}). Every answer received is saved; fix that and run again to send the rest."
                )
                wrapped.__cause__ = exc
                exc = wrapped
            self._hand_over(key, None, None, exc)
            return
        self._hand_over(key, result, cost, None)

    def _answer(self, row: dict[str, Any]) -> Result:
        key = row["key"]
        line = json.loads(row["line"])
        tokens = int(row["tokens"] if row["tokens"] is not None else (int(row["bytes"]) + 3) // 4)
        # Output counted at most at the usual output, not at the model's ceiling: a request
        # with no max_tokens would otherwise weigh 16k tokens and crawl. A provider that counts
        # max_tokens up front answers 429s when that is too little, and the pacer slows down.
        output = DEFAULT_EXPECTED_OUTPUT
        if row["max_output"] is not None:
            output = min(int(row["max_output"]), DEFAULT_EXPECTED_OUTPUT)
        tokens += output
        pacer = self._pacer(str(row["model"]))
        limited = unavailable = 0
        while True:
            if not pacer.acquire(tokens, self._halt):
                raise _Stopped
            try:
                result = self.provider.generate(line, self.ex.options, model=str(row["model"]),
                                                timeout=self.settings.timeout)
            except RateLimited as exc:
                pacer.release()
                limited += 1
                pause = pacer.limited(exc.retry_after)
                if limited >= MAX_RATE_LIMITED:
                    raise ProviderError(
                        f"step {self.step!r}: the {self.provider.name} online API refused the same request for "
                        f"its rate limits {limited} times in a row (last: {exc}). Every answer received is saved "
                        "and no attempt was counted; run again later, or lower LLM(requests_per_minute=...)."
                    ) from None
                if not self._told_limited:
                    self._told_limited = True
                    polling.report(f"{self.step}: {self.provider.name} rate limit (429): every sender waits "
                                   f"{pause:.3g}s and slows down (no attempt counted)")
                continue
            except ProviderUnavailable as exc:
                pacer.release()
                unavailable += 1
                if unavailable >= MAX_UNAVAILABLE:
                    return Result(custom_id=key, status=ResultStatus.ERRORED,
                                  error=f"the {self.provider.name} online API was unavailable {unavailable} times "
                                  f"in a row: {exc}")
                pause = exc.retry_after if exc.retry_after is not None else \
                    min(UNAVAILABLE_FIRST * 2 ** (unavailable - 1), UNAVAILABLE_MAX)
                self._pause(pause)
                continue
            except BaseException:
                pacer.release()
                raise
            pacer.release(ok=result.ok)
            return result

    def _pause(self, seconds: float) -> None:
        end = ratelimit.clock() + seconds
        while not self._halt.is_set():
            left = end - ratelimit.clock()
            if left <= 0:
                return
            ratelimit.sleep(min(left, 0.25))
        raise _Stopped

    def _hand_over(self, key: str, result: Result | None, cost: float | None, exc: BaseException | None) -> None:
        """To the main thread, or, once it stopped waiting (Ctrl+C), straight to the store.

        The worker takes its next request only once this answer is committed (the main
        thread commits what arrived together, in one transaction): a kill loses at most the
        requests in flight, never answers waiting for a commit.
        """
        committed = threading.Event()
        with self._deliver:
            if not self._detached:
                self._results.put((key, result, cost, exc, committed))
                queued = True
            else:
                queued = False
        if queued:
            committed.wait()
            return
        try:  # the run is over: this thread stores what it got (its own store connection)
            if result is not None:
                self.store.record_online(self.owner, [(result, cost)], self.policy.retries)
            else:
                self.store.release_online(self.owner, [key])
        except Exception:  # the claim stays; the next run releases it
            pass
        finally:
            self._done_one()

    def _done_one(self) -> None:
        with _live_lock:
            self._running -= 1
            if self._running <= 0:
                _live.discard(self.token)

    # -- the step ----------------------------------------------------------------------------

    def run(self) -> None:
        """Send every request of the plan that is still to send; return when each has an answer.

        Raises :class:`OnlineGenerationNotFinished` when stopped by Ctrl+C (state saved),
        or the error that stopped it (a provider refusing the credentials, ...).
        """
        release_stale(self.store, self.plan_id)
        self._hold_to_budget()
        with _live_lock:
            _live.add(self.token)
        try:
            with polling.interruptible() as stop, \
                    progress.showing(self.store, self.plan_id, self.step, self.provider.name) as shown:
                while True:
                    self._pass(stop, shown)
                    if not self._wait_for_others(stop):
                        break
                shown.done()
        finally:
            with _live_lock:
                if self._running <= 0:
                    _live.discard(self.token)

    def _hold_to_budget(self) -> None:
        """``run(budget_usd=...)``: what is left to send, at online prices, must fit as a whole
        (online answers come too fast to stop part-way), else nothing is sent."""
        budget = self.policy.budget
        if budget is None or not budget.limited:
            return
        acc = self.ex.accounting
        money = self.store.plan_money(self.plan_id)
        left = money.get(st.NEW)
        if not left or not left["n"]:
            return
        model = str(left["model"] or "")
        rates = acc.rates(model)
        if rates is None:
            raise ConfigurationError(
                f"step {self.step!r}: a budget was set but no price is known for {self.provider.name}/{model}, "
                "so nothing can be held to it. Give the online prices: LLM(..., prices={'input_mtok': ..., "
                "'output_mtok': ...}) (USD per million tokens). Nothing was sent."
            )
        expected, _ = acc.expected_output(money)
        output = expected * left["n"] if left["unbounded"] else min(expected * left["n"], left["max_output"])
        need = rates.online_cost(left["tokens"], output)
        committed = acc.committed(money, model, expected)
        if committed + need > budget.room(self.plan_id) + 1e-12:
            from overnight.errors import BudgetExceeded

            raise BudgetExceeded(
                f"step {self.step!r}: sending the {int(left['n'])} request(s) left online (about {usd(need)} at "
                f"online prices) would pass the budget of {usd(budget.limit_usd)} (this step has billed or has in "
                f"flight {usd(committed)}). Nothing was sent. Run again with a higher budget "
                "(run(budget_usd=...) or overnight run --budget-usd ...), or use the batch API.",
                budget_usd=budget.limit_usd or 0.0, spent_usd=budget.committed(), estimate_usd=need,
            )
        budget.commit(self.plan_id, committed + need)

    def _pass(self, stop: threading.Event, shown: Any) -> None:
        s = self.settings
        pool = ThreadPoolExecutor(max_workers=s.concurrency, thread_name_prefix=f"overnight-online-{self.step}")
        outstanding: dict[str, Future[None]] = {}
        page = max(2 * s.concurrency, 32)
        after, exhausted = -1, False
        fatal: BaseException | None = None
        last_beat = next_shown = time.monotonic()
        batch: list[tuple[Result, float | None]] = []
        try:
            while True:
                if stop.is_set():
                    self._halt.set()
                    raise OnlineGenerationNotFinished([], provider=self.provider.name, step=self.step,
                                                      counts=self._counts(), interrupted=True)
                if fatal is not None:
                    raise fatal
                if not exhausted and len(outstanding) < s.concurrency:
                    rows = self.store.claim_online(self.plan_id, self.owner, after=after, limit=page)
                    fault_point("online_claimed")
                    if rows:
                        after = rows[-1]["pos"]
                        for row in rows:
                            with _live_lock:
                                self._running += 1
                            outstanding[row["key"]] = pool.submit(self._send, row)
                        continue
                    if after != -1:
                        after = -1  # the end of the plan: once more from the top (requests to try again)
                        continue
                    exhausted = True
                if not outstanding:
                    return
                try:
                    item = self._results.get(timeout=0.2)
                except queue.Empty:
                    item = None
                if item is None:
                    # A worker that died without handing over (it cannot, short of a bug in
                    # the store): stop rather than wait for it forever.
                    died = next((e for e in (f.exception() for f in outstanding.values() if f.done()) if e), None)
                    if died is not None:
                        raise died
                landed: list[threading.Event] = []
                try:
                    while item is not None:
                        key, result, cost, exc, committed = item
                        landed.append(committed)
                        outstanding.pop(key, None)
                        with _live_lock:
                            self._running -= 1
                        if exc is not None:
                            fatal = fatal or exc
                            self.store.release_online(self.owner, [key])
                        elif result is None:
                            self.store.release_online(self.owner, [key])
                        else:
                            batch.append((result, cost))
                            if not result.ok:
                                exhausted = False  # it may be sent again (attempts left)
                        try:
                            item = self._results.get_nowait()
                        except queue.Empty:
                            item = None
                    if batch:
                        self.store.record_online(self.owner, batch, self.policy.retries)
                        self.answered += sum(1 for r, _ in batch if r.ok)
                        self.failed += sum(1 for r, _ in batch if not r.ok)
                        batch = []
                        fault_point("online_committed")
                finally:  # never leave a worker waiting, whatever happened to the commit
                    for committed in landed:
                        committed.set()
                now = time.monotonic()
                if now - last_beat >= HEARTBEAT:
                    self.store.heartbeat_online(self.owner)
                    last_beat = now
                if now >= next_shown:
                    shown.online(min(len(outstanding), sum(p.in_flight for p in self._pacers.values())))
                    # Counting a big plan takes a while: redraw at most a tenth of the time.
                    next_shown = time.monotonic() + max(PROGRESS_PERIOD, 10 * (time.monotonic() - now))
        finally:
            if outstanding:  # stopped (Ctrl+C, an error): nothing more is sent
                self._halt.set()
                with self._deliver:
                    self._detached = True  # from now on, workers store their own answers
                    landed = []
                    while True:
                        try:
                            key, result, cost, exc, committed = self._results.get_nowait()
                        except queue.Empty:
                            break
                        landed.append(committed)
                        outstanding.pop(key, None)
                        with _live_lock:
                            self._running -= 1
                        if result is not None:
                            batch.append((result, cost))
                        else:
                            self.store.release_online(self.owner, [key])
                    try:
                        if batch:
                            self.store.record_online(self.owner, batch, self.policy.retries)
                    finally:
                        for committed in landed:
                            committed.set()
                    unstarted = [key for key, future in outstanding.items() if future.cancel()]
                    if unstarted:  # never started: given back at once
                        self.store.release_online(self.owner, unstarted)
                        with _live_lock:
                            self._running -= len(unstarted)
            pool.shutdown(wait=False, cancel_futures=True)

    def _wait_for_others(self, stop: threading.Event) -> bool:
        """Another live runner holds some of the plan's requests: wait for it (True: a pass is due)."""
        while True:
            others = [o for o in self.store.online_owners(self.plan_id) if o["owner"] != self.owner]
            if not others:
                counts = self.store.plan_counts(self.plan_id)
                return bool(counts.get(st.NEW, 0))
            if any(_stale(o) for o in others):
                release_stale(self.store, self.plan_id)
                continue
            if stop.is_set():
                raise OnlineGenerationNotFinished([], provider=self.provider.name, step=self.step,
                                                  counts=self._counts(), interrupted=True)
            ratelimit.sleep(0.1)

    def _counts(self) -> dict[str, int]:
        counts = self.store.plan_counts(self.plan_id)
        return {
            "done": counts.get(st.DONE, 0),
            "to send": counts.get(st.NEW, 0) + counts.get(st.ONLINE, 0),
            "failed": counts.get(st.FAILED, 0),
            "in batch jobs": counts.get(st.QUEUED, 0),
        }


# -- the step's online part, as the executor sees it -------------------------------------------


class OnlinePart:
    """What the executor asks about a step's online side: is it online, is the fallback due,
    cancel at the deadline, send the rest, say how many went each way and what each cost."""

    def __init__(self, executor: "BatchExecutor", now: Callable[[], float] | None = None) -> None:
        self.ex = executor
        self.policy = executor.policy
        self._now = now
        self.fallback = self.policy.online_fallback_after is not None or self.policy.deadline is not None

    def now(self) -> float:
        """Unix seconds (tests replace :func:`wall_clock`)."""
        return (self._now or wall_clock)()

    @property
    def active(self) -> bool:
        """Online mode, or batch mode past its deadline: no more batch submits."""
        return self.policy.online or self.due()

    def fallback_at(self) -> float | None:
        """When the batch part gives up (Unix seconds), or None (no fallback, or not started)."""
        if not self.fallback:
            return None
        moments = []
        if self.policy.deadline is not None:
            moments.append(self.policy.deadline)
        if self.policy.online_fallback_after is not None:
            started, _ = self.ex.store.batch_deadline(self.ex.plan_id)
            if started is not None:
                moments.append(started + self.policy.online_fallback_after)
        return min(moments) if moments else None

    def due(self) -> bool:
        if not self.fallback or self.policy.online:
            return False
        at = self.fallback_at()
        return at is not None and self.now() >= at

    def seconds_left(self) -> float:
        """Seconds until the fallback (for the polling delay); inf when none is coming."""
        if not self.fallback or self.policy.online:
            return float("inf")
        _, fell_back = self.ex.store.batch_deadline(self.ex.plan_id)
        at = self.fallback_at()
        if fell_back is not None or at is None:
            return float("inf")
        return max(0.0, at - self.now())

    def note_submit(self) -> None:
        if self.fallback:
            self.ex.store.note_batch_start(self.ex.plan_id)

    def on_pass(self, jobs: list[JobRecord]) -> None:
        """At the deadline, once: cancel the step's open batch jobs (they are then checked and
        fetched as usual: what they finished is kept, the rest comes back unfinished)."""
        if not self.due():
            return
        _, fell_back = self.ex.store.batch_deadline(self.ex.plan_id)
        ex = self.ex
        cancelled = []
        for job in jobs:
            ref = job.ref
            if ref is None or job.state.terminal:
                continue
            # Cancelled once; a job created since (an interrupted submit resolved after the
            # deadline) is cancelled too.
            if fell_back is not None and job.created_at < fell_back:
                continue
            try:
                with ex._provider_errors(f"cancelling the {ex.provider.name} job {ref.remote_id} at the deadline"):
                    ex.provider.cancel(ref, ex.options)
                cancelled.append(ref.remote_id)
            except OvernightError as exc:
                # Checked until it ends like any other: its requests are never sent twice.
                polling.report(f"{ex.step}: {exc}")
        ex.store.note_fallback(ex.plan_id)
        if fell_back is not None and not cancelled:
            return
        polling.report(
            f"{ex.step}: the batch part reached its deadline; cancelled {len(cancelled)} open "
            f"{ex.provider.name} job(s) ({', '.join(cancelled[:3])}{', ...' if len(cancelled) > 3 else ''}); "
            "keeping every result they return, then sending the rest online"
        )

    def estimate(self, estimate: Any) -> Any:
        """``overnight estimate`` of an online step: the same work at online prices."""
        if not self.policy.online or estimate.cost_usd is None or estimate.online_cost_usd is None:
            return estimate
        ratio = estimate.online_cost_usd / estimate.cost_usd if estimate.cost_usd else 1.0
        return evolve(estimate, cost_usd=estimate.online_cost_usd,
                      max_cost_usd=None if estimate.max_cost_usd is None else estimate.max_cost_usd * ratio,
                      prices_from=f"{estimate.prices_from}, online prices (online mode)")

    def finished(self) -> None:
        """The step is complete: a later round (``retry_failed``) measures its deadline afresh."""
        if self.fallback:
            self.ex.store.clear_batch_deadline(self.ex.plan_id)

    def finish(self) -> None:
        """Online mode or a fallback that is due: every request gets an answer now.

        A fallback first waits (polling) until the cancelled jobs are terminal and fetched;
        then the requests still without a result go online. In online mode, requests in
        batch jobs of earlier runs are left to those jobs (collected as they end): the rest
        goes online, and the step is not finished while the jobs run.
        """
        ex = self.ex
        if not self.policy.online:
            if ex.store.open_jobs(ex.plan_id):
                ex._poll(max(self.policy.block_until_done or 0.0, CANCEL_WAIT))
            OnlineRunner(ex).run()
            self.report()
            return
        open_jobs = ex._advance()  # collect what earlier batch runs finished; submits nothing
        OnlineRunner(ex).run()
        if open_jobs:
            if self.policy.block_until_done:
                ex._poll(self.policy.block_until_done)
            elif ex._advance():
                jobs = ex.store.open_jobs(ex.plan_id)
                raise OnlineGenerationNotFinished(
                    [j.remote_id or j.tag for j in jobs], provider=ex.provider.name, step=ex.step,
                    counts=OnlineRunner(ex)._counts(),
                )
        self.report()

    def report(self) -> str:
        """One line: how many requests were answered each way, and what each part cost."""
        ex = self.ex
        money = ex.store.plan_money(ex.plan_id)
        online = ex.store.plan_online_money(ex.plan_id)
        done = money.get(st.DONE, {"n": 0, "cost": 0.0})
        failed = int(money.get(st.FAILED, {"n": 0})["n"])
        batch_n = int(done["n"]) - online["n"]
        batch_cost = float(done["cost"] or 0.0) - online["cost"]
        priced = ex.accounting.rates(str(next((v["model"] for v in money.values() if v["model"]), ""))) is not None
        online_part = f"{online['n']} online ({usd(online['cost'] if priced else None)} at online prices)"
        if batch_n or not self.policy.online:
            line = (f"{ex.step}: {batch_n} request(s) answered in batch ({usd(batch_cost if priced else None)} at "
                    f"batch prices), {online_part}")
        else:
            line = f"{ex.step}: {online['n']} request(s) answered {online_part[len(str(online['n'])) + 1:]}"
        if failed:
            line += f", {failed} ended as errors"
        polling.report(line)
        return line


def wall_clock() -> float:
    """Unix seconds, for the deadline fallback (tests replace this)."""
    return time.time()


def cost_parts(store: st.Store, plans: list[str]) -> tuple[int, float] | None:
    """``(requests answered online, their cost)`` across ``plans``, or None when none were."""
    n, cost = 0, 0.0
    for plan_id in plans:
        money = store.plan_online_money(plan_id)
        n += int(money["n"])
        cost += money["cost"]
    return (n, cost) if n else None
