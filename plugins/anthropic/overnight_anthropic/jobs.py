"""Message Batches calls through the official SDK: create, retrieve, results, cancel, list.

Results are streamed line by line from the batch's ``results_url`` (the SDK follows it)
and parsed with :func:`overnight.jsonl.parse`, so a large result set never sits in
memory. The wire custom ids carry the job's tag (see :mod:`overnight_anthropic.wire_ids`).
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

import anthropic

from overnight import Chunk, JobRef, JobState, JobStatus, ProviderError, RemoteJob, Result, ResultsGone
from overnight.create_once import create_once
from overnight.deadlines import one_attempt_within
from overnight.jsonl import parse
from overnight.not_found import confirm_gone

from overnight_anthropic import translate, wire_ids

log = logging.getLogger(__name__)

#: ``JobRef.data`` of a batch whose custom ids are tagged wire ids.
REF_DATA = {"ids": "tagged-v1"}
#: Batches listed per page while looking for a tag (the API allows up to 1000).
LIST_PAGE = 100


def submit(provider: str, chunk: Chunk, sdk: anthropic.Anthropic) -> JobRef:
    requests = [_tagged(line, chunk.tag) for line in chunk.lines()]  # the SDK needs a list
    # The SDK would retry a timed-out or 5xx create blindly, and a batch created by the
    # first attempt would be paid twice. Only a 429 (certainly not created) is retried
    # here; any other failure is left to the core, which finds the batch by its tag (a
    # batch's ids are readable only once it has ended, so there is no lookup right away).
    # A full processing queue empties only as batches end: it goes to the core at once.
    once = sdk.with_options(max_retries=0)
    batch = create_once(
        lambda: once.messages.batches.create(requests=requests),  # type: ignore[arg-type]  # the TypedDict's shape
        status=lambda exc: exc.status_code if isinstance(exc, anthropic.APIStatusError) else None,
        attempts=sdk.max_retries + 1, label="Anthropic", errors=(anthropic.APIError,),
        queue_full=lambda exc: "queue" in str(exc).lower(),
    )
    return JobRef(provider=provider, remote_id=batch.id, tag=chunk.tag, data=dict(REF_DATA))


def _tagged(line: dict[str, Any], tag: str) -> dict[str, Any]:
    return {**line, "custom_id": wire_ids.encode(tag, line["custom_id"])}


def check(job: JobRef, sdk: anthropic.Anthropic, timeout: float | None = None) -> JobStatus:
    batch = _retrieve(one_attempt_within(sdk, timeout), job)
    return translate.job_status(batch.to_dict())


def _retrieve(sdk: anthropic.Anthropic, job: JobRef) -> Any:
    """The batch; ResultsGone when Anthropic certainly no longer has it (deleted)."""
    try:
        return sdk.messages.batches.retrieve(job.remote_id)
    except anthropic.NotFoundError as exc:
        raise _gone(sdk, exc, f"Anthropic batch {job.remote_id} no longer exists (404: deleted)") from None


def _gone(sdk: anthropic.Anthropic, exc: anthropic.NotFoundError, what: str) -> BaseException:
    """ResultsGone if the 404 is about the batch (see overnight.not_found), else ``exc``."""
    return confirm_gone(exc, lambda: sdk.messages.batches.list(limit=1), what)


def fetch(job: JobRef, sdk: anthropic.Anthropic, timeout: float | None = None) -> Iterator[Result]:
    """Stream a batch's results; a generator, so nothing happens until it is iterated.

    The results endpoint gives no size, so a body cut between two lines would parse as
    complete and its missing rows would be resubmitted (paid twice). Every request of an
    ended batch has a result line, so a stream with fewer lines than the batch's request
    counts is read once more; only what a second read also lacks is left unfinished.
    """
    sdk = one_attempt_within(sdk, timeout)
    batch = _retrieve(sdk, job)
    if getattr(batch, "archived_at", None):
        # Results are kept 29 days after creation; past that the batch says when they went.
        raise ResultsGone(f"the results of Anthropic batch {job.remote_id} were archived at "
                          f"{batch.archived_at} and can no longer be downloaded")
    counts = batch.request_counts
    expected = sum(int(getattr(counts, k, 0) or 0) for k in ("processing", "succeeded", "errored", "canceled", "expired"))
    seen: set[str] = set()
    for _read in range(2):
        for result in _results(sdk, job):
            if result.custom_id not in seen:
                seen.add(result.custom_id)
                yield result
        if len(seen) >= expected:
            return
        log.warning("batch %s: %d of %d results read; reading them again", job.remote_id, len(seen), expected)


def _results(sdk: anthropic.Anthropic, job: JobRef) -> Iterator[Result]:
    tagged = job.data.get("ids") == REF_DATA["ids"]
    try:
        stream = sdk.messages.batches.with_streaming_response.results(job.remote_id)
        with stream as response:  # closes the connection even if the consumer stops early
            for line in parse(response.iter_bytes()):
                wire_id = str(line.get("custom_id"))
                key = wire_ids.decode(wire_id) if tagged else wire_id
                # An id we did not send is passed on as is: the core ignores unknown ids.
                yield translate.result_from_line(line, key or wire_id)
    except anthropic.NotFoundError:
        # The batch was just retrieved from the same API: the 404 is about its results.
        raise ResultsGone(f"the results of Anthropic batch {job.remote_id} are gone (404)") from None


def cancel(job: JobRef, sdk: anthropic.Anthropic) -> None:
    try:
        sdk.messages.batches.cancel(job.remote_id)
    except anthropic.NotFoundError as exc:
        raise _gone(sdk, exc, f"Anthropic batch {job.remote_id} no longer exists (404: deleted)") from None
    except anthropic.APIStatusError as exc:
        # Cancelling a batch that already ended is refused; there is nothing left to stop.
        if exc.status_code in (400, 409) and _retrieve(sdk, job).processing_status == "ended":
            return
        raise


def find_job(provider: str, tag: str, sdk: anthropic.Anthropic, timeout: float | None = None) -> JobRef | None:
    """The batch created with ``tag``, found by the tag digest inside its custom ids.

    A batch's custom ids can only be read from its results, which exist once it has
    ended. So: an ended batch whose results carry the tag is the one; if none does and
    every listed batch has ended, the tag was never submitted (``None``); if some batch
    is still running, it may be ours and nobody can tell yet, so this raises and the
    core asks again on the next run (never paying twice). Archived batches (results
    gone, 29 days after creation) are skipped: their results could not be fetched anyway.
    """
    sdk = one_attempt_within(sdk, timeout)
    running: list[str] = []
    for batch in sdk.messages.batches.list(limit=LIST_PAGE):
        if batch.processing_status != "ended":
            running.append(batch.id)
        elif batch.results_url and not batch.archived_at:
            first = _first_id(sdk, batch.id)
            if first is not None and wire_ids.carries(first, tag):
                return JobRef(provider=provider, remote_id=batch.id, tag=tag, data=dict(REF_DATA))
    if running:
        raise ProviderError(
            f"cannot tell yet whether an interrupted run created the Anthropic batch tagged {tag}: "
            f"{len(running)} batch(es) in this workspace are still processing "
            f"({', '.join(running[:5])}{', ...' if len(running) > 5 else ''}), and a batch's request ids "
            "are readable only once it has ended. Nothing was submitted again. Run again after they "
            "end (at most 24 hours after their creation)."
        )
    return None


def _first_id(sdk: anthropic.Anthropic, batch_id: str) -> str | None:
    """The custom id of the first results line of an ended batch (reads one line only)."""
    with sdk.messages.batches.with_streaming_response.results(batch_id) as response:
        for line in parse(response.iter_bytes()):
            return str(line.get("custom_id"))
    return None


def list_overnight(provider: str, sdk: anthropic.Anthropic, *, horizon: float, limit: int,
                   skip: frozenset[str], tags: frozenset[str] = frozenset()) -> list[RemoteJob]:
    """Recent batches holding overnight requests, newest first, with the keys they hold.

    Message Batches keep no metadata and show their requests' custom ids only in the
    results, which exist once a batch has ended. So: an ended batch (not archived, not in
    ``skip``) is read whole and listed when its wire ids are overnight's (tag digest +
    key; see :mod:`wire_ids`), with the decoded keys; a batch still processing is listed
    with ``custom_ids=None`` (nobody can tell what it holds until it ends). Only the
    tag's digest travels, so ``ref.tag`` is the one of ``tags`` whose digest the batch's
    wire ids carry (read for ended batches, skipped ones included), else empty. Listed
    newest first, at most ``limit`` batches, stopping at one created more than
    ``horizon`` seconds before the newest.
    """
    digests = {wire_ids.tag_digest(t): t for t in tags}
    found: list[RemoteJob] = []
    newest: float | None = None
    for seen, batch in enumerate(sdk.messages.batches.list(limit=LIST_PAGE)):
        if seen >= limit:
            break
        created = batch.created_at.timestamp()
        if newest is None:
            newest = created
        if newest - created > horizon:
            break
        state = translate.job_status(batch.to_dict()).state
        ref = JobRef(provider=provider, remote_id=batch.id, tag="", data=dict(REF_DATA))
        if batch.processing_status != "ended":
            found.append(RemoteJob(ref=ref, created_at=created, state=JobState.RUNNING, custom_ids=None))
            continue
        if digests and batch.results_url and not batch.archived_at:
            first = _first_id(sdk, batch.id)
            tag = digests.get((first or "")[: wire_ids.TAG_CHARS], "")
            ref = JobRef(provider=provider, remote_id=batch.id, tag=tag, data=dict(REF_DATA))
        if batch.id in skip or not batch.results_url or batch.archived_at or (tags and not ref.tag):
            found.append(RemoteJob(ref=ref, created_at=created, state=state, custom_ids=None))
        else:
            keys = _result_keys(sdk, batch.id)
            if keys:  # else not an overnight batch
                found.append(RemoteJob(ref=ref, created_at=created, state=state, custom_ids=keys))
    return found


def _result_keys(sdk: anthropic.Anthropic, batch_id: str) -> frozenset[str]:
    """The core keys of an ended batch, decoded from its results' wire ids."""
    keys = set()
    with sdk.messages.batches.with_streaming_response.results(batch_id) as response:
        for line in parse(response.iter_bytes()):
            key = wire_ids.decode(str(line.get("custom_id")))
            if key is not None:
                keys.add(key)
    return frozenset(keys)
