"""Polling (backoff, deadline) and the store's refusal of files it cannot trust."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from overnight import OfflineBatchGenerationNotFinished, StoreError, polling
from overnight.llm import LLM
from overnight.store import DB_NAME, Store

from test_executor import PROMPTS, generate


def test_blocking_polls_until_done(fake, monkeypatch):
    waits = []

    def fake_wait(stop, seconds):
        waits.append(seconds)
        fake.advance(4)  # the provider needs 10 s: three polls
        return False

    monkeypatch.setattr(polling, "wait", fake_wait)
    results = generate(PROMPTS, llm=LLM("fake/m", offline_batch_generation_block_until_done=3600, poll_interval=2))
    assert [r.result.text for r in results] == [f"echo: {p}" for p in PROMPTS]
    assert waits == [2, 3, 4.5]  # backoff grows by 1.5x
    assert len(fake.jobs()) == 1


def test_blocking_gives_up_at_the_deadline_as_not_finished(fake, monkeypatch):
    monkeypatch.setattr(polling, "wait", lambda stop, seconds: False)
    ticks = iter(range(0, 10_000, 50))
    monkeypatch.setattr("overnight.executor.time.monotonic", lambda: next(ticks))
    with pytest.raises(OfflineBatchGenerationNotFinished) as exc:
        generate(PROMPTS, llm=LLM("fake/m", offline_batch_generation_block_until_done=120))
    assert not exc.value.interrupted
    assert len(fake.jobs()) == 1


def test_stop_request_ends_polling_as_interrupted(fake, monkeypatch):
    def user_presses_ctrl_c(stop, seconds):
        stop.set()
        return True

    monkeypatch.setattr(polling, "wait", user_presses_ctrl_c)
    with pytest.raises(OfflineBatchGenerationNotFinished) as exc:
        generate(PROMPTS, llm=LLM("fake/m", offline_batch_generation_block_until_done=3600))
    assert exc.value.interrupted and "stopped by the user" in str(exc.value)
    fake.advance()
    assert len(generate(PROMPTS)) == 25  # the next run resumes the same job
    assert len(fake.jobs()) == 1


def test_newer_schema_is_refused(overnight_home):
    Store.open().close()
    db = sqlite3.connect(overnight_home / DB_NAME)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer overnight"):
        Store.open()


def test_corrupt_store_is_refused_and_nothing_submitted(fake, overnight_home):
    overnight_home.mkdir(parents=True)
    (overnight_home / DB_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot be used"):
        generate(PROMPTS)
    assert fake.submitted_requests == 0


def test_second_process_waits_for_the_step_lock_then_says_so(fake, monkeypatch):
    from overnight.executor import BatchExecutor
    from overnight.policy import RunPolicy

    store = Store.open()
    holder = BatchExecutor(store, None, {}, step="gen", plan_id="plan-1")  # type: ignore[arg-type]
    other = BatchExecutor(store, None, {}, step="gen", plan_id="plan-1", policy=RunPolicy(lock_timeout=0.3))  # type: ignore[arg-type]
    with holder._lock():
        errors = []
        t = threading.Thread(target=lambda: errors.append(_try_lock(other)))
        t.start()
        t.join()
    assert isinstance(errors[0], StoreError) and "another overnight process" in str(errors[0])


def _try_lock(executor):
    try:
        with executor._lock():
            return None
    except StoreError as exc:
        return exc


def test_commits_are_durable_across_an_os_crash(overnight_home):
    # synchronous=FULL: a committed intent or remote id is on disk before the commit
    # returns (NORMAL in WAL mode may lose the last commits on a power loss).
    store = Store.open()
    try:
        assert store._query("PRAGMA synchronous")[0][0] == 2  # FULL
        assert store._query("PRAGMA journal_mode")[0][0] == "wal"
    finally:
        store.close()
