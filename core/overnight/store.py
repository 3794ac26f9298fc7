"""The state store: one SQLite file that is the only place job ids live.

It records runs, provider jobs (from the intent committed before submit to the last
fetch), which request belongs to which job, and every result. Requests are
content-addressed (see :func:`overnight.identity.request_key`), so the same request
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

from overnight._serialization import SCHEMA_VERSION, dump_result, dumps, load_result, loads
from overnight.diskerrors import disk_error, raise_on_disk
from overnight.errors import DiskError, OvernightError, StoreError
from overnight.models import JobRef, JobStatus, Result, ResultStatus

DB_NAME = "overnight.sqlite"

# Request states.
NEW = "new"  # to be submitted (first time, or again after an error or an expiry)
QUEUED = "queued"  # in a job that has not been fetched yet
DONE = "done"  # succeeded; the result is stored
FAILED = "failed"  # errored on every allowed attempt; the last error is stored
LOST = "lost"  # its job ended but the provider lost the results; waits for the user's consent

# Job states beyond overnight.models.JobState.
INTENT = "intent"  # committed before submit; no remote id yet
LOST_JOB = "lost"  # the provider no longer has the job or its result files

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
CREATE TABLE IF NOT EXISTS ambiguous_creates (job_id INTEGER PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS duplicates (job_id INTEGER PRIMARY KEY, of_job INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS remote_jobs (
    remote_id TEXT PRIMARY KEY, provider TEXT NOT NULL, ref TEXT NOT NULL, state TEXT NOT NULL,
    created_at REAL NOT NULL, listed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS remote_job_keys (
    remote_id TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (remote_id, key)
) WITHOUT ROWID;
"""


#: Seconds a queue figure learned from a refusal is kept (a day: every job of the time has
#: ended by then, so the queue that refused it has emptied at least once).
QUOTA_MEMORY = 24 * 3600.0
#: Page size of a new store file, page cache per connection (KiB), WAL pages between checkpoints.
PAGE_SIZE = 8192
CACHE_KB = 64 * 1024
WAL_CHECKPOINT_PAGES = 4096

#: A result's figures kept as columns of its request beside the result's JSON (and where
#: in the JSON each is): money and progress sums read these, never the JSON.
FIGURES = (
    ("used_in", "INTEGER", "$.usage.input_tokens"),
    ("used_out", "INTEGER", "$.usage.output_tokens"),
    ("cost_usd", "REAL", "$.cost_usd"),
    ("online_cost_usd", "REAL", "$.online_cost_usd"),
)


_SET_FIGURES = ", ".join(f"{column} = ?" for column, _, _ in FIGURES)


def _figures(result: Result | None) -> tuple[int | None, int | None, float | None, float | None]:
    """The FIGURES of one result, in order."""
    if result is None:
        return None, None, None, None
    usage = result.usage
    if usage is None:
        return None, None, result.cost_usd, result.online_cost_usd
    return usage.input_tokens, usage.output_tokens, result.cost_usd, result.online_cost_usd


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

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.cache_dir = self.path.parent
        #: Opened only to read (``overnight status``, ``jobs``): works on a read-only folder.
        self.readonly = readonly
        #: Remote ids of the jobs submitted through this store object (this run), as recorded.
        self.submitted: list[str] = []
        if not readonly:
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise_on_disk(self.cache_dir, exc, done=self.activity())
        self._local = threading.local()
        #: The run this process is in (``start_run``); jobs submitted now are recorded under it.
        self.run_id: int | None = None
        #: Whether the requests table has the FIGURES columns (None: not looked yet).
        self._figure_columns: bool | None = None
        self._migrate()

    @classmethod
    def open(cls, cache_dir: str | os.PathLike[str] | None = None) -> "Store":
        """Open (creating if needed) the store in ``cache_dir`` or the default directory."""
        directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return cls(directory / DB_NAME)

    @classmethod
    def open_readonly(cls, cache_dir: str | os.PathLike[str] | None = None) -> "Store":
        """Open the store only to read it, changing nothing on disk (a read-only home works)."""
        directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return cls(directory / DB_NAME, readonly=True)

    # -- connection ----------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None and self.readonly:
            try:
                conn = self._local.conn = self._connect_readonly()
            except sqlite3.DatabaseError as exc:
                raise self._unusable(exc) from None
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
                conn.row_factory = sqlite3.Row
                # Sized for plans of millions of requests: bigger pages (a no-op on an existing
                # file), a 64 MB page cache instead of 2 MB (the hot indexes stay in memory
                # instead of being re-read page by page), fewer WAL checkpoints.
                conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
                _enable_wal(conn)
                # FULL: a committed intent or remote id survives an OS crash or a power
                # loss (NORMAL may lose the last commits, and then a job paid for is
                # forgotten). Commits are few; see tests/benchmarks/bench_executor.py.
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA busy_timeout=30000")
                conn.execute(f"PRAGMA cache_size=-{CACHE_KB}")
                conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            except sqlite3.DatabaseError as exc:
                raise self._unusable(exc) from None
            self._local.conn = conn
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        """A connection that writes nothing, not even SQLite's shared-memory file.

        ``mode=ro`` reads a WAL store, committed WAL content included, but needs the
        ``-shm`` file to exist or be creatable. A store closed cleanly has neither
        ``-wal`` nor ``-shm``; in a read-only folder it opens with ``immutable=1`` then
        (safe: with no ``-wal`` file, everything is in the main file). A store that does
        not exist yet reads as empty.
        """
        if not self.path.exists():
            conn = sqlite3.connect(":memory:", isolation_level=None)
            conn.executescript(_SCHEMA)
        else:
            uri = self.path.resolve().as_uri()
            try:
                conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT, isolation_level=None)
                conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            except sqlite3.OperationalError:
                if Path(f"{self.path}-wal").exists():
                    raise
                conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return conn

    def activity(self) -> str:
        """What this run has recorded (for error messages, which must be true)."""
        if not self.submitted:
            return "Nothing was submitted by this run."
        ids = ", ".join(self.submitted[:3]) + (", ..." if len(self.submitted) > 3 else "")
        return (
            f"This run submitted {len(self.submitted)} job(s) ({ids}); their ids are recorded in the "
            "store, so nothing paid for is lost (results not yet saved are downloaded again)."
        )

    def _unusable(self, exc: Exception) -> OvernightError:
        failure = disk_error(self.path, exc, done=self.activity())
        if failure is not None:
            return failure
        return StoreError(
            f"The overnight store {self.path} cannot be used ({exc}). {self.activity()} "
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
                # Found while reading or writing a page (e.g. "database disk image is malformed",
                # "database or disk is full").
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
            if self.readonly:
                return
            db.executescript(_SCHEMA)
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            self._migrate_money(db)
            self._migrate_result_figures(db)
            self._migrate_pending_index(db)
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None

    @staticmethod
    def _migrate_money(db: sqlite3.Connection) -> None:
        """Columns and tables for tokens, queue limits and money; idempotent, so stores made
        before them gain them in place (requests planned before have NULL tokens)."""
        have = {row["name"] for row in db.execute("PRAGMA table_info(requests)")}
        for column in ("tokens", "max_output"):
            if column not in have:
                db.execute(f"ALTER TABLE requests ADD COLUMN {column} INTEGER")
        db.execute(
            "CREATE TABLE IF NOT EXISTS quotas (provider TEXT NOT NULL, model TEXT NOT NULL, "
            "max_enqueued_tokens INTEGER, max_queued_requests INTEGER, learned_at REAL NOT NULL, "
            "reason TEXT, PRIMARY KEY (provider, model))"
        )

    @staticmethod
    def _migrate_result_figures(db: sqlite3.Connection) -> None:
        """Each result's usage and cost as columns beside its JSON (see :data:`FIGURES`), so
        money and progress sum numbers instead of parsing every result; idempotent. A store
        made before them gains them in place, filled from the results it holds."""
        with contextlib.ExitStack() as undo:
            db.execute("BEGIN IMMEDIATE")  # two processes opening one old store: one adds them
            undo.callback(db.execute, "ROLLBACK")
            have = {d[0] for d in db.execute("SELECT * FROM requests LIMIT 0").description}
            missing = [(column, kind) for column, kind, _ in FIGURES if column not in have]
            for column, kind in missing:
                db.execute(f"ALTER TABLE requests ADD COLUMN {column} {kind}")
            if missing:
                # The one SQLite-only step: stores made before this migration are SQLite ones.
                db.execute(
                    "UPDATE requests SET " + ", ".join(f"{c} = json_extract(result, '{path}')" for c, _, path in FIGURES)
                    + " WHERE result IS NOT NULL"
                )
            undo.pop_all()
            db.execute("COMMIT")

    @staticmethod
    def _migrate_pending_index(db: sqlite3.Connection) -> None:
        """An index of the requests still to submit (partial: only those), so a pass that has
        nothing to submit learns it from the few new requests instead of reading the plan.

        On the state, not the key: its entries are a few bytes in rowid order, so planning a
        million requests appends to it and submitting removes runs of it, instead of writing
        all over one more key-ordered index bigger than SQLite's page cache."""
        db.execute(f"CREATE INDEX IF NOT EXISTS requests_to_submit ON requests (state) WHERE state = '{NEW}'")

    def _figure(self, column: str, table: str = "") -> str:
        """The SQL for one result figure: its column, or (a store opened read-only that was
        made before the columns) the same figure read from the result's JSON."""
        if self._figure_columns is None:
            have = {d[0] for d in self._db.execute("SELECT * FROM requests LIMIT 0").description}
            self._figure_columns = all(c in have for c, _, _ in FIGURES)
        if self._figure_columns:
            return f"{table}{column}"
        return next(f"json_extract({table}result, '{path}')" for c, _, path in FIGURES if c == column)

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
            self.run_id = int(cur.lastrowid)  # type: ignore[arg-type]  # set by the INSERT
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
                "INSERT OR REPLACE INTO plans (plan_id, provider, step, size, complete, created_at) "
                "VALUES (?, ?, ?, 0, 0, ?)",
                (plan_id, provider, step, time.time()),
            )
        position = 0
        pending: list[tuple[Any, ...]] = []

        def flush() -> None:
            nonlocal position
            with self.transaction() as db:
                db.executemany(
                    "INSERT INTO plan_items (plan_id, position, row, sample, key) VALUES (?, ?, ?, ?, ?)",
                    [(plan_id, position + i, r, s, k) for i, (r, s, k, *_rest) in enumerate(pending)],
                )
                db.executemany(
                    "INSERT OR IGNORE INTO requests (key, provider, model, line, bytes, tokens, max_output, state) "
                    f"VALUES (?, ?, ?, ?, ?, ?, ?, '{NEW}')",
                    [(i[2], provider, i[3], i[4], i[5], *(tuple(i[6:8]) + (None, None))[:2]) for i in pending],
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

    def plan_retried(self, plan_id: str) -> int:
        """How many of the plan's distinct requests failed once and were (or are to be) sent again."""
        rows = self._query(
            "SELECT COUNT(*) AS n FROM (SELECT DISTINCT key FROM plan_items WHERE plan_id = ?) p "
            f"JOIN requests r ON r.key = p.key WHERE r.attempts > 0 AND r.state != '{FAILED}'",
            (plan_id,),
        )
        return int(rows[0]["n"]) if rows else 0

    def paid_count(self, plan_id: str) -> int:
        """How many of the plan's requests a previous run already paid for (or is paying)."""
        counts = self.plan_counts(plan_id)
        return sum(n for state, n in counts.items() if state != NEW)

    def pending_lines(self, plan_id: str, *, after: int = -1, limit: int = -1) -> Iterator[sqlite3.Row]:
        """One page of the plan's requests still to submit (key, model, bytes, tokens,
        max_output, pos): those at positions past ``after``, at most ``limit`` (-1: all),
        read along the plan's primary key with no sort, so paging through a plan is
        linear. A page may list a key more than once (a repeated row); the caller keeps
        the first.
        """
        yield from self._stream(
            "SELECT r.key, r.model, r.bytes, r.tokens, r.max_output, p.position AS pos FROM plan_items p "
            f"JOIN requests r ON r.key = p.key WHERE p.plan_id = ? AND p.position > ? AND r.state = '{NEW}' "
            "ORDER BY p.position LIMIT ?",
            (plan_id, after, limit),
        )

    def has_new(self, plan_id: str) -> bool:
        """Whether any request of the plan is still to submit (read from the requests_to_submit index)."""
        rows = self._query(
            f"SELECT 1 FROM requests r WHERE r.state = '{NEW}' AND EXISTS "
            "(SELECT 1 FROM plan_items p WHERE p.key = r.key AND p.plan_id = ?) LIMIT 1",
            (plan_id,),
        )
        return bool(rows)

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
            job_id = int(cur.lastrowid)  # type: ignore[arg-type]  # set by the INSERT
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
        try:
            with self.transaction() as db:
                db.execute(
                    "UPDATE jobs SET remote_id = ?, ref = ?, state = 'running', updated_at = ? WHERE id = ?",
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
        succeeded = [(dump_result(r), *_figures(r), key, job_id)
                     for key, r in first.items() if r.status is ResultStatus.SUCCEEDED]
        with self.transaction() as db:
            db.executemany(
                f"UPDATE requests SET state = '{DONE}', result = ?, {_SET_FIGURES} "
                f"WHERE key = ? AND +job_id = ? AND state = '{QUEUED}'",
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
        updates: list[tuple[Any, ...]] = []
        for row, result in outcomes:
            key, attempts, unfinished = row["key"], row["attempts"], row["unfinished"]
            if result.status is ResultStatus.SUCCEEDED:
                updates.append((DONE, attempts, unfinished, dump_result(result), *_figures(result), key))
            elif result.status is ResultStatus.ERRORED:
                attempts += 1
                updates.append((FAILED if attempts >= max_attempts else NEW, attempts, unfinished, dump_result(result),
                                *_figures(result), key))
            else:  # unfinished: resubmit, but not forever
                unfinished += 1
                if unfinished >= max_unfinished:
                    failed = Result(
                        custom_id=key, status=ResultStatus.ERRORED,
                        error=f"not run by the provider in {unfinished} jobs (expired or cancelled)",
                    )
                    updates.append((FAILED, attempts, unfinished, dump_result(failed), *_figures(failed), key))
                else:
                    updates.append((NEW, attempts, unfinished, None, *_figures(None), key))
        db.executemany(
            f"UPDATE requests SET state = ?, attempts = ?, unfinished = ?, result = ?, {_SET_FIGURES} WHERE key = ?",
            updates,
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

    def lost_jobs(self, plan_id: str | None = None) -> list[dict[str, Any]]:
        """Lost jobs still holding requests without a result (of one plan, or all), with ``lost`` counts."""
        where, params = "", ()  # type: tuple[str, tuple[Any, ...]]
        if plan_id is not None:
            where = "AND EXISTS (SELECT 1 FROM plan_items p WHERE p.key = r.key AND p.plan_id = ?)"
            params = (plan_id,)
        # From the few lost jobs (lose_job marks the job and its requests together) to their
        # requests by the job index: no pass over the plan's requests when nothing is lost.
        rows = self._query(
            f"SELECT j.*, COUNT(r.key) AS lost FROM jobs j CROSS JOIN requests r ON r.job_id = j.id "
            f"WHERE j.state = '{LOST_JOB}' AND r.state = '{LOST}' {where} GROUP BY j.id ORDER BY j.id",
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
            sql += " AND key IN (SELECT key FROM plan_items WHERE plan_id = ?)"
            params.append(plan_id)
        with self.transaction() as db:
            return db.execute(sql, params).rowcount

    def retry_failed(self, plan_id: str) -> int:
        """Give the plan's failed requests a new round of attempts; returns how many."""
        with self.transaction() as db:
            return db.execute(
                f"UPDATE requests SET state = '{NEW}', attempts = 0, unfinished = 0, job_id = NULL "
                f"WHERE state = '{FAILED}' AND key IN (SELECT key FROM plan_items WHERE plan_id = ?)",
                (plan_id,),
            ).rowcount

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

    # -- tokens in flight, queue limits, money ---------------------------------------------

    def in_flight(self, provider: str, model: str) -> tuple[int, int]:
        """``(input tokens, requests)`` of the jobs of ``provider``/``model`` the provider may
        still be holding (submitted or being submitted, not yet terminal), whichever plan
        submitted them: the provider's queue limits are per account and model."""
        rows = self._query(
            "SELECT COALESCE(SUM(COALESCE(r.tokens, (r.bytes + 3) / 4)), 0) AS tokens, COUNT(*) AS n "
            "FROM jobs j JOIN requests r ON r.job_id = j.id "
            f"WHERE j.provider = ? AND j.model = ? AND j.fetched = 0 AND j.state IN ('{INTENT}', 'running') "
            f"AND r.state = '{QUEUED}'",
            (provider, model),
        )
        return int(rows[0]["tokens"]), int(rows[0]["n"])

    def job_tokens(self, job_id: int) -> int:
        """Estimated input tokens of a job's requests."""
        rows = self._query(
            "SELECT COALESCE(SUM(COALESCE(r.tokens, (r.bytes + 3) / 4)), 0) AS tokens FROM job_requests j "
            "JOIN requests r ON r.key = j.key WHERE j.job_id = ?",
            (job_id,),
        )
        return int(rows[0]["tokens"])

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
                "INSERT OR REPLACE INTO quotas (provider, model, max_enqueued_tokens, max_queued_requests, "
                "learned_at, reason) VALUES (?, ?, ?, ?, ?, ?)",
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
        rows = self._query(
            "SELECT r.state AS state, COUNT(*) AS n, MAX(r.model) AS model, "
            "COALESCE(SUM(COALESCE(r.tokens, (r.bytes + 3) / 4)), 0) AS tokens, "
            "COALESCE(SUM(r.max_output), 0) AS max_output, "
            "SUM(r.max_output IS NULL) AS unbounded, "
            "SUM(CASE WHEN r.attempts > 0 THEN 1 ELSE 0 END) AS retried, "
            f"COALESCE(SUM({self._figure('used_in', 'r.')}), 0) AS used_in, "
            f"COALESCE(SUM({self._figure('used_out', 'r.')}), 0) AS used_out, "
            f"COALESCE(SUM({self._figure('cost_usd', 'r.')}), 0) AS cost, "
            f"COALESCE(SUM({self._figure('online_cost_usd', 'r.')}), 0) AS online "
            "FROM (SELECT DISTINCT key FROM plan_items WHERE plan_id = ?) p JOIN requests r ON r.key = p.key "
            "GROUP BY r.state",
            (plan_id,),
        )
        return {r["state"]: {k: r[k] for k in r.keys() if k != "state"} for r in rows}

    def money_totals(self) -> dict[str, float]:
        """What every collected request in the store was billed, and its online price."""
        rows = self._query(
            f"SELECT COUNT(*) AS n, COALESCE(SUM({self._figure('cost_usd')}), 0) AS cost, "
            f"COALESCE(SUM({self._figure('online_cost_usd')}), 0) AS online, "
            f"SUM({self._figure('cost_usd')} IS NULL) AS unpriced "
            f"FROM requests WHERE state = '{DONE}'"
        )
        r = rows[0]
        return {"requests": r["n"], "cost_usd": r["cost"], "online_cost_usd": r["online"],
                "saved_usd": r["online"] - r["cost"], "unpriced": r["unpriced"] or 0}


    # -- the provider as second source of truth ---------------------------------------------

    def mark_ambiguous(self, job_id: int) -> None:
        """The submit of this job failed in a way that may hide a created job: note when."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO ambiguous_creates (job_id, at) VALUES (?, ?)", (job_id, time.time()))

    def ambiguous_since(self, job_id: int) -> float | None:
        rows = self._query("SELECT at FROM ambiguous_creates WHERE job_id = ?", (job_id,))
        return rows[0]["at"] if rows else None

    def ambiguous_open_jobs(self, plan_id: str) -> list[dict[str, Any]]:
        """Open, confirmed jobs of this plan whose submission was ambiguous at some point."""
        return [j for j in self.open_jobs(plan_id)
                if j["remote_id"] and self.ambiguous_since(j["id"]) is not None]

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
            "SELECT 1 FROM plan_items p JOIN requests r ON r.key = p.key WHERE p.plan_id = ? "
            f"AND r.state = '{NEW}' AND r.job_id IS NULL AND r.attempts = 0 AND r.unfinished = 0 LIMIT 1",
            (plan_id,),
        )
        return bool(rows)

    def remember_remote_job(self, provider: str, ref: JobRef, state: str, created_at: float,
                            keys: Iterable[str]) -> None:
        """Keep a job the provider listed, with the request keys it holds, for adoption."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO remote_jobs (remote_id, provider, ref, state, created_at, listed_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (ref.remote_id, provider, dumps(ref), state, created_at, time.time()),
            )
            db.executemany(
                "INSERT OR IGNORE INTO remote_job_keys (remote_id, key) VALUES (?, ?)",
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
                keys = [r["key"] for r in db.execute(
                    "SELECT DISTINCT r.key, r.model FROM remote_job_keys k JOIN plan_items p ON p.key = k.key "
                    f"JOIN requests r ON r.key = k.key WHERE k.remote_id = ? AND p.plan_id = ? "
                    f"AND r.state = '{NEW}' AND r.job_id IS NULL AND r.attempts = 0 AND r.unfinished = 0",
                    (cand["remote_id"], plan_id),
                )]
                if not keys:
                    continue
                ref = loads(cand["ref"], JobRef)
                model = db.execute("SELECT model FROM requests WHERE key = ?", (keys[0],)).fetchone()["model"]
                now = time.time()
                tag = ref.tag
                if not tag or db.execute("SELECT 1 FROM jobs WHERE tag = ?", (tag,)).fetchone():
                    tag = f"adopted-{ref.remote_id}"
                cur = db.execute(
                    "INSERT INTO jobs (tag, provider, model, step, plan_id, run_id, remote_id, state, ref, "
                    "requests, bytes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                    (tag, provider, model, step, plan_id, self.run_id, ref.remote_id, dumps(ref), len(keys), 0,
                     now, now),
                )
                job_id = int(cur.lastrowid)  # type: ignore[arg-type]  # set by the INSERT
                db.executemany("INSERT INTO job_requests (job_id, key) VALUES (?, ?)", [(job_id, k) for k in keys])
                db.executemany(
                    f"UPDATE requests SET state = '{QUEUED}', job_id = ? WHERE key = ?", [(job_id, k) for k in keys]
                )
                adopted.append((ref, len(keys)))
        return adopted

    def record_duplicate(self, of_job: dict[str, Any], ref: JobRef, requests: int, state: str) -> int:
        """Record a second provider job of one chunk; it is checked and its successes kept."""
        now = time.time()
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO jobs (tag, provider, model, step, plan_id, run_id, remote_id, state, message, ref, "
                "requests, bytes, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                (f"{of_job['tag']}~{ref.remote_id}", of_job["provider"], of_job["model"], of_job["step"],
                 of_job["plan_id"], self.run_id, ref.remote_id, state,
                 f"duplicate of {of_job['remote_id']}", dumps(ref), requests, now, now),
            )
            job_id = int(cur.lastrowid)  # type: ignore[arg-type]  # set by the INSERT
            db.execute("INSERT INTO duplicates (job_id, of_job) VALUES (?, ?)", (job_id, of_job["id"]))
            return job_id

    def open_duplicates(self, plan_id: str) -> list[dict[str, Any]]:
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
                    f"AND +job_id = ? AND state = '{QUEUED}'",
                    (*part, of_job),
                ).fetchall()
                self._settle(db, [(row, ok[row["key"]]) for row in rows], 1, 1)
                taken += len(rows)
        return taken

    def close_duplicate(self, job_id: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE jobs SET fetched = 1, updated_at = ? WHERE id = ?", (time.time(), job_id))


def result_from_json(text: str | None) -> Result | None:
    return load_result(text) if text else None

