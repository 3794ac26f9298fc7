"""Full disk, read-only folder, no permission: told apart from other failures; a store read read-only."""

from __future__ import annotations

import errno
import sqlite3

import pytest

from overnight import DiskError
from overnight.diskerrors import disk_errno, disk_error
from overnight.faultpoints import fault_point
from overnight.store import DB_NAME, Store


@pytest.mark.parametrize(
    "exc, code",
    [
        (OSError(errno.ENOSPC, "No space left on device"), errno.ENOSPC),
        (PermissionError(errno.EACCES, "Permission denied"), errno.EACCES),
        (OSError(errno.EROFS, "Read-only file system"), errno.EROFS),
        (sqlite3.OperationalError("database or disk is full"), errno.ENOSPC),
        (sqlite3.OperationalError("attempt to write a readonly database"), errno.EROFS),
        (OSError(errno.ENOENT, "No such file"), None),
        (sqlite3.OperationalError("database is locked"), None),
        (sqlite3.DatabaseError("database disk image is malformed"), None),
    ],
)
def test_which_failures_are_disk_failures(exc, code):
    assert disk_errno(exc) == code


def test_the_error_names_the_path_what_happened_what_was_done_and_what_to_do(tmp_path):
    err = disk_error(tmp_path / "out.jsonl", OSError(errno.ENOSPC, "No space left on device"), done="Nothing yet.")
    assert isinstance(err, DiskError) and err.path == str(tmp_path / "out.jsonl")
    text = str(err)
    assert str(tmp_path / "out.jsonl") in text and "the disk is full" in text
    assert "Nothing yet." in text and "Free some space and run again" in text
    assert err.with_done("other") is err  # what the raiser knew is kept
    assert "did this" in str(DiskError("p", "x").with_done("did this"))


def test_a_fault_point_raises_the_errno_from_the_nth_time_on(monkeypatch, tmp_path):
    monkeypatch.setenv("OVERNIGHT_FAULT_POINT", "write_output:2:EACCES")
    monkeypatch.setattr("overnight.faultpoints._seen", {})
    fault_point("write_output", tmp_path)  # the 1st time: nothing
    for _ in range(2):
        with pytest.raises(PermissionError) as exc:
            fault_point("write_output", tmp_path)
        assert exc.value.errno == errno.EACCES and exc.value.filename == str(tmp_path)
    fault_point("open_lock", tmp_path)  # another point: nothing


def test_fill_refuses_a_large_file_system(monkeypatch, tmp_path):
    monkeypatch.setenv("OVERNIGHT_FAULT_POINT", "during_poll:1:fill")
    monkeypatch.setenv("OVERNIGHT_HOME", str(tmp_path))
    monkeypatch.setattr("overnight.faultpoints._seen", {})
    monkeypatch.setattr("overnight.faultpoints.FILL_LIMIT", 1)
    with pytest.raises(RuntimeError, match="refuses to fill"):
        fault_point("during_poll")


def test_a_missing_store_reads_as_empty_and_nothing_is_created(tmp_path):
    home = tmp_path / "nothing-here"
    store = Store.open_readonly(home)
    assert store.list_runs() == [] and store.list_jobs() == []
    store.close()
    assert not home.exists()


def test_a_store_opened_read_only_reads_and_writes_nothing(tmp_path):
    with Store.open(tmp_path) as store:
        store.start_run("p")
    before = (tmp_path / DB_NAME).read_bytes()
    store = Store.open_readonly(tmp_path)
    assert [r["pipeline"] for r in store.list_runs()] == ["p"]
    with pytest.raises(DiskError):  # a write through it is refused, as on a read-only disk
        store.start_run("q")
    store.close()
    assert (tmp_path / DB_NAME).read_bytes() == before
    with Store.open(tmp_path) as store:
        assert [r["pipeline"] for r in store.list_runs()] == ["p"]
