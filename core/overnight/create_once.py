"""Creating a provider job without ever creating it twice (plugin kit).

No provider honours an idempotency key for batch creates, so a create whose answer was
lost may have made a paid job. :func:`create_once` is the one loop every plugin's
``submit`` runs its create call through (see the ``submit`` hookspec):

- one HTTP attempt at a time (turn the SDK's own retries off for the call);
- after an *ambiguous* failure (no answer, a timeout, 408, 409, a 5xx) the job may exist:
  it is looked up by its tag once (``find``); found, it is used; not found proves nothing
  (the create may land seconds later), so the error goes to the core, which asks again
  after its settle window before it submits under the same tag;
- a 429 certainly created nothing: tried again after the server's Retry-After
  (:func:`retry_after`), unless it says the queue is full (that empties only as jobs
  end); the last one is :class:`~overnight.QuotaExceeded` (no attempt counted);
- a definitive refusal of the request itself (:data:`REFUSED`) is
  :class:`~overnight.SubmissionRejected` (an attempt counted for each request);
- after any certain failure (a 4xx) ``cleanup`` runs first (e.g. deleting the uploaded
  input file, which no job can need).
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Mapping, TypeVar

from overnight.errors import ProviderError, QuotaExceeded, SubmissionRejected
from overnight.retryafter import retry_after as read_retry_after

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Statuses that certainly created no job and are about the request itself (not the key,
#: the account or the network): the core counts them as failed attempts.
REFUSED = frozenset({400, 413, 422})
#: Statuses after which the job may exist although the call failed (with ``None``: no answer).
AMBIGUOUS = frozenset({408, 409})
#: The longest Retry-After honoured; past it the backoff is used (a wild value must not stall a run).
MAX_RETRY_AFTER = 60.0


def ambiguous(status: int | None) -> bool:
    """Could the server have created the job although the call failed with ``status``?"""
    return status is None or status >= 500 or status in AMBIGUOUS


def retry_after(headers: Mapping[str, str] | None, attempt: int, *, initial: float = 0.5, ceiling: float = 8.0) -> float:
    """Seconds to wait before attempt ``attempt + 1``: the server's word when it gives a sane one.

    The headers are read as :func:`overnight.retryafter.retry_after` reads them
    (``retry-after-ms``, then ``retry-after``); a wait within 0 to :data:`MAX_RETRY_AFTER`
    is taken, else exponential backoff from ``initial`` up to ``ceiling``.
    """
    wait = read_retry_after(headers)
    if wait is not None and wait <= MAX_RETRY_AFTER:
        return wait
    return min(ceiling, initial * 2**attempt)


def response_headers(exc: BaseException) -> Mapping[str, str]:
    """The response headers an SDK error carries (``exc.response.headers``), else none."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers if headers is not None else {}


def create_once(
    create: Callable[[], T],
    *,
    status: Callable[[BaseException], int | None],
    attempts: int,
    label: str,
    find: Callable[[], T | None] | None = None,
    cleanup: Callable[[], None] | None = None,
    refused: frozenset[int] = REFUSED,
    queue_full: Callable[[BaseException], bool] = lambda exc: False,
    initial_delay: float = 0.5,
    errors: tuple[type[BaseException], ...] = (Exception,),
) -> T:
    """Run ``create`` until it answers, never twice after an answer that may have created a job.

    ``status``: the HTTP status of an SDK error (``None`` when no answer came);
    ``attempts``: how many 429s to try through (the client's retries plus one); ``label``:
    the provider, for messages ("OpenAI"); ``find``: the lookup by tag after an ambiguous
    failure (``None`` when the provider cannot find a job that soon: the error goes
    straight to the core); ``cleanup``: what to undo when the create certainly failed;
    ``refused``: the statuses that are :class:`SubmissionRejected`; ``queue_full``: a 429
    to hand to the core at once; ``errors``: the SDK's exception classes (others propagate
    untouched).
    """
    for attempt in range(max(attempts, 1)):
        try:
            return create()
        except errors as exc:
            code = status(exc)
            if ambiguous(code):
                if find is not None:
                    try:
                        found = find()
                    except Exception:
                        # Cannot tell whether the job exists: keep what it needs; the core asks
                        # find_job on the next pass.
                        log.warning("the %s create failed and the lookup by tag failed too", label)
                        raise exc from None
                    if found is not None:
                        log.info("the %s job was created although the call failed; using it", label)
                        return found
                raise  # may still land: never create again on one lookup (the core decides later)
            if code == 429 and attempt + 1 < attempts and not queue_full(exc):
                time.sleep(retry_after(response_headers(exc), attempt, initial=initial_delay))
                continue
            if cleanup is not None:
                cleanup()
            if code in refused:
                raise SubmissionRejected(f"{label} refused to create the batch: {exc}") from exc
            if code == 429:  # certainly not created: the account's rate or queue limit
                raise QuotaExceeded(f"{label} refused to create the batch for a rate or queue limit: {exc}") from exc
            raise
    raise AssertionError("unreachable")  # pragma: no cover



def keep_oldest(found: list[T], *, ident: Callable[[T], str], cancel: Callable[[str], object], tag: str,
                what: str) -> T:
    """The oldest of the jobs ``found`` under ``tag`` (oldest first); every other one is cancelled.

    Only a retried create can make two jobs of one tag, and the spare would be paid twice.
    ``ident``: a job's id; ``cancel``: cancels one by id; ``what``: how messages name a job
    ("Mistral job"). A duplicate that cannot be cancelled stops the run with a
    :class:`~overnight.ProviderError` naming it, rather than letting it run unseen.
    """
    keep, *extra = found
    for duplicate in extra:
        log.warning("cancelling duplicate %s %s of tag %s", what, ident(duplicate), tag)
        try:
            cancel(ident(duplicate))
        except Exception as exc:
            raise ProviderError(
                f"two {what}s carry tag {tag} ({ident(keep)}, {ident(duplicate)}) and the duplicate could not "
                f"be cancelled ({type(exc).__name__}); cancel {ident(duplicate)} in the provider's console, "
                "then run again."
            ) from None
    return keep
