"""The Gemini provider plugin: overnight's hooks on top of the official ``google-genai`` SDK.

Jobs are created with ``client.batches.create(model=..., src=...)`` against the Gemini
Developer API: small chunks inline (``src=[InlinedRequest...]``, the key in each
request's metadata), others as a JSONL file uploaded with the Files API. The chunk's
tag is the job's display name (and the input file's), which ``batches.list`` shows, so
a run that crashed between create and commit finds its job again.

What a job holds can be read only once it has ended: the SDK keeps no input of a
Developer-API job (``BatchJob.src`` is filled for Vertex only) and uploaded input files
cannot be downloaded, so ``list_jobs`` reads the keys from the results (an inline job's
``metadata.key``, a file job's results file) and lists a running job with
``custom_ids=None``; an expired job gives back no results, so its keys stay unknown.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any, Iterator, Mapping

from overnight import jsonl, orphan_files
from overnight.connection import Connection
from overnight.create_once import create_once, keep_oldest
from overnight.not_found import confirm_gone
from overnight.errors import ResultsGone, SubmissionRejected
from overnight.faultpoints import fault_point
from overnight.hookspecs import hookimpl
from overnight.models import (
    Capabilities,
    ChatRequest,
    Chunk,
    JobRef,
    JobState,
    JobStatus,
    Limits,
    ModelSpec,
    ProviderInfo,
    QueueLimits,
    RemoteJob,
    Result,
)

from overnight.orphan_files import delete_quietly

from overnight_gemini import online
from overnight_gemini import options as opts
from overnight_gemini import translate

log = logging.getLogger("overnight_gemini")

NAME = "gemini"
MB = 1024 * 1024

#: Gemini's published figures: input files up to 2 GB (Files API), an inline create under
#: 20 MB, jobs expire 48 h after creation. No request count per batch is published: the
#: 100k cap is ours, so one lost job never holds more than that.
LIMITS = Limits(max_requests=100_000, max_bytes=2048 * MB, max_line_bytes=20 * MB, completion_window=48 * 3600)

#: Input limits and output ceilings (Gemini models pages; docs/protocols/gemini.md). Gemini
#: bounds the input alone (1,048,576 tokens) and the output apart; the core bounds input plus
#: ``max_tokens`` by ``context_window``, so the input limit is declared there (stricter by at
#: most ``max_tokens``). Longest prefix wins; others are held to the largest window.
MODELS = (
    ModelSpec("gemini-3", 1_048_576, 65_535),
    ModelSpec("gemini-2.5-pro", 1_048_576, 65_535),
    ModelSpec("gemini-2.5-flash", 1_048_576, 65_535),
    ModelSpec("gemini-2.0-flash", 1_048_576, 8_192),
    ModelSpec("gemini-1.5-flash", 1_048_576, 8_192),
    ModelSpec("gemini-1.5-pro", 2_097_152, 8_192),
)
#: Gemini's batch quotas (100 concurrent batches, enqueued tokens per model) depend on the
#: tier and are not published per model: none is assumed (set yours with
#: LLM(max_enqueued_tokens=...)); a create refused for them is a 429 RESOURCE_EXHAUSTED.
QUEUE = QueueLimits()
#: The price library's id for the Gemini Developer API (genai-prices has its batch prices).
PRICES_PROVIDER = "google"
#: Tags overnight gives jobs (``ovn-<hex>``): a batch whose display name starts so is ours.
TAG_PREFIX = "ovn-"

#: The create is retried only on 429 (certainly nothing created), a few times, here; then
#: the core is told the quota is full (QuotaExceeded) and submits again as jobs end.
CREATE_ATTEMPTS_ON_429 = 3
#: 4xx answers to a create that certainly created nothing and are about the request
#: itself: the core counts them as failed attempts.
REFUSED = frozenset({400, 404, 413})


def _code(exc: BaseException) -> int | None:
    from google.genai import errors

    return exc.code if isinstance(exc, errors.APIError) else None


def _rejected(exc: BaseException) -> bool:
    code = _code(exc)
    return code is not None and 400 <= code < 500


def _not_found(exc: BaseException) -> bool:
    """Gemini's answers for a resource that does not exist (or no longer does).

    A missing file is a 403 PERMISSION_DENIED "You do not have permission to access the
    File X or it may not exist" (the real API, python-genai#1218); a 404 NOT_FOUND is taken
    the same way. Another 403 (a key without access, billing) is not.
    """
    from google.genai import errors

    if not isinstance(exc, errors.APIError):
        return False
    if exc.code == 404:
        return True
    return exc.code == 403 and "may not exist" in str(exc.message or "")


def _bounded(settings: opts.Settings, timeout: float | None) -> dict[str, Any]:
    """Per-call config for a call that must end within ``timeout`` seconds.

    When the bound is shorter than the client's per-attempt timeout (the SDK sets none by
    default): one attempt bounded by it; the core's polling retries at its next check (see
    overnight.hookspecs, "Deadlines").
    """
    if timeout is None or (settings.timeout_ms is not None and settings.timeout_ms <= timeout * 1000):
        return {}
    return {"http_options": opts.once(timeout_ms=max(1, int(timeout * 1000)))}


class GeminiPlugin:
    """The hooks, bound to one provider declaration (tests may lower ``limits``)."""

    def __init__(self, *, name: str = NAME, limits: Limits = LIMITS) -> None:
        self.name = name
        self.limits = limits

    # -- declaration and validation -------------------------------------------------------

    @hookimpl
    def register_providers(self) -> list[ProviderInfo]:
        return [
            ProviderInfo(
                name=self.name,
                limits=self.limits,
                capabilities=Capabilities(
                    cancel=True, find_by_tag=True, list_jobs=True, online=True, check_while_fetching=True,
                ),
                online_limits=online.LIMITS,
                extra_params=translate.EXTRA_PARAMS,
                unsupported_params=translate.UNSUPPORTED_PARAMS,
                secret_env=opts.KEY_ENVS,
                description="Gemini Developer API batch mode (google-genai SDK)",
                models=MODELS,
                queue=QUEUE,
                batch_discount=0.5,
                prices_provider=PRICES_PROVIDER,
            )
        ]

    @hookimpl
    def connect(self, provider: str, options: Mapping[str, Any]) -> Connection[opts.Settings]:
        return opts.connect(options)

    @hookimpl
    def build_request(self, provider: str, request: ChatRequest) -> dict[str, Any]:
        return translate.build_line(request)

    # -- jobs ------------------------------------------------------------------------------

    @hookimpl
    def submit(self, provider: str, chunk: Chunk, client: Connection[opts.Settings]) -> JobRef:
        settings, sdk = client.settings, client.sdk
        if chunk.count <= settings.inline_threshold and chunk.bytes <= opts.INLINE_MAX_BYTES:
            src = [translate.inline_request(line) for line in chunk.lines()]
            job = self._create(sdk, chunk, src)
            return self._ref(job, chunk, input_file=None)
        with jsonl.spool(chunk.lines()) as spooled:
            uploaded = sdk.files.upload(
                file=spooled, config={"mime_type": "application/jsonl", "display_name": chunk.tag}
            )
        fault_point("after_upload")
        try:
            job = self._create(sdk, chunk, uploaded.name)
        except Exception as exc:
            # Only a 4xx certainly created nothing; after a 5xx or a lost connection the
            # job may exist and need its input, so the file is left for it.
            if isinstance(exc, SubmissionRejected) or _rejected(exc):
                self._delete_file(sdk, uploaded.name)
            raise
        return self._ref(job, chunk, input_file=uploaded.name)

    @staticmethod
    def _create(client: Any, chunk: Chunk, src: Any) -> Any:
        """Create the job without ever creating it twice (:func:`overnight.create_once.create_once`).

        The SDK's retries are off for this call (a timed-out create may have created the
        job, and the API takes no idempotency key); only a 429 is tried again here. Any
        other failure propagates: the core then finds the job by its tag. Gemini answers a
        full batch quota (concurrent batches, enqueued tokens) and a rate limit alike ("You
        exceeded your current quota", RESOURCE_EXHAUSTED): the last 429 is QuotaExceeded.
        """
        config = {"display_name": chunk.tag, "http_options": opts.once()}
        return create_once(lambda: client.batches.create(model=chunk.model, src=src, config=config),
                           status=_code, attempts=CREATE_ATTEMPTS_ON_429, label="Gemini", refused=REFUSED,
                           initial_delay=0.25)

    def _ref(self, job: Any, chunk: Chunk, *, input_file: str | None) -> JobRef:
        data: dict[str, Any] = {"inline": input_file is None, "count": chunk.count}
        if input_file:
            data["input_file"] = input_file
        return JobRef(provider=self.name, remote_id=job.name, tag=chunk.tag, data=data)

    @staticmethod
    def _delete_file(client: Any, name: str) -> None:
        delete_quietly(lambda: client.files.delete(name=name), f"the unused Gemini input file {name}")

    @hookimpl
    def check(self, provider: str, job: JobRef, client: Connection[opts.Settings], timeout: float | None) -> JobStatus:
        settings = client.settings
        remote = self._get(client.sdk, job, _bounded(settings, timeout))
        state = translate.job_state(remote.state)
        message = None
        if state is JobState.FAILED:
            # The SDK keeps no reason for Developer API jobs (Operation.error is dropped).
            reason = getattr(getattr(remote, "error", None), "message", None)
            message = reason or (f"Gemini batch {job.remote_id} failed; see it in AI Studio "
                                 "(the API's reason is not exposed by the SDK)")
        # Gemini's batchStats are not exposed by the SDK either: only the total is known.
        return JobStatus(state=state, total=int(job.data.get("count") or 0), raw_status=translate.state_word(remote.state),
                         message=message)

    @staticmethod
    def _get(client: Any, job: JobRef, bound: Mapping[str, Any] | None = None) -> Any:
        """The batch; ResultsGone when Gemini certainly no longer has it (deleted)."""
        try:
            return client.batches.get(name=job.remote_id, config=dict(bound or {}))
        except Exception as exc:
            if not _not_found(exc):
                raise
            GeminiPlugin._confirm_gone(client, exc, f"Gemini batch {job.remote_id} no longer exists "
                                                    f"({_code(exc)}: deleted)", bound)
            raise  # pragma: no cover - _confirm_gone always raises

    @staticmethod
    def _confirm_gone(client: Any, exc: BaseException, what: str, bound: Mapping[str, Any] | None = None) -> None:
        """Raise ResultsGone if the answer is about the batch (see overnight.not_found), else ``exc``."""
        raise confirm_gone(exc, lambda: client.batches.list(config={"page_size": 1, **(bound or {})}), what) from None

    @hookimpl
    def fetch(self, provider: str, job: JobRef, client: Connection[opts.Settings],
              timeout: float | None) -> Iterator[Result]:
        settings = client.settings
        bound = _bounded(settings, timeout)
        return self._results(client.sdk, job, 0 if bound else settings.max_retries, bound)

    def _results(self, client: Any, job: JobRef, retries: int, bound: Mapping[str, Any] | None = None,
                 remote: Any = None) -> Iterator[Result]:
        remote = remote if remote is not None else self._get(client, job, bound)
        dest = remote.dest
        if dest is None:
            return
        if dest.inlined_responses:
            for item in dest.inlined_responses:
                result = translate.parse_inlined(item)
                if result is not None:
                    yield result
        if dest.file_name:
            for line in self._download(client, dest.file_name, retries, job, bound):
                result = translate.parse_file_line(line)
                if result is not None:
                    yield result

    @staticmethod
    def _download(client: Any, name: str, retries: int, job: JobRef | None = None,
                  bound: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        config = dict(bound or {})
        # The batch was just read from the same API: a "not found" here is about the file
        # itself (deleted by someone, or past the Files API's 48 hours).
        owner = f" of Gemini batch {job.remote_id}" if job is not None else ""
        try:
            # A body cut at a line boundary parses cleanly: only the size tells it is short,
            # and then the missing rows would look unfinished and be paid for again.
            expected = client.files.get(name=name, config=config).size_bytes
        except Exception as exc:
            if _not_found(exc):
                raise ResultsGone(f"the results file {name}{owner} is gone ({_code(exc)}: deleted, or past "
                                  "the 48 hours Gemini keeps files)") from None
            raise
        fd, path = tempfile.mkstemp(prefix="overnight-gemini-", suffix=".jsonl")
        os.close(fd)
        try:
            for attempt in range(retries + 1):
                try:
                    client.files.download(file=name, destination=path, config=config)
                    break
                except Exception as exc:
                    if _not_found(exc):
                        raise ResultsGone(f"the results file {name}{owner} is gone ({_code(exc)})") from None
                    # The SDK never retries a download: a 429/5xx answer is retried here; a
                    # body cut short is not (it propagates, and the core fetches again later).
                    if _code(exc) not in opts.RETRY_STATUS or attempt == retries:
                        raise
                    time.sleep(min(0.5 * 2**attempt, 8.0))
            with open(path, "rb") as body:
                chunks = iter(lambda: body.read(1 << 20), b"")
                yield from jsonl.parse(chunks, expected_bytes=expected, source=f"the download of Gemini result file {name}")
        finally:
            os.unlink(path)

    @hookimpl
    def cancel(self, provider: str, job: JobRef, client: Connection[opts.Settings]) -> None:
        sdk = client.sdk
        try:
            sdk.batches.cancel(name=job.remote_id)
        except Exception as exc:
            # Cancelling a job that already ended is refused; there is nothing to cancel.
            if not _rejected(exc):
                raise
            if _not_found(exc):
                self._confirm_gone(sdk, exc, f"Gemini batch {job.remote_id} no longer exists ({_code(exc)})")
            if not translate.job_state(self._get(sdk, job).state).terminal:
                raise

    @hookimpl
    def find_job(self, provider: str, tag: str, client: Connection[opts.Settings],
                 timeout: float | None) -> JobRef | None:
        settings, sdk = client.settings, client.sdk
        bound = _bounded(settings, timeout)
        # Oldest first. The listing is newest first, so reversed it breaks ties between
        # jobs created in the same instant the right way (the sort is stable).
        tagged = [j for j in sdk.batches.list(config={"page_size": 100, **bound}) if j.display_name == tag]
        found = sorted(reversed(tagged), key=lambda j: (j.create_time is None, j.create_time))
        if not found:
            self._delete_orphan_input(sdk, tag)  # the core now resubmits under a new tag
            return None
        keep = keep_oldest(found, ident=lambda j: j.name, cancel=lambda name: sdk.batches.cancel(name=name), tag=tag,
                           what="Gemini batch")
        return JobRef(provider=self.name, remote_id=keep.name, tag=tag, data={"found": True})

    @hookimpl
    def generate(self, provider: str, request: dict[str, Any], client: Connection[opts.Settings],
                 timeout: float | None, model: str) -> Result:
        return online.generate(provider, request, client.sdk, timeout, model)

    @hookimpl
    def list_jobs(self, provider: str, client: Connection[opts.Settings], horizon: float, limit: int,
                  skip: frozenset[str], tags: frozenset[str] = frozenset()) -> list[RemoteJob]:
        """Recent batches whose display name is an overnight tag, newest first, with their keys.

        ``batches.list`` pages newest first (100 a page); the listing stops after
        ``limit`` batches or at one created more than ``horizon`` seconds before the
        newest. Keys come from an ended job's results (see the module docstring): a
        running or expired job, and one in ``skip`` or (with ``tags``) carrying none of
        them, is listed with ``custom_ids=None``.
        """
        settings, sdk = client.settings, client.sdk
        found: list[RemoteJob] = []
        newest: float | None = None
        for seen, batch in enumerate(sdk.batches.list(config={"page_size": 100})):
            if seen >= limit:
                break
            created = batch.create_time.timestamp() if batch.create_time is not None else 0.0
            newest = created if newest is None else newest
            if created and newest - created > horizon:
                break
            tag = batch.display_name or ""
            if not tag.startswith(TAG_PREFIX):
                continue  # not submitted by overnight
            state = translate.job_state(batch.state)
            wanted = batch.name not in skip and (not tags or tag in tags)
            ids = self._job_keys(sdk, batch, state, settings.max_retries) if wanted else None
            found.append(RemoteJob(ref=JobRef(provider=self.name, remote_id=batch.name, tag=tag, data={"found": True}),
                                   created_at=created, state=state, custom_ids=ids))
        return found

    def _job_keys(self, client: Any, batch: Any, state: JobState, retries: int) -> frozenset[str] | None:
        if not state.terminal or state is JobState.EXPIRED or batch.dest is None:
            return None
        ref = JobRef(provider=self.name, remote_id=batch.name, tag=batch.display_name or "")
        try:
            return frozenset(r.custom_id for r in self._results(client, ref, retries, remote=batch))
        except ResultsGone:
            return None  # the results file is gone: cannot tell

    @staticmethod
    def _delete_orphan_input(client: Any, tag: str) -> None:
        """Delete the input file a submit interrupted after its upload left under ``tag``.

        Only called once no job carries the tag, so no job can need it. Best effort.
        """
        orphan_files.delete_orphan_input(lambda: client.files.list(config={"page_size": 100}),
                                         lambda f: f.display_name == tag, lambda f: client.files.delete(name=f.name),
                                         tag=tag, label="Gemini")
