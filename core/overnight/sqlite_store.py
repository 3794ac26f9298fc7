"""The embedded store: one SQLite file in ``OVERNIGHT_HOME`` (WAL, ``synchronous=FULL``).

Only what SQLite does differently lives here: the connection and its pragmas, reading
a store in a read-only folder, the lock file that serialises processes of one machine,
and the schema bookkeeping. The queries are :class:`overnight.store.SqlStore`'s.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Iterator, NoReturn, Sequence

from overnight import _json, polling
from overnight._serialization import SCHEMA_VERSION
from overnight.diskerrors import disk_error, raise_on_disk
from overnight.errors import OvernightError, StoreError
from overnight.faultpoints import fault_point
from overnight.store import _SCHEMA, _SET_RESULT, DB_NAME, DONE, QUEUED, SqlStore

#: Page size of a new store file, page cache per connection (KiB), WAL pages between checkpoints
#: (32 MB). 16 KB pages: the store's indexes are keyed by random hashes, and bigger pages
#: split less often (1M requests, the store's own SQL: 36.6 s -> 34.2 s; 4 KB: slower still).
PAGE_SIZE = 16384
CACHE_KB = 64 * 1024
WAL_CHECKPOINT_PAGES = 2048

#: Seconds a connection waits for another one's lock before the store is "locked".
BUSY_TIMEOUT = 30.0

#: The schema in SQLite's words: rowid tables keyed by an INTEGER PRIMARY KEY (which a
#: VACUUM keeps, so a request's number is its own), and the tables read only by their
#: primary key clustered on it.
SCHEMA_WORDS = {"id": "INTEGER PRIMARY KEY", "norowid": " WITHOUT ROWID"}
SCHEMA = _SCHEMA.format(**SCHEMA_WORDS)


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


#: How a store made before requests had numbers (schema 10) is read without migrating it:
#: temporary views, which SQLite reads before the file's tables of the same name.
_NUMBERED_VIEWS = (
    "CREATE TEMP VIEW requests AS SELECT rowid AS id, * FROM main.requests",
    "CREATE TEMP VIEW plan_items AS SELECT p.plan_id, p.position, p.row, p.sample, r.rowid AS request "
    "FROM main.plan_items p JOIN main.requests r ON r.key = p.key",
    "CREATE TEMP VIEW job_requests AS SELECT m.job_id, r.rowid AS request "
    "FROM main.job_requests m JOIN main.requests r ON r.key = m.key",
)


def _number_requests(conn: sqlite3.Connection) -> None:
    """On a read-only connection to an older store: read it as if it were migrated."""
    columns = {row[1] for row in conn.execute("PRAGMA main.table_info(requests)")}
    if columns and "id" not in columns:
        for view in _NUMBERED_VIEWS:
            conn.execute(view)


class SqliteStore(SqlStore):
    """The embedded SQLite store. One connection per thread; WAL; short transactions."""

    #: Lines of a job in the table's own order: results come back in about the order
    #: sent, so storing them then touches each page of the requests table once.
    REQUEST_ORDER: ClassVar[str] = "r.rowid"
    #: The plan's own request order would read the requests table out of order (see SqlStore).
    PLAN_ORDER: ClassVar[str] = " ORDER BY position"
    SCHEMA_WORDS: ClassVar[dict[str, str]] = SCHEMA_WORDS

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        super().__init__(self.path.parent, readonly=readonly)
        self.location = str(self.path)
        if not readonly:
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise_on_disk(self.cache_dir, exc, done=self.activity())
        self._local = threading.local()
        #: ``(job id, {key: rowid})`` of the job whose results are being stored.
        self._rowids: tuple[int | None, dict[str, int]] = (None, {})
        self._migrate()

    @classmethod
    def in_home(cls, cache_dir: str | os.PathLike[str], *, readonly: bool = False) -> "SqliteStore":
        return cls(Path(cache_dir) / DB_NAME, readonly=readonly)

    # -- connection ----------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        self.wait_for_commit()
        conn = getattr(self._local, "conn", None)
        if conn is None and self.readonly:
            try:
                conn = self._local.conn = self._connect_readonly()
            except sqlite3.DatabaseError as exc:
                raise self._unusable(exc) from None
        if conn is None:
            try:
                # Not only this thread's: a commit may be finished by commits_behind's thread.
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None,
                                       check_same_thread=False)
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
            conn.executescript(SCHEMA)
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
            self._apply_migrations(conn, 1)
        else:
            uri = self.path.resolve().as_uri()
            try:
                conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT, isolation_level=None)
                conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            except sqlite3.OperationalError:
                if Path(f"{self.path}-wal").exists():
                    raise
                conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)
            _number_requests(conn)
        conn.row_factory = sqlite3.Row
        return conn

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
        except BaseException as exc:
            self._rolled_back(db, exc)
        behind = getattr(self._local, "behind", None)
        if behind is None:
            self._commit(db)
        else:
            self._local.commit = behind.submit(self._commit, db)

    def _commit(self, db: sqlite3.Connection) -> None:
        try:
            db.execute("COMMIT")
        except BaseException as exc:
            self._rolled_back(db, exc)

    def _rolled_back(self, db: sqlite3.Connection, exc: BaseException) -> NoReturn:
        with contextlib.suppress(sqlite3.DatabaseError):  # a corrupt file may refuse this too
            db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.DatabaseError):
            # Found while reading or writing a page (e.g. "database disk image is malformed",
            # "database or disk is full").
            raise self._unusable(exc) from None
        raise exc

    @contextlib.contextmanager
    def commits_behind(self) -> Iterator[None]:
        """Within it, this thread's transactions commit in a second thread while the caller
        goes on; its next use of the store waits for the commit (and raises its error).

        Writing the pages to the WAL and syncing it is most of a big transaction's time,
        and SQLite does it without the GIL: the next batch of results is read and parsed
        meanwhile, on another core. Leaving waits for the last commit.
        """
        if getattr(self._local, "behind", None) is not None:  # already within one
            yield
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="overnight-commit") as pool:
            self._local.behind = pool
            try:
                yield
            except BaseException:
                pending, self._local.commit = getattr(self._local, "commit", None), None
                if pending is not None:
                    pending.exception()  # finished, not cut; the error leaving is the one to report
                raise
            finally:
                self._local.behind = None
            self.wait_for_commit()

    def wait_for_commit(self) -> None:
        pending = getattr(self._local, "commit", None)
        if pending is not None:
            self._local.commit = None
            pending.result()

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

    # -- schema ----------------------------------------------------------------------------

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
                    raise self._newer_schema(version)
            if self.readonly:
                return
            db.executescript(SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1')")
            self._migrate_money(db)
            with self.transaction() as tx:  # BEGIN IMMEDIATE: one process migrates, the others see it done
                version = int(tx.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
                if version > SCHEMA_VERSION:
                    raise self._newer_schema(version)
                if version < SCHEMA_VERSION:
                    self._apply_migrations(tx, version)
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None

    @staticmethod
    def _migrate_money(db: sqlite3.Connection) -> None:
        """Stores made before tokens, queue limits and money were tracked (still at schema
        version 1) gain their columns in place (requests planned before have NULL tokens)."""
        have = {row["name"] for row in db.execute("PRAGMA table_info(requests)")}
        for column in ("tokens", "max_output"):
            if column not in have:
                db.execute(f"ALTER TABLE requests ADD COLUMN {column} INTEGER")

    def _insert_plan_items(self, db: Any, plan_id: str, provider: str, position: int,
                           items: Sequence[tuple[Any, ...]]) -> None:
        """As SqlStore's, without looking each item's request up by key when every request of
        the batch was new: SQLite numbers the rows it adds one past the largest number, in
        the order added, so they are the next ``len(items)`` numbers."""
        last = db.execute("SELECT COALESCE(MAX(id), 0) FROM requests").fetchone()[0]
        added = self._insert_requests(db, provider, items)
        if added == len(items) and db.execute("SELECT MAX(id) FROM requests").fetchone()[0] == last + added:
            db.executemany(
                "INSERT INTO plan_items (plan_id, position, row, sample, request) VALUES (?, ?, ?, ?, ?)",
                [(plan_id, position + i, r, s, last + 1 + i) for i, (r, s, *_rest) in enumerate(items)],
            )
        else:  # a request known already, or repeated within the batch
            self._insert_items(db, plan_id, position, items)

    def _insert_job_requests(self, db: Any, job_id: int, request_ids: Sequence[int]) -> None:
        """The numbers as one JSON array that SQLite unpacks itself: binding a row per
        request from Python costs twice as much (1M requests: 3.6 s -> 1.9 s CPU)."""
        db.execute("INSERT INTO job_requests (job_id, request) SELECT ?, value FROM json_each(?)",
                   (job_id, _json.dumps(list(request_ids)).decode()))

    def _settle_successes(self, db: Any, job_id: int, succeeded: Sequence[tuple[Any, ...]]) -> None:
        """By number, in the order the lines were sent (job_lines), so the table is written
        page after page instead of at random by key (500k results: 3.0 s -> 2.5 s CPU). The
        numbers of the job's queued requests are read once per job (by the job index, in
        table order); a row the map misses or misplaces is settled by key, as elsewhere."""
        if self._rowids[0] != job_id:
            pairs = db.cursor()
            pairs.row_factory = None  # plain tuples: a third cheaper than rows by name, 50,000 at a time
            self._rowids = (job_id, dict(pairs.execute(
                f"SELECT key, id FROM requests WHERE job_id = ? AND state = '{QUEUED}'", (job_id,)
            ).fetchall()))
        rowids = self._rowids[1]
        updated = db.executemany(
            f"UPDATE requests SET state = '{DONE}', {_SET_RESULT} "
            f"WHERE id = ? AND key = ? AND job_id = ? AND state = '{QUEUED}'",
            [(*row[:-2], rowids.get(row[-2], 0), row[-2], job_id) for row in succeeded],
        ).rowcount
        if updated < len(succeeded):  # not queued in this job (a duplicate, a late line), or moved
            super()._settle_successes(db, job_id, succeeded)

    def close(self) -> None:
        self.wait_for_commit()
        self._rowids = (None, {})
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- one pass at a time ------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, timeout: float, *, step: str) -> Iterator[None]:
        """Hold the store's lock file (briefly: one plan or one pass at a time).

        A file lock, not SQLite's own: a pass spans provider calls and many short
        transactions, and every process using this file is on this machine.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: rely on SQLite's locking alone
            yield
            return
        path = Path(self.cache_dir) / "overnight.lock"
        try:
            fault_point("open_lock", path)
            handle = open(path, "w")
        except OSError as exc:
            raise_on_disk(path, exc, done=self.activity())
        with handle:
            deadline = time.monotonic() + timeout
            announced = False
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreError(
                            f"step {step!r}: another overnight process has held the store "
                            f"({handle.name}) for {timeout:.0f}s. Let it finish, then run again."
                        ) from None
                    if not announced:
                        polling.report(f"{step}: another overnight process is using the store; waiting for it")
                        announced = True
                    time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
