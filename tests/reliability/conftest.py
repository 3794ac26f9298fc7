"""Fixtures of the reliability suite: one fork server per session, one sandbox per test.

Each test gets its own sandbox (about 60 ms to start): the Anthropic plugin's lookup by
tag looks at every batch of the workspace, so lanes must not see each other's jobs.
Tests talk to the sandbox only through its HTTP control API, as an operator would.
"""

from __future__ import annotations

import pytest

from overnight.sandbox import Sandbox, SandboxControl

from harness import Lane, make_runner


@pytest.fixture(scope="session")
def runners():
    """The default runner (fork server unless RELIABILITY_RUNNER=exec) and a real exec one."""
    default = make_runner()
    exec_runner = make_runner("exec")
    yield {"default": default, "exec": exec_runner}
    default.close()



@pytest.fixture
def control(sandbox):
    return SandboxControl(sandbox.url)


@pytest.fixture
def make_lane(runners, control, tmp_path):
    """``make_lane(provider, **options)``: a Lane in this test's sandbox."""
    count = 0

    def make(provider: str, **options) -> Lane:
        nonlocal count
        count += 1
        return Lane(runners, control, provider, tmp_path / f"lane-{count}-{provider}", **options)

    return make


# --- a store locked by another writer: the one scenario that needs real time -------------------
#
# A run that meets a store whose write lock another process holds waits for SQLite's
# busy timeout (30 s) and then stops with a StoreError. Rather than make the suite wait
# 30 s, the runs start in the background at the first reliability test (their lock is
# taken, their run started), and the tests that check them run last.

LOCKED_TEST = "test_a_store_locked_by_another_writer_is_a_clear_error"


def pytest_collection_modifyitems(session, config, items):
    late = [item for item in items if LOCKED_TEST in item.name]
    if late:
        items[:] = [item for item in items if LOCKED_TEST not in item.name] + late


@pytest.fixture(scope="session", autouse=True)
def locked_store_runs(request, runners, tmp_path_factory):
    """{provider: (lane, handle of the run started against the locked store, the lock)}."""
    import sqlite3

    from harness import PROVIDERS

    started: dict = {}
    if not any(LOCKED_TEST in item.name for item in request.session.items):
        yield started
        return
    root = tmp_path_factory.mktemp("locked-store")
    sandboxes = []
    try:
        for provider in PROVIDERS:
            sandbox = Sandbox(state_dir=root / f"sandbox-{provider}").start()
            sandboxes.append(sandbox)
            lane = Lane(runners, SandboxControl(sandbox.url), provider, root / provider)
            lane.run(expect=75)
            lock = sqlite3.connect(lane.store_path, isolation_level=None, check_same_thread=False)
            lock.execute("BEGIN EXCLUSIVE")  # another writer holds the store
            started[provider] = (lane, lane.start(), lock)
        yield started
    finally:
        for lane, handle, lock in started.values():
            lock.close()
        for sandbox in sandboxes:
            sandbox.stop()
