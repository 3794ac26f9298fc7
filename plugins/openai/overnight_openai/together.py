"""Together's Batch API through its official SDK (``together``): the ``together`` provider.

Together's batches look like OpenAI's (an uploaded JSONL file, ``/v1/batches``, output and
error files of OpenAI-style lines keyed by ``custom_id``) but differ on the wire, so
they get their own few functions here rather than switches in :mod:`.jobs`
(docs/protocols/together.md has the sources):

* lines are ``{"custom_id", "body"}``; a ``custom_id`` is at most 64 characters; the
  body takes ``max_tokens`` (not ``max_completion_tokens``);
* input files are uploaded with purpose ``batch-api`` (the SDK's three-step upload);
* the completion window is 24h and cannot be changed;
* a batch keeps **no metadata**: the tag travels as the input file's name
  (``<tag>.jsonl``), and find-by-tag matches it through the file list;
* ``create`` answers ``{"job": ...}``; statuses are upper case; a job reports a progress
  percentage, not request counts.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from overnight import ResultsGone, jsonl, orphan_files
from overnight.connection import Connection
from overnight.create_once import create_once
from overnight.deadlines import one_attempt_within
from overnight.errors import ConfigurationError, InvalidRequest
from overnight.not_found import confirm_gone
from overnight.orphan_files import delete_quietly, input_name
from overnight.faultpoints import fault_point
from overnight.models import ChatRequest, Chunk, JobRef, JobState, JobStatus, Result

from overnight_openai import client as clients, translate
from overnight_openai.vendors import TOGETHER

log = logging.getLogger("overnight_openai.together")

PURPOSE = "batch-api"
MAX_CUSTOM_ID = 64
_STATES = {
    "VALIDATING": JobState.RUNNING,
    "IN_PROGRESS": JobState.RUNNING,
    "COMPLETED": JobState.FINISHED,
    "FAILED": JobState.FAILED,
    "EXPIRED": JobState.EXPIRED,
    "CANCELLED": JobState.CANCELLED,
}
_TERMINAL = frozenset({"COMPLETED", "FAILED", "EXPIRED", "CANCELLED"})


def _sdk() -> Any:
    try:
        import together
    except ImportError:  # the SDK is an extra: pip install 'overnight-openai[together]'
        raise ConfigurationError(
            "the together provider needs Together's SDK: pip install 'overnight-openai[together]'"
        ) from None
    return together


def resolve(options: Mapping[str, Any]) -> clients.Settings:
    """OpenAI's client checks with Together's variables; ``metadata`` is refused (none is kept)."""
    if options.get("metadata") is not None:
        raise ConfigurationError(
            "Together batches keep no metadata, so the together provider takes no 'metadata' option"
        )
    return clients.resolve(options, TOGETHER)


def build(settings: clients.Settings) -> Any:
    """The together SDK's client for these settings."""
    kwargs: dict[str, Any] = {"api_key": settings.api_key, "base_url": settings.base_url,
                              "max_retries": settings.max_retries}
    if settings.timeout is not None:
        kwargs["timeout"] = settings.timeout
    if settings.default_headers:
        kwargs["default_headers"] = dict(settings.default_headers)
    if settings.http_client is not None:
        kwargs["http_client"] = settings.http_client
    return _sdk().Together(**kwargs)


def connect(options: Mapping[str, Any]) -> Connection[clients.Settings]:
    """What the ``connect`` hook returns for together: checked settings, the SDK said missing at once."""
    settings = resolve(options)
    _sdk()  # says now, not at the first call, when the together SDK is not installed
    return Connection(settings, build)


def client_for(options: Mapping[str, Any]) -> Any:
    """The together SDK's client for these options (a new one each call; hooks use ``connect``'s)."""
    return build(resolve(options))


def bounded(client: Any, timeout: float | None) -> Any:
    """One attempt bounded by ``timeout`` (see overnight.deadlines)."""
    return one_attempt_within(client, timeout)


# --- requests ---------------------------------------------------------------------------------


def build_line(request: ChatRequest) -> dict[str, Any]:
    """A Together input line: ``custom_id`` and the chat body (with ``max_tokens``)."""
    if len(request.custom_id) > MAX_CUSTOM_ID:
        raise InvalidRequest(f"Together custom ids are at most {MAX_CUSTOM_ID} characters", field="custom_id")
    body = dict(translate.build_line(request)["body"])
    if "max_completion_tokens" in body:
        body["max_tokens"] = body.pop("max_completion_tokens")
    return {"custom_id": request.custom_id, "body": body}


# --- jobs -------------------------------------------------------------------------------------


def job_ref(provider: str, job: Any, tag: str, count: int | None) -> JobRef:
    return JobRef(provider=provider, remote_id=job.id, tag=tag,
                  data={"input_file_id": job.input_file_id, "requests": count})


def submit(client: Any, provider: str, chunk: Chunk) -> JobRef:
    """Upload ``<tag>.jsonl`` (the name carries the tag) and create its batch."""
    with tempfile.TemporaryDirectory(prefix="overnight-together-") as folder:
        path = Path(folder) / input_name(chunk.tag)
        with path.open("wb") as out:
            for line in chunk.lines():
                out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode())
                out.write(b"\n")
        uploaded = _upload(client, path)
    fault_point("after_upload")
    job = _create(client, uploaded.id, chunk.tag)
    return job_ref(provider, job, chunk.tag, chunk.count)


def _upload(client: Any, path: Path) -> Any:
    """Upload ``path``, again on a transient failure.

    The SDK retries its own API calls but not the PUT of the bytes to the URL the API
    hands out (a plain HTTP call): a 429 or 5xx there would fail the submit. Uploading
    again is safe (a file is never billed; the new one gets a new URL), so retry here.
    """
    together = _sdk()
    attempts = client.max_retries + 1
    for attempt in range(attempts):
        try:
            return client.files.upload(file=path, purpose=PURPOSE, check=False)
        except together.APIError as exc:
            status = exc.status_code if isinstance(exc, together.APIStatusError) else None
            transient = status is None or status == 429 or status >= 500
            if not transient or attempt + 1 == attempts:
                raise
            time.sleep(min(8.0, 0.5 * 2**attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def _create(client: Any, file_id: str, tag: str) -> Any:
    """Create the batch at most once (:func:`overnight.create_once.create_once`, looked up by tag)."""
    together = _sdk()
    once = client.with_options(max_retries=0)
    return create_once(
        lambda: once.batches.create(input_file_id=file_id, endpoint=translate.ENDPOINT, completion_window="24h").job,
        status=lambda exc: exc.status_code if isinstance(exc, together.APIStatusError) else None,
        attempts=client.max_retries + 1, label="Together", find=lambda: find(client, tag),
        cleanup=lambda: _delete_quietly(client, file_id), errors=(together.APIError,),
    )


def _delete_quietly(client: Any, file_id: str) -> None:
    delete_quietly(lambda: client.files.delete(file_id), f"the uploaded input file {file_id}")


def _retrieve(client: Any, job: JobRef) -> Any:
    together = _sdk()
    try:
        return client.batches.retrieve(job.remote_id)
    except together.NotFoundError as exc:  # a wrong base URL answers 404 for everything: confirmed first
        raise confirm_gone(exc, client.batches.list, f"Together batch {job.remote_id} no longer exists (404)") from None


def job_status(job: Any, count: int | None) -> JobStatus:
    raw = str(job.status or "")
    state = _STATES.get(raw, JobState.RUNNING)
    if raw not in _STATES:
        log.warning("Together batch %s reports an unknown status %r; treating it as running", job.id, raw)
    total = int(count or 0)
    done = round(float(job.progress or 0) * total / 100) if total else 0
    message = None
    if state is JobState.FAILED:
        message = f"Together rejected batch {job.id}: {job.error or 'no reason given'}"
    return JobStatus(state=state, total=total, completed=min(done, total), failed=0, raw_status=raw,
                     message=message)


def check(client: Any, job: JobRef) -> JobStatus:
    return job_status(_retrieve(client, job), job.data.get("requests"))


def fetch(client: Any, job: JobRef) -> Iterator[Result]:
    """Every line of the output file, then of the error file (either may be absent)."""
    found = _retrieve(client, job)
    for kind, file_id in (("output", found.output_file_id), ("error", found.error_file_id)):
        if file_id:
            yield from _stream(client, file_id, kind, job)


def _stream(client: Any, file_id: str, kind: str, job: JobRef) -> Iterator[Result]:
    together = _sdk()
    gone = ResultsGone(f"the {kind} file {file_id} of Together batch {job.remote_id} is gone (404)")
    try:
        expected = client.files.retrieve(file_id).bytes
        with client.files.with_streaming_response.content(file_id) as response:
            for line in jsonl.parse(response.iter_bytes(), expected_bytes=expected,
                                    source=f"the download of Together file {file_id}"):
                yield translate.result_from_line(line)
    except together.NotFoundError:
        raise gone from None


def cancel(client: Any, job: JobRef) -> None:
    together = _sdk()
    try:
        client.batches.cancel(job.remote_id)
    except together.NotFoundError:
        _retrieve(client, job)  # ResultsGone, or the original 404 when nothing answers
        raise
    except (together.BadRequestError, together.ConflictError):
        if str(_retrieve(client, job).status) in _TERMINAL:
            return  # already over: nothing left to cancel
        raise


def find(client: Any, tag: str) -> Any | None:
    """The newest batch whose input file is named ``<tag>.jsonl`` (Together keeps no metadata)."""
    name = input_name(tag)
    files = {f.id for f in client.files.list().data if f.filename == name and f.purpose == PURPOSE}
    if not files:
        return None
    jobs = [j for j in client.batches.list() if j.input_file_id in files]
    jobs.sort(key=lambda j: str(j.created_at or ""), reverse=True)
    return jobs[0] if jobs else None


def delete_orphan_input(client: Any, tag: str) -> None:
    """Delete the input file an interrupted submit left under ``tag`` (no batch uses it)."""
    name = input_name(tag)
    orphan_files.delete_orphan_input(lambda: client.files.list().data,
                                     lambda f: f.filename == name and f.purpose == PURPOSE,
                                     lambda f: client.files.delete(f.id), tag=tag, label="Together")
