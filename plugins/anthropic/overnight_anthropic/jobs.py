"""Message Batches calls through the official SDK: create, retrieve, results, cancel, list.

Results are streamed line by line from the batch's ``results_url`` (the SDK follows it)
and parsed with :func:`overnight.jsonl.parse`, so a large result set never sits in
memory. The wire custom ids carry the job's tag (see :mod:`overnight_anthropic.wire_ids`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterator, Mapping

import anthropic

from overnight import Chunk, JobRef, JobStatus, ProviderError, QuotaExceeded, Result, SubmissionRejected
from overnight.jsonl import parse

from overnight_anthropic import translate, wire_ids
from overnight_anthropic.client import client

log = logging.getLogger(__name__)

#: ``JobRef.data`` of a batch whose custom ids are tagged wire ids.
REF_DATA = {"ids": "tagged-v1"}
#: Batches listed per page while looking for a tag (the API allows up to 1000).
LIST_PAGE = 100


#: Statuses that certainly created no batch and are about the request itself (not the
#: key, the account or the network): the core counts them as failed attempts.
REFUSED = frozenset({400, 413, 422})


def submit(provider: str, chunk: Chunk, options: Mapping[str, Any]) -> JobRef:
    requests = [_tagged(line, chunk.tag) for line in chunk.lines()]  # the SDK needs a list
    sdk = client(options)
    # The SDK would retry a timed-out or 5xx create blindly, and a batch created by the
    # first attempt would be paid twice. Only a 429 (certainly not created) is retried
    # here; any other failure is left to the core, which finds the batch by its tag.
    once = sdk.with_options(max_retries=0)
    for attempt in range(sdk.max_retries + 1):
        try:
            batch = once.messages.batches.create(requests=requests)
            break
        except anthropic.RateLimitError as exc:
            # A 429 certainly created nothing. A full processing queue empties only as batches
            # end, so it is handed to the core at once (it waits, and submits less); a passing
            # rate limit is retried here first.
            if attempt == sdk.max_retries or "queue" in str(exc).lower():
                raise QuotaExceeded(f"Anthropic refused to create the batch: {exc}") from exc
            time.sleep(_retry_after(exc, attempt))
        except anthropic.APIStatusError as exc:
            if exc.status_code in REFUSED:  # certainly not created, and about the requests
                raise SubmissionRejected(f"Anthropic refused to create the batch: {exc}") from exc
            raise
    return JobRef(provider=provider, remote_id=batch.id, tag=chunk.tag, data=dict(REF_DATA))


def _retry_after(exc: anthropic.APIStatusError, attempt: int) -> float:
    """The server's retry-after (bounded), else exponential backoff."""
    try:
        return min(float(exc.response.headers.get("retry-after", "")), 60.0)
    except ValueError:
        return min(0.5 * 2**attempt, 8.0)


def _tagged(line: dict[str, Any], tag: str) -> dict[str, Any]:
    return {**line, "custom_id": wire_ids.encode(tag, line["custom_id"])}


def check(job: JobRef, options: Mapping[str, Any]) -> JobStatus:
    batch = client(options).messages.batches.retrieve(job.remote_id)
    return translate.job_status(batch.to_dict())


def fetch(job: JobRef, options: Mapping[str, Any]) -> Iterator[Result]:
    """Stream a batch's results; a generator, so nothing happens until it is iterated.

    The results endpoint gives no size, so a body cut between two lines would parse as
    complete and its missing rows would be resubmitted (paid twice). Every request of an
    ended batch has a result line, so a stream with fewer lines than the batch's request
    counts is read once more; only what a second read also lacks is left unfinished.
    """
    sdk = client(options)
    counts = sdk.messages.batches.retrieve(job.remote_id).request_counts
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
    stream = sdk.messages.batches.with_streaming_response.results(job.remote_id)
    with stream as response:  # closes the connection even if the consumer stops early
        for line in parse(response.iter_bytes()):
            wire_id = str(line.get("custom_id"))
            key = wire_ids.decode(wire_id) if tagged else wire_id
            # An id we did not send is passed on as is: the core ignores unknown ids.
            yield translate.result_from_line(line, key or wire_id)


def cancel(job: JobRef, options: Mapping[str, Any]) -> None:
    sdk = client(options)
    try:
        sdk.messages.batches.cancel(job.remote_id)
    except anthropic.APIStatusError as exc:
        # Cancelling a batch that already ended is refused; there is nothing left to stop.
        if exc.status_code in (400, 409) and sdk.messages.batches.retrieve(job.remote_id).processing_status == "ended":
            return
        raise


def find_job(provider: str, tag: str, options: Mapping[str, Any]) -> JobRef | None:
    """The batch created with ``tag``, found by the tag digest inside its custom ids.

    A batch's custom ids can only be read from its results, which exist once it has
    ended. So: an ended batch whose results carry the tag is the one; if none does and
    every listed batch has ended, the tag was never submitted (``None``); if some batch
    is still running, it may be ours and nobody can tell yet, so this raises and the
    core asks again on the next run (never paying twice). Archived batches (results
    gone, 29 days after creation) are skipped: their results could not be fetched anyway.
    """
    sdk = client(options)
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
