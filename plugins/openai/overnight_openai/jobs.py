"""OpenAI batch jobs through the official SDK: submit, check, fetch, cancel, find by tag.

Each job is one uploaded ``<tag>.jsonl`` input file plus one batch whose metadata
carries the core's idempotency tag, so a run that crashed between creating the batch
and recording its id finds it again by listing batches.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, Mapping

import openai

from overnight import ResultsGone, jsonl, orphan_files
from overnight.create_once import create_once
from overnight.not_found import confirm_gone
from overnight.orphan_files import delete_quietly, input_name
from overnight.faultpoints import fault_point
from overnight.models import Chunk, JobRef, JobStatus, RemoteJob, Result

from overnight_openai.translate import ENDPOINT, RUNNING_STATUSES, job_status, result_from_line

log = logging.getLogger("overnight_openai")

TAG_KEY = "overnight_tag"
#: Batch outputs expire 30 days after creation by default, so a batch more than this
#: much older than the newest one listed could not deliver results anyway: stop there.
FIND_HORIZON = 30 * 24 * 3600
_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


def job_ref(provider: str, batch: Any, tag: str) -> JobRef:
    return JobRef(
        provider=provider,
        remote_id=batch.id,
        tag=tag,
        data={"input_file_id": batch.input_file_id, "model": (batch.metadata or {}).get("overnight_model")},
    )


def submit(client: openai.OpenAI, provider: str, chunk: Chunk, labels: Mapping[str, str],
           window: str = "24h") -> JobRef:
    """Upload the chunk as a ``.jsonl`` file and create its batch, tagged with ``chunk.tag``."""
    with jsonl.spool_jsonl(chunk.jsonl()) as spooled:  # the stored bytes, streamed, never all in memory
        uploaded = client.files.create(
            file=(input_name(chunk.tag), spooled, "application/jsonl"), purpose="batch"
        )
    fault_point("after_upload")
    metadata = {
        **labels,
        TAG_KEY: chunk.tag,
        "overnight_model": chunk.model[:512],
        "overnight_requests": str(chunk.count),
    }
    batch = _create(client, uploaded.id, metadata, chunk.tag, window)
    return job_ref(provider, batch, chunk.tag)


def _create(client: openai.OpenAI, file_id: str, metadata: dict[str, str], tag: str, window: str = "24h") -> Any:
    """Create the batch without ever creating it twice (:func:`overnight.create_once.create_once`).

    The SDK would retry a timed-out create blindly and OpenAI takes no idempotency key,
    so a lost response could become two paid batches: one HTTP attempt at a time, a 429
    tried again, an ambiguous failure looked up by tag once and otherwise left to the
    core (which keeps the input file and asks again after its settle window).
    """
    once = client.with_options(max_retries=0)
    return create_once(
        # The SDK types only OpenAI's "24h"; vendors on this path accept others (Groq: up to 7d).
        lambda: once.batches.create(input_file_id=file_id, endpoint=ENDPOINT, completion_window=window,  # type: ignore[arg-type]
                                    metadata=metadata),
        status=_status, attempts=client.max_retries + 1, label="OpenAI", find=lambda: find(client, tag),
        cleanup=lambda: _delete_quietly(client, file_id), errors=(openai.APIError,),
    )


def _status(exc: BaseException) -> int | None:
    return exc.status_code if isinstance(exc, openai.APIStatusError) else None


def _delete_quietly(client: openai.OpenAI, file_id: str) -> None:
    delete_quietly(lambda: client.files.delete(file_id), f"the uploaded input file {file_id}")


def check(client: openai.OpenAI, job: JobRef) -> JobStatus:
    status = job_status(_retrieve(client, job))
    if status.raw_status not in _TERMINAL | RUNNING_STATUSES:
        log.warning("batch %s reports an unknown status %r; treating it as running", job.remote_id, status.raw_status)
    return status


def fetch(client: openai.OpenAI, job: JobRef) -> Iterator[Result]:
    """Stream every result line of the batch's output file, then of its error file.

    Either file may be absent (no success / no failure). Lines the files lack are
    left out: the core treats them as unfinished.
    """
    batch = _retrieve(client, job)
    for kind, file_id in (("output", batch.output_file_id), ("error", batch.error_file_id)):
        if file_id:
            yield from _stream(client, file_id, kind, job)


def _stream(client: openai.OpenAI, file_id: str, kind: str, job: JobRef) -> Iterator[Result]:
    # The batch was just retrieved from the same API, so a 404 here is about the file
    # itself: deleted by someone, or expired (batch output files expire, 30 days by default).
    gone = ResultsGone(
        f"the {kind} file {file_id} of OpenAI batch {job.remote_id} is gone (404: deleted, or expired)"
    )
    try:
        # The size lets a download cut between two lines be told from a complete one.
        expected = client.files.retrieve(file_id).bytes
    except openai.NotFoundError:
        raise gone from None
    try:
        with client.files.with_streaming_response.content(file_id) as response:
            source = f"the download of OpenAI file {file_id}"
            for line in jsonl.parse(response.iter_bytes(), expected_bytes=expected, source=source):
                yield result_from_line(line)
    except openai.NotFoundError:
        raise gone from None


def _retrieve(client: openai.OpenAI, job: JobRef) -> Any:
    """The batch; ResultsGone when OpenAI certainly no longer has it."""
    try:
        return client.batches.retrieve(job.remote_id)
    except openai.NotFoundError as exc:
        raise _gone(client, exc, f"OpenAI batch {job.remote_id} no longer exists (404)") from None


def _gone(client: openai.OpenAI, exc: openai.NotFoundError, what: str) -> BaseException:
    """ResultsGone if the 404 is about the object (see overnight.not_found), else ``exc``."""
    return confirm_gone(exc, lambda: client.batches.list(limit=1), what)


def cancel(client: openai.OpenAI, job: JobRef) -> None:
    try:
        client.batches.cancel(job.remote_id)
    except openai.NotFoundError as exc:
        raise _gone(client, exc, f"OpenAI batch {job.remote_id} no longer exists (404)") from None
    except (openai.BadRequestError, openai.ConflictError):
        # Already over (or already cancelling): nothing left to cancel.
        if _retrieve(client, job).status in _TERMINAL | {"cancelling"}:
            return
        raise


def delete_orphan_input(client: openai.OpenAI, tag: str) -> None:
    """Delete the input file a submit interrupted after its upload left under ``tag``.

    Only called once no batch carries the tag, so no batch can need the file (best effort).
    """
    name = input_name(tag)
    orphan_files.delete_orphan_input(lambda: client.files.list(purpose="batch", order="desc", limit=100),
                                     lambda f: f.filename == name, lambda f: client.files.delete(f.id),
                                     tag=tag, label="OpenAI")


def find(client: openai.OpenAI, tag: str) -> Any | None:
    """The newest batch tagged ``tag``, or None when none exists within the horizon.

    Batches are listed newest first; the search stops at batches more than
    :data:`FIND_HORIZON` older than the newest one (measured on the server's clock).
    """
    newest: int | None = None
    for batch in client.batches.list(limit=100):
        created = int(batch.created_at or 0)
        if newest is None:
            newest = created
        if (batch.metadata or {}).get(TAG_KEY) == tag:
            return batch
        if created and newest - created > FIND_HORIZON:
            break
    return None


def list_overnight(client: openai.OpenAI, provider: str, *, horizon: float, limit: int,
                   skip: frozenset[str], tags: frozenset[str] = frozenset()) -> list[RemoteJob]:
    """Recent batches carrying an overnight tag, newest first, with the keys they hold.

    Batches are listed newest first (``GET /batches``, 100 a page); the listing stops
    after ``limit`` batches or at one created more than ``horizon`` seconds before the
    newest (the server's clock). The keys are the ``custom_id`` of each line of the
    batch's input file, downloaded for batches not in ``skip`` (and, when ``tags`` is
    given, carrying one of them) only. A batch whose input file is gone (deleted,
    expired) is listed with ``custom_ids=None``.
    """
    found: list[RemoteJob] = []
    newest: int | None = None
    for seen, batch in enumerate(client.batches.list(limit=100)):
        if seen >= limit:
            break
        created = int(batch.created_at or 0)
        if newest is None:
            newest = created
        if created and newest - created > horizon:
            break
        tag = (batch.metadata or {}).get(TAG_KEY)
        if not tag:
            continue  # not submitted by overnight
        wanted = batch.id not in skip and (not tags or tag in tags)
        ids = _input_ids(client, batch.input_file_id) if wanted else None
        found.append(RemoteJob(ref=job_ref(provider, batch, tag), created_at=float(created),
                               state=job_status(batch).state, custom_ids=ids))
    return found


def _input_ids(client: openai.OpenAI, file_id: str | None) -> frozenset[str] | None:
    if not file_id:
        return None
    try:
        expected = client.files.retrieve(file_id).bytes
        with client.files.with_streaming_response.content(file_id) as response:
            lines = jsonl.parse(response.iter_bytes(), expected_bytes=expected,
                                source=f"the download of OpenAI input file {file_id}")
            return frozenset(str(line["custom_id"]) for line in lines if "custom_id" in line)
    except openai.NotFoundError:
        return None
