"""The resumable executor of one batch step: plan → reconcile → submit → check → fetch →
retry → assemble.

Each run of a pipeline runs it again from the top; everything it learns is committed
to the store as it goes, so a run can stop (or be killed) at any point and the next
run carries on without paying twice or losing a row. The invariants it keeps are those
of DESIGN.md:

* an intent (tag + membership) is committed before submit, the remote id right after;
  an intent without an id is resolved by asking the plugin to find the job by its tag,
  and when it cannot, the run stops rather than resubmit silently;
* results are matched by custom id; errored requests are retried in new jobs up to
  ``max_attempts``, unfinished ones (expired/cancelled jobs) are resubmitted; every
  planned request ends as exactly one result, successful or an explicit error;
* while any job runs, the step raises :class:`OfflineBatchGenerationNotFinished`;
* every request is validated by the plugin before the first submission;
* requests and results stream through the store in bounded batches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from attrs import frozen

from overnight import _json, polling, store as st
from overnight._serialization import dumps
from overnight.errors import (
    InvalidRequest,
    OfflineBatchGenerationNotFinished,
    OvernightError,
    ProviderError,
    RowProblem,
    StaleCache,
    StoreError,
    SubmissionRejected,
    UnconfirmedSubmission,
    ValidationError,
)
from overnight.faultpoints import fault_point
from overnight.models import (
    STANDARD_PARAMS,
    ChatRequest,
    Chunk,
    GenerationParams,
    JobRef,
    JobState,
    Result,
    ResultStatus,
    evolve,
)
from overnight.policy import RunPolicy
from overnight.providers import Provider
from overnight.store import Store, result_from_json

#: Results are written to the store in transactions of growing size: small at first so an
#: interrupted download keeps what it got, large later so big files need few commits.
FETCH_BATCH_FIRST = 16
FETCH_BATCH_MAX = 4096
#: Most problems listed in one ValidationError (the count covers them all).
MAX_PROBLEMS = 1000
#: Pending requests read from the store per query while cutting chunks.
PENDING_PAGE = 10_000
#: Consecutive failed polls (network, 5xx after SDK retries) before polling gives up.
MAX_POLL_ERRORS = 5


@frozen
class PlannedRequest:
    """One generation to make: ``sample`` of input ``row``."""

    row: int
    sample: int
    request: ChatRequest


@frozen
class RowResult:
    """The outcome of one planned request, in plan order."""

    row: int
    sample: int
    result: Result


def request_key(provider: str, request: ChatRequest, sample: int, *, params_json: str | None = None) -> str:
    """The content address of a request: provider, model, body and sample index.

    ``params_json`` is ``dumps(request.params)``, for callers that computed it already
    (the options are usually the same object for a whole plan).
    """
    messages = json.dumps([[m.role, m.content] for m in request.messages], ensure_ascii=False, separators=(",", ":"))
    params = params_json if params_json is not None else dumps(request.params)
    digest = hashlib.sha256(f"{provider}\0{request.model}\0{messages}\0{params}\0{sample}".encode())
    return digest.hexdigest()[:40]


def check_params(provider: Provider, params: GenerationParams) -> list[tuple[str, str]]:
    """``(field, message)`` for every option the provider cannot take."""
    info = provider.info
    problems = []
    for name in sorted(STANDARD_PARAMS & info.unsupported_params):
        if getattr(params, name) is not None:
            problems.append((name, f"the {info.name} provider does not support {name!r}"))
    for name in sorted(set(params.extra) - info.extra_params):
        known = sorted(STANDARD_PARAMS | info.extra_params)
        problems.append((name, f"unknown generation option for {info.name}; known: {', '.join(known)}"))
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
    ) -> None:
        self.store = store
        self.provider = provider
        self.options = options
        self.step = step
        self.plan_id = plan_id
        self.policy = policy

    # -- the whole step --------------------------------------------------------------------

    def run(self, planned: Iterable[PlannedRequest]) -> Iterator[RowResult]:
        """Advance the step as far as it goes now; return its results in plan order.

        Raises :class:`ValidationError` (nothing submitted) or
        :class:`OfflineBatchGenerationNotFinished` (state saved) instead.
        """
        with self._lock():
            if not self.store.plan_complete(self.plan_id):
                self.plan(planned)
        if not self.policy.reuse_paid and self.store.paid_count(self.plan_id):
            raise StaleCache(
                f"step {self.step!r}: {self.store.paid_count(self.plan_id)} request(s) were "
                "already paid for by a previous run, and the cache is disabled. Choose: "
                "run(..., paid_results='reuse') to use them, or change the requests "
                "(e.g. LLM(..., generation_kwargs={'seed': ...})) to pay again."
            )
        if self.policy.block_until_done:
            self._poll(self.policy.block_until_done)
        elif self._advance():
            raise self._not_finished()
        return self._assemble()

    # -- plan ------------------------------------------------------------------------------

    def plan(self, planned: Iterable[PlannedRequest]) -> int:
        """Validate and store every request; raise ValidationError, storing nothing, if any is bad."""
        problems: list[RowProblem] = []
        # A bad option is bad on every row: report it once, not once per row.
        option_problems: dict[tuple[str, str], None] = {}
        count = 0

        def items() -> Iterator[tuple[int, int, str, str, str, int]]:
            nonlocal count
            checked: set[str] = set()
            last_params, params_json = None, ""
            limits = self.provider.info.limits
            for p in planned:
                req = p.request
                if req.params is not last_params:  # serialise each distinct options object once
                    last_params, params_json = req.params, dumps(req.params)
                    if params_json not in checked:
                        checked.add(params_json)
                        option_problems.update(dict.fromkeys(check_params(self.provider, req.params)))
                key = request_key(self.provider.name, req, p.sample, params_json=params_json)
                req = ChatRequest(key, req.model, req.messages, req.params)  # attrs.evolve is 3x slower
                try:
                    encoded = _json.dumps(self.provider.build_request(req))
                except InvalidRequest as exc:
                    self._problem(problems, p.row, exc.field, str(exc))
                    continue
                size = len(encoded) + 1
                line = encoded.decode()
                cap = min(limits.max_line_bytes or limits.max_bytes, limits.max_bytes)
                if size > cap:
                    self._problem(
                        problems, p.row, "prompt",
                        f"the request is {size:,} bytes, over the {self.provider.name} limit of {cap:,} bytes per request",
                    )
                    continue
                count += 1
                yield p.row, p.sample, key, req.model, line, size

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

    def _advance(self) -> list[dict[str, Any]]:
        """One pass over the step's jobs; returns the jobs still open afterwards.

        Each pass holds the store's lock, so two processes never submit the same
        request twice, whichever pipelines they run.
        """
        with self._lock():
            for job in self.store.open_jobs(self.plan_id):
                if job["state"] == st.INTENT:
                    job["ref"] = self._reconcile(job)
                if job["ref"] is not None:
                    self._check(job)
            self._submit_pending()
            return self.store.open_jobs(self.plan_id)

    def _reconcile(self, job: dict[str, Any]) -> JobRef | None:
        """An intent without a remote id: the job may or may not exist at the provider."""
        if self.provider.info.capabilities.find_by_tag:
            try:
                with self._provider_errors(f"looking up the {self.provider.name} job tagged {job['tag']}"):
                    ref = self.provider.find_job(job["tag"], self.options)
            except Exception:
                if not self.policy.resubmit_unconfirmed:
                    raise
                ref = None  # the user chose to resubmit what cannot be confirmed
            if ref is not None:
                self.store.confirm_job(job["id"], ref)
                polling.report(f"{self.step}: found job {ref.remote_id} of an interrupted run; not submitting again")
                return ref
            self.store.abandon_intent(job["id"])
        elif self.policy.resubmit_unconfirmed:
            self.store.abandon_intent(job["id"])
        else:
            raise UnconfirmedSubmission(self.provider.name, [job["tag"]])
        return None

    def _check(self, job: dict[str, Any]) -> None:
        ref = job["ref"]
        with self._provider_errors(f"checking the {self.provider.name} job {ref.remote_id}"):
            status = self.provider.check(ref, self.options)
        self.store.update_job(job["id"], status)
        if not status.state.terminal:
            return
        if status.state is JobState.FAILED:
            reason = status.message or f"the {self.provider.name} job {ref.remote_id} failed"
            self.store.close_job(job["id"], self.policy.max_attempts, self.policy.max_unfinished, failure=reason)
            return
        batch: list[Result] = []
        size = FETCH_BATCH_FIRST
        for result in self._fetched(ref):
            batch.append(result)
            if len(batch) >= size:
                self._record(job["id"], batch)
                batch, size = [], min(size * 2, FETCH_BATCH_MAX)
                fault_point("mid_fetch")
        self._record(job["id"], batch)
        self.store.close_job(job["id"], self.policy.max_attempts, self.policy.max_unfinished)

    def _fetched(self, ref: JobRef) -> Iterator[Result]:
        """The job's results; a provider failure part-way is a ProviderError (what came is kept)."""
        results = iter(self.provider.fetch(ref, self.options))
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

    def _record(self, job_id: int, results: list[Result]) -> None:
        self.store.record_results(job_id, results, self.policy.max_attempts, self.policy.max_unfinished)

    def _submit_pending(self) -> None:
        limits = self.provider.info.limits
        # Keyset paging by plan position: each chunk reads on from where the last one
        # stopped, so submitting N requests reads the plan once, not once per chunk.
        after = -1
        page_size = min(max(limits.max_requests, 1), PENDING_PAGE)
        while True:
            keys: list[str] = []
            taken: set[str] = set()
            nbytes = 0
            model = None
            last = after
            full = False
            while not full:
                page = list(self.store.pending_lines(self.plan_id, after=last, limit=page_size))
                for row in page:
                    if row["key"] in taken:  # a repeated row: its request is in this chunk already
                        last = row["pos"]
                        continue
                    if keys and (
                        len(keys) >= limits.max_requests
                        or nbytes + row["bytes"] > limits.max_bytes
                        or row["model"] != model
                    ):
                        full = True
                        break
                    keys.append(row["key"])
                    taken.add(row["key"])
                    nbytes += row["bytes"]
                    model = row["model"]
                    last = row["pos"]
                if len(page) < page_size:
                    break
            if not keys:
                return
            # A refused chunk's requests may be pending again: read the plan from the top.
            after = last if self._submit(keys, model or "", nbytes) else -1

    def _submit(self, keys: list[str], model: str, nbytes: int) -> bool:
        """Submit one chunk; False when the provider refused it (its requests may be pending again)."""
        tag = f"ovn-{uuid.uuid4().hex[:24]}"
        job_id = self.store.create_intent(
            tag=tag, provider=self.provider.name, model=model, step=self.step,
            plan_id=self.plan_id, keys=keys, nbytes=nbytes,
        )
        fault_point("after_intent")
        chunk = Chunk(
            tag=tag, model=model, count=len(keys), bytes=nbytes,
            lines=lambda: (_json.loads(line) for line in self.store.job_lines(job_id)),
            encoded=lambda: ((line + "\n").encode() for line in self.store.job_lines(job_id)),
        )
        try:
            with self._provider_errors(
                f"submitting a {self.provider.name} job of {len(keys)} requests",
                then=f"The intent is saved under tag {tag}; run again to check whether the provider "
                "created it and to carry on.",
            ):
                ref = self.provider.submit(chunk, self.options)
        except SubmissionRejected as exc:
            polling.report(f"{self.step}: the {self.provider.name} job of {len(keys)} requests was refused: {exc}")
            self.store.reject_intent(job_id, str(exc), self.policy.max_attempts, self.policy.max_unfinished)
            return False
        fault_point("after_create")
        self.store.confirm_job(job_id, ref)
        polling.report(f"{self.step}: submitted {self.provider.name} job {ref.remote_id} ({len(keys)} requests)")
        return True

    # -- waiting ---------------------------------------------------------------------------

    def _poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        delays = self.policy.backoff.delays()
        errors = 0
        with polling.interruptible() as stop:
            while True:
                try:
                    open_jobs = self._advance()
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
                    return
                remaining = deadline - time.monotonic()
                if stop.is_set() or remaining <= 0:
                    raise self._not_finished(interrupted=stop.is_set())
                delay = min(next(delays), remaining)
                polling.report(self._progress(open_jobs) + f"; next check in {delay:.3g}s (Ctrl+C to stop)")
                fault_point("during_poll")
                if polling.wait(stop, delay):
                    raise self._not_finished(interrupted=True)

    def _progress(self, open_jobs: list[dict[str, Any]]) -> str:
        counts = self.store.plan_counts(self.plan_id)
        total = sum(counts.values())
        processed = sum(j["completed"] + j["failed"] for j in open_jobs)
        in_jobs = sum(j["requests"] for j in open_jobs)
        return (
            f"{self.step}: {len(open_jobs)} {self.provider.name} job(s) running "
            f"({processed}/{in_jobs} processed), {counts.get(st.DONE, 0)}/{total} results collected, "
            f"{counts.get(st.FAILED, 0)} failed"
        )

    def _not_finished(self, interrupted: bool = False) -> OfflineBatchGenerationNotFinished:
        jobs = self.store.open_jobs(self.plan_id)
        counts = self.store.plan_counts(self.plan_id)
        return OfflineBatchGenerationNotFinished(
            [j["remote_id"] or j["tag"] for j in jobs],
            provider=self.provider.name,
            counts={
                "done": counts.get(st.DONE, 0),
                "pending": counts.get(st.QUEUED, 0) + counts.get(st.NEW, 0),
                "failed": counts.get(st.FAILED, 0),
            },
            step=self.step,
            interrupted=interrupted,
        )

    # -- assemble --------------------------------------------------------------------------

    def _assemble(self) -> Iterator[RowResult]:
        for row, sample, state, text in self.store.plan_results(self.plan_id):
            result = result_from_json(text)
            if state not in (st.DONE, st.FAILED) or result is None:
                raise StoreError(
                    f"step {self.step!r}: row {row} has no result although no job is open "
                    "(the store changed under this run?). Run again."
                )
            if state == st.FAILED and result.status is not ResultStatus.ERRORED:
                result = evolve(result, status=ResultStatus.ERRORED)
            fault_point("during_assembly")
            yield RowResult(row=row, sample=sample, result=result)

    # -- one run per step at a time --------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Hold the store's lock file (briefly: one plan or one pass at a time)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: rely on SQLite's locking alone
            yield
            return
        with open(Path(self.store.cache_dir) / "overnight.lock", "w") as handle:
            deadline = time.monotonic() + self.policy.lock_timeout
            announced = False
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreError(
                            f"step {self.step!r}: another overnight process has held the store "
                            f"({handle.name}) for {self.policy.lock_timeout:.0f}s. Let it finish, then run again."
                        ) from None
                    if not announced:
                        polling.report(f"{self.step}: another overnight process is using the store; waiting for it")
                        announced = True
                    time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

