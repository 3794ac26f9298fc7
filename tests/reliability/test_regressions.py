"""Bugs the reliability suite found in the core, each pinned by the scenario that showed it."""

from __future__ import annotations

import pytest

from harness import PROVIDERS, RESULT_FILES, ROWS, wait_for


def opened(pid: int, path) -> bool:
    """Whether process ``pid`` has ``path`` open (Linux /proc)."""
    import os

    try:
        if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
            return True  # it has ended (not yet reaped): nothing left to wait for
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return True  # it has ended: nothing left to wait for
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False

LIST_ENDPOINTS = {"openai": r"/batches$", "anthropic": r"/messages/batches$", "mistral": r"/batch/jobs$",
                  "gemini": r"/batches$"}
STATUS_ENDPOINTS = {"openai": r"/batches/[^/]+$", "anthropic": r"/messages/batches/[^/]+$",
                    "mistral": r"/batch/jobs/[^/]+$", "gemini": r"/batches/[^/]+$"}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("phase", ["lookup", "check", "download"])
def test_a_provider_failure_after_submission_is_a_clear_error_not_a_traceback(make_lane, provider, phase):
    """A provider outage while looking a job up, checking it or downloading its results
    used to escape as the SDK's raw exception (a traceback, as if overnight had a bug).
    It is a ProviderError now, like a failed submit: exit 1, what failed, run again."""
    lane = make_lane(provider, client_options={"max_retries": 0, **RESULT_FILES.get(provider, {})})
    if phase == "lookup":
        assert lane.run(fault="after_intent").killed
        lane.fault(http_status=503, http_method="GET", http_path=LIST_ENDPOINTS[provider])
        needle = "looking up the"
    else:
        lane.run(expect=75)
        lane.advance()
        if phase == "check":
            lane.fault(http_status=502, http_method="GET", http_path=STATUS_ENDPOINTS[provider])
            needle = "checking the"
        else:
            lane.fault(download_truncate=0.5, download_truncate_mode="abort")
            needle = "fetching the results of the"
    failed = lane.run()
    failed.assert_clear_error(needle, "run again")
    lane.control.clear_faults()
    lane.run_until_done()
    lane.assert_complete()
    assert len(lane.remote_jobs()) == 1 and lane.paid_requests() == ROWS


#: Tables and indexes of the store (by name in sqlite_master) that a resumed run reads or writes.
STORE_OBJECTS = ["meta", "runs", "requests", "requests_job", "jobs", "job_requests"]


@pytest.mark.parametrize("name", STORE_OBJECTS)
def test_a_corrupt_page_anywhere_in_the_store_is_a_clear_error_and_nothing_is_resubmitted(make_lane, name):
    """A page of the store damaged on disk used to surface, for some tables and indexes
    (runs, requests_job), as a raw sqlite3.DatabaseError with a traceback: only the
    store's BEGIN and one-shot queries were wrapped, not the statements inside a
    transaction nor streamed queries. Now every one is a StoreError saying what to do.
    (A page the run never reads may go unnoticed: then the run must simply finish right.)"""
    import sqlite3

    lane = make_lane("openai")
    lane.run(expect=75)
    lane.advance()
    backup = lane.store_path.read_bytes()
    db = sqlite3.connect(lane.store_path)
    (page_size,) = db.execute("PRAGMA page_size").fetchone()
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    db.close()
    data = bytearray(backup)
    data[(root - 1) * page_size:root * page_size] = b"\xa5" * page_size
    lane.store_path.write_bytes(bytes(data))

    result = lane.run()
    if result.status == 0:
        lane.assert_complete()
    else:
        result.assert_clear_error("cannot be used", "database disk image is malformed")
        lane.store_path.write_bytes(backup)
        lane.run(expect=0)
        lane.assert_complete()
    assert len(lane.remote_jobs()) == 1 and lane.paid_requests() == ROWS


def test_a_run_opening_a_new_store_while_another_process_writes_it_waits_instead_of_failing(make_lane):
    """Two runs started at once on a new store: one of them sometimes died at once with
    "database is locked" (about 1 in 8 in a tight loop; seen as a flaky two-runs-at-once
    test). Switching the file to WAL does not go through SQLite's busy handler, so it
    failed immediately while the other process was writing. It now waits within the
    store's busy timeout like every other statement. Reproduced here deterministically:
    another writer holds a new store (not yet WAL) for a moment while the run opens it."""
    import sqlite3
    import time

    lane = make_lane("openai")
    lane.home.mkdir(parents=True)
    other = sqlite3.connect(lane.store_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE another_process_was_here (x)")
    handle = lane.start()
    try:
        # Once the run has the file open (it is about to switch it to WAL), let it wait a moment.
        wait_for(lambda: opened(handle.pid, lane.store_path), what="the run to open the store")
        time.sleep(0.3)
    finally:
        other.execute("COMMIT")
        other.close()
    result = lane.wait(handle)
    assert result.status == 75, result.describe()
    assert len(lane.remote_jobs()) == 1
    lane.advance()
    lane.run(expect=0)
    lane.assert_complete()
