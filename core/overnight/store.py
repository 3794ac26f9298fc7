"""The state store: one SQLite file that is the only place job ids live.

It records runs, provider jobs (from the intent committed before submit to the last
fetch), which request belongs to which job, and every result. Requests are
content-addressed (see :func:`overnight.executor.request_key`), so the same request
from a re-run, an edited pipeline or another pipeline reuses what was paid for.

The interface is narrow (plans, jobs, requests, runs) and every write is a short
transaction, so a server database could back it later.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import platformdirs

from overnight._serialization import SCHEMA_VERSION, dumps, loads
from overnight.errors import StoreError
from overnight.models import JobRef, JobStatus, Result, ResultStatus

DB_NAME = "overnight.sqlite"

# Request states.
NEW = "new"  # to be submitted (first time, or again after an error or an expiry)
QUEUED = "queued"  # in a job that has not been fetched yet
DONE = "done"  # succeeded; the result is stored
FAILED = "failed"  # errored on every allowed attempt; the last error is stored

# Job states beyond overnight.models.JobState.
INTENT = "intent"  # committed before submit; no remote id yet

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, pipeline TEXT NOT NULL, state TEXT NOT NULL,
    started_at REAL NOT NULL, finished_at REAL
);
CREATE TABLE IF NOT EXISTS plans (
    plan_id TEXT PRIMARY KEY, provider TEXT NOT NULL, step TEXT NOT NULL,
    size INTEGER NOT NULL, complete INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS plan_items (
    plan_id TEXT NOT NULL, position INTEGER NOT NULL, row INTEGER NOT NULL,
    sample INTEGER NOT NULL, key TEXT NOT NULL, PRIMARY KEY (plan_id, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS plan_items_key ON plan_items (key);
CREATE TABLE IF NOT EXISTS requests (
    key TEXT PRIMARY KEY, provider TEXT NOT NULL, model TEXT NOT NULL,
    line TEXT NOT NULL, bytes INTEGER NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    unfinished INTEGER NOT NULL DEFAULT 0, job_id INTEGER, result TEXT
);
CREATE INDEX IF NOT EXISTS requests_job ON requests (job_id);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, tag TEXT NOT NULL UNIQUE, provider TEXT NOT NULL,
    model TEXT NOT NULL, step TEXT NOT NULL, plan_id TEXT NOT NULL,
    run_id INTEGER, remote_id TEXT, state TEXT NOT NULL, raw_status TEXT, message TEXT, ref TEXT,
    requests INTEGER NOT NULL, bytes INTEGER NOT NULL,
    completed INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
    fetched INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS job_requests (
    job_id INTEGER NOT NULL, key TEXT NOT NULL, PRIMARY KEY (job_id, key)
) WITHOUT ROWID;
"""


#: Page size of a new store file, page cache per connection (KiB), WAL pages between checkpoints.
PAGE_SIZE = 8192
CACHE_KB = 64 * 1024
WAL_CHECKPOINT_PAGES = 4096

#: Seconds a connection waits for another one's lock before the store is "locked".
BUSY_TIMEOUT = 30.0


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, waiting like any other statement while another process holds a lock.

    SQLite does not call the busy handler for this switch: when two processes open a new
    store at the same moment (or one is writing to a store not yet in WAL), the pragma
    fails at once with "database is locked". Retry it within the same busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def default_cache_dir() -> Path:
    """``$OVERNIGHT_HOME``, else the user cache directory (e.g. ``~/.cache/overnight``)."""
    home = os.environ.get("OVERNIGHT_HOME")
    return Path(home) if home else Path(platformdirs.user_cache_dir("overnight"))


class Store:
    """The embedded SQLite store. One connection per thread; WAL; short transactions."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.cache_dir = self.path.parent
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        #: The run this process is in (``start_run``); jobs submitted now are recorded under it.
        self.run_id: int | None = None
        self._migrate()

    @classmethod
    def open(cls, cache_dir: str | os.PathLike[str] | None = None) -> "Store":
        """Open (creating if needed) the store in ``cache_dir`` or the default directory."""
        directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return cls(directory / DB_NAME)

    # -- connection ----------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
                conn.row_factory = sqlite3.Row
                # Sized for plans of millions of requests: bigger pages (a no-op on an existing
                # file), a 64 MB page cache instead of 2 MB (the hot indexes stay in memory
                # instead of being re-read page by page), fewer WAL checkpoints.
                conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
                _enable_wal(conn)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=30000")
                conn.execute(f"PRAGMA cache_size=-{CACHE_KB}")
                conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            except sqlite3.DatabaseError as exc:
                raise self._unusable(exc) from None
            self._local.conn = conn
        return conn

    def _unusable(self, exc: Exception) -> StoreError:
        return StoreError(
            f"The overnight store {self.path} cannot be used ({exc}). Nothing was submitted. "
            "If another overnight process is running, let it finish; if the file is corrupt, "
            "move it aside (it holds your job ids: keep a copy) and run again."
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction (BEGIN IMMEDIATE takes the write lock up front)."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.DatabaseError):  # a corrupt file may refuse this too
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError):
                # Found while reading or writing a page (e.g. "database disk image is malformed").
                raise self._unusable(exc) from None
            raise

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None

    def _stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[sqlite3.Row]:
        """Rows of a query, streamed; a file that fails part-way is a StoreError too."""
        try:
            yield from self._db.execute(sql, params)
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None

    def _migrate(self) -> None:
        try:
            db = self._db
            found = db.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone()
            if found:
                row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                version = int(row["value"]) if row else 0
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"The store {self.path} was written by a newer overnight (schema "
                        f"{version}, this one reads {SCHEMA_VERSION}). Upgrade overnight "
                        "(pip install -U overnight) or point OVERNIGHT_HOME elsewhere. "
                        "Nothing was submitted."
                    )
            db.executescript(_SCHEMA)
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- runs ----------------------------------------------------------------------------

    def start_run(self, pipeline: str) -> int:
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO runs (pipeline, state, started_at) VALUES (?, 'running', ?)",
                (pipeline, time.time()),
            )
            self.run_id = int(cur.lastrowid)
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
        items: Iterable[tuple[int, int, str, str, str, int]],
        batch: int = 50_000,
    ) -> int:
        """Store a plan from ``(row, sample, key, model, line, bytes)`` items, streamed.

        In transactions of ``batch`` items: request keys are hashes, so every transaction
        dirties pages all over two key indexes; big ones write each page a few times in
        total instead of once per few items (1M requests: 20.2 s -> 11.3 s CPU, sys 9.7 -> 2.7 s).

        Requests already known (by key) keep their state and results.
        """
        with self.transaction() as db:
            db.execute("DELETE FROM plan_items WHERE plan_id = ?", (plan_id,))
            db.execute(
                "INSERT OR REPLACE INTO plans (plan_id, provider, step, size, complete, created_at) "
                "VALUES (?, ?, ?, 0, 0, ?)",
                (plan_id, provider, step, time.time()),
            )
        position = 0
        pending: list[tuple[int, int, str, str, str, int]] = []

        def flush() -> None:
            nonlocal position
            with self.transaction() as db:
                db.executemany(
                    "INSERT INTO plan_items (plan_id, position, row, sample, key) VALUES (?, ?, ?, ?, ?)",
                    [(plan_id, position + i, r, s, k) for i, (r, s, k, *_rest) in enumerate(pending)],
                )
                db.executemany(
                    "INSERT OR IGNORE INTO requests (key, provider, model, line, bytes, state) "
                    f"VALUES (?, ?, ?, ?, ?, '{NEW}')",
                    [(k, provider, m, line, b) for (_r, _s, k, m, line, b) in pending],
                )
            position += len(pending)
            pending.clear()

        for item in items:
            pending.append(item)
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
        with self.transaction() as db:
            db.execute("UPDATE plans SET size = ?, complete = 1 WHERE plan_id = ?", (position, plan_id))
        return position

    def drop_plan(self, plan_id: str) -> None:
        """Forget a plan that failed validation (its requests were never submitted)."""
        with self.transaction() as db:
            db.execute("DELETE FROM plan_items WHERE plan_id = ?", (plan_id,))
            db.execute("DELETE FROM plans WHERE plan_id = ?", (plan_id,))

    def plan_counts(self, plan_id: str) -> dict[str, int]:
        """How many of the plan's distinct requests are in each state."""
        rows = self._query(
            "SELECT r.state, COUNT(*) AS n FROM (SELECT DISTINCT key FROM plan_items WHERE plan_id = ?) p "
            "JOIN requests r ON r.key = p.key GROUP BY r.state",
            (plan_id,),
        )
        return {r["state"]: r["n"] for r in rows}

    def paid_count(self, plan_id: str) -> int:
        """How many of the plan's requests a previous run already paid for (or is paying)."""
        counts = self.plan_counts(plan_id)
        return sum(n for state, n in counts.items() if state != NEW)

    def pending_lines(self, plan_id: str, *, after: int | None = None, limit: int | None = None
                      ) -> Iterator[sqlite3.Row]:
        """The plan's requests still to submit, in plan order, each once (key, model, bytes, pos).

        With ``after`` (a position) and ``limit``, one page of them: those at positions past
        ``after``, read along the plan's primary key with no sort, so paging through a plan
        is linear. A page may list a key more than once (a repeated row); the caller keeps
        the first.
        """
        if after is not None or limit is not None:
            yield from self._stream(
                "SELECT r.key, r.model, r.bytes, p.position AS pos FROM plan_items p "
                f"JOIN requests r ON r.key = p.key WHERE p.plan_id = ? AND p.position > ? AND r.state = '{NEW}' "
                "ORDER BY p.position LIMIT ?",
                (plan_id, -1 if after is None else after, -1 if limit is None else limit),
            )
            return
        yield from self._stream(
            "SELECT r.key, r.model, r.bytes, MIN(p.position) AS pos FROM plan_items p "
            f"JOIN requests r ON r.key = p.key WHERE p.plan_id = ? AND r.state = '{NEW}' "
            "GROUP BY r.key ORDER BY pos",
            (plan_id,),
        )

    def plan_results(self, plan_id: str) -> Iterator[tuple[int, int, str, str | None]]:
        """``(row, sample, state, result JSON)`` in plan order, streamed."""
        cursor = self._stream(
            "SELECT p.row, p.sample, r.state, r.result FROM plan_items p JOIN requests r ON r.key = p.key "
            "WHERE p.plan_id = ? ORDER BY p.position",
            (plan_id,),
        )
        for row in cursor:
            yield row["row"], row["sample"], row["state"], row["result"]

    # -- jobs ------------------------------------------------------------------------------

    def create_intent(self, *, tag: str, provider: str, model: str, step: str, plan_id: str,
                      keys: Sequence[str], nbytes: int) -> int:
        """Commit the intent to submit ``keys`` as one job, before anything is sent."""
        now = time.time()
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO jobs (tag, provider, model, step, plan_id, run_id, state, requests, bytes, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (tag, provider, model, step, plan_id, self.run_id, INTENT, len(keys), nbytes, now, now),
            )
            job_id = int(cur.lastrowid)
            db.executemany(
                "INSERT INTO job_requests (job_id, key) VALUES (?, ?)", [(job_id, k) for k in keys]
            )
            # One set-wise statement over the membership just written, not one per request.
            db.execute(
                f"UPDATE requests SET state = '{QUEUED}', job_id = ? "
                "WHERE key IN (SELECT key FROM job_requests WHERE job_id = ?)",
                (job_id, job_id),
            )
            return job_id

    def job_lines(self, job_id: int) -> Iterator[str]:
        """The provider lines of a job's requests, streamed in a stable order.

        The order is the requests' order in the store (plan order for a new plan): results
        come back in about the order sent, so storing them then touches each page of the
        requests table once instead of once per result.
        """
        cursor = self._stream(
            "SELECT r.line FROM job_requests j JOIN requests r ON r.key = j.key WHERE j.job_id = ? "
            "ORDER BY r.rowid",
            (job_id,),
        )
        for row in cursor:
            yield row["line"]

    def confirm_job(self, job_id: int, ref: JobRef) -> None:
        """Record the remote id (and the plugin's state) of a submitted job."""
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET remote_id = ?, ref = ?, state = 'running', updated_at = ? WHERE id = ?",
                (ref.remote_id, dumps(ref), time.time(), job_id),
            )

    def abandon_intent(self, job_id: int) -> None:
        """The provider certainly has no job for this intent: its requests go back to NEW."""
        with self.transaction() as db:
            db.execute(
                f"UPDATE requests SET state = '{NEW}', job_id = NULL WHERE job_id = ? AND state = '{QUEUED}'",
                (job_id,),
            )
            db.execute(
                "UPDATE jobs SET state = 'abandoned', fetched = 1, updated_at = ? WHERE id = ?",
                (time.time(), job_id),
            )

    def open_jobs(self, plan_id: str) -> list[dict[str, Any]]:
        """Jobs holding requests of this plan that are not yet fully collected."""
        # From the few unfetched jobs to their requests (by the job index), not from every
        # request of the plan: a poll of a million-request plan no longer scans it.
        rows = self._query(
            "SELECT * FROM jobs WHERE fetched = 0 AND EXISTS ("
            "SELECT 1 FROM requests r CROSS JOIN plan_items p ON p.key = r.key "  # CROSS: requests first
            f"WHERE r.job_id = jobs.id AND r.state = '{QUEUED}' AND p.plan_id = ?) ORDER BY id",
            (plan_id,),
        )
        return [self._job_dict(r) for r in rows]

    def _job_dict(self, row: sqlite3.Row) -> dict[str, Any]:
        job = dict(row)
        job["ref"] = loads(row["ref"], JobRef) if row["ref"] else None
        return job

    def update_job(self, job_id: int, status: JobStatus) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, raw_status = ?, message = ?, completed = ?, failed = ?, "
                "updated_at = ? WHERE id = ?",
                (status.state.value, status.raw_status, status.message, status.completed,
                 status.failed, time.time(), job_id),
            )

    def record_results(self, job_id: int, results: Sequence[Result], max_attempts: int,
                       max_unfinished: int) -> None:
        """Store one batch of a job's results, in one transaction.

        Only requests still queued in *this* job take a result, so unknown custom ids,
        duplicates (the first one wins) and late results of a superseded job are ignored.
        """
        first: dict[str, Result] = {}
        for result in results:
            first.setdefault(result.custom_id, result)
        # Successes (nearly every result) settle in one statement each, with no read first:
        # the WHERE clause is the "still queued in this job" test, so the rest are ignored.
        succeeded = [(dumps(r), key, job_id) for key, r in first.items() if r.status is ResultStatus.SUCCEEDED]
        with self.transaction() as db:
            db.executemany(
                f"UPDATE requests SET state = '{DONE}', result = ? WHERE key = ? AND +job_id = ? AND state = '{QUEUED}'",
                succeeded,
            )
            keys = [key for key, r in first.items() if r.status is not ResultStatus.SUCCEEDED]
            queued = []
            for i in range(0, len(keys), 500):  # SQLite caps the number of parameters
                part = keys[i : i + 500]
                # By primary key; "+job_id" keeps SQLite from scanning the job's index instead.
                queued += db.execute(
                    f"SELECT key, attempts, unfinished FROM requests WHERE key IN ({','.join('?' * len(part))}) "
                    f"AND +job_id = ? AND state = '{QUEUED}'",
                    (*part, job_id),
                ).fetchall()
            self._settle(db, [(row, first[row["key"]]) for row in queued], max_attempts, max_unfinished)

    @staticmethod
    def _settle(db: sqlite3.Connection, outcomes: Sequence[tuple[sqlite3.Row, Result]],
                max_attempts: int, max_unfinished: int) -> None:
        """Apply results to queued requests (rows of key, attempts, unfinished)."""
        updates = []
        for row, result in outcomes:
            key, attempts, unfinished = row["key"], row["attempts"], row["unfinished"]
            if result.status is ResultStatus.SUCCEEDED:
                updates.append((DONE, attempts, unfinished, dumps(result), key))
            elif result.status is ResultStatus.ERRORED:
                attempts += 1
                updates.append((FAILED if attempts >= max_attempts else NEW, attempts, unfinished, dumps(result), key))
            else:  # unfinished: resubmit, but not forever
                unfinished += 1
                if unfinished >= max_unfinished:
                    failed = Result(
                        custom_id=key, status=ResultStatus.ERRORED,
                        error=f"not run by the provider in {unfinished} jobs (expired or cancelled)",
                    )
                    updates.append((FAILED, attempts, unfinished, dumps(failed), key))
                else:
                    updates.append((NEW, attempts, unfinished, None, key))
        db.executemany(
            "UPDATE requests SET state = ?, attempts = ?, unfinished = ?, result = ? WHERE key = ?", updates
        )

    def close_job(self, job_id: int, max_attempts: int, max_unfinished: int, *,
                  failure: str | None = None) -> None:
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
            self._settle(db, outcomes, max_attempts, max_unfinished)
            db.execute("UPDATE jobs SET fetched = 1, updated_at = ? WHERE id = ?", (time.time(), job_id))

    def reject_intent(self, job_id: int, reason: str, max_attempts: int, max_unfinished: int) -> None:
        """The provider refused to create the job: one failed attempt for each request."""
        with self.transaction() as db:
            db.execute("UPDATE jobs SET state = 'rejected', message = ?, updated_at = ? WHERE id = ?",
                       (reason, time.time(), job_id))
        self.close_job(job_id, max_attempts, max_unfinished, failure=reason)

    def list_jobs(self, *, active_only: bool = False, limit: int = 200) -> list[dict[str, Any]]:
        where = "WHERE fetched = 0" if active_only else ""
        rows = self._query(f"SELECT * FROM jobs {where} ORDER BY id DESC LIMIT ?", (limit,))
        return [self._job_dict(r) for r in rows]

    def get_job(self, ident: str | int) -> dict[str, Any] | None:
        """A job by local id, tag or remote id."""
        rows = self._query(
            "SELECT * FROM jobs WHERE CAST(id AS TEXT) = ? OR tag = ? OR remote_id = ? LIMIT 1",
            (str(ident), str(ident), str(ident)),
        )
        return self._job_dict(rows[0]) if rows else None

    def job_counts(self, job_id: int) -> dict[str, int]:
        rows = self._query(
            "SELECT r.state, COUNT(*) AS n FROM job_requests j JOIN requests r ON r.key = j.key "
            "WHERE j.job_id = ? GROUP BY r.state",
            (job_id,),
        )
        return {r["state"]: r["n"] for r in rows}


def result_from_json(text: str | None) -> Result | None:
    return loads(text, Result) if text else None

