"""The state store: the only place job ids live, behind one interface and two backends.

It records runs, provider jobs (from the intent committed before submit to the last
fetch), which request belongs to which job, and every result. Requests are
content-addressed (see :func:`overnight.identity.request_key`), so the same request
from a re-run, an edited pipeline, another pipeline or another host reuses what was
paid for.

This module holds what both backends share: the interface (:class:`Store`, a Protocol),
the schema and its forward-only migrations, and every query, written in portable SQL
(``?`` placeholders, ``ON CONFLICT`` upserts, ``RETURNING``) in :class:`SqlStore`. A
backend adds only what its engine does differently: the connection, the store-wide
lock, the migration bookkeeping, bulk inserts and streamed reads.

* :mod:`overnight.sqlite_store`: one SQLite file in ``OVERNIGHT_HOME`` (the default).
* :mod:`overnight.postgres_store`: a PostgreSQL database shared by a team
  (``OVERNIGHT_STORE=postgresql://...`` or ``Pipeline(store="postgresql://...")``).

Step outputs are not in the store: they stay a local cache under ``OVERNIGHT_HOME``.
Every write is a short transaction.
"""

from __future__ import annotations

import contextlib
import enum
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Protocol, Sequence

import platformdirs
from attrs import fields as attrs_fields, frozen

from overnight import polling
from overnight._serialization import SCHEMA_VERSION, dump_raw, dumps, loads, result_from_columns
from overnight.errors import ConfigurationError, DiskError, StoreError
from overnight.models import JobRef, JobStatus, Result, ResultStatus, Usage, evolve
from overnight.policy import Retries

DB_NAME = "overnight.sqlite"
#: Environment variable naming a shared store (``postgresql://user:password@host:port/db``).
STORE_ENV = "OVERNIGHT_STORE"
#: Environment variable overriding the host name recorded with each run (default: the machine's).
HOST_ENV = "OVERNIGHT_HOST"

class RequestState(str, enum.Enum):
    """Every state a request row can be in. Stored as its value."""

    NEW = "new"  # to be submitted (first time, or again after an error or an expiry)
    QUEUED = "queued"  # in a job that has not been fetched yet
    DONE = "done"  # succeeded; the result is stored
    FAILED = "failed"  # errored on every allowed attempt; the last error is stored
    LOST = "lost"  # its job ended but the provider lost the results; waits for the user's consent
    ONLINE = "online"  # claimed by a process sending it through the provider's online API (online_claims)

    def __str__(self) -> str:
        return self.value


# The request states as the words the SQL compares with and the counts are keyed by.
NEW, QUEUED, DONE, FAILED, LOST, ONLINE = (state.value for state in RequestState)


class JobPhase(str, enum.Enum):
    """Every state a job row can be in, in one vocabulary: the provider's (a
    :class:`~overnight.models.JobState`, same words) and the store's own. Stored as its value."""

    INTENT = "intent"  # committed before submit; no remote id yet
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"  # the provider certainly has no job for this intent: its requests went back
    REJECTED = "rejected"  # the provider refused to create it
    LOST = "lost"  # the provider no longer has the job or its result files
    QUOTA = "quota"  # refused or failed for the account's queue limit: its requests wait again

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        """The job has ended (as :attr:`JobState.terminal`): nothing left to cancel or wait for."""
        return self not in (JobPhase.INTENT, JobPhase.RUNNING)


# The store's own phases, as the words the SQL compares with.
INTENT = JobPhase.INTENT.value
LOST_JOB = JobPhase.LOST.value


@frozen
class JobRecord:
    """One provider job as the store knows it (a row of ``jobs``), read-only.

    ``host`` is filled by :meth:`Store.list_jobs`, ``of_job`` by ``open_duplicates`` (the
    job it duplicates) and ``lost`` by ``lost_jobs`` (its requests without a result).
    """

    id: int
    tag: str
    provider: str
    model: str
    step: str
    plan_id: str
    run_id: int | None
    remote_id: str | None
    state: JobPhase
    raw_status: str | None
    message: str | None
    ref: JobRef | None
    requests: int
    bytes: int
    completed: int
    failed: int
    fetched: bool
    created_at: float
    updated_at: float
    host: str | None = None
    of_job: int | None = None
    lost: int | None = None

    def __getitem__(self, name: str) -> Any:
        """``job["tag"]``: the field, for code written when jobs were dicts (read-only;
        new code reads ``job.tag``)."""
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)


_JOB_FIELDS = frozenset(f.name for f in attrs_fields(JobRecord))

#: The schema at version 1, for every backend. ``{id}`` is the engine's auto-numbered
#: primary key and ``{norowid}`` SQLite's clustered-table clause (empty elsewhere); the
#: types are ones both engines read the same (BIGINT, DOUBLE PRECISION, TEXT).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id {id}, pipeline TEXT NOT NULL, state TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS plans (
    plan_id TEXT PRIMARY KEY, provider TEXT NOT NULL, step TEXT NOT NULL,
    size BIGINT NOT NULL, complete BIGINT NOT NULL DEFAULT 0, created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS plan_items (
    plan_id TEXT NOT NULL, position BIGINT NOT NULL, row BIGINT NOT NULL,
    sample BIGINT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (plan_id, position)
){norowid};
CREATE TABLE IF NOT EXISTS requests (
    key TEXT PRIMARY KEY, provider TEXT NOT NULL, model TEXT NOT NULL,
    line TEXT NOT NULL, bytes BIGINT NOT NULL,
    state TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0,
    unfinished BIGINT NOT NULL DEFAULT 0, job_id BIGINT, result TEXT,
    tokens BIGINT, max_output BIGINT
);
CREATE INDEX IF NOT EXISTS requests_job ON requests (job_id) WHERE job_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS jobs (
    id {id}, tag TEXT NOT NULL UNIQUE, provider TEXT NOT NULL,
    model TEXT NOT NULL, step TEXT NOT NULL, plan_id TEXT NOT NULL,
    run_id BIGINT, remote_id TEXT, state TEXT NOT NULL, raw_status TEXT, message TEXT, ref TEXT,
    requests BIGINT NOT NULL, bytes BIGINT NOT NULL,
    completed BIGINT NOT NULL DEFAULT 0, failed BIGINT NOT NULL DEFAULT 0,
    fetched BIGINT NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS job_requests (
    job_id BIGINT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (job_id, key)
){norowid};
CREATE TABLE IF NOT EXISTS ambiguous_creates (job_id BIGINT PRIMARY KEY, at DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS duplicates (job_id BIGINT PRIMARY KEY, of_job BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS remote_jobs (
    remote_id TEXT PRIMARY KEY, provider TEXT NOT NULL, ref TEXT NOT NULL, state TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, listed_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS remote_job_keys (
    remote_id TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (remote_id, key)
){norowid};
CREATE TABLE IF NOT EXISTS quotas (
    provider TEXT NOT NULL, model TEXT NOT NULL, max_enqueued_tokens BIGINT, max_queued_requests BIGINT,
    learned_at DOUBLE PRECISION NOT NULL, reason TEXT, PRIMARY KEY (provider, model)
);
"""

#: A result's figures kept as columns of its request beside the result's JSON (and where
#: in the JSON each is): money and progress sums read these, never the JSON.
FIGURES = (
    ("used_in", "BIGINT", ("usage", "input_tokens")),
    ("used_out", "BIGINT", ("usage", "output_tokens")),
    ("cost_usd", "DOUBLE PRECISION", ("cost_usd",)),
    ("online_cost_usd", "DOUBLE PRECISION", ("online_cost_usd",)),
)
_SET_FIGURES = ", ".join(f"{column} = ?" for column, _, _ in FIGURES)
#: The rest of a result as columns of its request (schema 11), beside FIGURES: assembly
#: builds each Result from these without parsing JSON, and reads ``raw`` (the provider's
#: answer as JSON, its text left out where ``text_at`` says: dump_raw) only when asked.
#: ``result`` is the whole result as JSON, as stores before schema 11 kept it.
ANSWER = (("status", "TEXT"), ("text", "TEXT"), ("error", "TEXT"), ("finish_reason", "TEXT"),
          ("text_at", "BIGINT"), ("raw", "TEXT"))
#: Sets every column of a request's result (the values: :func:`_stored`).
_SET_RESULT = "result = NULL, " + ", ".join(f"{column} = ?" for column, _ in ANSWER) + ", " + _SET_FIGURES
#: "The request is in job ``?``", for a request found by its key: in a form no index on
#: job_id serves, so neither engine scans the job's index instead. (PostgreSQL took the
#: partial job index, which its statistics, taken when the plan was written, say is
#: empty, and read every member of the job for each result: 20k results, 6.8 ms each.)
_IN_JOB = "COALESCE(job_id, 0) = ?"
#: Every column of a request but its number (as of schema version 9).
_REQUEST_COLUMNS = ("key, provider, model, line, bytes, state, attempts, unfinished, job_id, result, tokens, "
                    "max_output, " + ", ".join(column for column, _, _ in FIGURES))


def _job_tokens(job_id: str) -> str:
    """SQL for the estimated input tokens of the requests of the job whose id is ``job_id``
    (a request planned before tokens were estimated counts a token per 4 bytes)."""
    return ("SELECT COALESCE(SUM(COALESCE(r.tokens, (r.bytes + 3) / 4)), 0) FROM job_requests m "
            f"JOIN requests r ON r.id = m.request WHERE m.job_id = {job_id}")


#: Prices one request's usage: ``(batch cost, online cost)`` in US dollars.
Bill = Callable[[Usage], "tuple[float | None, float | None]"]


def _stored(result: Result | None, costs: tuple[float | None, float | None] | None = None) -> tuple[Any, ...]:
    """The values of :data:`_SET_RESULT` for one result (None: no result), in order
    (``costs``: ``(cost_usd, online_cost_usd)`` to store instead of the result's own)."""
    if result is None:
        return _NO_RESULT
    cost, online = (result.cost_usd, result.online_cost_usd) if costs is None else costs
    usage = result.usage
    text = result.text
    text_at, raw = dump_raw(result.raw, text)
    return (result.status.value, text, result.error, result.finish_reason, text_at, raw,
            None if usage is None else usage.input_tokens, None if usage is None else usage.output_tokens,
            cost, online)


_NO_RESULT = (None,) * (len(ANSWER) + len(FIGURES))


def _in_engine_words(sql: str) -> Callable[[Any], str]:
    """A migration statement with the store's SCHEMA_WORDS (and ``{order}``, its REQUEST_ORDER) filled in."""
    return lambda store: sql.format(**store.SCHEMA_WORDS, order=store.REQUEST_ORDER)


#: Forward-only migrations: the statements that take a store from version ``n - 1`` to
#: ``n`` (portable DDL). A store is created at version 1 and migrated up to
#: :data:`~overnight._serialization.SCHEMA_VERSION`; a newer store is refused.
MIGRATIONS: dict[int, tuple[str | Callable[[Any], str], ...]] = {
    # The host each run ran on: one store, many machines (`overnight status`, `jobs`).
    2: ("ALTER TABLE runs ADD COLUMN host TEXT",),
    # Online mode (overnight.online): who is sending which request online now, which requests
    # were answered online (and what they cost), and when each plan's batch part began (for
    # the deadline fallback). Tables of their own, so the batch path's queries are unchanged.
    3: (
        "CREATE TABLE IF NOT EXISTS online_claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, "
        "at DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX IF NOT EXISTS online_claims_owner ON online_claims (owner)",
        "CREATE TABLE IF NOT EXISTS online_answers (key TEXT PRIMARY KEY, cost_usd DOUBLE PRECISION, "
        "at DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE IF NOT EXISTS batch_deadlines (plan_id TEXT PRIMARY KEY, started_at DOUBLE PRECISION, "
        "fell_back_at DOUBLE PRECISION)",
    ),
    # Each result's usage and cost as columns beside its JSON (FIGURES), so money and
    # progress sum numbers instead of parsing every result; filled from the results held.
    4: (
        *(f"ALTER TABLE requests ADD COLUMN {column} {kind}" for column, kind, _ in FIGURES),
        lambda store: "UPDATE requests SET " + ", ".join(
            f"{column} = {store.json_number('result', *path)}" for column, _, path in FIGURES
        ) + " WHERE result IS NOT NULL",
    ),
    # The requests still to submit (partial: only those), so a pass with nothing to submit
    # learns it from the few new requests instead of reading the plan. On the state, not
    # the key: its entries are a few bytes written in insertion order.
    5: (f"CREATE INDEX IF NOT EXISTS requests_to_submit ON requests (state) WHERE state = '{NEW}'",),
    # Sums over a plan without a sort: the plan's keys in key order from an index on
    # (plan, key), which also counts its repeated rows once, when written (plans.repeats:
    # with none, the plan's rows are its distinct requests). Each job's estimated input
    # tokens, set when it is cut, so the tokens in flight are a sum over the open jobs,
    # not over every request they hold.
    6: (
        "CREATE INDEX IF NOT EXISTS plan_items_plan_key ON plan_items (plan_id, key)",
        "DROP INDEX IF EXISTS plan_items_key",
        "ALTER TABLE plans ADD COLUMN repeats BIGINT",
        "ALTER TABLE jobs ADD COLUMN tokens BIGINT",
    ),
    # No change to the tables: a stored result may now keep its text only inside its raw
    # answer (overnight._serialization.TEXT_PATHS), which an older overnight would read as
    # no text. The version makes it refuse the store instead.
    7: (),
    # The job index holds only requests that are in a job: a request planned and not yet
    # sent adds no entry, and being queued adds one instead of moving one (1M requests:
    # about 2 us less per request). Every query by job names a job_id, so it still uses it.
    8: (
        "DROP INDEX IF EXISTS requests_job",
        "CREATE INDEX IF NOT EXISTS requests_job ON requests (job_id) WHERE job_id IS NOT NULL",
    ),
    # Version 6 dropped the index on plan_items.key, but a SQLite store re-created it each
    # time it was opened (the version-1 schema named it): one more random-key index
    # written per planned row. Dropped again; the schema no longer names it.
    9: ("DROP INDEX IF EXISTS plan_items_key",),
    # A request is referred to by its number, not by its 40-character key: a plan's items
    # and a job's members point at the request's row, so reading a plan or cutting a job
    # follows row numbers instead of looking up random keys in the key index, and their
    # indexes grow in insertion order (1M requests: plan reads 5.2 s -> 1.7 s). The tables
    # are rebuilt (SQLite cannot add a primary key), the requests in their present order.
    10: tuple(
        _in_engine_words(sql) for sql in (
            "CREATE TABLE requests_v10 (id {id}, key TEXT NOT NULL UNIQUE, provider TEXT NOT NULL, "
            "model TEXT NOT NULL, line TEXT NOT NULL, bytes BIGINT NOT NULL, state TEXT NOT NULL, "
            "attempts BIGINT NOT NULL DEFAULT 0, unfinished BIGINT NOT NULL DEFAULT 0, job_id BIGINT, "
            "result TEXT, tokens BIGINT, max_output BIGINT, "
            + ", ".join(f"{column} {kind}" for column, kind, _ in FIGURES) + ")",
            f"INSERT INTO requests_v10 ({_REQUEST_COLUMNS}) SELECT {_REQUEST_COLUMNS} FROM requests r ORDER BY {{order}}",
            "DROP TABLE requests",
            "ALTER TABLE requests_v10 RENAME TO requests",
            f"CREATE INDEX requests_to_submit ON requests (state) WHERE state = '{NEW}'",
            "CREATE INDEX requests_job ON requests (job_id) WHERE job_id IS NOT NULL",
            "CREATE TABLE plan_items_v10 (plan_id TEXT NOT NULL, position BIGINT NOT NULL, row BIGINT NOT NULL, "
            "sample BIGINT NOT NULL, request BIGINT NOT NULL, PRIMARY KEY (plan_id, position)){norowid}",
            "INSERT INTO plan_items_v10 (plan_id, position, row, sample, request) "
            "SELECT p.plan_id, p.position, p.row, p.sample, r.id FROM plan_items p JOIN requests r ON r.key = p.key",
            "DROP TABLE plan_items",
            "ALTER TABLE plan_items_v10 RENAME TO plan_items",
            "CREATE INDEX plan_items_plan_request ON plan_items (plan_id, request)",
            "CREATE TABLE job_requests_v10 (job_id BIGINT NOT NULL, request BIGINT NOT NULL, "
            "PRIMARY KEY (job_id, request)){norowid}",
            "INSERT INTO job_requests_v10 (job_id, request) "
            "SELECT m.job_id, r.id FROM job_requests m JOIN requests r ON r.key = m.key",
            "DROP TABLE job_requests",
            "ALTER TABLE job_requests_v10 RENAME TO job_requests",
        )
    ),
    # A result as columns (ANSWER) instead of one JSON: assembly reads the text, error,
    # finish reason and figures without parsing the provider's answer (1M results: 5 us
    # each), and the answer's text is stored once. Results stored before stay as they
    # were, in ``result``, and are read from there.
    11: tuple(f"ALTER TABLE requests ADD COLUMN {column} {kind}" for column, kind in ANSWER),
}

#: Seconds a queue figure learned from a refusal is kept (a day: every job of the time has
#: ended by then, so the queue that refused it has emptied at least once).
QUOTA_MEMORY = 24 * 3600.0

#: A row of a query: by column name (``row["key"]``) and by position, as sqlite3.Row.
StoredRow = Any



def default_cache_dir() -> Path:
    """``$OVERNIGHT_HOME``, else the user cache directory (e.g. ``~/.cache/overnight``)."""
    home = os.environ.get("OVERNIGHT_HOME")
    return Path(home) if home else Path(platformdirs.user_cache_dir("overnight"))


def host_name() -> str:
    """The name recorded with each run: ``$OVERNIGHT_HOST``, else the machine's."""
    return os.environ.get(HOST_ENV) or socket.gethostname()


def is_server_url(url: str | None) -> bool:
    return bool(url) and str(url).split("://", 1)[0].lower() in ("postgresql", "postgres")


def open_store(cache_dir: str | os.PathLike[str] | None = None, *, url: str | None = None,
               readonly: bool = False) -> "Store":
    """The store of this home: PostgreSQL when ``url`` (else ``$OVERNIGHT_STORE``) names one,
    else the SQLite file in ``cache_dir`` (else the default directory).

    ``cache_dir`` is the local home either way: step outputs and file digests live there.
    """
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    url = url or os.environ.get(STORE_ENV) or None
    if url is not None and not is_server_url(url):
        from overnight.postgres_store import redact

        raise ConfigurationError(
            f"the store {redact(url)!r} (Pipeline(store=...) or ${STORE_ENV}) is not a PostgreSQL URL: "
            "give postgresql://user:password@host:port/database, or unset it for the local SQLite store"
        )
    if url is not None:
        from overnight.postgres_store import PostgresStore

        return PostgresStore(url, cache_dir=directory, readonly=readonly)
    from overnight.sqlite_store import SqliteStore

    return SqliteStore(directory / DB_NAME, readonly=readonly)


class Store(Protocol):
    """What the executor, the pipeline and the CLI need of a state store.

    Both backends implement it through :class:`SqlStore`; ``Store.open()`` picks one.
    Jobs come back as :class:`JobRecord` values; runs as dicts of the ``runs`` columns.
    """

    #: The local home (step outputs, the SQLite file when that is the backend).
    cache_dir: Path
    #: Where the store is, for messages: a file path, or a URL without its password.
    location: str
    readonly: bool
    #: The run this process is in (``start_run``); jobs submitted now are recorded under it.
    run_id: int | None
    #: Remote ids of the jobs submitted through this store object (this run), as recorded.
    submitted: list[str]

    @classmethod
    def open(cls, cache_dir: str | os.PathLike[str] | None = None, *, url: str | None = None) -> "Store":
        """Open (creating if needed) this home's store: see :func:`open_store`."""
        return open_store(cache_dir, url=url)

    @classmethod
    def open_readonly(cls, cache_dir: str | os.PathLike[str] | None = None, *, url: str | None = None) -> "Store":
        """Open the store only to read it, changing nothing on disk (a read-only home works)."""
        return open_store(cache_dir, url=url, readonly=True)

    def activity(self) -> str: ...
    def lock(self, timeout: float, *, step: str) -> contextlib.AbstractContextManager[None]: ...
    def close(self) -> None: ...
    def commits_behind(self) -> contextlib.AbstractContextManager[None]: ...
    def wait_for_commit(self) -> None: ...
    def __enter__(self) -> "Store": ...
    def __exit__(self, *exc: Any) -> None: ...
    # runs
    def start_run(self, pipeline: str) -> int: ...
    def finish_run(self, run_id: int, state: str) -> None: ...
    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]: ...
    # plans
    def plan_complete(self, plan_id: str) -> bool: ...
    def plan_repeats(self, plan_id: str) -> int | None: ...
    def write_plan(self, plan_id: str, provider: str, step: str, items: Iterable[tuple[Any, ...]],
                   batch: int = 50_000) -> int: ...
    def drop_plan(self, plan_id: str) -> None: ...
    def plan_counts(self, plan_id: str) -> dict[str, int]: ...
    def plan_retried(self, plan_id: str) -> int: ...
    def paid_count(self, plan_id: str) -> int: ...
    def pending_lines(self, plan_id: str, *, after: int = -1, limit: int = -1) -> Iterator[StoredRow]: ...
    def has_new(self, plan_id: str) -> bool: ...
    def plan_results(self, plan_id: str, *, raw: bool = True) -> Iterator[tuple[int, int, str, Result | None]]: ...
    # jobs
    def create_intent(self, *, tag: str, provider: str, model: str, step: str, plan_id: str,
                      request_ids: Sequence[int], nbytes: int, tokens: int | None = None) -> int: ...
    def job_lines(self, job_id: int) -> Iterator[str]: ...
    def confirm_job(self, job_id: int, ref: JobRef) -> None: ...
    def abandon_intent(self, job_id: int) -> None: ...
    def open_jobs(self, plan_id: str) -> list[JobRecord]: ...
    def update_job(self, job_id: int, status: JobStatus) -> None: ...
    def record_results(self, job_id: int, results: Sequence[Result], retries: Retries,
                       bill: Bill | None = None) -> None: ...
    def close_job(self, job_id: int, retries: Retries, *, failure: str | None = None) -> None: ...
    def reject_intent(self, job_id: int, reason: str, retries: Retries) -> None: ...
    def lose_job(self, job_id: int, reason: str) -> int: ...
    def lost_jobs(self, plan_id: str | None = None) -> list[JobRecord]: ...
    def release_lost(self, job_ids: Sequence[int] | None = None, *, plan_id: str | None = None) -> int: ...
    def retry_failed(self, plan_id: str) -> int: ...
    def list_jobs(self, *, active_only: bool = False, limit: int = 200) -> list[JobRecord]: ...
    def get_job(self, ident: str | int) -> JobRecord | None: ...
    def job_counts(self, job_id: int) -> dict[str, int]: ...
    # tokens, queues, money
    def in_flight(self, provider: str, model: str) -> tuple[int, int]: ...
    def job_tokens(self, job_id: int) -> int: ...
    def learned_quota(self, provider: str, model: str) -> tuple[int | None, int | None]: ...
    def learn_quota(self, provider: str, model: str, *, tokens: int | None = None,
                    requests: int | None = None, reason: str = "") -> bool: ...
    def requeue_job(self, job_id: int, state: str, reason: str) -> None: ...
    def plan_money(self, plan_id: str) -> dict[str, dict[str, float]]: ...
    def money_totals(self) -> dict[str, float]: ...
    # the provider as second source of truth
    def mark_ambiguous(self, job_id: int) -> None: ...
    def ambiguous_since(self, job_id: int) -> float | None: ...
    def ambiguous_open_jobs(self, plan_id: str) -> list[JobRecord]: ...
    def known_remote_ids(self, provider: str) -> frozenset[str]: ...
    def has_unsent(self, plan_id: str) -> bool: ...
    def remember_remote_job(self, provider: str, ref: JobRef, state: str, created_at: float,
                            keys: Iterable[str]) -> None: ...
    def adopt_remote_jobs(self, plan_id: str, provider: str, step: str) -> list[tuple[JobRef, int]]: ...
    def record_duplicate(self, of_job: JobRecord, ref: JobRef, requests: int, state: str) -> int: ...
    def open_duplicates(self, plan_id: str) -> list[JobRecord]: ...
    def record_duplicate_results(self, of_job: int, results: Sequence[Result]) -> int: ...
    def close_duplicate(self, job_id: int) -> None: ...
    # online mode: claims, answers, the batch part's deadline
    def claim_online(self, plan_id: str, owner: str, *, after: int = -1, limit: int = 256) -> list[dict[str, Any]]: ...
    def record_online(self, owner: str, results: Sequence[tuple[Result, float | None]], retries: Retries) -> int: ...
    def release_online(self, owner: str, keys: Iterable[str] | None = None) -> int: ...
    def online_owners(self, plan_id: str | None = None) -> list[dict[str, Any]]: ...
    def heartbeat_online(self, owner: str) -> None: ...
    def plan_online_money(self, plan_id: str) -> dict[str, float]: ...
    def batch_deadline(self, plan_id: str) -> tuple[float | None, float | None]: ...
    def note_batch_start(self, plan_id: str) -> None: ...
    def note_fallback(self, plan_id: str) -> None: ...
    def clear_batch_deadline(self, plan_id: str) -> None: ...


class SqlStore(Store):
    """Every query of the store, in SQL both engines run; a backend subclasses it.

    A backend provides :meth:`transaction` (one short write transaction, yielding a
    connection whose ``execute``/``executemany`` take ``?`` placeholders and whose rows
    read by column name and position), :meth:`_query` and :meth:`_stream` (reads outside
    a transaction; ``_stream`` without loading every row), :meth:`lock`, the schema
    bookkeeping and :attr:`SCHEMA_WORDS`. Where the engines' SQL differs, the fragments
    below say so.
    """

    #: The order in which a job's lines are read (SQLite: the table's own order, for locality).
    REQUEST_ORDER: ClassVar[str] = "r.key"
    #: How a plan's rows are read for a sum over its requests (no repeats: no DISTINCT).
    #: SQLite: in plan order, so that the requests, written in about that order, are read
    #: page after page rather than in key order (200k done requests: 0.7 s -> 0.4 s).
    PLAN_ORDER: ClassVar[str] = ""
    #: The engine's words in the schema: ``id`` (an auto-numbered primary key) and
    #: ``norowid`` (SQLite's clustered-table clause, empty elsewhere).
    SCHEMA_WORDS: ClassVar[dict[str, str]] = {}
    #: Marks the members of job ``?`` (given twice) queued in it, just after they were written:
    #: by request number, in table order.
    QUEUE_MEMBERS: ClassVar[str] = (
        f"UPDATE requests SET state = '{QUEUED}', job_id = ? WHERE id IN (SELECT request FROM job_requests WHERE job_id = ?)"
    )

    def __init__(self, cache_dir: Path, *, readonly: bool = False) -> None:
        self.cache_dir = cache_dir
        self.location = str(cache_dir)
        #: Opened only to read (``overnight status``, ``jobs``): works on a read-only folder.
        self.readonly = readonly
        self.submitted: list[str] = []
        self.run_id: int | None = None
        #: Whether the requests table has the FIGURES columns (None: not looked yet).
        self._figure_columns: bool | None = None

    # -- what a backend provides -----------------------------------------------------------

    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[StoredRow]:
        raise NotImplementedError

    def _stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[StoredRow]:
        raise NotImplementedError

    def lock(self, timeout: float, *, step: str) -> contextlib.AbstractContextManager[None]:
        """Hold the store-wide lock (one plan or one pass at a time, across processes and
        hosts), waiting up to ``timeout`` seconds for another holder."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @staticmethod
    def json_number(column: str, *path: str) -> str:
        """SQL for the number at ``path`` in a JSON text column (NULL when absent)."""
        return f"json_extract({column}, '$.{'.'.join(path)}')"

    def _figure(self, column: str, table: str = "") -> str:
        """The SQL for one result figure: its column, or (a store opened read-only that was
        made before the columns) the same figure read from the result's JSON."""
        if self._figure_columns is None:
            try:
                self._query("SELECT used_in FROM requests WHERE 1 = 0")
                self._figure_columns = True
            except StoreError:
                self._figure_columns = False
        if self._figure_columns:
            return f"{table}{column}"
        return next(self.json_number(f"{table}result", *path) for c, _, path in FIGURES if c == column)

    def _insert_plan_items(self, db: Any, plan_id: str, provider: str, position: int,
                           items: Sequence[tuple[Any, ...]]) -> None:
        """Write one batch of a plan: its requests not yet known, then its items (which
        point at their requests' numbers)."""
        self._insert_requests(db, provider, items)
        self._insert_items(db, plan_id, position, items)

    @staticmethod
    def _insert_requests(db: Any, provider: str, items: Sequence[tuple[Any, ...]]) -> int:
        """Store the items' requests not yet known (by key); how many were added."""
        return int(db.executemany(
            "INSERT INTO requests (key, provider, model, line, bytes, tokens, max_output, state) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?, '{NEW}') ON CONFLICT (key) DO NOTHING",
            [(i[2], provider, i[3], i[4], i[5], *(tuple(i[6:8]) + (None, None))[:2]) for i in items],
        ).rowcount)

    @staticmethod
    def _insert_items(db: Any, plan_id: str, position: int, items: Sequence[tuple[Any, ...]]) -> None:
        """Store the items themselves (their requests are stored), each request found by key."""
        db.executemany(
            "INSERT INTO plan_items (plan_id, position, row, sample, request) "
            "VALUES (?, ?, ?, ?, (SELECT id FROM requests WHERE key = ?))",
            [(plan_id, position + i, r, s, k) for i, (r, s, k, *_rest) in enumerate(items)],
        )

    def _plan_written(self, db: Any, size: int) -> None:
        """A plan of ``size`` items was just written (a backend may refresh its statistics)."""

    def _insert_job_requests(self, db: Any, job_id: int, request_ids: Sequence[int]) -> None:
        """Write a job's membership (the intent's requests, by number)."""
        db.executemany("INSERT INTO job_requests (job_id, request) VALUES (?, ?)", [(job_id, i) for i in request_ids])

    def _settle_successes(self, db: Any, job_id: int, succeeded: Sequence[tuple[Any, ...]]) -> None:
        """Store ``(*_stored(result), key, job_id)`` successes for requests still queued in this job."""
        db.executemany(
            f"UPDATE requests SET state = '{DONE}', {_SET_RESULT} "
            f"WHERE key = ? AND {_IN_JOB} AND state = '{QUEUED}'",
            succeeded,
        )

    # -- shared: errors, schema ------------------------------------------------------------

    def activity(self) -> str:
        """What this run has recorded (for error messages, which must be true)."""
        if not self.submitted:
            return "Nothing was submitted by this run."
        ids = ", ".join(self.submitted[:3]) + (", ..." if len(self.submitted) > 3 else "")
        return (
            f"This run submitted {len(self.submitted)} job(s) ({ids}); their ids are recorded in the "
            "store, so nothing paid for is lost (results not yet saved are downloaded again)."
        )

    def _newer_schema(self, version: int) -> StoreError:
        return StoreError(
            f"The store {self.location} was written by a newer overnight (schema "
            f"{version}, this one reads {SCHEMA_VERSION}). Upgrade overnight "
            f"(pip install -U overnight) or point OVERNIGHT_HOME (or {STORE_ENV}) elsewhere. "
            "Nothing was submitted."
        )

    def _apply_migrations(self, db: Any, version: int) -> int:
        """Run the migrations past ``version`` (in the caller's transaction); the new version.
        A statement may be a function of the store, for SQL that differs by engine."""
        if version < SCHEMA_VERSION and db.execute("SELECT 1 FROM requests LIMIT 1").fetchall():  # say why this start is slow
            # Up to 10, a migration rewrites every request (4 fills figures, 10 rebuilds tables); 11 adds columns.
            slow = " (about half a minute per million requests it holds)" if version < 10 else ""
            polling.report(f"upgrading the store {self.location} from schema {version} to {SCHEMA_VERSION}, once{slow}")
        for target in sorted(MIGRATIONS):
            if target > version:
                for statement in MIGRATIONS[target]:
                    db.execute(statement if isinstance(statement, str) else statement(self))
                version = target
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
        return version

    def __enter__(self) -> "SqlStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- runs ----------------------------------------------------------------------------

    def start_run(self, pipeline: str) -> int:
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO runs (pipeline, state, started_at, host) VALUES (?, 'running', ?, ?) RETURNING id",
                (pipeline, time.time(), host_name()),
            )
            self.run_id = int(cur.fetchall()[0][0])
            return self.run_id

    def finish_run(self, run_id: int, state: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET state = ?, finished_at = ? WHERE id = ?", (state, time.time(), run_id)
            )

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT runs.*, COUNT(jobs.id) AS jobs_submitted, COALESCE(SUM(jobs.requests), 0) AS requests_submitted "
            "FROM runs LEFT JOIN jobs ON jobs.run_id = runs.id AND jobs.remote_id IS NOT NULL "
            "GROUP BY runs.id ORDER BY runs.id DESC LIMIT ?",
            (limit,),
        )
        return [dict(r) for r in rows]

    # -- plans: a batch step's ordered requests -------------------------------------------

    def plan_complete(self, plan_id: str) -> bool:
        rows = self._query("SELECT complete FROM plans WHERE plan_id = ?", (plan_id,))
        return bool(rows and rows[0]["complete"])

    def write_plan(
        self,
        plan_id: str,
        provider: str,
        step: str,
        items: Iterable[tuple[Any, ...]],
        batch: int = 50_000,
    ) -> int:
        """Store a plan from ``(row, sample, key, model, line, bytes[, tokens, max_output])``
        items, streamed (``tokens``: estimated input tokens; ``max_output``: the most output
        tokens the request can be billed for).

        In transactions of ``batch`` items: request keys are hashes, so every transaction
        dirties pages all over two key indexes; big ones write each page a few times in
        total instead of once per few items (1M requests: 20.2 s -> 11.3 s CPU, sys 9.7 -> 2.7 s).

        Requests already known (by key) keep their state and results.
        """
        with self.transaction() as db:
            db.execute("DELETE FROM plan_items WHERE plan_id = ?", (plan_id,))
            db.execute(
                "INSERT INTO plans (plan_id, provider, step, size, complete, created_at) VALUES (?, ?, ?, 0, 0, ?) "
                "ON CONFLICT (plan_id) DO UPDATE SET provider = excluded.provider, step = excluded.step, "
                "size = 0, complete = 0, created_at = excluded.created_at",
                (plan_id, provider, step, time.time()),
            )
        position = 0
        pending: list[tuple[Any, ...]] = []

        def flush() -> None:
            nonlocal position, pending
            with self.transaction() as db:
                self._insert_plan_items(db, plan_id, provider, position, pending)
            position += len(pending)
            pending = []  # a new list: the last one may still be committing

        with self.commits_behind():  # the next items are built and checked while a part commits
            for item in items:
                pending.append(item)
                if len(pending) >= batch:
                    flush()
            if pending:
                flush()
        with self.transaction() as db:
            self._plan_written(db, position)
            # Counted once (from the plan_items_plan_request index): most plans repeat no
            # request, and their sums then read the plan's rows as they are, with no sort.
            distinct = db.execute(
                "SELECT COUNT(DISTINCT request) AS n FROM plan_items WHERE plan_id = ?", (plan_id,)
            ).fetchall()[0][0]
            db.execute("UPDATE plans SET size = ?, repeats = ?, complete = 1 WHERE plan_id = ?",
                       (position, position - int(distinct), plan_id))
        return position

    def drop_plan(self, plan_id: str) -> None:
        """Forget a plan that failed validation (its requests were never submitted)."""
        with self.transaction() as db:
            db.execute("DELETE FROM plan_items WHERE plan_id = ?", (plan_id,))
            db.execute("DELETE FROM plans WHERE plan_id = ?", (plan_id,))

    def commits_behind(self) -> contextlib.AbstractContextManager[None]:
        """Within it, a backend may finish this thread's commits in a second thread while
        the caller goes on (SQLite); its next use of the store waits for them. Here: no."""
        return contextlib.nullcontext()

    def wait_for_commit(self) -> None:
        """Wait for a commit still under way (commits_behind), raising its error."""

    def plan_repeats(self, plan_id: str) -> int | None:
        """How many of the plan's rows repeat a request of an earlier row (None: unknown)."""
        try:
            rows = self._query("SELECT repeats FROM plans WHERE plan_id = ?", (plan_id,))
        except StoreError:  # a store made before repeats were counted, opened read-only
            return None
        return rows[0]["repeats"] if rows else None

    def _plan_requests(self, plan_id: str) -> str:
        """SQL for the plan's distinct requests (column ``request``, their numbers), as a
        table ``p`` (one ``?``: the plan id).

        A plan that repeats no request (``plans.repeats`` is 0, as for most) is its own
        rows: no DISTINCT, whose sort of a million rows costs more than the sum it feeds.
        """
        if self.plan_repeats(plan_id) == 0:
            return f"(SELECT request FROM plan_items WHERE plan_id = ?{self.PLAN_ORDER}) p"
        return "(SELECT DISTINCT request FROM plan_items WHERE plan_id = ?) p"

    def plan_counts(self, plan_id: str) -> dict[str, int]:
        """How many of the plan's distinct requests are in each state."""
        rows = self._query(
            f"SELECT r.state, COUNT(*) AS n FROM {self._plan_requests(plan_id)} "
            "JOIN requests r ON r.id = p.request GROUP BY r.state",
            (plan_id,),
        )
        return {r["state"]: r["n"] for r in rows}

    def plan_retried(self, plan_id: str) -> int:
        """How many of the plan's distinct requests failed once and were (or are to be) sent again."""
        rows = self._query(
            f"SELECT COUNT(*) AS n FROM {self._plan_requests(plan_id)} "
            f"JOIN requests r ON r.id = p.request WHERE r.attempts > 0 AND r.state != '{FAILED}'",
            (plan_id,),
        )
        return int(rows[0]["n"]) if rows else 0

    def paid_count(self, plan_id: str) -> int:
        """How many of the plan's requests a previous run already paid for (or is paying)."""
        counts = self.plan_counts(plan_id)
        return sum(n for state, n in counts.items() if state != NEW)

    def pending_lines(self, plan_id: str, *, after: int = -1, limit: int = -1) -> Iterator[StoredRow]:
        """One page of the plan's requests still to submit (id, key, model, bytes, tokens,
        max_output, pos): those at positions past ``after``, at most ``limit`` (-1: all),
        read along the plan's primary key with no sort, so paging through a plan is
        linear. A page may list a request more than once (a repeated row); the caller
        keeps the first.
        """
        yield from self._stream(
            "SELECT r.id, r.key, r.model, r.bytes, r.tokens, r.max_output, p.position AS pos FROM plan_items p "
            f"JOIN requests r ON r.id = p.request WHERE p.plan_id = ? AND p.position > ? AND r.state = '{NEW}' "
            "ORDER BY p.position LIMIT ?",
            (plan_id, after, limit if limit >= 0 else 2**62),  # "no limit" in both engines' words
        )

    def has_new(self, plan_id: str) -> bool:
        """Whether any request of the plan is still to submit (read from the requests_to_submit index)."""
        rows = self._query(
            f"SELECT 1 FROM requests r WHERE r.state = '{NEW}' AND EXISTS "
            "(SELECT 1 FROM plan_items p WHERE p.plan_id = ? AND p.request = r.id) LIMIT 1",
            (plan_id,),
        )
        return bool(rows)

    def plan_results(self, plan_id: str, *, raw: bool = True) -> Iterator[tuple[int, int, str, Result | None]]:
        """``(row, sample, state, result)`` in plan order, streamed (``raw=False``: results
        come back without the provider's raw answer, which is then not read; those stored
        before schema 11 keep it)."""
        # The columns in result_from_columns' order, as _stored wrote them; raw only if asked for.
        stored = ", ".join(["r.key", "r.result", *(f"r.{c}" if raw or c != "raw" else "NULL" for c, _ in ANSWER),
                            *(f"r.{c}" for c, _, _ in FIGURES)])
        cursor = self._stream(
            f"SELECT p.row, p.sample, r.state, {stored} FROM plan_items p JOIN requests r ON r.id = p.request "
            "WHERE p.plan_id = ? ORDER BY p.position",
            (plan_id,),
        )
        for row, sample, state, *stored in cursor:
            yield row, sample, state, result_from_columns(*stored)

    # -- jobs ------------------------------------------------------------------------------

    def create_intent(self, *, tag: str, provider: str, model: str, step: str, plan_id: str,
                      request_ids: Sequence[int], nbytes: int, tokens: int | None = None) -> int:
        """Commit the intent to submit these requests (by number, as :meth:`pending_lines`
        gives them) as one job, before anything is sent (``tokens``: their estimated input
        tokens; None: summed from the requests)."""
        now = time.time()
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO jobs (tag, provider, model, step, plan_id, run_id, state, requests, bytes, tokens, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (tag, provider, model, step, plan_id, self.run_id, INTENT, len(request_ids), nbytes, tokens, now, now),
            )
            job_id = int(cur.fetchall()[0][0])
            self._insert_job_requests(db, job_id, request_ids)
            # One set-wise statement over the membership just written, not one per request.
            db.execute(self.QUEUE_MEMBERS, (job_id, job_id))
            if tokens is None:
                db.execute(f"UPDATE jobs SET tokens = ({_job_tokens('jobs.id')}) WHERE id = ?", (job_id,))
            return job_id

    def job_lines(self, job_id: int) -> Iterator[str]:
        """The provider lines of a job's requests, streamed in a stable order.

        Read by the job index, not through the membership: the intent set every member's
        ``job_id``, and no member of a job being sent is queued in another one (it is
        queued in this one), so the two are the same set, without a lookup per key.
        The order is the requests' order in the store (plan order for a new plan): results
        come back in about the order sent, so storing them then touches each page of the
        requests table once instead of once per result.
        """
        cursor = self._stream(f"SELECT r.line FROM requests r WHERE r.job_id = ? ORDER BY {self.REQUEST_ORDER}",
                              (job_id,))
        for row in cursor:
            yield row["line"]

    def confirm_job(self, job_id: int, ref: JobRef) -> None:
        """Record the remote id (and the plugin's state) of a submitted job."""
        try:
            with self.transaction() as db:
                db.execute(
                    f"UPDATE jobs SET remote_id = ?, ref = ?, state = '{JobPhase.RUNNING.value}', updated_at = ? WHERE id = ?",
                    (ref.remote_id, dumps(ref), time.time(), job_id),
                )
        except DiskError as exc:
            earlier = f"{self.activity()} " if self.submitted else ""
            raise DiskError(exc.path, exc.problem, hint=exc.hint, done=(
                f"{earlier}This run created the {ref.provider} job {ref.remote_id} ({ref.tag}) but could not record "
                "its id; its intent is recorded, so the next run looks the job up by its tag instead of paying again."
            )) from None
        self.submitted.append(ref.remote_id)

    def abandon_intent(self, job_id: int) -> None:
        """The provider certainly has no job for this intent: its requests go back to NEW."""
        with self.transaction() as db:
            db.execute(
                f"UPDATE requests SET state = '{NEW}', job_id = NULL WHERE job_id = ? AND state = '{QUEUED}'",
                (job_id,),
            )
            db.execute(
                f"UPDATE jobs SET state = '{JobPhase.ABANDONED.value}', fetched = 1, updated_at = ? WHERE id = ?",
                (time.time(), job_id),
            )

    def open_jobs(self, plan_id: str) -> list[JobRecord]:
        """Jobs holding requests of this plan that are not yet fully collected."""
        # From the few unfetched jobs to their requests (by the job index), not from every
        # request of the plan: a poll of a million-request plan no longer scans it.
        rows = self._query(
            "SELECT * FROM jobs WHERE fetched = 0 AND EXISTS ("
            "SELECT 1 FROM requests r CROSS JOIN plan_items p "  # CROSS: SQLite reads requests first
            f"WHERE p.plan_id = ? AND p.request = r.id AND r.job_id = jobs.id AND r.state = '{QUEUED}') ORDER BY id",
            (plan_id,),
        )
        return [self._job_dict(r) for r in rows]

    def _job_dict(self, row: StoredRow) -> JobRecord:
        """A ``jobs`` row (with any extra columns of JobRecord the query added) as a record."""
        job = {k: row[k] for k in row.keys() if k in _JOB_FIELDS}
        job["ref"] = loads(row["ref"], JobRef) if row["ref"] else None
        job["state"] = JobPhase(row["state"])
        job["fetched"] = bool(row["fetched"])
        return JobRecord(**job)

    def update_job(self, job_id: int, status: JobStatus) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, raw_status = ?, message = ?, completed = ?, failed = ?, "
                "updated_at = ? WHERE id = ?",
                (status.state.value, status.raw_status, status.message, status.completed,
                 status.failed, time.time(), job_id),
            )

    def record_results(self, job_id: int, results: Sequence[Result], retries: Retries,
                       bill: Bill | None = None) -> None:
        """Store one batch of a job's results, in one transaction; ``retries`` (the
        executor's rule) says which requests that did not succeed go again; ``bill``
        prices the usage of a success the provider did not price (``(batch, online)``
        US dollars, :meth:`overnight.pricing.Rates.bill`).

        Only requests still queued in *this* job take a result, so unknown custom ids,
        duplicates (the first one wins) and late results of a superseded job are ignored.
        """
        first: dict[str, Result] = {}
        for result in results:
            first.setdefault(result.custom_id, result)
        # Successes (nearly every result) settle in one statement each, with no read first:
        # the WHERE clause is the "still queued in this job" test, so the rest are ignored.
        succeeded = []
        for key, r in first.items():
            if r.status is ResultStatus.SUCCEEDED:
                usage = r.usage
                costs = bill(usage) if bill is not None and usage is not None and r.cost_usd is None \
                    else (r.cost_usd, r.online_cost_usd)
                succeeded.append((*_stored(r, costs), key, job_id))
        with self.transaction() as db:
            self._settle_successes(db, job_id, succeeded)
            keys = [key for key, r in first.items() if r.status is not ResultStatus.SUCCEEDED]
            queued = []
            for i in range(0, len(keys), 500):  # SQLite caps the number of parameters
                part = keys[i : i + 500]
                # By key, not by the job's index (see _IN_JOB).
                queued += db.execute(
                    f"SELECT key, attempts, unfinished FROM requests WHERE key IN ({','.join('?' * len(part))}) "
                    f"AND {_IN_JOB} AND state = '{QUEUED}'",
                    (*part, job_id),
                ).fetchall()
            self._settle(db, [(row, first[row["key"]]) for row in queued], retries)

    @staticmethod
    def _settle(db: Any, outcomes: Sequence[tuple[StoredRow, Result]],
                retries: Retries) -> None:
        """Apply results to queued requests (rows of key, attempts, unfinished), by the retry rule."""
        updates: list[tuple[Any, ...]] = []
        for row, result in outcomes:
            key, attempts, unfinished = row["key"], row["attempts"], row["unfinished"]
            if result.status is ResultStatus.SUCCEEDED:
                updates.append((DONE, attempts, unfinished, *_stored(result), key))
            elif result.status is ResultStatus.ERRORED:
                attempts += 1
                state = FAILED if retries.gives_up(attempts, unfinished) else NEW
                updates.append((state, attempts, unfinished, *_stored(result), key))
            else:  # unfinished: resubmit, but not forever
                unfinished += 1
                if retries.gives_up(attempts, unfinished):
                    failed = Result(
                        custom_id=key, status=ResultStatus.ERRORED,
                        error=f"not run by the provider in {unfinished} jobs (expired or cancelled)",
                    )
                    updates.append((FAILED, attempts, unfinished, *_stored(failed), key))
                else:
                    updates.append((NEW, attempts, unfinished, *_NO_RESULT, key))
        db.executemany(
            f"UPDATE requests SET state = ?, attempts = ?, unfinished = ?, {_SET_RESULT} WHERE key = ?",
            updates,
        )

    def close_job(self, job_id: int, retries: Retries, *, failure: str | None = None) -> None:
        """Mark a terminal job collected; requests it did not report on are resubmitted.

        With ``failure`` (the whole job was rejected), each request counts one failed attempt.
        """
        with self.transaction() as db:
            left = db.execute(
                f"SELECT key, attempts, unfinished FROM requests WHERE job_id = ? AND state = '{QUEUED}'",
                (job_id,),
            ).fetchall()
            status = ResultStatus.ERRORED if failure is not None else ResultStatus.UNFINISHED
            outcomes = [(row, Result(custom_id=row["key"], status=status, error=failure)) for row in left]
            self._settle(db, outcomes, retries)
            db.execute("UPDATE jobs SET fetched = 1, updated_at = ? WHERE id = ?", (time.time(), job_id))

    def reject_intent(self, job_id: int, reason: str, retries: Retries) -> None:
        """The provider refused to create the job: one failed attempt for each request."""
        with self.transaction() as db:
            db.execute(f"UPDATE jobs SET state = '{JobPhase.REJECTED.value}', message = ?, updated_at = ? WHERE id = ?",
                       (reason, time.time(), job_id))
        self.close_job(job_id, retries, failure=reason)

    # -- results the provider lost, and retrying failed requests -------------------------

    def lose_job(self, job_id: int, reason: str) -> int:
        """The provider no longer has this job's results: end the job, keeping what is stored.

        Its requests still waiting for a result become LOST (not resubmitted until the user
        says so). Returns how many.
        """
        with self.transaction() as db:
            cur = db.execute(
                f"UPDATE requests SET state = '{LOST}' WHERE job_id = ? AND state = '{QUEUED}'", (job_id,)
            )
            db.execute(
                f"UPDATE jobs SET state = '{LOST_JOB}', message = ?, fetched = 1, updated_at = ? WHERE id = ?",
                (reason, time.time(), job_id),
            )
            return cur.rowcount

    def lost_jobs(self, plan_id: str | None = None) -> list[JobRecord]:
        """Lost jobs still holding requests without a result (of one plan, or all), with ``lost`` counts."""
        where, params = "", ()  # type: tuple[str, tuple[Any, ...]]
        if plan_id is not None:
            where = "AND EXISTS (SELECT 1 FROM plan_items p WHERE p.plan_id = ? AND p.request = r.id)"
            params = (plan_id,)
        # From the few lost jobs (lose_job marks the job and its requests together) to their
        # requests by the job index: no pass over the plan's requests when nothing is lost.
        rows = self._query(
            f"SELECT j.*, COUNT(r.key) AS lost FROM jobs j CROSS JOIN requests r "
            f"WHERE r.job_id = j.id AND j.state = '{LOST_JOB}' AND r.state = '{LOST}' {where} GROUP BY j.id ORDER BY j.id",
            params,
        )
        return [self._job_dict(r) for r in rows]

    def release_lost(self, job_ids: Sequence[int] | None = None, *, plan_id: str | None = None) -> int:
        """The user consents: requests of lost jobs (these, a plan's, or all) are submitted again."""
        sql = f"UPDATE requests SET state = '{NEW}', job_id = NULL WHERE state = '{LOST}'"
        params: list[Any] = []
        if job_ids is not None:
            sql += f" AND job_id IN ({','.join('?' * len(job_ids)) or 'NULL'})"
            params += list(job_ids)
        if plan_id is not None:
            sql += " AND id IN (SELECT request FROM plan_items WHERE plan_id = ?)"
            params.append(plan_id)
        with self.transaction() as db:
            return db.execute(sql, params).rowcount

    def retry_failed(self, plan_id: str) -> int:
        """Give the plan's failed requests a new round of attempts; returns how many."""
        with self.transaction() as db:
            return db.execute(
                f"UPDATE requests SET state = '{NEW}', attempts = 0, unfinished = 0, job_id = NULL "
                f"WHERE state = '{FAILED}' AND id IN (SELECT request FROM plan_items WHERE plan_id = ?)",
                (plan_id,),
            ).rowcount

    def list_jobs(self, *, active_only: bool = False, limit: int = 200) -> list[JobRecord]:
        where = "WHERE fetched = 0" if active_only else ""
        rows = self._query(f"SELECT * FROM jobs {where} ORDER BY id DESC LIMIT ?", (limit,))
        jobs = [self._job_dict(r) for r in rows]
        # Each job's host is its run's (a store shared by many machines shows whose job it is).
        run_ids = sorted({j.run_id for j in jobs if j.run_id is not None})
        hosts: dict[int, str | None] = {}
        for i in range(0, len(run_ids), 500):
            part = run_ids[i : i + 500]
            for run in self._query(f"SELECT * FROM runs WHERE id IN ({','.join('?' * len(part))})", part):
                hosts[run["id"]] = dict(run).get("host")  # a store not migrated yet (read-only) has none
        return [evolve(job, host=hosts.get(job.run_id)) if job.run_id is not None else job for job in jobs]

    def get_job(self, ident: str | int) -> JobRecord | None:
        """A job by local id, tag or remote id."""
        rows = self._query(
            "SELECT * FROM jobs WHERE CAST(id AS TEXT) = ? OR tag = ? OR remote_id = ? LIMIT 1",
            (str(ident), str(ident), str(ident)),
        )
        return self._job_dict(rows[0]) if rows else None

    def job_counts(self, job_id: int) -> dict[str, int]:
        rows = self._query(
            "SELECT r.state, COUNT(*) AS n FROM job_requests j JOIN requests r ON r.id = j.request "
            "WHERE j.job_id = ? GROUP BY r.state",
            (job_id,),
        )
        return {r["state"]: r["n"] for r in rows}

    # -- tokens in flight, queue limits, money ---------------------------------------------

    def in_flight(self, provider: str, model: str) -> tuple[int, int]:
        """``(input tokens, requests)`` of the jobs of ``provider``/``model`` the provider may
        still be holding (submitted or being submitted, not yet terminal), whichever plan
        submitted them: the provider's queue limits are per account and model."""
        # What each job held when it was cut (the provider counts a job whole until it
        # ends); a job cut before jobs kept the figure is summed over its requests.
        rows = self._query(
            f"SELECT COALESCE(SUM(COALESCE(j.tokens, ({_job_tokens('j.id')}))), 0) AS tokens, "
            "COALESCE(SUM(j.requests), 0) AS n FROM jobs j "
            f"WHERE j.provider = ? AND j.model = ? AND j.fetched = 0 AND j.state IN ('{INTENT}', '{JobPhase.RUNNING.value}')",
            (provider, model),
        )
        return int(rows[0]["tokens"]), int(rows[0]["n"])

    def job_tokens(self, job_id: int) -> int:
        """Estimated input tokens of a job's requests."""
        rows = self._query(f"SELECT COALESCE(j.tokens, ({_job_tokens('j.id')})) AS tokens FROM jobs j WHERE j.id = ?",
                           (job_id,))
        return int(rows[0]["tokens"] or 0) if rows else 0

    def learned_quota(self, provider: str, model: str) -> tuple[int | None, int | None]:
        """The ``(max enqueued tokens, max queued requests)`` overnight learned for this model
        within the last :data:`QUOTA_MEMORY` seconds (older figures are forgotten: a queue
        that was full then may have been full of other work, and a tier may have grown)."""
        rows = self._query(
            "SELECT max_enqueued_tokens, max_queued_requests FROM quotas WHERE provider = ? AND model = ? "
            "AND learned_at >= ?",
            (provider, model, time.time() - QUOTA_MEMORY),
        )
        return (rows[0]["max_enqueued_tokens"], rows[0]["max_queued_requests"]) if rows else (None, None)

    def learn_quota(self, provider: str, model: str, *, tokens: int | None = None,
                    requests: int | None = None, reason: str = "") -> bool:
        """Lower the learned figures (never raise them); True when one went down."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT max_enqueued_tokens, max_queued_requests FROM quotas WHERE provider = ? AND model = ? "
                "AND learned_at >= ?",
                (provider, model, time.time() - QUOTA_MEMORY),
            ).fetchone()
            # A figure older than QUOTA_MEMORY is forgotten: start again from what was just seen.
            old_tokens, old_requests = (row[0], row[1]) if row else (None, None)

            def lower(old: int | None, new: int | None) -> int | None:
                return old if new is None else new if old is None else min(old, new)

            new_tokens, new_requests = lower(old_tokens, tokens), lower(old_requests, requests)
            if (new_tokens, new_requests) == (old_tokens, old_requests):
                return False
            db.execute(
                "INSERT INTO quotas (provider, model, max_enqueued_tokens, max_queued_requests, learned_at, reason) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (provider, model) DO UPDATE SET "
                "max_enqueued_tokens = excluded.max_enqueued_tokens, max_queued_requests = excluded.max_queued_requests, "
                "learned_at = excluded.learned_at, reason = excluded.reason",
                (provider, model, new_tokens, new_requests, time.time(), reason),
            )
            return True

    def requeue_job(self, job_id: int, state: str, reason: str) -> None:
        """A job refused or failed for quota: its requests wait again, no attempt counted."""
        with self.transaction() as db:
            db.execute(
                f"UPDATE requests SET state = '{NEW}', job_id = NULL WHERE job_id = ? AND state = '{QUEUED}'",
                (job_id,),
            )
            db.execute(
                "UPDATE jobs SET state = ?, message = ?, fetched = 1, updated_at = ? WHERE id = ?",
                (state, reason, time.time(), job_id),
            )

    def plan_money(self, plan_id: str) -> dict[str, dict[str, float]]:
        """Per request state of the plan's distinct requests: count, estimated input tokens,
        most output tokens, how many failed before (``retried``), and for collected ones
        their real usage and billed cost."""
        fig = self._figure
        rows = self._query(
            "SELECT r.state AS state, COUNT(*) AS n, MAX(r.model) AS model, "
            "COALESCE(SUM(COALESCE(r.tokens, (r.bytes + 3) / 4)), 0) AS tokens, "
            "COALESCE(SUM(r.max_output), 0) AS max_output, "
            "SUM(CASE WHEN r.max_output IS NULL THEN 1 ELSE 0 END) AS unbounded, "
            "SUM(CASE WHEN r.attempts > 0 THEN 1 ELSE 0 END) AS retried, "
            f"COALESCE(SUM({fig('used_in', 'r.')}), 0) AS used_in, "
            f"COALESCE(SUM({fig('used_out', 'r.')}), 0) AS used_out, "
            f"COALESCE(SUM({fig('cost_usd', 'r.')}), 0) AS cost, "
            f"COALESCE(SUM({fig('online_cost_usd', 'r.')}), 0) AS online "
            f"FROM {self._plan_requests(plan_id)} JOIN requests r ON r.id = p.request "
            "GROUP BY r.state",
            (plan_id,),
        )
        return {r["state"]: {k: r[k] for k in r.keys() if k != "state"} for r in rows}

    def money_totals(self) -> dict[str, float]:
        """What every collected request in the store was billed, and its online price."""
        cost, online = self._figure("cost_usd"), self._figure("online_cost_usd")
        rows = self._query(
            f"SELECT COUNT(*) AS n, COALESCE(SUM({cost}), 0) AS cost, COALESCE(SUM({online}), 0) AS online, "
            f"COALESCE(SUM(CASE WHEN {cost} IS NULL THEN 1 ELSE 0 END), 0) AS unpriced "
            f"FROM requests WHERE state = '{DONE}'"
        )
        r = rows[0]
        return {"requests": r["n"], "cost_usd": r["cost"], "online_cost_usd": r["online"],
                "saved_usd": r["online"] - r["cost"], "unpriced": int(r["unpriced"] or 0)}


    # -- the provider as second source of truth ---------------------------------------------

    def mark_ambiguous(self, job_id: int) -> None:
        """The submit of this job failed in a way that may hide a created job: note when."""
        with self.transaction() as db:
            db.execute("INSERT INTO ambiguous_creates (job_id, at) VALUES (?, ?) "
                       "ON CONFLICT (job_id) DO UPDATE SET at = excluded.at", (job_id, time.time()))

    def ambiguous_since(self, job_id: int) -> float | None:
        rows = self._query("SELECT at FROM ambiguous_creates WHERE job_id = ?", (job_id,))
        return rows[0]["at"] if rows else None

    def ambiguous_open_jobs(self, plan_id: str) -> list[JobRecord]:
        """Open, confirmed jobs of this plan whose submission was ambiguous at some point."""
        return [j for j in self.open_jobs(plan_id)
                if j.remote_id and self.ambiguous_since(j.id) is not None]

    def known_remote_ids(self, provider: str) -> frozenset[str]:
        """Remote ids this store already knows (its own jobs and the provider's listed ones)."""
        rows = self._query(
            "SELECT remote_id FROM jobs WHERE provider = ? AND remote_id IS NOT NULL "
            "UNION SELECT remote_id FROM remote_jobs WHERE provider = ?",
            (provider, provider),
        )
        return frozenset(r["remote_id"] for r in rows)

    def has_unsent(self, plan_id: str) -> bool:
        """Whether the plan holds a request never sent in any job this store knows of."""
        rows = self._query(
            "SELECT 1 FROM plan_items p JOIN requests r ON r.id = p.request WHERE p.plan_id = ? "
            f"AND r.state = '{NEW}' AND r.job_id IS NULL AND r.attempts = 0 AND r.unfinished = 0 LIMIT 1",
            (plan_id,),
        )
        return bool(rows)

    def remember_remote_job(self, provider: str, ref: JobRef, state: str, created_at: float,
                            keys: Iterable[str]) -> None:
        """Keep a job the provider listed, with the request keys it holds, for adoption."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO remote_jobs (remote_id, provider, ref, state, created_at, listed_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (remote_id) DO UPDATE SET provider = excluded.provider, "
                "ref = excluded.ref, state = excluded.state, created_at = excluded.created_at, "
                "listed_at = excluded.listed_at",
                (ref.remote_id, provider, dumps(ref), state, created_at, time.time()),
            )
            db.executemany(
                "INSERT INTO remote_job_keys (remote_id, key) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [(ref.remote_id, k) for k in keys],
            )

    def adopt_remote_jobs(self, plan_id: str, provider: str, step: str) -> list[tuple[JobRef, int]]:
        """Record as this plan's jobs the listed provider jobs holding its unsent requests.

        Each adopted job gets a job row (checked and fetched like one submitted here) and
        takes the plan's requests it holds that no job holds yet. Returns ``(ref, count)``.
        """
        adopted = []
        with self.transaction() as db:
            candidates = db.execute(
                "SELECT rj.remote_id, rj.ref, rj.created_at FROM remote_jobs rj WHERE rj.provider = ? "
                "AND rj.state != 'failed' AND rj.remote_id NOT IN "
                "(SELECT remote_id FROM jobs WHERE remote_id IS NOT NULL) ORDER BY rj.created_at",
                (provider,),
            ).fetchall()
            for cand in candidates:
                held = db.execute(
                    "SELECT DISTINCT r.id, r.model FROM remote_job_keys k JOIN requests r ON r.key = k.key "
                    f"JOIN plan_items p ON p.request = r.id WHERE k.remote_id = ? AND p.plan_id = ? "
                    f"AND r.state = '{NEW}' AND r.job_id IS NULL AND r.attempts = 0 AND r.unfinished = 0",
                    (cand["remote_id"], plan_id),
                ).fetchall()
                if not held:
                    continue
                request_ids = [r["id"] for r in held]
                ref = loads(cand["ref"], JobRef)
                model = held[0]["model"]
                now = time.time()
                tag = ref.tag
                if not tag or db.execute("SELECT 1 FROM jobs WHERE tag = ?", (tag,)).fetchone():
                    tag = f"adopted-{ref.remote_id}"
                cur = db.execute(
                    "INSERT INTO jobs (tag, provider, model, step, plan_id, run_id, remote_id, state, ref, "
                    f"requests, bytes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, '{JobPhase.RUNNING.value}', ?, ?, ?, ?, "
                    "?) RETURNING id",
                    (tag, provider, model, step, plan_id, self.run_id, ref.remote_id, dumps(ref), len(request_ids), 0,
                     now, now),
                )
                job_id = int(cur.fetchall()[0][0])
                self._insert_job_requests(db, job_id, request_ids)
                db.execute(self.QUEUE_MEMBERS, (job_id, job_id))  # as when an intent is cut
                adopted.append((ref, len(request_ids)))
        return adopted

    def record_duplicate(self, of_job: JobRecord, ref: JobRef, requests: int, state: str) -> int:
        """Record a second provider job of one chunk; it is checked and its successes kept."""
        now = time.time()
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO jobs (tag, provider, model, step, plan_id, run_id, remote_id, state, message, ref, "
                "requests, bytes, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?) RETURNING id",
                (f"{of_job.tag}~{ref.remote_id}", of_job.provider, of_job.model, of_job.step,
                 of_job.plan_id, self.run_id, ref.remote_id, state,
                 f"duplicate of {of_job.remote_id}", dumps(ref), requests, now, now),
            )
            job_id = int(cur.fetchall()[0][0])
            db.execute("INSERT INTO duplicates (job_id, of_job) VALUES (?, ?)", (job_id, of_job.id))
            return job_id

    def open_duplicates(self, plan_id: str) -> list[JobRecord]:
        """Duplicate jobs of this plan not yet collected, each with ``of_job`` (the kept one)."""
        rows = self._query(
            "SELECT jobs.*, d.of_job FROM jobs JOIN duplicates d ON d.job_id = jobs.id "
            "WHERE jobs.plan_id = ? AND jobs.fetched = 0 ORDER BY jobs.id",
            (plan_id,),
        )
        return [self._job_dict(r) for r in rows]

    def record_duplicate_results(self, of_job: int, results: Sequence[Result]) -> int:
        """Keep a duplicate job's successes for requests still queued in the kept job.

        Its errors and unfinished requests are ignored (the kept job answers for them),
        and a request already answered is never answered twice. Returns how many it took.
        """
        ok = {r.custom_id: r for r in results if r.status is ResultStatus.SUCCEEDED}
        taken = 0
        with self.transaction() as db:
            keys = list(ok)
            for i in range(0, len(keys), 500):
                part = keys[i : i + 500]
                rows = db.execute(
                    f"SELECT key, attempts, unfinished FROM requests WHERE key IN ({','.join('?' * len(part))}) "
                    f"AND {_IN_JOB} AND state = '{QUEUED}'",
                    (*part, of_job),
                ).fetchall()
                self._settle(db, [(row, ok[row["key"]]) for row in rows], Retries())  # successes only
                taken += len(rows)
        return taken

    def close_duplicate(self, job_id: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE jobs SET fetched = 1, updated_at = ? WHERE id = ?", (time.time(), job_id))

    # -- online mode: claims, answers, the batch part's deadline ------------------------------

    def claim_online(self, plan_id: str, owner: str, *, after: int = -1, limit: int = 256) -> list[dict[str, Any]]:
        """Claim up to ``limit`` of the plan's requests still to send (past position ``after``)
        for ``owner`` to send online, in one transaction: they leave NEW (so neither a batch
        submit nor another online sender takes them) until :meth:`record_online` or
        :meth:`release_online`. Returns ``{key, line, tokens, max_output, bytes, model, pos}``
        in plan order, each key once.
        """
        now = time.time()
        with self.transaction() as db:
            rows = db.execute(
                "SELECT r.key, r.line, r.tokens, r.max_output, r.bytes, r.model, p.position AS pos "
                f"FROM plan_items p JOIN requests r ON r.id = p.request WHERE p.plan_id = ? AND p.position > ? "
                f"AND r.state = '{NEW}' ORDER BY p.position LIMIT ?",
                (plan_id, after, limit),
            ).fetchall()
            claimed: dict[str, dict[str, Any]] = {}
            for row in rows:
                if row["key"] in claimed:
                    continue
                taken = db.execute(
                    f"UPDATE requests SET state = '{ONLINE}', job_id = NULL WHERE key = ? AND state = '{NEW}'",
                    (row["key"],),
                ).rowcount
                if taken:
                    db.execute(
                        "INSERT INTO online_claims (key, owner, at) VALUES (?, ?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, at = excluded.at",
                        (row["key"], owner, now),
                    )
                    claimed[row["key"]] = dict(row)
            return list(claimed.values())

    def record_online(self, owner: str, results: Sequence[tuple[Result, float | None]], retries: Retries) -> int:
        """Store online answers (with what each cost) for requests ``owner`` still holds, in one
        transaction. A success is final (and noted in ``online_answers``); an error counts one
        attempt (the request goes back to NEW, or ends FAILED by the ``retries`` rule). Answers
        for requests the owner no longer holds are ignored. Returns how many were stored."""
        first: dict[str, tuple[Result, float | None]] = {}
        for result, cost in results:
            first.setdefault(result.custom_id, (result, cost))
        stored = 0
        now = time.time()
        with self.transaction() as db:
            held = []
            for key in first:
                row = db.execute(
                    "SELECT r.key, r.attempts, r.unfinished FROM requests r JOIN online_claims c ON c.key = r.key "
                    f"WHERE r.key = ? AND c.owner = ? AND r.state = '{ONLINE}'",
                    (key, owner),
                ).fetchone()
                if row is not None:
                    held.append((row, first[key][0]))
            self._settle(db, held, retries)
            for row, result in held:
                db.execute("DELETE FROM online_claims WHERE key = ?", (row["key"],))
                if result.status is ResultStatus.SUCCEEDED:
                    db.execute(
                        "INSERT INTO online_answers (key, cost_usd, at) VALUES (?, ?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET cost_usd = excluded.cost_usd, at = excluded.at",
                        (row["key"], first[row["key"]][1], now),
                    )
                stored += 1
        return stored

    def release_online(self, owner: str, keys: Iterable[str] | None = None) -> int:
        """Give back ``owner``'s claims (those of ``keys``, or all): the requests are NEW again,
        with no attempt counted (they were not answered). Returns how many."""
        with self.transaction() as db:
            if keys is None:
                keys = [r["key"] for r in db.execute("SELECT key FROM online_claims WHERE owner = ?", (owner,))]
            released = 0
            for key in list(keys):
                if db.execute("DELETE FROM online_claims WHERE key = ? AND owner = ?", (key, owner)).rowcount:
                    released += db.execute(
                        f"UPDATE requests SET state = '{NEW}' WHERE key = ? AND state = '{ONLINE}'", (key,)
                    ).rowcount
            return released

    def online_owners(self, plan_id: str | None = None) -> list[dict[str, Any]]:
        """The owners holding online claims (of the plan's requests, or any): ``owner``, ``at``
        (the latest heartbeat) and ``claims``. Cheap when nothing is claimed."""
        if not self._query("SELECT 1 FROM online_claims LIMIT 1"):
            return []
        if plan_id is None:
            rows = self._query("SELECT owner, MAX(at) AS at, COUNT(*) AS claims FROM online_claims GROUP BY owner")
        else:
            rows = self._query(
                "SELECT c.owner, MAX(c.at) AS at, COUNT(*) AS claims FROM online_claims c "
                "WHERE c.key IN (SELECT r.key FROM plan_items p JOIN requests r ON r.id = p.request "
                "WHERE p.plan_id = ?) GROUP BY c.owner",
                (plan_id,),
            )
        return [dict(r) for r in rows]

    def heartbeat_online(self, owner: str) -> None:
        """``owner`` is alive: its claims are fresh."""
        with self.transaction() as db:
            db.execute("UPDATE online_claims SET at = ? WHERE owner = ?", (time.time(), owner))

    def plan_online_money(self, plan_id: str) -> dict[str, float]:
        """How many of the plan's distinct requests were answered online, and what they cost."""
        # From the answers (none, in a batch run) to the plan, not from the plan to them.
        rows = self._query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(a.cost_usd), 0) AS cost, SUM(CASE WHEN a.cost_usd IS NULL "
            "THEN 1 ELSE 0 END) AS unpriced FROM online_answers a CROSS JOIN requests r "
            f"WHERE r.key = a.key AND r.state = '{DONE}' "
            "AND EXISTS (SELECT 1 FROM plan_items p WHERE p.plan_id = ? AND p.request = r.id)",
            (plan_id,),
        )
        r = rows[0]
        return {"n": int(r["n"] or 0), "cost": float(r["cost"] or 0.0), "unpriced": int(r["unpriced"] or 0)}

    def batch_deadline(self, plan_id: str) -> tuple[float | None, float | None]:
        """``(when the plan's batch part first submitted, when it fell back to online)``, Unix time."""
        rows = self._query("SELECT started_at, fell_back_at FROM batch_deadlines WHERE plan_id = ?", (plan_id,))
        return (rows[0]["started_at"], rows[0]["fell_back_at"]) if rows else (None, None)

    def note_batch_start(self, plan_id: str) -> None:
        """The plan's batch part submits (the first time counts; later calls change nothing)."""
        self._note_first(plan_id, "started_at")

    def note_fallback(self, plan_id: str) -> None:
        """The plan's batch part passed its deadline: its jobs were cancelled, the rest goes online."""
        self._note_first(plan_id, "fell_back_at")

    def _note_first(self, plan_id: str, column: str) -> None:
        """Set the plan's ``batch_deadlines.<column>`` to now, unless it is set already."""
        with self.transaction() as db:
            db.execute(
                f"INSERT INTO batch_deadlines (plan_id, {column}) VALUES (?, ?) "
                f"ON CONFLICT (plan_id) DO UPDATE SET {column} = COALESCE(batch_deadlines.{column}, "
                f"excluded.{column})",
                (plan_id, time.time()),
            )

    def clear_batch_deadline(self, plan_id: str) -> None:
        """The step is complete: a later round (``retry_failed``) starts a new clock."""
        with self.transaction() as db:
            db.execute("DELETE FROM batch_deadlines WHERE plan_id = ?", (plan_id,))


