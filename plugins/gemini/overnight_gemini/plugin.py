"""The Gemini provider plugin: overnight's hooks on top of the official ``google-genai`` SDK.

Jobs are created with ``client.batches.create(model=..., src=...)`` against the Gemini
Developer API: small chunks inline (``src=[InlinedRequest...]``, the key in each
request's metadata), others as a JSONL file uploaded with the Files API. The chunk's
tag is the job's display name (and the input file's), which ``batches.list`` shows, so
a run that crashed between create and commit finds its job again.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any, Iterator, Mapping

from overnight import jsonl
from overnight.errors import ProviderError, SubmissionRejected
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
    ProviderInfo,
    Result,
)

from overnight_gemini import options as opts
from overnight_gemini import translate

log = logging.getLogger("overnight_gemini")

NAME = "gemini"
MB = 1024 * 1024

#: Gemini's published figures: input files up to 2 GB (Files API), an inline create under
#: 20 MB, jobs expire 48 h after creation. No request count per batch is published: the
#: 100k cap is ours, so one lost job never holds more than that.
LIMITS = Limits(max_requests=100_000, max_bytes=2048 * MB, max_line_bytes=20 * MB, completion_window=48 * 3600)

#: The create is retried only on 429 (certainly nothing created), a few times, here.
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
                capabilities=Capabilities(cancel=True, find_by_tag=True),
                extra_params=translate.EXTRA_PARAMS,
                unsupported_params=translate.UNSUPPORTED_PARAMS,
                secret_env=opts.KEY_ENVS,
                description="Gemini Developer API batch mode (google-genai SDK)",
            )
        ]

    @hookimpl
    def validate_options(self, provider: str, options: Mapping[str, Any]) -> None:
        opts.resolve(options)

    @hookimpl
    def build_request(self, provider: str, request: ChatRequest) -> dict[str, Any]:
        return translate.build_line(request)

    # -- jobs ------------------------------------------------------------------------------

    @hookimpl
    def submit(self, provider: str, chunk: Chunk, options: Mapping[str, Any]) -> JobRef:
        settings = opts.resolve(options)
        client = opts.client(settings)
        if chunk.count <= settings.inline_threshold and chunk.bytes <= opts.INLINE_MAX_BYTES:
            src = [translate.inline_request(line) for line in chunk.lines()]
            job = self._create(client, chunk, src)
            return self._ref(job, chunk, input_file=None)
        with jsonl.spool(chunk.lines()) as spooled:
            uploaded = client.files.upload(
                file=spooled, config={"mime_type": "application/jsonl", "display_name": chunk.tag}
            )
        fault_point("after_upload")
        try:
            job = self._create(client, chunk, uploaded.name)
        except Exception as exc:
            # Only a 4xx certainly created nothing; after a 5xx or a lost connection the
            # job may exist and need its input, so the file is left for it.
            if isinstance(exc, SubmissionRejected) or _rejected(exc):
                self._delete_file(client, uploaded.name)
            raise
        return self._ref(job, chunk, input_file=uploaded.name)

    @staticmethod
    def _create(client: Any, chunk: Chunk, src: Any) -> Any:
        """Create the job without ever creating it twice.

        The SDK's retries are off for this call (a timed-out create may have created the
        job, and the API takes no idempotency key); only a 429 is tried again here. Any
        other failure propagates: the core then finds the job by its tag.
        """
        config = {"display_name": chunk.tag, "http_options": opts.once()}
        for attempt in range(CREATE_ATTEMPTS_ON_429):
            try:
                return client.batches.create(model=chunk.model, src=src, config=config)
            except Exception as exc:
                code = _code(exc)
                if code == 429 and attempt + 1 < CREATE_ATTEMPTS_ON_429:
                    time.sleep(0.5 * 2**attempt)
                    continue
                if code in REFUSED:
                    raise SubmissionRejected(f"Gemini refused to create the batch: {exc}") from exc
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _ref(self, job: Any, chunk: Chunk, *, input_file: str | None) -> JobRef:
        data: dict[str, Any] = {"inline": input_file is None, "count": chunk.count}
        if input_file:
            data["input_file"] = input_file
        return JobRef(provider=self.name, remote_id=job.name, tag=chunk.tag, data=data)

    @staticmethod
    def _delete_file(client: Any, name: str) -> None:
        try:
            client.files.delete(name=name)
        except Exception as exc:  # cleanup is best effort; the create error matters more
            log.warning("could not delete the unused Gemini input file %s: %s", name, type(exc).__name__)

    @hookimpl
    def check(self, provider: str, job: JobRef, options: Mapping[str, Any]) -> JobStatus:
        remote = opts.client(opts.resolve(options)).batches.get(name=job.remote_id)
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

    @hookimpl
    def fetch(self, provider: str, job: JobRef, options: Mapping[str, Any]) -> Iterator[Result]:
        settings = opts.resolve(options)
        return self._results(opts.client(settings), job, settings.max_retries)

    def _results(self, client: Any, job: JobRef, retries: int) -> Iterator[Result]:
        remote = client.batches.get(name=job.remote_id)
        dest = remote.dest
        if dest is None:
            return
        if dest.inlined_responses:
            for item in dest.inlined_responses:
                result = translate.parse_inlined(item)
                if result is not None:
                    yield result
        if dest.file_name:
            for line in self._download(client, dest.file_name, retries):
                result = translate.parse_file_line(line)
                if result is not None:
                    yield result

    @staticmethod
    def _download(client: Any, name: str, retries: int) -> Iterator[dict[str, Any]]:
        # A body cut at a line boundary parses cleanly: only the size tells it is short,
        # and then the missing rows would look unfinished and be paid for again.
        expected = client.files.get(name=name).size_bytes
        fd, path = tempfile.mkstemp(prefix="overnight-gemini-", suffix=".jsonl")
        os.close(fd)
        try:
            for attempt in range(retries + 1):
                try:
                    client.files.download(file=name, destination=path)
                    break
                except Exception as exc:
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
    def cancel(self, provider: str, job: JobRef, options: Mapping[str, Any]) -> None:
        client = opts.client(opts.resolve(options))
        try:
            client.batches.cancel(name=job.remote_id)
        except Exception as exc:
            # Cancelling a job that already ended is refused; there is nothing to cancel.
            if not _rejected(exc):
                raise
            if not translate.job_state(client.batches.get(name=job.remote_id).state).terminal:
                raise

    @hookimpl
    def find_job(self, provider: str, tag: str, options: Mapping[str, Any]) -> JobRef | None:
        client = opts.client(opts.resolve(options))
        # Oldest first. The listing is newest first, so reversed it breaks ties between
        # jobs created in the same instant the right way (the sort is stable).
        tagged = [j for j in client.batches.list(config={"page_size": 100}) if j.display_name == tag]
        found = sorted(reversed(tagged), key=lambda j: (j.create_time is None, j.create_time))
        if not found:
            self._delete_orphan_input(client, tag)  # the core now resubmits under a new tag
            return None
        keep, *extra = found
        for duplicate in extra:
            # Only a retried create can make two jobs of one tag; the spare would be paid twice.
            log.warning("cancelling duplicate Gemini batch %s of tag %s", duplicate.name, tag)
            try:
                client.batches.cancel(name=duplicate.name)
            except Exception as exc:
                raise ProviderError(
                    f"two Gemini batches carry tag {tag} ({keep.name}, {duplicate.name}) and the duplicate "
                    f"could not be cancelled ({type(exc).__name__}); cancel {duplicate.name}, then run again."
                ) from None
        return JobRef(provider=self.name, remote_id=keep.name, tag=tag, data={"found": True})

    @staticmethod
    def _delete_orphan_input(client: Any, tag: str) -> None:
        """Delete the input file a submit interrupted after its upload left under ``tag``.

        Only called once no job carries the tag, so no job can need it. Best effort.
        """
        try:
            for uploaded in client.files.list(config={"page_size": 100}):
                if uploaded.display_name == tag:
                    client.files.delete(name=uploaded.name)
        except Exception as exc:
            log.warning("could not delete the input file of the interrupted submit %s: %s", tag, type(exc).__name__)
