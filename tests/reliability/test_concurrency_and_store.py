"""Two processes on one store, and a store that cannot be trusted (locked, corrupt, newer).

Two runs of the same pipeline at the same time must not submit twice and must end with
the same complete dataset; the second waits for the first (and says so when it has to
wait). A store that cannot be used stops the run with a clear error, and never makes a
run believe its jobs are gone (which would resubmit them).
"""

from __future__ import annotations

import fcntl
import sqlite3

import pytest

from harness import PROVIDERS, ROWS, wait_for

pytestmark = pytest.mark.parametrize("provider", PROVIDERS)


def output_of(lane, name):
    return lane.root / f"{name}.jsonl"


def rows_of(path):
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_two_runs_at_once_submit_once_and_end_with_the_same_result(make_lane, provider):
    lane = make_lane(provider)
    a = lane.start(REL_OUTPUT=str(output_of(lane, "a")))
    b = lane.start(REL_OUTPUT=str(output_of(lane, "b")))
    assert (lane.wait(a).status, lane.wait(b).status) == (75, 75), lane.logs()
    assert len(lane.remote_jobs()) == 1
    lane.advance()
    a = lane.start(REL_OUTPUT=str(output_of(lane, "a")))
    b = lane.start(REL_OUTPUT=str(output_of(lane, "b")))
    assert (lane.wait(a).status, lane.wait(b).status) == (0, 0), lane.logs()
    assert rows_of(output_of(lane, "a")) == rows_of(output_of(lane, "b"))
    lane.output.write_text(output_of(lane, "a").read_text())
    lane.assert_complete()
    assert len(lane.remote_jobs()) == 1 and lane.paid_requests() == ROWS
    lane.assert_store_ok()


def test_two_polling_runs_share_one_job_and_both_finish(make_lane, provider):
    lane = make_lane(provider)
    a = lane.start(block=60, REL_OUTPUT=str(output_of(lane, "a")))
    b = lane.start(block=60, REL_OUTPUT=str(output_of(lane, "b")))
    # Both are polling the same job (each has printed a progress line) before time moves.
    wait_for(lambda: all("next check in" in h.stderr.read_text() for h in (a, b)), what="both runs polling")
    assert len(lane.remote_jobs()) == 1
    lane.advance()
    assert (lane.wait(a).status, lane.wait(b).status) == (0, 0), lane.logs()
    assert rows_of(output_of(lane, "a")) == rows_of(output_of(lane, "b"))
    assert len(lane.remote_jobs()) == 1 and lane.paid_requests() == ROWS


def test_two_pipelines_with_the_same_requests_pay_once(make_lane, provider):
    """Requests are content-addressed: another pipeline asking the same reuses the job."""
    lane = make_lane(provider)
    other = {"REL_PIPELINE": "another-pipeline", "REL_OUTPUT": str(output_of(lane, "other"))}
    a, b = lane.start(), lane.start(**other)
    assert (lane.wait(a).status, lane.wait(b).status) == (75, 75), lane.logs()
    lane.advance()
    lane.run(expect=0)
    lane.run(expect=0, **other)
    assert rows_of(output_of(lane, "other")) == lane.output_rows()
    lane.assert_complete()
    assert len(lane.remote_jobs()) == 1 and lane.paid_requests() == ROWS


def test_a_run_waits_for_another_process_holding_the_store_and_says_so(make_lane, provider):
    lane = make_lane(provider)
    lane.run(expect=75)
    lane.advance()
    with open(lane.home / "overnight.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another overnight process is working on the store
        waiting = lane.start()
        wait_for(lambda: "another overnight process is using the store" in waiting.stderr.read_text(),
                 what="the run to say it waits")
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert lane.wait(waiting).status == 0, lane.logs()
    lane.assert_complete()
    assert len(lane.remote_jobs()) == 1


# --- a store that cannot be used -------------------------------------------------------------------


def set_schema_version(lane, version):
    db = sqlite3.connect(lane.store_path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    db.commit()
    db.close()


def test_a_store_from_a_newer_overnight_is_refused_and_nothing_resubmitted(make_lane, provider):
    lane = make_lane(provider)
    lane.run(expect=75)
    lane.advance()
    set_schema_version(lane, 99)
    lane.run().assert_clear_error("newer overnight", "Nothing was submitted")
    assert len(lane.remote_jobs()) == 1 and not lane.output.exists()
    from overnight._serialization import SCHEMA_VERSION

    set_schema_version(lane, SCHEMA_VERSION)
    lane.run(expect=0)
    lane.assert_complete()
    assert len(lane.remote_jobs()) == 1


def corrupt(lane, how):
    path = lane.store_path
    data = bytearray(path.read_bytes())
    if how == "garbage":
        data = bytearray(b"not a database, whatever it was " * (len(data) // 32))
    elif how == "truncated":
        data = data[: len(data) // 3]
    elif how == "page":
        # Overwrite the page holding the jobs table: the file still opens, reading it fails.
        db = sqlite3.connect(path)
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
        (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'jobs'").fetchone()
        db.close()
        start = (root - 1) * page_size
        data[start:start + page_size] = b"\xa5" * page_size
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["garbage", "truncated", "page"])
def test_a_corrupt_store_is_refused_clearly_and_nothing_resubmitted(make_lane, provider, how):
    lane = make_lane(provider)
    lane.run(expect=75)
    lane.advance()
    # The last run closed its connections: the store is one checkpointed file (no WAL).
    assert not (lane.home / "overnight.sqlite-wal").exists() or (lane.home / "overnight.sqlite-wal").stat().st_size == 0
    backup = lane.store_path.read_bytes()
    corrupt(lane, how)
    for _ in range(2):
        lane.run().assert_clear_error("cannot be used", "Nothing was submitted")
    assert len(lane.remote_jobs()) == 1 and not lane.output.exists()
    lane.store_path.write_bytes(backup)  # the user restores their copy, as the message says
    lane.run(expect=0)
    lane.assert_complete()
    assert len(lane.remote_jobs()) == 1 and lane.paid_requests() == ROWS


def test_a_store_locked_by_another_writer_is_a_clear_error_and_nothing_resubmitted(locked_store_runs, provider):
    """Started at the beginning of the session (see conftest.py): by now SQLite's busy
    timeout has passed (or the wait below lets it), the run must have stopped clearly."""
    lane, handle, lock = locked_store_runs[provider]
    locked = lane.wait(handle)
    locked.assert_clear_error("cannot be used", "database is locked", "Nothing was submitted")
    assert len(lane.remote_jobs()) == 1
    lock.execute("ROLLBACK")  # the other writer is done
    lane.advance()
    lane.run(expect=0)
    lane.assert_complete()
    assert len(lane.remote_jobs()) == 1 and lane.paid_requests() == ROWS
