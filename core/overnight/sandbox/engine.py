"""The provider-neutral core: files, jobs, their lifecycles, faults and counters.

Provider modules translate HTTP into calls on :class:`Engine` and plug a
:class:`Dialect` in for what differs per provider: how input lines look and how result
lines are written. Jobs are evaluated lazily: a job's phase is a pure function of its
schedule and the clock (see :mod:`.lifecycle`), and the first time a job is seen in a
terminal phase its results are computed by streaming its input line by line, once.

All state changes happen under one lock, so concurrent requests are safe. Computing a
job's results (seconds for 50,000 requests) happens outside it, under a claim on that job
alone (other calls about the job wait for the claim): a real provider answers calls about
other jobs meanwhile, and a client that downloads one job's results while the next job's
are computed must not be made to wait for them.
"""

from __future__ import annotations

import bisect
import json
import os
import shutil
import threading
import time
import uuid
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import attrs
import orjson

from .clock import Clock
from .config import PROVIDERS, SandboxConfig
from .faults import Fault, JobFaults
from .lifecycle import Schedule, Snapshot, snapshot
from .responder import Forwarder, answering, sample_variant
from .state import StateDir

Fate = Literal["ok", "error", "expired", "cancelled"]
Sink = Literal["output", "error"]

INJECTED_PROBLEM = {"code": "invalid_request", "line": None,
                    "message": "The batch failed validation (sandbox fault injection)."}


@attrs.frozen
class RequestError:
    """A per-request failure, provider-neutral; dialects render it in their own shape."""

    status: int
    message: str
    type: str | None = None
    code: str | None = None
    param: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Scan:
    """What validating a job's input found."""

    custom_ids: Sequence[str]
    model: str | None = None
    problems: Sequence[Mapping[str, Any]] = ()          # job-level validation errors
    invalid: Mapping[int, RequestError] = attrs.field(factory=dict)  # per-request errors known upfront
    tokens: int = 0                                     # prompt tokens of the whole job (queue limits)
    #: Per request, the prompt tokens its answer bills, when validating counted them as the
    #: responder does (None: not counted). The job keeps them, so computing its results does
    #: not count every prompt again.
    prompt_tokens: Sequence[int] | None = None

    @property
    def total(self) -> int:
        return len(self.custom_ids)


@attrs.define  # not frozen: one is built per request, and frozen attrs classes cost twice as much to build
class ResultLine:
    """One line of results as a dialect renders it."""

    sink: Sink | None            # None: the request leaves no line (e.g. Mistral cancelled)
    line: Mapping[str, Any] | None
    ok: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    #: False: the dialect knows the line holds no float (see :func:`dump_line`).
    floats: bool = True


class Dialect(Protocol):
    """What a provider module supplies to the engine."""

    name: str

    def iter_input(self, path: Path) -> Iterator[tuple[str, Mapping[str, Any], bool]]:
        """Yield ``(custom_id, request line, exact)`` for each non-blank input line
        (``exact``: as :func:`parse_line` says)."""

    def result(self, job: Mapping[str, Any], custom_id: str, request: Mapping[str, Any],
               fate: Fate, error: RequestError | None, prompt_tokens: int | None = None) -> ResultLine:
        """Render the result of one request (``prompt_tokens``: its count from :attr:`Scan.prompt_tokens`)."""

    def publish(self, engine: Engine, job: Mapping[str, Any], sinks: Mapping[str, SinkFile]) -> dict[str, Any]:
        """Turn the written sink files into provider objects; return fields for ``job['result']``."""


@attrs.define
class SinkFile:
    path: Path
    lines: int = 0
    bytes: int = 0


@attrs.frozen
class JobView:
    """A job record with its snapshot at the time it was read."""

    doc: Mapping[str, Any]
    snap: Snapshot

    @property
    def result(self) -> Mapping[str, Any] | None:
        return self.doc.get("result")

    def counts(self) -> tuple[int, int]:
        """(succeeded, errored) among the processed requests."""
        if self.result is not None:
            return self.result["succeeded"], self.result["errored"]
        errored = bisect.bisect_left(self.doc["error_idx"], self.snap.processed)
        return self.snap.processed - errored, errored


class Engine:
    """State, clock and lifecycle of one sandbox; shared by every provider module."""

    def __init__(self, state_dir: str | os.PathLike[str], config: SandboxConfig | None = None,
                 speed: float | None = None) -> None:
        self.config = config or SandboxConfig()
        self.store = StateDir(state_dir)
        saved = self.store.get_meta("clock")
        self.clock = Clock(float(saved) if saved else time.time(), speed)
        self._saved_clock = self.clock.now()
        self.store.set_meta("clock", repr(self._saved_clock))
        self.forwarder = (Forwarder(self.config.forward_url, self.config.forward_model, self.config.forward_timeout)
                          if self.config.forward_url else None)
        self.dialects: dict[str, Dialect] = {}
        self.results_url = self.config.results_url
        # Account queue limits (see .quota); settable at run time through the control API.
        self.max_enqueued_tokens: int | None = self.config.max_enqueued_tokens
        self.max_queued_requests: int | None = self.config.max_queued_requests
        self._lock = threading.RLock()
        self._fault_lock = threading.Lock()
        #: Jobs whose results a call is computing outside the lock; _ended tells when one is done.
        self._materializing: set[str] = set()
        self._ended = threading.Condition(self._lock)

    def close(self) -> None:
        self.save_clock()
        self.store.close()

    def register(self, dialect: Dialect) -> None:
        self.dialects[dialect.name] = dialect

    # --- clock -------------------------------------------------------------------------
    def now(self) -> float:
        t = self.clock.now()
        if self.clock.speed and t - self._saved_clock >= 1.0:  # a running clock is saved now and then
            self.save_clock()
        return t

    def advance(self, seconds: float) -> float:
        t = self.clock.advance(seconds)
        self.save_clock()
        return t

    def save_clock(self) -> None:
        self._saved_clock = self.clock.now()
        self.store.set_meta("clock", repr(self._saved_clock))

    # --- counters ----------------------------------------------------------------------
    def count(self, provider: str, name: str, n: int = 1) -> None:
        self.store.bump(provider, name, n)

    def count_http(self, provider: str, endpoint: str) -> None:
        self.store.bump(provider, "http:" + endpoint)

    def counters(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {p: {"files": 0, "jobs": 0, "requests": 0, "http": {}} for p in PROVIDERS}
        for provider, name, n in self.store.counter_rows():
            entry = out.setdefault(provider, {"files": 0, "jobs": 0, "requests": 0, "http": {}})
            if name.startswith("http:"):
                entry["http"][name[5:]] = n
            else:
                entry[name] = n
        return out

    def reset_counters(self) -> None:
        self.store.reset_counters()

    # --- faults ------------------------------------------------------------------------
    def add_fault(self, fault: Fault) -> str:
        fault_id = "fault_" + uuid.uuid4().hex[:12]
        doc = {"id": fault_id, "fault": fault.to_dict(), "remaining": fault.times}
        with self._fault_lock:
            self.store.insert("faults", fault_id, fault.provider or "", doc)
        return fault_id

    def faults(self) -> list[dict[str, Any]]:
        with self._fault_lock:
            docs = self.store.all("faults", newest_first=False)
        return [{"id": d["id"], "remaining": d["remaining"], **d["fault"]} for d in docs]

    def remove_fault(self, fault_id: str) -> bool:
        with self._fault_lock:
            if self.store.get("faults", fault_id) is None:
                return False
            self.store.mark_deleted("faults", fault_id)
            return True

    def clear_faults(self) -> None:
        with self._fault_lock:
            for doc in self.store.all("faults"):
                self.store.mark_deleted("faults", doc["id"])

    def _take_faults(self, predicate: Any, first_only: bool) -> list[tuple[str, Fault]]:
        """Matching rules with firings left, oldest first; each one taken fires once."""
        taken = []
        with self._fault_lock:
            for doc in self.store.all("faults", newest_first=False):
                if doc["remaining"] is not None and doc["remaining"] <= 0:
                    continue
                fault = Fault.from_dict(doc["fault"])
                if not predicate(fault):
                    continue
                if doc["remaining"] is not None:
                    doc["remaining"] -= 1
                    self.store.update("faults", doc["id"], doc)
                taken.append((doc["id"], fault))
                if first_only:
                    break
        return taken

    def http_fault(self, provider: str, method: str, path: str) -> Fault | None:
        taken = self._take_faults(lambda f: f.affects_http and f.selects_http(provider, method, path), True)
        return taken[0][1] if taken else None

    def download_fault(self, provider: str, job: Mapping[str, Any] | None) -> Fault | None:
        model = job.get("model") if job else None
        metadata = job.get("metadata") if job else None
        taken = self._take_faults(
            lambda f: f.affects_downloads and f.selects_job(provider, model, metadata), True)
        return taken[0][1] if taken else None

    def _job_faults(self, provider: str, model: str | None, metadata: Any) -> tuple[JobFaults, list[str]]:
        taken = self._take_faults(lambda f: f.affects_jobs and f.selects_job(provider, model, metadata), False)
        return JobFaults.merge([f for _, f in taken]), [i for i, _ in taken]

    # --- files -------------------------------------------------------------------------
    def add_file(self, provider: str, file_id: str, source: Path, *, filename: str, purpose: str,
                 lines: int, kind: str, job_id: str | None = None, created_at: float | None = None,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Adopt ``source`` (moved, not copied) as the body of a new file."""
        target = self.store.file_path(file_id)
        os.replace(source, target)
        doc = {
            "id": file_id, "provider": provider, "filename": filename, "purpose": purpose,
            "bytes": target.stat().st_size, "lines": lines, "kind": kind, "job_id": job_id,
            "created_at": self.now() if created_at is None else created_at, **(extra or {}),
        }
        with self._lock:
            self.store.insert("files", file_id, provider, doc)
        return doc

    def get_file(self, provider: str, file_id: str) -> dict[str, Any] | None:
        """A file, or None once it is deleted or past its ``expires_at`` (then it is gone)."""
        doc = self.store.get("files", file_id, provider)
        return None if doc is None or self._expired(doc) else doc

    def list_files(self, provider: str) -> list[dict[str, Any]]:
        return [d for d in self.store.all("files", provider) if not self._expired(d)]

    def _expired(self, doc: Mapping[str, Any]) -> bool:
        expires = doc.get("expires_at")
        return expires is not None and self.now() >= expires

    def delete_file(self, provider: str, file_id: str) -> bool:
        with self._lock:
            if self.store.get("files", file_id, provider) is None:
                return False
            self.store.mark_deleted("files", file_id)
            # Jobs hold their own hard link to their input, so this frees only our name.
            self.store.file_path(file_id).unlink(missing_ok=True)
            return True

    def file_path(self, file_id: str) -> Path:
        return self.store.file_path(file_id)

    def job_file_owner(self, file_doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
        job_id = file_doc.get("job_id")
        return self.store.get("jobs", job_id) if job_id else None

    # --- jobs --------------------------------------------------------------------------
    def job_input_path(self, job_id: str) -> Path:
        return self.store.job_dir(job_id) / "input.jsonl"

    def _prompt_tokens_path(self, job_id: str) -> Path:
        return self.store.job_dir(job_id) / "prompt_tokens.i64"

    def _counted_prompt_tokens(self, job: Mapping[str, Any]) -> Sequence[int] | None:
        """The job's :attr:`Scan.prompt_tokens`, if it was created with them."""
        path = self._prompt_tokens_path(job["id"])
        if not path.exists():
            return None
        counts = array("q", path.read_bytes())
        return counts if len(counts) == job["total"] else None

    def link_input(self, job_id: str, sources: Sequence[Path]) -> Path:
        """Give a job its own copy of its input: a hard link when possible (free)."""
        target = self.job_input_path(job_id)
        if len(sources) == 1:
            try:
                os.link(sources[0], target)
                return target
            except OSError:
                pass
        with open(target, "wb") as out:
            for source in sources:
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                # Concatenated files must not glue a last line onto the next file's first.
                if source.stat().st_size and not _ends_with_newline(source):
                    out.write(b"\n")
        return target

    def create_job(self, provider: str, job_id: str, scan: Scan, *, model: str | None,
                   metadata: Mapping[str, Any] | None, endpoint: str | None,
                   window: float | None = None, extra: Mapping[str, Any] | None = None,
                   reject: Callable[[Sequence[Mapping[str, Any]]], None] | None = None,
                   queue_full: Callable[[str], None] | None = None) -> JobView:
        """Record a job whose input is already at :meth:`job_input_path`.

        ``reject`` is called with the validation problems, if any, before anything is
        stored: providers that validate synchronously (Anthropic) raise from it.
        ``queue_full`` is called with a message when the job would pass the account's queue
        limits, for providers that refuse the create (a 429); without it (OpenAI) the job
        fails at validation with ``token_limit_exceeded``.
        """
        durations = self.config.durations
        with self._lock:
            now = self.now()
            faults, fault_ids = self._job_faults(provider, model, metadata)
            # Without a rule failing requests, request_fails() is False for every one: not asked.
            failed = ({i for i, cid in enumerate(scan.custom_ids) if faults.request_fails(cid)}
                      if faults.error_ids or faults.error_rate > 0 else set())
            error_idx = sorted(set(scan.invalid) | failed)
            problems = list(scan.problems)
            if faults.fail_validation and not problems:
                problems.append(dict(INJECTED_PROBLEM))
            if not problems:
                problems += self._queue_check(provider, model, scan, queue_full)
            if problems and reject is not None:
                reject(problems)
            schedule = Schedule(
                created_at=now,
                validated_at=now + durations.validating + faults.validation_delay,
                processing=durations.processing_for(scan.total),
                finalizing=durations.finalizing,
                cancelling=durations.cancelling,
                deadline=now + (durations.window if window is None else window),
                total=scan.total,
                valid=not problems,
                stuck=faults.stuck,
                expire_fraction=faults.expire_after_fraction,
                cancel_fraction=faults.cancel_after_fraction,
            )
            doc = {
                "id": job_id, "provider": provider, "created_at": now, "model": model,
                "metadata": dict(metadata) if metadata is not None else None, "endpoint": endpoint,
                "total": scan.total, "schedule": schedule.to_dict(), "faults": faults.to_dict(),
                "fault_ids": fault_ids, "error_idx": error_idx,
                "invalid": {str(i): e.to_dict() for i, e in scan.invalid.items()},
                "problems": problems, "extra": dict(extra or {}), "result": None, "tokens": scan.tokens,
                # A create that lands late: invisible to the API until then (see faults.py).
                "visible_at": now + faults.visible_after, "hidden_lookups": faults.invisible_lookups,
            }
            if scan.prompt_tokens is not None and not problems:
                self._prompt_tokens_path(job_id).write_bytes(array("q", scan.prompt_tokens).tobytes())
            self.store.insert("jobs", job_id, provider, doc)
            self.count(provider, "jobs")
            self.count(provider, "requests", scan.total)
            return JobView(doc, snapshot(schedule, now))

    def _queue_check(self, provider: str, model: str | None, scan: Scan,
                     queue_full: Callable[[str], None] | None) -> list[dict[str, Any]]:
        """Problems (OpenAI) or a refusal (others) for a job past the account's queue limits."""
        from .quota import token_limit_problem

        tokens_limit, requests_limit = self.max_enqueued_tokens, self.max_queued_requests
        if tokens_limit is None and requests_limit is None:
            return []
        held_tokens = held_requests = 0
        for doc in self.store.all("jobs", provider):
            if provider == "openai" and doc.get("model") != model:
                continue  # OpenAI's enqueued-token limit is per model
            if doc.get("problems") or self._refresh(doc).snap.terminal:
                continue
            held_tokens += int(doc.get("tokens") or 0)
            held_requests += int(doc.get("total") or 0)
        over_tokens = tokens_limit is not None and held_tokens + scan.tokens > tokens_limit
        over_requests = requests_limit is not None and held_requests + scan.total > requests_limit
        if not (over_tokens or over_requests):
            return []
        self.count(provider, "quota_refusals")
        if queue_full is None:
            return [token_limit_problem(model, (tokens_limit if over_tokens else requests_limit) or 0)]
        what = (f"{held_tokens + scan.tokens:,} tokens over the limit of {tokens_limit:,}" if over_tokens
                else f"{held_requests + scan.total:,} requests over the limit of {requests_limit:,}")
        queue_full(f"Your organization's batch processing queue is full ({what} waiting to be processed). "
                   "Try again once some batches have ended.")
        return []

    def get_job(self, provider: str, job_id: str) -> JobView | None:
        self._materialize_due(provider, job_id)  # outside the engine's lock
        with self._lock:
            return self._current(provider, job_id)

    def _current(self, provider: str, job_id: str) -> JobView | None:
        """The job now (under the engine's lock)."""
        doc = self.store.get("jobs", job_id, provider)
        return None if doc is None else self._refresh(doc)

    def list_jobs(self, provider: str) -> list[JobView]:
        """Newest first."""
        with self._lock:
            return [self._refresh(doc) for doc in self.store.all("jobs", provider)]

    def lookup_job(self, provider: str, job_id: str) -> JobView | None:
        """The job as the provider's API shows it: ``None`` while a late create hides it.

        Each lookup that finds a hidden job uses up one of its ``invisible_lookups``.
        The control API (:meth:`get_job`, :meth:`list_jobs`) always sees every job.
        """
        self._materialize_due(provider, job_id)  # outside the engine's lock
        with self._lock:
            state = self._current(provider, job_id)
            return state if state is not None and self._visible(state) else None

    def lookup_jobs(self, provider: str) -> list[JobView]:
        """Newest first, as the provider's list endpoint shows them (hidden jobs left out)."""
        with self._lock:
            return [state for state in self.list_jobs(provider) if self._visible(state)]

    def _visible(self, state: JobView) -> bool:
        doc = state.doc
        hidden = doc.get("hidden_lookups", 0)
        if hidden > 0:
            updated = {**doc, "hidden_lookups": hidden - 1}
            self.store.update("jobs", doc["id"], updated)
            return False
        return self.now() >= doc.get("visible_at", 0.0)

    def create_lost(self, state: JobView) -> bool:
        """Whether the create call of this job must lose its response (a fault)."""
        return bool(state.doc["faults"].get("create_response_lost"))

    def cancel_job(self, state: JobView) -> JobView:
        """Request a cancel (idempotent); the caller checks the job is not terminal."""
        with self._lock:
            doc = dict(state.doc)
            schedule = Schedule.from_dict(doc["schedule"])
            if schedule.cancel_requested_at is None and not state.snap.terminal:
                schedule = attrs.evolve(schedule, cancel_requested_at=self.now())
                doc["schedule"] = schedule.to_dict()
                self.store.update("jobs", doc["id"], doc)
            return self._refresh(doc)

    def lose_results(self, provider: str, job_id: str) -> dict[str, Any]:
        """What a provider's retention does to an ended job's results, now (control API).

        OpenAI and Mistral: the job's output and error files are deleted (the job keeps
        their ids, which then answer 404, as after an expiry). Gemini: its results file
        is deleted, as the Files API does 48 hours after creating it (an inline job keeps
        its responses in the batch itself: delete the batch instead). Anthropic: the batch
        is archived (``archived_at`` set; its results answer 404).
        """
        with self._lock:
            state = self.get_job(provider, job_id)
            if state is None:
                raise ValueError(f"no {provider} job {job_id!r}")
            if not state.snap.terminal:
                raise ValueError(f"the {provider} job {job_id} has not ended: it has no results to lose")
            doc = dict(state.doc)
            result = doc.get("result") or {}
            if provider == "gemini" and result.get("inline"):
                raise ValueError(f"the gemini job {job_id} holds its responses inline, in the batch: no retention "
                                 "removes them; delete the batch instead")
            deleted = [f for key in ("output_file_id", "error_file_id", "output_file", "error_file", "responses_file")
                       if (f := result.get(key)) and self.delete_file(provider, f)]
            if provider == "anthropic":
                doc["extra"] = {**doc["extra"], "archived_at": self.now()}
                self.store.update("jobs", job_id, doc)
            return {"id": job_id, "deleted_files": deleted, "archived": provider == "anthropic"}

    def delete_job(self, job_id: str) -> None:
        with self._lock:
            self.store.mark_deleted("jobs", job_id)
            shutil.rmtree(self.store.root / "jobs" / job_id, ignore_errors=True)

    def _materialize_due(self, provider: str, job_id: str) -> None:
        """Compute the results of a job that has just ended without holding the engine's
        lock (a caller that holds it keeps it, and nothing else runs meanwhile)."""
        with self._lock:
            doc = self.store.get("jobs", job_id, provider)
            while doc is not None and doc["result"] is None and job_id in self._materializing:
                self._ended.wait()
                doc = self.store.get("jobs", job_id, provider)
            if doc is None or doc["result"] is not None:
                return
            snap = snapshot(Schedule.from_dict(doc["schedule"]), self.now())
            if not snap.terminal:
                return
            self._materializing.add(job_id)
            doc["ended_at"] = snap.ended_at
        result = None
        try:
            result = self._materialize(doc, snap)  # an ended job's schedule and input no longer change
        finally:
            with self._lock:
                current = self.store.get("jobs", job_id, provider)  # with any change made meanwhile
                if result is not None and current is not None and current["result"] is None:
                    current["ended_at"], current["result"] = snap.ended_at, result
                    self.store.update("jobs", job_id, current)
                self._materializing.discard(job_id)
                self._ended.notify_all()

    def _refresh(self, doc: dict[str, Any]) -> JobView:
        snap = snapshot(Schedule.from_dict(doc["schedule"]), self.now())
        if snap.terminal and doc["result"] is None:
            while doc["id"] in self._materializing:  # by another call, outside the lock: wait for it
                self._ended.wait()
                doc = self.store.get("jobs", doc["id"]) or doc
        if snap.terminal and doc["result"] is None:
            doc["ended_at"] = snap.ended_at
            doc["result"] = self._materialize(doc, snap)
            self.store.update("jobs", doc["id"], doc)
        return JobView(doc, snap)

    def _materialize(self, job: dict[str, Any], snap: Snapshot) -> dict[str, Any]:
        """Compute a terminal job's results by streaming its input once."""
        result: dict[str, Any] = {"outcome": snap.phase, "processed": snap.processed, "succeeded": 0,
                                  "errored": 0, "dropped": 0, "input_tokens": 0, "output_tokens": 0}
        if snap.phase == "failed":
            return result
        dialect = self.dialects[job["provider"]]
        faults = JobFaults.from_dict(job["faults"])
        errors = set(job["error_idx"])
        invalid = job["invalid"]
        injected = RequestError(faults.error_status, "The request failed (sandbox fault injection).")
        sinks: dict[str, SinkFile] = {"output": SinkFile(self.store.tmp_path()),
                                       "error": SinkFile(self.store.tmp_path())}
        # Lines are written one by one, so a big buffer (a write call per MB, not per 8 KB).
        handles = {name: open(sink.path, "wb", buffering=1 << 20) for name, sink in sinks.items()}
        to_skip = faults.result_missing_count
        first_ok: dict[str, Any] | None = None
        first_exact = first_floats = True
        counted = self._counted_prompt_tokens(job)

        def write(name: Sink, line: Mapping[str, Any], exact: bool, floats: bool) -> None:
            data = dump_line(line, exact, floats)
            handles[name].write(data)
            sinks[name].lines += 1
            sinks[name].bytes += len(data)

        with answering() as answer:
            try:
                for i, (custom_id, request, exact) in enumerate(dialect.iter_input(self.job_input_path(job["id"]))):
                    error = None
                    if i >= snap.processed:
                        fate: Fate = "expired" if snap.phase == "expired" else "cancelled"
                    elif i in errors:
                        fate = "error"
                        error = RequestError(**invalid[str(i)]) if str(i) in invalid else injected
                    else:
                        fate = "ok"
                    answer.switch(sample_variant(custom_id), faults.schema_violation(custom_id))
                    item = dialect.result(job, custom_id, request, fate, error, None if counted is None else counted[i])
                    if item.ok:
                        result["succeeded"] += 1
                        result["input_tokens"] += item.input_tokens
                        result["output_tokens"] += item.output_tokens
                    elif fate in ("expired", "cancelled"):
                        result["dropped"] += 1
                    else:
                        result["errored"] += 1
                    if item.sink is None or item.line is None:
                        continue
                    if item.ok:  # result-file corruption only touches successful lines
                        if custom_id in faults.result_missing_ids:
                            continue
                        if to_skip > 0:
                            to_skip -= 1
                            continue
                        if first_ok is None:
                            first_ok, first_exact, first_floats = dict(item.line), exact, item.floats
                    write(item.sink, item.line, exact, item.floats)
                if first_ok is not None:
                    ok_sink: Sink = "output"
                    if faults.result_duplicate:
                        write(ok_sink, first_ok, first_exact, first_floats)
                    if faults.result_unknown_id:
                        write(ok_sink, {**first_ok, "custom_id": f"sandbox-unknown-{job['id']}"}, first_exact, first_floats)
            finally:
                for handle in handles.values():
                    handle.close()
        result.update(dialect.publish(self, job, sinks))
        for sink in sinks.values():
            sink.path.unlink(missing_ok=True)
        return result


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) in (b"\n", b"\r")


def iter_jsonl(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(1-based line number, stripped line)`` for each non-blank line, streamed."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.strip()
            if line:
                yield number, line


def iter_by_custom_id(path: Path) -> Iterator[tuple[str, Mapping[str, Any], bool]]:
    """``(custom_id, request line, exact)`` for each line of an input whose lines all carry one."""
    for _, line in iter_jsonl(path):
        obj, exact = parse_line(line)
        yield obj["custom_id"], obj, exact


#: orjson reads an integer past 64 bits as a float (json keeps it exact), so a line with a
#: run of 19 digits or more is left to json; the run is found by mapping every digit to "0"
#: and every other byte to " " (several times faster than a regular expression).
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGITS = b"0" * 19


def parse_line(raw: bytes) -> tuple[Any, bool]:
    """``json.loads(raw)`` (the same value), and whether orjson read it.

    orjson is several times faster and, on what it accepts, gives json's values; it
    refuses what json takes beyond JSON (NaN, infinities, lone surrogates, UTF-16), which
    json then reads. A line orjson read holds nothing :func:`dump_line` writes otherwise
    than json (``exact``).
    """
    if _LONG_DIGITS not in raw.translate(_DIGITS_AS_ZEROS):
        try:
            return orjson.loads(raw), True
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw), False


def dump_line(line: Any, exact: bool = True, floats: bool = True) -> bytes:
    """``json.dumps(line, ensure_ascii=False, separators=(",", ":"))`` in UTF-8 plus a newline.

    orjson writes the same bytes, but for NaN and infinities (null; ``exact`` False says
    the line may hold them) and floats under 1e-4 (``0.00001`` and ``1e-9`` for json's
    ``1e-05`` and ``1e-09``: any such float leaves ``e-`` or ``0.0000`` in its text), so
    those lines are written by json. ``floats`` False (the caller knows the line holds no
    float) spares the look at the text, which costs more than orjson's writing it.
    """
    if exact or not floats:
        try:
            data = orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
        except TypeError:  # integers past 64 bits, keys that are not strings, ...: json decides
            pass
        else:
            if not floats or (b"e-" not in data and b"0.0000" not in data):
                return data
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
