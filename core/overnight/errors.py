"""The one exception hierarchy of overnight.

Every error a user can meet derives from :class:`OvernightError`, and every message
says what happened and what to do next. Messages never contain API keys.
"""

from __future__ import annotations

from typing import Any, Sequence


class OvernightError(Exception):
    """Base class of every error raised by overnight."""


class ConfigurationError(OvernightError):
    """The pipeline, an LLM or a plugin is configured in a way that cannot work."""


class ProviderNotFound(ConfigurationError):
    """No installed plugin serves the requested provider."""

    def __init__(self, provider: str, installed: Sequence[str]) -> None:
        from overnight.suggest import closest

        self.provider = provider
        self.installed = tuple(installed)
        listed = ", ".join(sorted(self.installed)) or "none"
        # A package is suggested only for a provider with a known plugin: `pip install
        # overnight-<typo>` would send the user to a package that does not exist (or worse).
        meant = closest(provider, sorted({*self.installed, *KNOWN_PLUGINS}))
        if provider in KNOWN_PLUGINS:
            advice = f"Install it with `pip install {KNOWN_PLUGINS[provider]}`, then check with `overnight plugins`."
        elif meant is not None:
            install = "" if meant in self.installed else f" (`pip install {KNOWN_PLUGINS[meant]}`)"
            advice = f"Did you mean {meant!r}{install}?"
        else:
            advice = (
                "Check the spelling of the part before the '/', or install the plugin that serves it, "
                "then check with `overnight plugins`."
            )
        super().__init__(
            f"No installed plugin serves the provider {provider!r} "
            f"(installed providers: {listed}). {advice}"
        )


#: Providers with a published plugin package: the only names a "pip install" is suggested for.
KNOWN_PLUGINS = {
    "openai": "overnight-openai",
    "anthropic": "overnight-anthropic",
    "mistral": "overnight-mistral",
    "gemini": "overnight-gemini",
}


class MissingCredentials(ConfigurationError):
    """A provider needs an API key that was not given."""


class ValidationError(OvernightError):
    """Input rows that cannot be sent; raised before anything is submitted.

    ``problems`` lists every bad row found, each naming the step, the row and the field.
    """

    def __init__(self, problems: Sequence["RowProblem"], *, limit: int = 20, bad_rows: int | None = None) -> None:
        self.problems = tuple(problems)
        #: How many input rows are bad: ``bad_rows`` when the caller listed only some of them.
        self.bad_rows = bad_rows if bad_rows is not None else len({p.row for p in self.problems if p.row is not None})
        shown = "\n".join(f"  - {p}" for p in self.problems[:limit])
        more = len(self.problems) - limit
        if more > 0:
            hidden = self.bad_rows - len({p.row for p in self.problems[:limit] if p.row is not None})
            shown += f"\n  ... and {hidden} more bad row(s)" if hidden > 0 else f"\n  ... and {more} more"
        settings = [p for p in self.problems if p.row is None and p.field is not None]
        if self.bad_rows:
            head = f"{self.bad_rows} input row(s) cannot be sent"
            fix = "Fix the input (or the step's parameters) and run again."
        elif settings:
            head = "the step's settings cannot be sent"
            fix = "Fix the step's parameters and run again."
        else:
            head = "the input cannot be sent"
            fix = "Fix the input (or the step's parameters) and run again."
        super().__init__(f"{head}; nothing was submitted.\n{shown}\n{fix}")


class RowProblem:
    """One bad input row: which step, which row, which field, and why."""

    __slots__ = ("step", "row", "field", "message")

    def __init__(self, step: str, row: int | None, field: str | None, message: str) -> None:
        self.step = step
        self.row = row
        self.field = field
        self.message = message

    def __str__(self) -> str:
        where = f"step {self.step!r}"
        if self.row is not None:
            where += f", row {self.row}"
        if self.field:
            where += f", field {self.field!r}"
        return f"{where}: {self.message}"

    def __repr__(self) -> str:
        return f"RowProblem({self})"


class InvalidRequest(OvernightError):
    """Raised by a plugin's ``build_request`` when a request cannot be expressed.

    ``field`` names the offending option (e.g. ``"stop"``, ``"response_format"``) so the
    core can report the row and the field.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class ProviderError(OvernightError):
    """A provider call failed in a way retrying now will not fix."""


class SubmissionRejected(ProviderError):
    """Raised by a plugin's ``submit`` when the provider certainly created no job.

    For a definitive refusal of the create call (e.g. HTTP 400, 413, 422), never for
    timeouts, connection errors, 429 or 5xx, where the job may exist. The core then
    counts one failed attempt for each request of the chunk instead of asking the
    provider for the job on the next run.
    """


class ResultsGone(ProviderError):
    """Raised by a plugin's ``check``, ``fetch`` or ``cancel`` when the provider says, for
    certain, that the job or its result file no longer exists.

    Only for a definitive answer about the object itself: an HTTP 404 on the job or on a
    result file (deleted by a user, expired, archived), confirmed by the same API
    answering another call; never for a 5xx, a timeout or a network error, which the
    core retries. The core then ends the job: results already stored are kept, and the
    requests without one wait for the user's consent to be paid for again
    (:class:`LostResults`).
    """


class LostResults(OvernightError):
    """Jobs whose results the provider lost (deleted or expired) hold requests with no result.

    They were paid for once, so overnight resubmits them only when asked.
    ``jobs`` holds ``(remote id, requests without a result, why)`` per lost job.
    """

    def __init__(self, provider: str, jobs: Sequence[tuple[str, int, str]], *, step: str | None = None) -> None:
        self.provider = provider
        self.jobs = tuple(jobs)
        self.step = step
        count = sum(n for _, n, _ in self.jobs)
        who = f"step {step!r}: " if step else ""
        lost = "; ".join(f"job {rid}: {n} request(s) ({why})" for rid, n, why in self.jobs)
        super().__init__(
            f"{who}the {provider} provider no longer has the results of {len(self.jobs)} finished "
            f"job(s), so {count} request(s) have no result: {lost}. Results already collected are kept. "
            "These requests were paid for once; they stay pending until you choose to pay for them again: "
            "run `overnight resubmit-lost` (then run the script again) or call "
            "`Pipeline.run(resubmit_lost=True)`."
        )
class QuotaExceeded(ProviderError):
    """Raised by a plugin's ``submit`` when the provider refused the job for the account's
    queue or rate limits (a queue-full or rate-limit 429): certainly nothing was created,
    and nothing is wrong with the requests.

    The core counts no attempt: the requests wait in the queue, overnight lowers the
    in-flight figure it keeps to for this provider and model, and submits them again as
    earlier jobs finish.
    """


class RateLimited(ProviderError):
    """Raised by a plugin's ``generate`` when the online API refused the request for the
    account's rate limits (HTTP 429): nothing was generated, nothing was billed.

    ``retry_after`` is the provider's Retry-After (seconds) when it gave one. The core
    waits at least that long, slows its pace for the provider and model, and sends the
    request again; it counts no attempt.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class ProviderUnavailable(ProviderError):
    """Raised by a plugin's ``generate`` when the online API could not answer this time
    (HTTP 5xx or 529, a timeout, a dropped connection).

    The core retries with backoff, a bounded number of times, then ends the request as an
    error row (retried by a later run). ``retry_after`` as for :class:`RateLimited`.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class BudgetExceeded(OvernightError):
    """Submitting more would pass the run's budget (``run(budget_usd=...)``).

    Nothing past the budget was submitted; what was submitted before is still collected.
    ``estimate_usd`` is the expected cost of the work left, ``spent_usd`` what was billed
    (or is in flight) so far.
    """

    def __init__(self, message: str, *, budget_usd: float, spent_usd: float, estimate_usd: float) -> None:
        self.budget_usd = budget_usd
        self.spent_usd = spent_usd
        self.estimate_usd = estimate_usd
        super().__init__(message)


class StoreError(OvernightError):
    """The state store cannot be used (locked, corrupt, or from a newer version)."""


class UnconfirmedSubmission(OvernightError):
    """A previous run may have created a provider job whose id was never recorded.

    overnight will not resubmit silently, since that could pay twice.
    """

    def __init__(self, provider: str, tags: Sequence[str]) -> None:
        self.provider = provider
        self.tags = tuple(tags)
        super().__init__(
            f"A previous run started {len(self.tags)} {provider} job(s) but stopped before "
            f"recording their ids (tags: {', '.join(self.tags)}), and the {provider} plugin "
            "cannot look jobs up by tag. Check the provider's console for these jobs. "
            "If they do not exist, resubmit with `overnight forget-unconfirmed` or "
            "`Pipeline.run(resubmit_unconfirmed=True)`; if they do, cancel them first or accept "
            "paying twice."
        )


class StaleCache(OvernightError):
    """The cache is disabled but the store already holds paid work for these requests."""


class NotFinished(OvernightError):
    """Base of the "not finished" exceptions: batch jobs are still running.

    Catch this to tell "come back later" apart from real failures.
    """


class OfflineBatchGenerationNotFinished(NotFinished):
    """Raised by an LLM whose offline batch jobs are still pending.

    ``jobs_ids`` holds the remote ids of the pending jobs; ``counts`` maps a state to
    a number of requests (e.g. ``{"pending": 90, "done": 10}``).
    """

    def __init__(
        self,
        jobs_ids: Sequence[str],
        *,
        provider: str = "",
        counts: dict[str, int] | None = None,
        step: str | None = None,
        interrupted: bool = False,
        waited: bool = False,
    ) -> None:
        self.jobs_ids = tuple(jobs_ids)
        self.provider = provider
        self.counts = dict(counts or {})
        self.step = step
        self.interrupted = interrupted
        #: The run polled (``offline_batch_generation_block_until_done``) before giving up.
        self.waited = waited
        super().__init__(self.summary())

    def summary(self) -> str:
        counts = ", ".join(f"{n} {state}" for state, n in self.counts.items() if n)
        who = f"step {self.step!r}: " if self.step else ""
        head = "polling stopped by the user; " if self.interrupted else ""
        ids = ", ".join(self.jobs_ids[:3]) + (", ..." if len(self.jobs_ids) > 3 else "")
        return (
            f"{head}{who}{len(self.jobs_ids)} {self.provider} batch job(s) still running"
            + (f" ({counts})" if counts else "")
            + (f" [{ids}]" if ids else "")
            + ". State is saved; run the pipeline again later to collect the results."
        )


class OnlineGenerationNotFinished(OfflineBatchGenerationNotFinished):
    """Raised by an LLM in online mode (or in its deadline fallback) stopped before every
    request had an answer: by Ctrl+C, or while batch jobs it must not pay twice for still run.

    Every answer received is saved; a rerun sends only the requests still without one.
    ``counts`` as for :class:`OfflineBatchGenerationNotFinished`.
    """

    def summary(self) -> str:
        counts = ", ".join(f"{n} {state}" for state, n in self.counts.items() if n)
        who = f"step {self.step!r}: " if self.step else ""
        head = "stopped by the user; " if self.interrupted else ""
        jobs = (f"; {len(self.jobs_ids)} batch job(s) of earlier runs still running ({', '.join(self.jobs_ids[:3])}"
                f"{', ...' if len(self.jobs_ids) > 3 else ''})") if self.jobs_ids else ""
        return (
            f"{head}{who}online generation through {self.provider} is not finished"
            + (f" ({counts})" if counts else "") + jobs
            + ". Every answer received is saved; run the pipeline again to send (or collect) the rest."
        )


class PipelineNotFinished(NotFinished):
    """Raised by ``Pipeline.run()`` while any batch step is still waiting on its jobs.

    ``pending`` holds one :class:`OfflineBatchGenerationNotFinished` per waiting step.
    """

    def __init__(
        self, pipeline: str, pending: Sequence[OfflineBatchGenerationNotFinished], *, hint: str = ""
    ) -> None:
        self.pipeline = pipeline
        self.pending = tuple(pending)
        self.interrupted = any(p.interrupted for p in self.pending)
        online = all(isinstance(p, OnlineGenerationNotFinished) and not p.jobs_ids for p in self.pending)
        what = "its online generation was stopped" if online and self.pending else "batch jobs are still running"
        lines = [f"Pipeline {pipeline!r} is not finished: {what}."]
        lines += [f"  - {p.summary()}" for p in self.pending]
        # Who waited (polling, stopped by Ctrl+C or the deadline) needs no advice to wait.
        wait = "" if any(p.interrupted or p.waited for p in self.pending) else \
            " (or pass offline_batch_generation_block_until_done=<seconds> to wait)"
        lines.append(hint or f"Everything is saved. Run the same script again to check and collect{wait}.")
        super().__init__("\n".join(lines))

    @property
    def jobs_ids(self) -> tuple[str, ...]:
        return tuple(j for p in self.pending for j in p.jobs_ids)


def redact(text: str, secrets: Sequence[Any]) -> str:
    """Replace every secret found in ``text`` by a placeholder."""
    for secret in secrets:
        if isinstance(secret, str) and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class DiskError(OvernightError):
    """A file overnight must write cannot be: the disk is full, the folder is read-only,
    or permission is denied (``ENOSPC``, ``EROFS``, ``EACCES``, ...).

    ``path`` names the file or folder; the message says what the run had already done
    (``done``) and what to do. Nothing paid for is lost: job ids are committed before
    anything depends on them, and results not yet saved are downloaded again.
    """

    def __init__(self, path: Any, problem: str, *, done: str | None = None, hint: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        self.done = done
        self.hint = hint
        parts = [f"cannot write {self.path}: {problem}."]
        if done:
            parts.append(done)
        parts.append(hint or "Fix that and run again: the run carries on where it stopped.")
        super().__init__(" ".join(parts))

    def with_done(self, done: str) -> "DiskError":
        """The same error, saying what the run had done (when the place that raised it could not tell)."""
        if self.done is not None:
            return self
        return DiskError(self.path, self.problem, done=done, hint=self.hint)
