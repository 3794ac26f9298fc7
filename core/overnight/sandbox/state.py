"""Persistence: one SQLite database for metadata plus a directory tree for bodies.

Layout of a state dir::

    sandbox.db        files, jobs, fault rules, counters, the clock (WAL mode)
    files/<id>        bodies of provider files (uploads, outputs, error files)
    jobs/<id>/        a job's private copy of its input and its Anthropic results
    tmp/              uploads being received (renamed into files/ when complete)

Records are JSON documents keyed by id, in insertion order (SQLite's rowid is never
reused because nothing is hard-deleted), which is all the providers' list endpoints need.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, provider TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, provider TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS faults (
    id TEXT PRIMARY KEY, provider TEXT NOT NULL DEFAULT '', deleted INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (
    provider TEXT NOT NULL, name TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (provider, name));
"""
SCHEMA_VERSION = "1"
_TABLES = ("files", "jobs", "faults")


class StateDir:
    """Thread-safe access to a state dir (one connection, serialised)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        for sub in ("files", "jobs", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.closed = False
        self._db = sqlite3.connect(self.root / "sandbox.db", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        if self.get_meta("schema_version") is None:
            self.set_meta("schema_version", SCHEMA_VERSION)

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self.closed = True

    # --- paths -------------------------------------------------------------------------
    def file_path(self, file_id: str) -> Path:
        return self.root / "files" / file_id

    def job_dir(self, job_id: str) -> Path:
        path = self.root / "jobs" / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def tmp_path(self) -> Path:
        return self.root / "tmp" / uuid.uuid4().hex

    # --- meta --------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value))

    # --- documents ---------------------------------------------------------------------
    def insert(self, table: str, doc_id: str, provider: str, doc: dict[str, Any]) -> None:
        assert table in _TABLES
        with self._lock:
            self._db.execute(
                f"INSERT INTO {table} (id, provider, doc) VALUES (?, ?, ?)",  # noqa: S608 (fixed names)
                (doc_id, provider, json.dumps(doc)))

    def update(self, table: str, doc_id: str, doc: dict[str, Any]) -> None:
        assert table in _TABLES
        with self._lock:
            self._db.execute(f"UPDATE {table} SET doc = ? WHERE id = ?", (json.dumps(doc), doc_id))  # noqa: S608

    def mark_deleted(self, table: str, doc_id: str) -> None:
        assert table in _TABLES
        with self._lock:
            self._db.execute(f"UPDATE {table} SET deleted = 1 WHERE id = ?", (doc_id,))  # noqa: S608

    def get(self, table: str, doc_id: str, provider: str | None = None) -> dict[str, Any] | None:
        assert table in _TABLES
        query = f"SELECT doc FROM {table} WHERE id = ? AND deleted = 0"  # noqa: S608
        args: tuple[Any, ...] = (doc_id,)
        if provider is not None:
            query += " AND provider = ?"
            args += (provider,)
        with self._lock:
            row = self._db.execute(query, args).fetchone()
        return json.loads(row[0]) if row else None

    def all(self, table: str, provider: str | None = None, *, newest_first: bool = True) -> list[dict[str, Any]]:
        assert table in _TABLES
        query = f"SELECT doc FROM {table} WHERE deleted = 0"  # noqa: S608
        args: tuple[Any, ...] = ()
        if provider is not None:
            query += " AND provider = ?"
            args = (provider,)
        query += " ORDER BY rowid " + ("DESC" if newest_first else "ASC")
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [json.loads(r[0]) for r in rows]

    # --- counters ----------------------------------------------------------------------
    def bump(self, provider: str, name: str, n: int = 1) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO counters (provider, name, n) VALUES (?, ?, ?) "
                "ON CONFLICT(provider, name) DO UPDATE SET n = n + excluded.n",
                (provider, name, n))

    def counter_rows(self) -> Iterator[tuple[str, str, int]]:
        with self._lock:
            rows = self._db.execute("SELECT provider, name, n FROM counters ORDER BY provider, name").fetchall()
        return iter(rows)

    def reset_counters(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM counters")
