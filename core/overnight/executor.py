"""The resumable executor of one batch step: plan → reconcile → submit → check → fetch →
retry → assemble.

Each run of a pipeline runs it again from the top; everything it learns is committed
to the store as it goes, so a run can stop (or be killed) at any point and the next
run carries on without paying twice or losing a row. The invariants it keeps are those
of docs/design.md:

* an intent (tag + membership) is committed before submit, the remote id right after;
  an intent without an id is resolved by asking the plugin to find the job by its tag,
  and when it cannot, the run stops rather than resubmit silently;
* results are matched by custom id; errored requests are retried in new jobs up to
  ``max_attempts``, unfinished ones (expired/cancelled jobs) are resubmitted; every
  planned request ends as exactly one result, successful or an explicit error;
* while any job runs, the step raises :class:`OfflineBatchGenerationNotFinished`;
* a job whose results the provider lost (the plugin raises ResultsGone) ends: what was
  stored is kept, the rest waits for the user's consent (``resubmit_lost``) and the step
  raises :class:`LostResults` meanwhile;
* while polling, each lookup, check and fetch is bounded by the time left;
* every request is validated by the plugin before the first submission;
* requests and results stream through the store in bounded batches.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Mapping

from overnight import _json, polling, progress, store as st
from overnight._serialization import dumps
from overnight.accounting import Accounting
from overnight.errors import (
    InvalidRequest,
    LostResults,
    OfflineBatchGenerationNotFinished,
    OvernightError,
    ProviderError,
    ResultsGone,
    QuotaExceeded,
    RowProblem,
    StaleCache,
    StoreError,
    SubmissionRejected,
    UnconfirmedSubmission,
    ValidationError,
)
from overnight.faultpoints import armed, fault_point
from overnight.gcthresholds import fewer_collections
from overnight.identity import content_key
from overnight.online import OnlinePart, release_stale
from overnight.models import (
    STANDARD_PARAMS,
    ChatRequest,
    Chunk,
    GenerationParams,
    JobRef,
    JobState,
    JobStatus,
    PlannedRequest,
    Result,
    ResultStatus,
    RowResult,
    evolve,
)
from overnight.policy import RunPolicy
from overnight.providers import Provider
from overnight.store import Store
from overnight.suggest import did_you_mean

#: Results are written to the store in transactions of growing size: small at first so an
#: interrupted download keeps what it got, large later so big files need few commits.
FETCH_BATCH_FIRST = 16
FETCH_BATCH_MAX = 4096
#: Most problems listed in one ValidationError (the count covers them all).
MAX_PROBLEMS = 1000
#: Most provider jobs listed when looking for jobs to adopt or for duplicates.
ADOPT_LIMIT = 1000
#: Newest provider jobs looked at for a duplicate (a late create lands next to our own).
DUPLICATE_LIMIT = 100
#: Pending requests read from the store per query while cutting chunks.
PENDING_PAGE = 10_000
#: Consecutive failed polls (network, 5xx after SDK retries) before polling gives up.
MAX_POLL_ERRORS = 5


def check_params(provider: Provider, params: GenerationParams) -> list[tuple[str, str]]:
    """``(field, message)`` for every option the provider cannot take."""
    info = provider.info
    problems = []
    for name in sorted(STANDARD_PARAMS & info.unsupported_params):
        if getattr(params, name) is not None:
            problems.append((name, f"the {info.name} provider does not support {name!r}"))
    for name in sorted(set(params.extra) - info.extra_params):
        known = sorted(STANDARD_PARAMS | info.extra_params)
        hint = did_you_mean(name, known)
        problems.append((name, f"unknown generation option for {info.name}{hint}; known: {', '.join(known)}"))
    return problems


def _collapse(problems: list[RowProblem]) -> list[RowProblem]:
    """The same problem on many rows (a bad option) is listed once, with its rows."""
    groups: dict[tuple[str | None, str], list[RowProblem]] = {}
    for p in problems:
        groups.setdefault((p.field, p.message), []).append(p)
    out = []
    for (field, message), group in groups.items():
        if len(group) == 1:
            out.extend(group)
            continue
        rows = [p.row for p in group if p.row is not None]
        shown = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
        out.append(RowProblem(group[0].step, rows[0] if rows else None, field,
                              f"{message} (rows {shown}: {len(group)} rows)"))
    return out


def _left(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` (a monotonic time), for bounding one provider call."""
    if deadline is None:
        return None
    return max(deadline - time.monotonic(), 0.001)


class BatchExecutor:
    """Runs one batch step's plan against one provider, resumably."""

    def __init__(
        self,
        store: Store,
        provider: Provider,
        options: Mapping[str, Any],
        *,
        step: str,
        plan_id: str,
        policy: RunPolicy = RunPolicy(),
        model: str | None = None,
        params: GenerationParams | None = None,
        raw: bool = True,
    ) -> None:
        self.store = store
        #: The model and options every planned request gets (the LLM's); None: each request's own.
        self.model = model
        self.params = params
        #: Whether results come back with the provider's raw answer (False: it is not read).
        self.raw = raw
        self.provider = provider
        self.options = options
        self.step = step
        self.plan_id = plan_id
        self.policy = policy
        self.accounting = Accounting(store, provider, policy, plan_id=plan_id, step=step)
        #: Why the last pass left requests unsubmitted for the budget (None: it did not).
        self._over_budget: str | None = None
        self._models: dict[int, str] = {}
        #: Online mode and the deadline fallback (overnight.online).
        self.online = OnlinePart(self)

    # -- the whole step --------------------------------------------------------------------

    def run(self, planned: Iterable[PlannedRequest]) -> Iterator[RowResult]:
        """Advance the step as far as it goes now; return its results in plan order.

        Raises :class:`ValidationError` (nothing submitted) or
        :class:`OfflineBatchGenerationNotFinished` (state saved) instead.
        """
        with fewer_collections():
            return self._run(planned)

    def _run(self, planned: Iterable[PlannedRequest]) -> Iterator[RowResult]:
        with self._lock():
            if not self.store.plan_complete(self.plan_id):
                self.plan(planned)
            release_stale(self.store, self.plan_id)  # online claims of a run that was killed
            self.adopt()
            if self.policy.retry_failed:
                retried = self.store.retry_failed(self.plan_id)
                if retried:
                    polling.report(f"{self.step}: retrying {retried} failed request(s), as asked (retry_failed)")
        paid = 0 if self.policy.reuse_paid else self.store.paid_count(self.plan_id)
        if paid:
            raise StaleCache(
                f"step {self.step!r}: {paid} request(s) were "
                "already paid for by a previous run, and the cache is disabled. Choose: "
                "run(..., paid_results='reuse') to use them, or change the requests "
                "(e.g. LLM(..., generation_kwargs={'seed': ...})) to pay again."
            )
        if self.policy.budget is not None:
            self.policy.budget.joined(self.plan_id)
        if self.policy.estimates is not None:
            return self._estimate_only()
        if self.online.active:  # online mode, or the batch part is past its deadline
            self.online.finish()
        else:
            if self.policy.block_until_done:
                self._poll(self.policy.block_until_done)
            elif self._advance():
                raise self._not_finished()
            if self.online.due():  # the deadline came while polling: the cancelled jobs have ended
                self.online.finish()
        self._stop_if_lost()
        if self._over_budget:
            raise self.accounting.budget_error(self._over_budget)
        self.online.finished()
        return self._assemble()

    # -- plan ------------------------------------------------------------------------------

    def plan(self, planned: Iterable[PlannedRequest]) -> int:
        """Validate and store every request; raise ValidationError, storing nothing, if any is bad."""
        problems: list[RowProblem] = []
        # A bad option is bad on every row: report it once, not once per row.
        option_problems: dict[tuple[str, str], None] = {}
        count = 0

        def items() -> Iterator[tuple[Any, ...]]:
            nonlocal count
            checked: set[str] = set()
            last_params, params_json = None, ""
            limits = self.provider.info.limits
            for p in planned:
                messages = p.request.messages
                model, params = self.model or p.request.model, self.params or p.request.params
                if params is not last_params:  # serialise each distinct options object once
                    last_params, params_json = params, dumps(params)
                    if params_json not in checked:
                        checked.add(params_json)
                        option_problems.update(dict.fromkeys(check_params(self.provider, params)))
                key = content_key(self.provider.name, model, messages, p.sample, params_json)
                req = ChatRequest(key, model, messages, params)
                try:
                    encoded = _json.dumps(self.provider.build_request(req))
                except InvalidRequest as exc:
                    self._problem(problems, p.row, exc.field, str(exc))
                    continue
                size = len(encoded) + 1
                line = encoded.decode()
                cap = min(limits.max_line_bytes or limits.max_bytes, limits.max_bytes)
                source = p.source or "messages"
                if size > cap:
                    self._problem(
                        problems, p.row, source,
                        f"the request is {size:,} bytes, over the {self.provider.name} limit of {cap:,} bytes per request",
                    )
                    continue
                input_tokens, max_output, too_big = self.accounting.weigh(req)
                if too_big:
                    self._problem(problems, p.row, source, too_big)
                    continue
                count += 1
                yield p.row, p.sample, key, req.model, line, size, input_tokens, max_output

        self.store.write_plan(self.plan_id, self.provider.name, self.step, items())
        problems[:0] = [RowProblem(self.step, None, f, m) for f, m in option_problems]
        if problems:
            problems = _collapse(problems)
            self.store.drop_plan(self.plan_id)
            raise ValidationError(problems)
        return count

    def _problem(self, problems: list[RowProblem], row: int | None, field: str | None, message: str) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(RowProblem(self.step, row, field, message))

    # -- reconcile, check, fetch, submit ----------------------------------------------------

    def _advance(self, deadline: float | None = None) -> list[st.JobRecord]:
        """One pass over the step's jobs; returns the jobs still open afterwards.

        Each pass holds the store's lock, so two processes never submit the same
        request twice, whichever pipelines they run. With a ``deadline`` (polling), each
        lookup, check and fetch is bounded by the time left, and no job is checked once it
        has passed (those stay open: the run ends as not finished).
        """
        with self._lock():
            jobs = self.store.open_jobs(self.plan_id)
            for i, job in enumerate(jobs):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if job.state is st.JobPhase.INTENT:
                    jobs[i] = evolve(job, ref=self._reconcile(job, deadline))
            self.online.on_pass(jobs)  # at the deadline: cancel the open jobs
            # Duplicates first: before a check closes the job one mirrors, its successes count.
            self._cancel_duplicates()
            self._collect_duplicates()
            submitted = [job for job in jobs if job.ref is not None]
            with self._statuses(submitted, deadline) as status_of:
                for job in submitted:
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    self._check(job, deadline, status_of)
            if self.policy.resubmit_lost:
                released = self.store.release_lost(plan_id=self.plan_id)
                if released:
                    polling.report(f"{self.step}: resubmitting {released} request(s) whose results the "
                                   f"{self.provider.name} provider lost, as asked (resubmit_lost)")
            if not self.online.active:
                self._submit_pending()
            return self.store.open_jobs(self.plan_id)

    def _reconcile(self, job: st.JobRecord, deadline: float | None = None) -> JobRef | None:
        """An intent without a remote id: the job may or may not exist at the provider."""
        if self.provider.info.capabilities.find_by_tag:
            try:
                with self._provider_errors(f"looking up the {self.provider.name} job tagged {job.tag}"):
                    ref = self.provider.find_job(job.tag, self.options, timeout=_left(deadline))
            except Exception:
                if not self.policy.resubmit_unconfirmed:
                    raise
                ref = None  # the user chose to resubmit what cannot be confirmed
            if ref is not None:
                self.store.confirm_job(job.id, ref)
                polling.report(f"{self.step}: found job {ref.remote_id} of an interrupted or unanswered submit; "
                               "not submitting again")
                return ref
            return self._settled_resubmit(job)
        elif self.policy.resubmit_unconfirmed:
            self.store.abandon_intent(job.id)
        else:
            raise UnconfirmedSubmission(self.provider.name, [job.tag])
        return None

    def _settled_resubmit(self, job: st.JobRecord) -> JobRef | None:
        """The provider shows no job with this intent's tag: not proof, until the create settles.

        Right after an ambiguous create (an error that may hide a created job, or a run
        killed around a submit) "not found" may only mean "not visible yet": the chunk
        waits ``create_settle_seconds``. After that it is submitted again under the same
        tag, so a create that lands later still is recognised as a duplicate and cancelled.
        """
        since = self.store.ambiguous_since(job.id) or job.updated_at
        settles = since + self.policy.settle_seconds
        if time.time() < settles and not self.policy.resubmit_unconfirmed:
            polling.report(
                f"{self.step}: no {self.provider.name} job tagged {job.tag} yet, but its create may still "
                f"land; nothing is submitted again for {settles - time.time():.0f}s more (create_settle_seconds)"
            )
            return None
        polling.report(f"{self.step}: no {self.provider.name} job tagged {job.tag} after the settle window; "
                       "submitting it again under the same tag")
        chunk = Chunk(
            tag=job.tag, model=job.model, count=job.requests, bytes=job.bytes,
            lines=lambda: (json.loads(line) for line in self.store.job_lines(job.id)),
        )
        try:
            return self._send(job.id, chunk)
        except QuotaExceeded as exc:
            self.accounting.quota_refused(job, str(exc), failed=False)
            return None

    def _cancel_duplicates(self) -> None:
        """After an ambiguous create, a late one may have made a second job: cancel it.

        Asks the provider (``list_jobs``) while a job of this plan whose submission was
        ambiguous is open. A listed job this store does not know that carries the same
        tag, or holds requests queued in those jobs, is the extra one: it is cancelled and
        recorded, and the log names both jobs and how many requests were billed twice.
        """
        if not self.provider.info.capabilities.list_jobs:
            return
        ours = self.store.ambiguous_open_jobs(self.plan_id)
        if not ours:
            return
        with self._provider_errors(f"listing recent {self.provider.name} jobs to look for duplicates"):
            listed = self.provider.list_jobs(
                self.options, horizon=self.policy.settle_seconds + 24 * 3600.0, limit=DUPLICATE_LIMIT,
                skip=self.store.known_remote_ids(self.provider.name), tags=frozenset(j.tag for j in ours),
            )
        known = self.store.known_remote_ids(self.provider.name)
        by_tag = {j.tag: j for j in ours}
        for remote in listed:
            if remote.ref.remote_id in known or remote.state is JobState.FAILED:
                continue  # ours, or refused as a whole (nothing billed)
            # Only our own tag makes a duplicate: a job of another store holding the same
            # requests is someone's paid work, never cancelled from here.
            twin = by_tag.get(remote.ref.tag)
            if twin is None:
                continue
            billed = len(remote.custom_ids) if remote.custom_ids is not None else twin.requests
            if not remote.state.terminal and self.provider.info.capabilities.cancel:
                with self._provider_errors(f"cancelling the duplicate {self.provider.name} job {remote.ref.remote_id}"):
                    self.provider.cancel(remote.ref, self.options)
                what = "cancelled it"
            else:
                what = f"it had already {remote.state.value}"
            self.store.record_duplicate(twin, remote.ref, billed, remote.state.value)
            polling.report(
                f"{self.step}: two {self.provider.name} jobs hold the same chunk: {twin.remote_id} (kept) and "
                f"{remote.ref.remote_id} (a create that landed late); {what}. Up to {billed} request(s) were "
                "billed twice; each request's result is counted once."
            )

    def _collect_duplicates(self) -> None:
        """Check each duplicate until it ends; keep its successes for requests still queued.

        Results of either job are accepted for the same content-addressed request, and a
        request is answered once: whichever job delivers it first.
        """
        for dup in self.store.open_duplicates(self.plan_id):
            ref, of_job = dup.ref, dup.of_job
            assert ref is not None and of_job is not None  # a duplicate is recorded with both
            with self._provider_errors(f"checking the duplicate {self.provider.name} job {ref.remote_id}"):
                status = self.provider.check(ref, self.options)
            self.store.update_job(dup.id, status)
            if not status.state.terminal:
                continue
            taken = 0
            if status.state is not JobState.FAILED:
                batch: list[Result] = []
                for result in self._fetched(ref):
                    batch.append(result)
                    if len(batch) >= FETCH_BATCH_MAX:
                        taken += self.store.record_duplicate_results(of_job, batch)
                        batch = []
                taken += self.store.record_duplicate_results(of_job, batch)
            self.store.close_duplicate(dup.id)
            if taken:
                polling.report(f"{self.step}: kept {taken} result(s) of the duplicate {self.provider.name} job "
                               f"{ref.remote_id} (each request counted once)")

    # -- adoption: the provider as second source of truth ---------------------------------

    def adopt(self) -> int:
        """Adopt the provider's jobs that hold requests of this plan no job of the store holds.

        Cheap when there is nothing to adopt: nothing is asked when every request of the
        plan is already in a job; otherwise one bounded listing (``adopt_horizon``
        seconds, at most :data:`ADOPT_LIMIT` jobs; the input of jobs the store knows is
        never read; ``adopt_horizon=0`` skips the listing, and only what ``overnight adopt``
        listed is adopted). Returns the number of requests adopted.
        """
        if not self.provider.info.capabilities.list_jobs or not self.store.has_unsent(self.plan_id):
            return 0
        if self.policy.adopt_seconds > 0 and self.policy.estimates is None:  # an estimate asks no provider
            with self._provider_errors(f"listing recent {self.provider.name} jobs to adopt",
                                       then="Nothing was submitted; run again."):
                self.import_remote_jobs(self.store, self.provider, self.options, self.policy.adopt_seconds)
        # What this pass or `overnight adopt` listed (no network): jobs holding these requests.
        adopted = self.store.adopt_remote_jobs(self.plan_id, self.provider.name, self.step)
        for ref, count in adopted:
            polling.report(
                f"{self.step}: adopted {self.provider.name} job {ref.remote_id}, found at the provider "
                f"(this store did not know it): it holds {count} request(s) of this step, not paid for again"
            )
        return sum(count for _, count in adopted)

    @staticmethod
    def import_remote_jobs(store: Store, provider: Provider, options: Mapping[str, Any], horizon: float) -> list[Any]:
        """List the provider's recent overnight jobs into the store (what ``overnight adopt`` does)."""
        listed = provider.list_jobs(options, horizon=horizon, limit=ADOPT_LIMIT,
                                    skip=store.known_remote_ids(provider.name))
        unreadable = []
        for remote in listed:
            if remote.custom_ids is None:
                if not remote.state.terminal:
                    unreadable.append(remote.ref.remote_id)
                continue
            store.remember_remote_job(provider.name, remote.ref, remote.state.value, remote.created_at,
                                      remote.custom_ids)
        if unreadable:
            polling.report(
                f"{len(unreadable)} running {provider.name} job(s) could not be read yet "
                f"({', '.join(unreadable[:3])}{', ...' if len(unreadable) > 3 else ''}): if they hold these "
                "requests, `overnight adopt` after they end adopts them"
            )
        return listed

    def _status(self, job: st.JobRecord, deadline: float | None = None) -> JobStatus:
        assert job.ref is not None  # only submitted jobs are checked
        return self.provider.check(job.ref, self.options, timeout=_left(deadline))

    @contextlib.contextmanager
    def _statuses(self, jobs: list[st.JobRecord], deadline: float | None) -> Iterator[Callable[[st.JobRecord], JobStatus]]:
        """A function giving each of ``jobs``' states, asked in order.

        With ``Capabilities.check_while_fetching``, asking for a job's state first asks
        for the next job's in a second thread: its answer comes while this job's results
        are fetched and stored. An error of either call is raised where the call would
        have been made (by ``_check``, inside its own guard).
        """
        if len(jobs) < 2 or not self.provider.info.capabilities.check_while_fetching:
            yield lambda job: self._status(job, deadline)
            return
        following = {job.id: jobs[i + 1] for i, job in enumerate(jobs[:-1])}
        ahead: dict[int, Future[JobStatus]] = {}
        pool = ThreadPoolExecutor(1, thread_name_prefix="overnight-check")

        def status_of(job: st.JobRecord) -> JobStatus:
            upcoming = following.get(job.id)
            if upcoming is not None and upcoming["id"] not in ahead:
                ahead[upcoming["id"]] = pool.submit(self._status, upcoming, deadline)
            asked = ahead.pop(job.id, None)
            return asked.result() if asked is not None else self._status(job, deadline)

        try:
            yield status_of
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # no call outlives the pass

    def _check(self, job: st.JobRecord, deadline: float | None,
               status_of: Callable[[st.JobRecord], JobStatus]) -> None:
        ref = job.ref
        assert ref is not None  # only submitted jobs are checked
        try:
            with self._provider_errors(f"checking the {self.provider.name} job {ref.remote_id}"):
                status = status_of(job)
        except ResultsGone as exc:
            self._lose(job, str(exc))
            return
        self.store.update_job(job.id, status)
        if not status.state.terminal:
            return
        if status.state is JobState.FAILED and status.quota:
            self.accounting.quota_refused(job, status.message or f"the {self.provider.name} job {ref.remote_id} "
                                          "failed for the account's queue limit", failed=True)
            return
        if status.state is JobState.FAILED:
            reason = status.message or f"the {self.provider.name} job {ref.remote_id} failed"
            self.store.close_job(job.id, self.policy.retries, failure=reason)
            return
        batch: list[Result] = []
        size = FETCH_BATCH_FIRST
        more = False  # whether a full batch was stored before this one
        # Each batch commits while the next one is downloaded and parsed.
        with self.store.commits_behind():
            try:
                for result in self._fetched(ref, deadline):
                    batch.append(result)
                    if len(batch) >= size:
                        self._record(job.id, batch, more)
                        batch, size, more = [], min(size * 2, FETCH_BATCH_MAX), True
            except ResultsGone as exc:
                self._record(job.id, batch, more)  # what did arrive is paid for: keep it
                self._lose(job, str(exc))  # (its store write waits for that commit first)
                return
            self._record(job.id, batch, more)
        self.store.close_job(job.id, self.policy.retries)

    def _lose(self, job: st.JobRecord, reason: str) -> None:
        """The provider says the job or its results are gone: end it, keep what is stored."""
        lost = self.store.lose_job(job.id, reason)
        polling.report(
            f"{self.step}: the {self.provider.name} job {job.remote_id} lost its results ({reason}); "
            f"{lost} request(s) without a result wait for your consent to be paid for again"
        )

    def _stop_if_lost(self) -> None:
        """Requests whose results were lost, and that the user did not resubmit, stop the step."""
        lost = self.store.lost_jobs(self.plan_id)
        if lost:
            raise LostResults(
                self.provider.name,
                [(j.remote_id or j.tag, j.lost or 0, j.message or "gone") for j in lost],
                step=self.step,
            )

    def _fetched(self, ref: JobRef, deadline: float | None = None) -> Iterator[Result]:
        """The job's results; a provider failure part-way is a ProviderError (what came is kept)."""
        results = iter(self.provider.fetch(ref, self.options, timeout=_left(deadline)))
        # One guard around the loop, not one per result: a failure ends the stream anyway.
        with self._provider_errors(f"fetching the results of the {self.provider.name} job {ref.remote_id}"):
            for result in results:
                yield result

    @contextlib.contextmanager
    def _provider_errors(
        self,
        action: str,
        then: str = "Nothing was submitted again and every result received so far is saved; "
        "run again to carry on.",
    ) -> Iterator[None]:
        """A provider call that fails (outage, 5xx after the SDK's retries, a cut download)
        is a :class:`ProviderError` saying what failed and what happens next, rather than
        a traceback."""
        try:
            yield
        except OvernightError:
            raise
        except Exception as exc:
            raise ProviderError(f"step {self.step!r}: {action} failed ({type(exc).__name__}: {exc}). {then}") from exc

    def _record(self, job_id: int, results: list[Result], more: bool) -> None:
        """Store a batch of a job's results; ``more``: a batch of it was stored before
        this one (it is committed now, and a crash from here on keeps it)."""
        if more:
            self.store.wait_for_commit()
            fault_point("mid_fetch")
        rates = self.accounting.rates(self._job_model(job_id))
        # Priced as they are stored, not copied one by one first (a Result per result).
        self.store.record_results(job_id, results, self.policy.retries, bill=rates.bill if rates else None)

    def _job_model(self, job_id: int) -> str:
        if job_id not in self._models:
            job = self.store.get_job(job_id)
            self._models[job_id] = str(job.model) if job else ""
        return self._models[job_id]

    def _submit_pending(self) -> None:
        limits = self.provider.info.limits
        self._over_budget = None
        self.accounting.commit_to_budget()
        if not self.store.has_new(self.plan_id):  # most passes: no need to read the plan
            return
        # Keyset paging by plan position: each chunk reads on from where the last one
        # stopped, so submitting N requests reads the plan once, not once per chunk.
        after = -1
        page_size = min(max(limits.max_requests, 1), PENDING_PAGE)
        while True:
            ids: list[int] = []
            taken: set[int] = set()
            nbytes = 0
            model = None
            gate = None
            last = after
            full = False
            while not full:
                page = list(self.store.pending_lines(self.plan_id, after=last, limit=page_size))
                for row in page:
                    if row["id"] in taken:  # a repeated row: its request is in this chunk already
                        last = row["pos"]
                        continue
                    if ids and row["model"] != model:
                        full = True
                        break
                    if gate is None:
                        gate = self.accounting.gate(row["model"])
                    if ids and (len(ids) >= limits.max_requests or nbytes + row["bytes"] > limits.max_bytes):
                        full = True
                        break
                    if not gate.admits(row, first=not ids):
                        full = True
                        break
                    ids.append(row["id"])
                    taken.add(row["id"])
                    nbytes += row["bytes"]
                    model = row["model"]
                    last = row["pos"]
                if len(page) < page_size:
                    break
            if not ids or gate is None:
                if gate is not None and gate.over_budget:
                    self._over_budget = gate.over_budget
                return
            outcome = self._submit(ids, model or "", nbytes, gate.tokens)
            if outcome != "retry" and (outcome == "stop" or gate.stopped):
                if gate.over_budget:
                    self._over_budget = gate.over_budget
                return
            # Refused (for quota with nothing else in flight: try smaller now; or as a whole):
            # its requests may be pending again, so read the plan from the top; else read on.
            after = last if outcome == "submitted" else -1

    def _submit(self, request_ids: list[int], model: str, nbytes: int, ntokens: int = 0) -> str:
        """Submit one chunk: "submitted"; "rejected" when the provider refused it as a whole;
        "stop" when it refused it for quota while other jobs are in flight (submit no more
        now); "retry" when refused for quota with nothing else in flight (submit a smaller
        chunk now)."""
        tag = f"ovn-{uuid.uuid4().hex[:24]}"
        job_id = self.store.create_intent(
            tag=tag, provider=self.provider.name, model=model, step=self.step,
            plan_id=self.plan_id, request_ids=request_ids, nbytes=nbytes, tokens=ntokens,
        )
        self.online.note_submit()
        fault_point("after_intent")
        chunk = Chunk(
            tag=tag, model=model, count=len(request_ids), bytes=nbytes,
            lines=lambda: (_json.loads(line) for line in self.store.job_lines(job_id)),
            encoded=lambda: ((line + "\n").encode() for line in self.store.job_lines(job_id)),
        )
        try:
            ref = self._send(job_id, chunk)
        except QuotaExceeded as exc:
            job = {"id": job_id, "model": model, "requests": len(request_ids), "tokens": ntokens}
            return "retry" if self.accounting.quota_refused(job, str(exc), failed=False) else "stop"
        return "submitted" if ref is not None else "rejected"

    def _send(self, job_id: int, chunk: Chunk) -> JobRef | None:
        """Submit an intent's chunk; commit its remote id, or when it may exist, when it failed."""
        try:
            with self._provider_errors(
                f"submitting {self.provider.name} job {chunk.tag} of {chunk.count} requests",  # not "a openai"
                then=f"The intent is saved under tag {chunk.tag}; run again to check whether the provider "
                "created it and to carry on.",
            ):
                ref = self.provider.submit(chunk, self.options)
        except SubmissionRejected as exc:
            polling.report(f"{self.step}: the {self.provider.name} job of {chunk.count} requests was refused: {exc}")
            self.store.reject_intent(job_id, str(exc), self.policy.retries)
            return None
        except QuotaExceeded:
            raise  # certainly nothing was created: the caller puts the requests back
        except BaseException:
            # The create may have reached the provider: "not found" is no proof for a while.
            with contextlib.suppress(Exception):
                self.store.mark_ambiguous(job_id)
            raise
        fault_point("after_create")
        self.store.confirm_job(job_id, ref)
        polling.report(f"{self.step}: submitted {self.provider.name} job {ref.remote_id} ({chunk.count} requests)")
        return ref

    def _estimate_only(self) -> Iterator[RowResult]:
        """``overnight estimate``: the plan is stored, nothing is submitted or checked."""
        self.policy.estimates.add(self.online.estimate(self.accounting.estimate()))
        counts = self.store.plan_counts(self.plan_id)
        if counts.get(st.NEW, 0) or counts.get(st.QUEUED, 0):
            raise self._not_finished()
        return self._assemble()

    # -- waiting ---------------------------------------------------------------------------

    def _poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        delays = self.policy.backoff.delays()
        errors = 0
        with polling.interruptible() as stop, \
                progress.showing(self.store, self.plan_id, self.step, self.provider.name) as shown:
            while True:
                try:
                    open_jobs = self._advance(deadline)
                    errors = 0
                except Exception as exc:
                    # Provider faults (the SDK's retries exhausted, a failed submit whose
                    # intent the next pass reconciles) are retried; our own errors are not.
                    if isinstance(exc, OvernightError) and not isinstance(exc, ProviderError):
                        raise
                    errors += 1
                    if errors >= MAX_POLL_ERRORS:
                        raise
                    polling.report(f"{self.step}: {type(exc).__name__}: {exc}; retrying at the next check")
                    open_jobs = self.store.open_jobs(self.plan_id)
                if not open_jobs and not errors:
                    shown.done()
                    return
                remaining = deadline - time.monotonic()
                if stop.is_set() or remaining <= 0:
                    raise self._not_finished(interrupted=stop.is_set(), waited=True)
                delay = min(next(delays), remaining, self.online.seconds_left())
                shown.check(open_jobs, delay)
                fault_point("during_poll")
                if polling.wait(stop, delay):
                    raise self._not_finished(interrupted=True)

    def _not_finished(self, interrupted: bool = False, waited: bool = False) -> OfflineBatchGenerationNotFinished:
        jobs = self.store.open_jobs(self.plan_id)
        counts = self.store.plan_counts(self.plan_id)
        return OfflineBatchGenerationNotFinished(
            [j.remote_id or j.tag for j in jobs],
            provider=self.provider.name,
            counts={
                "done": counts.get(st.DONE, 0),
                "pending": counts.get(st.QUEUED, 0) + counts.get(st.NEW, 0),
                "failed": counts.get(st.FAILED, 0),
                "lost": counts.get(st.LOST, 0),
            },
            step=self.step,
            interrupted=interrupted,
            waited=waited,
        )

    # -- assemble --------------------------------------------------------------------------

    def _assemble(self) -> Iterator[RowResult]:
        with fewer_collections():
            yield from self._assembled()

    def _assembled(self) -> Iterator[RowResult]:
        # What the plan cost, summed from the results on the way: the run's last line then
        # needs no second pass over every request (seconds at a million). Only a plan that
        # repeats no request: else a repeated request would be counted once per row.
        summed = self.policy.budget is not None and self.store.plan_repeats(self.plan_id) == 0
        cost = online = 0.0
        faulty = armed("during_assembly")
        for row, sample, state, result in self.store.plan_results(self.plan_id, raw=self.raw):
            if state not in (st.DONE, st.FAILED) or result is None:
                raise StoreError(
                    f"step {self.step!r}: row {row} has no result although no job is open "
                    "(the store changed under this run?). Run again."
                )
            if state == st.FAILED and result.status is not ResultStatus.ERRORED:
                result = evolve(result, status=ResultStatus.ERRORED)
            if summed:
                cost += result.cost_usd or 0.0
                online += result.online_cost_usd or 0.0
            if faulty:
                fault_point("during_assembly")
            yield RowResult(row, sample, result)  # positional: a third cheaper, once per row
        if summed:
            assert self.policy.budget is not None
            self.policy.budget.assembled(self.plan_id, cost, online)

    # -- one run per step at a time --------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Hold the store-wide lock (briefly: one plan or one pass at a time); each backend
        locks its own way (a lock file for SQLite, an advisory lock for PostgreSQL)."""
        with self.store.lock(self.policy.lock_timeout, step=self.step):
            yield
