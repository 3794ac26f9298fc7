"""The Mistral provider plugin: overnight's hooks on top of the official ``mistralai`` SDK.

Jobs are created with ``batch.jobs.create`` at ``/v1/chat/completions``: small chunks
inline (``requests=[...]``), others as an uploaded JSONL file. Every job carries the
chunk's tag in its metadata (``overnight_tag``), which ``batch.jobs.list`` filters on,
so a run that crashed between create and commit finds its job again.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, Mapping

from overnight import jsonl, orphan_files
from overnight.connection import Connection
from overnight.create_once import create_once, keep_oldest
from overnight.not_found import confirm_gone
from overnight.errors import ResultsGone
from overnight.faultpoints import fault_point
from overnight.hookspecs import hookimpl
from overnight.orphan_files import delete_quietly, input_name
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
    RemoteJob,
    Result,
)

from overnight_mistral import online
from overnight_mistral import options as opts
from overnight_mistral import translate

log = logging.getLogger("overnight_mistral")

NAME = "mistral"
MB = 1024 * 1024

#: Mistral's published per-job limits (the conservative "known limitations" figures:
#: 100k requests, 512 MB per input file); ``timeout_hours`` defaults to 24.
LIMITS = Limits(max_requests=100_000, max_bytes=512 * MB, completion_window=24 * 3600)

#: Context windows (Mistral's models overview; docs/protocols/mistral.md). Mistral publishes
#: no separate output ceiling: output may fill the window. Longest prefix wins.
MODELS = (
    ModelSpec("mistral-large", 131_072, 131_072),
    ModelSpec("mistral-medium", 131_072, 131_072),
    ModelSpec("mistral-small", 131_072, 131_072),
    ModelSpec("ministral", 131_072, 131_072),
    ModelSpec("open-mistral-nemo", 131_072, 131_072),
    ModelSpec("codestral", 262_144, 262_144),
    ModelSpec("magistral", 131_072, 131_072),
)

#: Job creation is not idempotent: retry only what certainly created nothing (429).
#: A 5xx or a dropped connection may hide a created job; the core finds it by tag.
_CREATE_RETRY_CODES = ["429"]


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status of an SDK error answered by the server (None for network errors)."""
    from mistralai.client.errors import MistralError

    return exc.status_code if isinstance(exc, MistralError) else None


def _rejected(exc: BaseException) -> bool:
    """The server refused the call (4xx): it certainly did nothing."""
    status = _http_status(exc)
    return status is not None and 400 <= status < 500


def _not_found(exc: BaseException) -> bool:
    return _http_status(exc) == 404


def _bounded(settings: opts.Settings, timeout: float | None) -> dict[str, Any]:
    """Per-call SDK arguments for a call that must end within ``timeout`` seconds.

    When the bound is shorter than the client's per-attempt timeout: one attempt bounded
    by it (the core's polling retries at its next check; SDK retries would multiply the
    wait past the user's deadline; see overnight.hookspecs, "Deadlines").
    """
    if timeout is None:
        return {}
    per_attempt_ms = settings.timeout_ms or opts.SDK_TIMEOUT_MS
    if per_attempt_ms <= timeout * 1000:
        return {}
    return {"timeout_ms": max(1, int(timeout * 1000)), "retries": opts.retry_config(0)}


class MistralPlugin:
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
                secret_env=(opts.KEY_ENV,),
                description="Mistral batch API (mistralai SDK)",
                models=MODELS,
                batch_discount=0.5,
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
        create = dict(
            endpoint=translate.ENDPOINT,
            model=chunk.model,
            metadata={translate.TAG_KEY: chunk.tag},
            timeout_hours=settings.timeout_hours,
            retries=opts.retry_config(settings.max_retries, status_codes=_CREATE_RETRY_CODES, connection_errors=False),
        )
        # The SDK's retry config already tried the 429s (and nothing else): one attempt here.
        if chunk.count <= settings.inline_threshold and chunk.bytes <= opts.INLINE_MAX_BYTES:
            job = create_once(lambda: sdk.batch.jobs.create(requests=list(chunk.lines()), **create),
                              status=_http_status, attempts=1, label="Mistral")
            return self._ref(job, chunk.tag, input_file=None)
        with jsonl.spool(chunk.lines()) as spooled:
            uploaded = sdk.files.upload(
                file={"file_name": input_name(chunk.tag), "content": spooled}, purpose="batch"
            )
        fault_point("after_upload")
        # After a 5xx or a lost connection the job may exist and need its input, so the file
        # is deleted only after a 4xx, which certainly created nothing.
        job = create_once(lambda: sdk.batch.jobs.create(input_files=[uploaded.id], **create),
                          status=_http_status, attempts=1, label="Mistral",
                          cleanup=lambda: self._delete_file(sdk, uploaded.id))
        return self._ref(job, chunk.tag, input_file=uploaded.id)

    def _ref(self, job: Any, tag: str, *, input_file: str | None) -> JobRef:
        data: dict[str, Any] = {"inline": input_file is None}
        if input_file:
            data["input_file"] = input_file
        return JobRef(provider=self.name, remote_id=job.id, tag=tag, data=data)

    @staticmethod
    def _delete_file(client: Any, file_id: str) -> None:
        delete_quietly(lambda: client.files.delete(file_id=file_id), f"the unused Mistral input file {file_id}")

    @hookimpl
    def check(self, provider: str, job: JobRef, client: Connection[opts.Settings], timeout: float | None) -> JobStatus:
        remote = self._get(client.sdk, job, **_bounded(client.settings, timeout))
        state = translate.job_state(remote.status)
        message = None
        if state is JobState.FAILED:
            message = translate.job_failure(remote.errors) or f"Mistral batch job {job.remote_id} failed"
        return JobStatus(
            state=state,
            total=remote.total_requests,
            completed=remote.succeeded_requests,
            failed=remote.failed_requests,
            raw_status=str(remote.status),
            message=message,
        )

    @hookimpl
    def fetch(self, provider: str, job: JobRef, client: Connection[opts.Settings],
              timeout: float | None) -> Iterator[Result]:
        return self._results(client.sdk, job, _bounded(client.settings, timeout))

    def _results(self, client: Any, job: JobRef, bound: Mapping[str, Any] | None = None) -> Iterator[Result]:
        bound = dict(bound or {})
        remote = self._get(client, job, **bound)
        state = translate.job_state(remote.status)
        files = [(kind, f) for kind, f in (("output", remote.output_file), ("error", remote.error_file))
                 if isinstance(f, str) and f]
        if files:
            for kind, file_id in files:
                for line in self._download(client, file_id, kind, job, bound):
                    yield translate.parse_line(line, state)
        elif job.data.get("inline", False):
            # No result files: an inline job's outputs come with the job (bounded in size,
            # since only small chunks are sent inline).
            remote = self._get(client, job, inline=True, **bound)
            for line in remote.outputs or ():
                yield translate.parse_line(line, state)

    @staticmethod
    def _get(client: Any, job: JobRef, *, inline: bool = False, **bound: Any) -> Any:
        """The batch job; ResultsGone when Mistral certainly no longer has it (deleted)."""
        try:
            if inline:
                return client.batch.jobs.get(job_id=job.remote_id, inline=True, **bound)
            return client.batch.jobs.get(job_id=job.remote_id, **bound)
        except Exception as exc:
            if not _not_found(exc):
                raise
            MistralPlugin._confirm_gone(client, exc, f"Mistral batch job {job.remote_id} no longer exists (404: deleted)",
                                        bound)
            raise  # pragma: no cover - _confirm_gone always raises

    @staticmethod
    def _confirm_gone(client: Any, exc: BaseException, what: str, bound: Mapping[str, Any] | None = None) -> None:
        """Raise ResultsGone if the 404 is about the job (see overnight.not_found), else ``exc``."""
        raise confirm_gone(exc, lambda: client.batch.jobs.list(page=0, page_size=1, **(bound or {})), what) from None

    @staticmethod
    def _download(client: Any, file_id: str, kind: str = "result", job: JobRef | None = None,
                  bound: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        bound = dict(bound or {})
        # The job was just read from the same API: a 404 here is about the file itself
        # (deleted by someone, or expired: Mistral keeps batch results for a limited time).
        owner = f" of Mistral batch job {job.remote_id}" if job is not None else ""
        gone = f"the {kind} file {file_id}{owner} is gone (404: deleted, or expired)"
        try:
            # A body cut at a line boundary parses cleanly: only the size tells it is short,
            # and then the missing rows would look unfinished and be paid for again.
            expected = client.files.retrieve(file_id=file_id, **bound).size_bytes
            response = client.files.download(file_id=file_id, **bound)
        except Exception as exc:
            if _not_found(exc):
                raise ResultsGone(gone) from None
            raise
        try:
            source = f"the download of Mistral result file {file_id}"
            yield from jsonl.parse(response.iter_bytes(), expected_bytes=expected, source=source)
        finally:
            response.close()

    @hookimpl
    def cancel(self, provider: str, job: JobRef, client: Connection[opts.Settings]) -> None:
        sdk = client.sdk
        try:
            sdk.batch.jobs.cancel(job_id=job.remote_id)
        except Exception as exc:
            # Cancelling a job that already ended is refused; there is nothing to cancel.
            if not _rejected(exc):
                raise
            if _not_found(exc):
                self._confirm_gone(sdk, exc, f"Mistral batch job {job.remote_id} no longer exists (404)")
            if not translate.job_state(self._get(sdk, job).status).terminal:
                raise

    @hookimpl
    def find_job(self, provider: str, tag: str, client: Connection[opts.Settings],
                 timeout: float | None) -> JobRef | None:
        bound = _bounded(client.settings, timeout)
        sdk = client.sdk
        # Oldest first; the sort is stable, so the server's order breaks ties.
        found = sorted(self._tagged(sdk, tag, bound), key=lambda j: j.created_at)
        if not found:
            self._delete_orphan_input(sdk, tag)  # the core now resubmits under a new tag
            return None
        keep = keep_oldest(found, ident=lambda j: j.id, cancel=lambda job_id: sdk.batch.jobs.cancel(job_id=job_id),
                           tag=tag, what="Mistral job")
        files = [f for f in keep.input_files or () if f]
        return self._ref(keep, tag, input_file=files[0] if files else None)

    @hookimpl
    def generate(self, provider: str, request: dict[str, Any], client: Connection[opts.Settings],
                 timeout: float | None, model: str) -> Result:
        return online.generate(provider, request, client.sdk, timeout, model)

    @hookimpl
    def list_jobs(self, provider: str, client: Connection[opts.Settings], horizon: float, limit: int,
                  skip: frozenset[str], tags: frozenset[str] = frozenset()) -> list[RemoteJob]:
        """Recent jobs carrying an overnight tag, newest first, with the keys they hold.

        ``batch.jobs.list`` pages newest first (``order_by=-created``, 100 a page); the
        listing stops after ``limit`` jobs or at one created more than ``horizon``
        seconds before the newest. Keys are the ``custom_id`` of each line of the job's
        input files (downloaded for jobs not in ``skip``); an inline job keeps no input
        file, so its keys are read from its outputs once it has ended, and a running
        inline job is listed with ``custom_ids=None``. With ``tags``, only jobs carrying
        one of them are read.
        """
        sdk = client.sdk
        found: list[RemoteJob] = []
        newest: int | None = None
        page, size, seen = 0, 100, 0
        while seen < limit:
            listing = sdk.batch.jobs.list(page=page, page_size=size, order_by="-created")
            data = listing.data or []
            for job in data:
                seen += 1
                if seen > limit:
                    break
                newest = job.created_at if newest is None else newest
                if newest - job.created_at > horizon:
                    return found
                tag = (job.metadata or {}).get(translate.TAG_KEY)
                if not tag:
                    continue  # not submitted by overnight
                state = translate.job_state(job.status)
                files = [f for f in job.input_files or () if f]
                wanted = job.id not in skip and (not tags or tag in tags)
                ids = self._job_keys(sdk, job, files, state) if wanted else None
                found.append(RemoteJob(ref=self._ref(job, tag, input_file=files[0] if files else None),
                                       created_at=float(job.created_at), state=state, custom_ids=ids))
            if len(data) < size or (listing.total is not None and page * size + len(data) >= listing.total):
                break
            page += 1
        return found

    def _job_keys(self, client: Any, job: Any, files: list[str], state: JobState) -> frozenset[str] | None:
        keys: set[str] = set()
        if files:
            for file_id in files:
                try:
                    keys.update(str(line["custom_id"]) for line in self._download(client, file_id) if "custom_id" in line)
                except Exception as exc:
                    if _http_status(exc) != 404:
                        raise
                    return None  # the input file is gone: cannot tell
            return frozenset(keys)
        if not state.terminal:
            return None
        remote = client.batch.jobs.get(job_id=job.id, inline=True)
        return frozenset(str(line["custom_id"]) for line in remote.outputs or () if "custom_id" in line)

    @staticmethod
    def _delete_orphan_input(client: Any, tag: str) -> None:
        """Delete the input file a submit interrupted after its upload left under ``tag`` (best effort)."""
        name = input_name(tag)
        orphan_files.delete_orphan_input(lambda: client.files.list(search=tag, purpose="batch").data or (),
                                         lambda f: f.filename == name, lambda f: client.files.delete(file_id=f.id),
                                         tag=tag, label="Mistral")

    @staticmethod
    def _tagged(client: Any, tag: str, bound: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """Every job whose metadata holds ``tag``; the server filters, this double-checks."""
        page, size, seen = 0, 100, 0
        while True:
            listing = client.batch.jobs.list(
                page=page, page_size=size, metadata={translate.TAG_KEY: tag}, order_by="created", **(bound or {})
            )
            data = listing.data or []
            for job in data:
                if (job.metadata or {}).get(translate.TAG_KEY) == tag:
                    yield job
            seen += len(data)
            if not data or len(data) < size or (listing.total is not None and seen >= listing.total):
                return
            page += 1
