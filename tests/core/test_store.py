"""The store's interface, method by method, on both backends: SQLite (the default) and
PostgreSQL (a schema of the session's test server, tests/pgserver.py).

Every test here runs twice (``[sqlite]``, ``[postgresql]``) through ``Store.open()``:
the same queries, the same answers. The PostgreSQL-only tests at the end cover what
only a server has: credentials, lost connections, hosts sharing one database.
"""

from __future__ import annotations

import json
import logging
import threading

import pytest

from fakeprovider import reply_to  # noqa: F401  (the fake provider's replies, used through `fake`)
from overnight import ChatRequest, Message, OfflineBatchGenerationNotFinished
from overnight._serialization import SCHEMA_VERSION, dumps
from overnight.errors import ConfigurationError, DiskError, StoreError
from overnight.executor import PlannedRequest
from overnight.llm import LLM
from overnight.models import JobRef, JobState, JobStatus, Result, ResultStatus, Usage
from overnight.policy import Retries
from overnight.store import _SCHEMA, ANSWER, DONE, FAILED, INTENT, LOST, NEW, QUEUED, JobPhase, JobRecord, Store
from storekeys import request_ids


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, monkeypatch, overnight_home):
    """Which backend ``Store.open()`` gives this test."""
    if request.param == "postgresql":
        monkeypatch.setenv("OVERNIGHT_STORE", request.getfixturevalue("pg_url"))
    else:
        monkeypatch.delenv("OVERNIGHT_STORE", raising=False)
    return request.param


@pytest.fixture
def store(backend):
    s = Store.open()
    yield s
    s.close()


def items(n, *, model="m", start=0, repeat=()):
    """Plan items (row, sample, key, model, line, bytes, tokens, max_output)."""
    out = [(i, 0, f"k{i}", model, f'{{"i": {i}}}', 10 + i, 5, 20) for i in range(start, start + n)]
    for row in repeat:  # a repeated input row: the same request at another position
        out.append((start + len(out), 0, f"k{row}", model, f'{{"i": {row}}}', 10 + row, 5, 20))
    return out


#: The default retry rule (3 attempts, 5 unfinished jobs), as the executor passes it.
R = Retries()


def ok(key, text="fine", cost=0.5):
    return Result(custom_id=key, status=ResultStatus.SUCCEEDED, text=text, usage=Usage(3, 4), cost_usd=cost,
                  online_cost_usd=cost * 2)


def submit(store, keys, tag="t1", plan="p"):
    job = store.create_intent(tag=tag, provider="fake", model="m", step="g", plan_id=plan,
                              request_ids=request_ids(store, keys), nbytes=10 * len(keys))
    store.confirm_job(job, JobRef("fake", f"remote-{tag}", tag))
    return job


# -- runs ---------------------------------------------------------------------------------------


def test_runs_record_their_pipeline_state_and_host(store, monkeypatch):
    monkeypatch.setenv("OVERNIGHT_HOST", "cron-host-7")
    run = store.start_run("answers")
    store.write_plan("p", "fake", "g", items(3))
    submit(store, ["k0", "k1", "k2"])
    store.finish_run(run, "pending")
    [row] = store.list_runs()
    assert (row["id"], row["pipeline"], row["state"], row["host"]) == (run, "answers", "pending", "cron-host-7")
    assert (row["jobs_submitted"], row["requests_submitted"]) == (1, 3)
    assert type(row["requests_submitted"]) is int
    [job] = store.list_jobs()
    assert job["host"] == "cron-host-7" and job["run_id"] == run


# -- plans ----------------------------------------------------------------------------------------


def test_a_plan_keeps_every_line_byte_for_byte_and_no_tokens_as_unknown(store):
    texts = ['quote " and backslash \\ ', "caf\u00e9 \u6f22\u5b57 \U0001f600", "line\nbreak\ttab \u2028", "nul \u0000 end",
             "[1, 2]", "null", "9223372036854775807"]
    lines = [json.dumps({"custom_id": f"k{i}", "body": {"content": t}}, ensure_ascii=False) for i, t in enumerate(texts)]
    planned = [(i, 0, f"k{i}", "m\u00fc", line, len(line.encode()) + 1) for i, line in enumerate(lines)]  # no tokens
    store.write_plan("p", "fake", "g", planned, batch=3)
    page = list(store.pending_lines("p"))
    assert [(r["key"], r["model"], r["bytes"], r["tokens"], r["max_output"]) for r in page] == [
        (f"k{i}", "m\u00fc", len(line.encode()) + 1, None, None) for i, line in enumerate(lines)]
    job = submit(store, [f"k{i}" for i in range(len(lines))])
    assert sorted(store.job_lines(job)) == sorted(lines)


def test_a_plan_is_stored_in_batches_and_read_back_in_order(store):
    assert not store.plan_complete("p")
    count = store.write_plan("p", "fake", "g", items(7, repeat=(2,)), batch=3)
    assert count == 8 and store.plan_complete("p")
    assert store.plan_counts("p") == {NEW: 7}  # distinct requests
    page = list(store.pending_lines("p", limit=3))
    assert [r["key"] for r in page] == ["k0", "k1", "k2"]
    assert [r["pos"] for r in page] == [0, 1, 2]
    assert (page[0]["model"], page[0]["bytes"], page[0]["tokens"], page[0]["max_output"]) == ("m", 10, 5, 20)
    rest = list(store.pending_lines("p", after=page[-1]["pos"]))
    assert [r["key"] for r in rest] == ["k3", "k4", "k5", "k6", "k2"]  # the repeat, at its own position
    assert [(r, s, state) for r, s, state, _ in store.plan_results("p")] == [(i, 0, NEW) for i in range(8)]
    store.drop_plan("p")
    assert not store.plan_complete("p") and store.plan_counts("p") == {}


def test_requests_are_shared_by_content_across_plans(store):
    store.write_plan("p", "fake", "g", items(3))
    job = submit(store, ["k0", "k1", "k2"])
    store.record_results(job, [ok("k0"), ok("k1"), ok("k2")], R)
    # Another plan (another pipeline, another host) with two of the same requests: paid already.
    store.write_plan("q", "fake", "g", items(3, start=1))
    assert store.plan_counts("q") == {DONE: 2, NEW: 1}
    assert store.paid_count("q") == 2
    assert [r["key"] for r in store.pending_lines("q")] == ["k3"]
    assert store.has_unsent("q") and not store.has_unsent("p")


# -- jobs -------------------------------------------------------------------------------------------


def test_intent_then_confirm_then_results_settle_each_request_once(store):
    store.write_plan("p", "fake", "g", items(4))
    store.start_run("x")
    job = store.create_intent(tag="t1", provider="fake", model="m", step="g", plan_id="p",
                              request_ids=request_ids(store, ["k0", "k1", "k2", "k3"]), nbytes=46)
    assert store.plan_counts("p") == {QUEUED: 4}
    [intent] = store.open_jobs("p")
    assert intent["state"] == INTENT and intent["ref"] is None and intent["requests"] == 4
    assert sorted(store.job_lines(job)) == [f'{{"i": {i}}}' for i in range(4)]
    ref = JobRef("fake", "batch_1", "t1", {"file": "f1"})
    store.confirm_job(job, ref)
    assert store.submitted == ["batch_1"]
    [running] = store.open_jobs("p")
    assert running["ref"] == ref and running["remote_id"] == "batch_1" and running["state"] == "running"
    store.update_job(job, JobStatus(JobState.FINISHED, total=4, completed=2, failed=1, raw_status="ended"))
    store.record_results(job, [
        ok("k0"), ok("k0", text="a duplicate: the first one wins"),
        Result(custom_id="k1", status=ResultStatus.ERRORED, error="overloaded"),
        Result(custom_id="k2", status=ResultStatus.UNFINISHED),
        ok("not-ours"),
    ], R)
    store.close_job(job, R)  # k3 never reported: resubmitted
    assert store.open_jobs("p") == []
    assert store.plan_counts("p") == {DONE: 1, NEW: 3}
    assert store.plan_retried("p") == 1  # k1 failed once
    [(_, _, state, result)] = [r for r in store.plan_results("p") if r[0] == 0]
    assert state == DONE and result.text == "fine"
    got = store.get_job(job)
    assert got is not None and (got["completed"], got["failed"], got["fetched"]) == (2, 1, 1)
    assert store.get_job("t1")["id"] == job and store.get_job("batch_1")["id"] == job
    assert store.get_job("nope") is None
    assert store.job_counts(job) == {DONE: 1, NEW: 3}


def test_jobs_are_frozen_records_in_one_phase_vocabulary(store):
    assert {s.value for s in JobState} <= {p.value for p in JobPhase}  # the provider's words are phases
    store.write_plan("p", "fake", "g", items(1))
    job = store.get_job(submit(store, ["k0"]))
    assert isinstance(job, JobRecord) and job.state is JobPhase.RUNNING and job.fetched is False
    assert job["tag"] == job.tag == "t1" and job.get("nope") is None  # read-only mapping reads, for old code
    with pytest.raises(KeyError):
        job["nope"]
    with pytest.raises(AttributeError):
        job.state = JobPhase.LOST  # type: ignore[misc]


def test_errors_retry_up_to_max_attempts_then_fail(store):
    store.write_plan("p", "fake", "g", items(1))
    for attempt in range(3):
        job = submit(store, ["k0"], tag=f"t{attempt}")
        store.record_results(job, [Result(custom_id="k0", status=ResultStatus.ERRORED, error=f"bad {attempt}")], R)
        store.close_job(job, R)
    assert store.plan_counts("p") == {FAILED: 1}
    assert store.retry_failed("p") == 1
    assert store.plan_counts("p") == {NEW: 1}


def test_the_executors_retry_rule_decides_when_an_unrun_request_ends_as_an_error(store):
    rule = Retries(max_attempts=3, max_unfinished=2)
    assert not rule.gives_up(2, 1) and rule.gives_up(3, 0) and rule.gives_up(0, 2)
    store.write_plan("p", "fake", "g", items(1))
    for n in range(2):
        job = submit(store, ["k0"], tag=f"t{n}")
        store.close_job(job, rule)  # the job ended without running k0 (expired)
    assert store.plan_counts("p") == {FAILED: 1}
    [(_, _, _, result)] = list(store.plan_results("p"))
    assert result.status is ResultStatus.ERRORED and "not run by the provider in 2 jobs" in result.error


def test_a_rejected_intent_counts_one_attempt_and_abandoned_ones_none(store):
    store.write_plan("p", "fake", "g", items(2))
    job = store.create_intent(tag="t1", provider="fake", model="m", step="g", plan_id="p",
                              request_ids=request_ids(store, ["k0"]), nbytes=10)
    store.reject_intent(job, "refused: too big", Retries(1, 5))
    assert store.get_job(job)["state"] == "rejected"
    job2 = store.create_intent(tag="t2", provider="fake", model="m", step="g", plan_id="p",
                               request_ids=request_ids(store, ["k1"]), nbytes=10)
    store.abandon_intent(job2)
    assert store.plan_counts("p") == {FAILED: 1, NEW: 1}
    assert [j["tag"] for j in store.list_jobs()] == ["t2", "t1"]
    assert store.list_jobs(active_only=True) == []


def test_lost_results_wait_for_consent(store):
    store.write_plan("p", "fake", "g", items(3))
    job = submit(store, ["k0", "k1", "k2"])
    store.record_results(job, [ok("k0")], R)
    assert store.lose_job(job, "files expired") == 2
    [lost] = store.lost_jobs("p")
    assert (lost["id"], lost["lost"], lost["message"]) == (job, 2, "files expired")
    assert store.lost_jobs() == store.lost_jobs("p")
    assert store.plan_counts("p") == {DONE: 1, LOST: 2}
    assert store.release_lost([job]) == 2
    assert store.plan_counts("p") == {DONE: 1, NEW: 2} and store.lost_jobs() == []


# -- tokens, queues, money --------------------------------------------------------------------------------


def test_tokens_in_flight_quotas_and_requeue(store):
    store.write_plan("p", "fake", "g", items(3))
    job = submit(store, ["k0", "k1"])
    assert store.in_flight("fake", "m") == (10, 2)
    assert store.job_tokens(job) == 10
    assert store.learned_quota("fake", "m") == (None, None)
    assert store.learn_quota("fake", "m", tokens=100, reason="429")
    assert not store.learn_quota("fake", "m", tokens=200)  # never raised
    assert store.learn_quota("fake", "m", requests=7)
    assert store.learned_quota("fake", "m") == (100, 7)
    store.requeue_job(job, "quota", "queue full")
    assert store.in_flight("fake", "m") == (0, 0)
    assert store.plan_counts("p") == {NEW: 3}


def test_money_per_plan_and_in_total(store):
    store.write_plan("p", "fake", "g", items(3))
    job = submit(store, ["k0", "k1"])
    store.record_results(job, [ok("k0", cost=0.25), Result(custom_id="k1", status=ResultStatus.SUCCEEDED, text="x")],
                         R)
    money = store.plan_money("p")
    assert money[DONE]["n"] == 2 and money[DONE]["cost"] == pytest.approx(0.25)
    assert money[DONE]["used_in"] == 3 and money[DONE]["used_out"] == 4 and money[DONE]["online"] == pytest.approx(0.5)
    assert money[NEW]["tokens"] == 5 and money[NEW]["max_output"] == 20 and money[NEW]["unbounded"] == 0
    assert money[NEW]["model"] == "m"
    totals = store.money_totals()
    assert totals["requests"] == 2 and totals["unpriced"] == 1
    assert totals["cost_usd"] == pytest.approx(0.25) and totals["saved_usd"] == pytest.approx(0.25)


# -- the provider as second source of truth ------------------------------------------------------------


def test_ambiguous_creates_remote_jobs_and_adoption(store):
    store.write_plan("p", "fake", "g", items(3))
    job = submit(store, ["k0"])
    assert store.ambiguous_since(job) is None
    store.mark_ambiguous(job)
    store.mark_ambiguous(job)  # again: an upsert
    assert store.ambiguous_since(job) is not None
    assert [j["id"] for j in store.ambiguous_open_jobs("p")] == [job]
    other = JobRef("fake", "remote-other", "ovn-other")
    store.remember_remote_job("fake", other, "running", 1.0, ["k1", "k2", "k-elsewhere"])
    store.remember_remote_job("fake", other, "ended", 1.0, ["k1"])  # listed again
    assert store.known_remote_ids("fake") == {"remote-t1", "remote-other"}
    [(ref, count)] = store.adopt_remote_jobs("p", "fake", "g")
    assert ref == other and count == 2
    assert store.plan_counts("p") == {QUEUED: 3} and not store.has_unsent("p")
    assert store.adopt_remote_jobs("p", "fake", "g") == []


def test_duplicates_answer_each_request_once(store):
    store.write_plan("p", "fake", "g", items(3))
    kept = submit(store, ["k0", "k1", "k2"])
    twin = store.get_job(kept)
    dup = store.record_duplicate(twin, JobRef("fake", "remote-late", "t1"), 3, "running")
    [open_dup] = store.open_duplicates("p")
    assert open_dup["id"] == dup and open_dup["of_job"] == kept and open_dup["message"] == "duplicate of remote-t1"
    store.record_results(kept, [ok("k0", text="from the kept job")], R)
    taken = store.record_duplicate_results(kept, [ok("k0", text="late"), ok("k1", text="from the duplicate"),
                                                  Result(custom_id="k2", status=ResultStatus.ERRORED, error="x")])
    assert taken == 1  # k0 was answered already; k2's error is the kept job's to report
    store.close_duplicate(dup)
    assert store.open_duplicates("p") == []
    texts = {row: result and result.text for row, _, _, result in store.plan_results("p")}
    assert texts == {0: "from the kept job", 1: "from the duplicate", 2: None}


# -- schema and lock -------------------------------------------------------------------------------------


def test_a_newer_schema_is_refused_clearly(store):
    with store.transaction() as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    store.close()
    with pytest.raises(StoreError, match=r"newer overnight \(schema 99, this one reads .*Nothing was submitted"):
        Store.open()


#: Every table of the store (the version-1 schema's and those migrations added).
TABLES = ("meta", "runs", "plans", "plan_items", "requests", "jobs", "job_requests", "ambiguous_creates",
          "duplicates", "remote_jobs", "remote_job_keys", "quotas", "online_claims", "online_answers",
          "batch_deadlines")


def test_a_store_at_schema_1_is_migrated_forward_keeping_its_plans_jobs_and_results(store, capsys):
    answered = dumps(ok("k0", text="kept"))  # a result as stores before schema 11 kept it
    with store.transaction() as db:  # as overnight 0.1 left it: the version-1 schema, with work in it
        for table in TABLES:
            db.execute(f"DROP TABLE {table}")
        for statement in _SCHEMA.format(**type(store).SCHEMA_WORDS).split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("DROP INDEX requests_job")
        db.execute("CREATE INDEX requests_job ON requests (job_id)")
        db.execute("CREATE INDEX plan_items_key ON plan_items (key)")
        db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
        db.execute("INSERT INTO runs (pipeline, state, started_at) VALUES ('old', 'done', 1.0)")
        db.execute("INSERT INTO plans (plan_id, provider, step, size, complete, created_at) VALUES ('p', 'fake', 'g', 3, 1, 1.0)")
        db.execute("INSERT INTO requests (key, provider, model, line, bytes, state, job_id) "
                   f"VALUES ('k1', 'fake', 'm', '{{}}', 2, '{QUEUED}', 1)")
        db.execute("INSERT INTO requests (key, provider, model, line, bytes, state, attempts, result) "
                   f"VALUES ('k0', 'fake', 'm', '{{}}', 2, '{DONE}', 0, ?)", (answered,))
        for position, (row, key) in enumerate([(0, "k0"), (1, "k1"), (2, "k0")]):  # row 2 repeats row 0
            db.execute("INSERT INTO plan_items (plan_id, position, row, sample, key) VALUES ('p', ?, ?, 0, ?)",
                       (position, row, key))
        db.execute("INSERT INTO jobs (tag, provider, model, step, plan_id, state, requests, bytes, created_at, "
                   "updated_at, remote_id) VALUES ('t1', 'fake', 'm', 'g', 'p', 'running', 1, 2, 1.0, 1.0, 'remote-t1')")
        db.execute("INSERT INTO job_requests (job_id, key) VALUES (1, 'k1')")
    store.close()
    with Store.open() as again:
        assert f"upgrading the store {again.location} from schema 1 to {SCHEMA_VERSION}, once" in capsys.readouterr().err
        assert again._query("SELECT value FROM meta WHERE key = 'schema_version'")[0][0] == str(SCHEMA_VERSION)
        assert "job_id IS NOT NULL" in _index_sql(again, "requests_job")  # only requests in a job
        assert "plan_items_key" not in _index_names(again)
        assert again.plan_counts("p") == {DONE: 1, QUEUED: 1}
        assert [j.id for j in again.open_jobs("p")] == [1] and again.job_counts(1) == {QUEUED: 1}
        assert again._query("SELECT cost_usd FROM requests WHERE key = 'k0'")[0][0] == 0.5  # figures filled
        again.record_results(1, [ok("k1", text="late")], R)
        again.close_job(1, R)
        texts = [(row, result.text) for row, _, _, result in again.plan_results("p")]
        assert texts == [(0, "kept"), (1, "late"), (2, "kept")]
        # The result stored before the upgrade keeps its JSON; the one after is columns only.
        stored = {r["key"]: (r["result"] is not None, r["status"], r["text"])
                  for r in again._query("SELECT key, result, status, text FROM requests")}
        assert stored == {"k0": (True, None, None), "k1": (False, "succeeded", "late")}
        again.start_run("new")
        assert [r["host"] is None for r in again.list_runs()] == [False, True]
        # New requests get numbers after the migrated ones, and plans point at them.
        again.write_plan("q", "fake", "g", items(3))
        assert [r["key"] for r in again.pending_lines("q")] == ["k2"]
        numbered = [r[0] for r in again._query("SELECT key FROM requests ORDER BY id")]
        assert sorted(numbered[:2]) == ["k0", "k1"] and numbered[2] == "k2"


def test_a_store_at_schema_10_gains_result_columns_and_reads_its_results_from_their_json(store, capsys):
    store.write_plan("p", "fake", "g", items(2))
    job = submit(store, ["k0", "k1"])
    with store.transaction() as db:  # k0 answered as overnight kept results before schema 11
        for column, _ in ANSWER:
            db.execute(f"ALTER TABLE requests DROP COLUMN {column}")
        db.execute(f"UPDATE requests SET state = '{DONE}', result = ? WHERE key = 'k0'",
                   (dumps(ok("k0", text="kept")),))
        db.execute("UPDATE meta SET value = '10' WHERE key = 'schema_version'")
    store.close()
    with Store.open() as again:
        told = capsys.readouterr().err
        assert f"from schema 10 to {SCHEMA_VERSION}, once" in told and "half a minute" not in told  # columns only
        again.record_results(job, [ok("k1", text="new")], R)
        again.close_job(job, R)
        results = [result for _, _, _, result in again.plan_results("p")]
        assert [r.text for r in results] == ["kept", "new"] and results[0] == ok("k0", text="kept")


def _index_names(store) -> set[str]:
    if hasattr(store, "path"):  # SQLite
        return {r[0] for r in store._query("SELECT name FROM sqlite_master WHERE type = 'index'")}
    return {r[0] for r in store._query("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}


def test_each_plan_item_points_at_its_own_request_new_known_or_repeated(store):
    # Batches of 3: all new; then ones mixing requests known from plan p and repeats.
    store.write_plan("p", "fake", "g", items(4), batch=3)
    first = [(r["key"], r["pos"]) for r in store.pending_lines("p")]
    assert first == [(f"k{i}", i) for i in range(4)]
    plan = items(6, start=2, repeat=(3, 7))  # k2..k7, then k3 and k7 again
    store.write_plan("q", "fake", "g", plan, batch=3)
    assert [r["key"] for r in store.pending_lines("q")] == [key for _, _, key, *_ in plan]
    assert store.plan_repeats("q") == 2
    counted = store._query("SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS numbers FROM requests")[0]
    assert (counted["n"], counted["numbers"]) == (8, 8)
    store.record_results(submit(store, ["k3", "k7"], tag="t", plan="q"),
                         [ok("k3", text="three"), ok("k7", text="seven")], R)
    answered = {(row, result.text) for row, _, _, result in store.plan_results("q") if result}
    assert answered == {(3, "three"), (7, "seven"), (8, "three"), (9, "seven")}


def test_a_result_is_settled_by_its_key_not_by_reading_its_whole_job(store, monkeypatch):
    # PostgreSQL once took the partial job index for each result (its statistics, taken when
    # the plan was written, said no request was in a job) and read every member per result.
    if hasattr(store, "path"):
        pytest.skip("SQLite settles by request number, with a statement of its own")
    from overnight.postgres_store import ANALYZE_AFTER, _Connection

    store.write_plan("p", "fake", "g", items(ANALYZE_AFTER))
    job = submit(store, [f"k{i}" for i in range(ANALYZE_AFTER)])
    sent = []
    executemany = _Connection.executemany

    def watched(self, sql, rows):
        rows = list(rows)
        sent.extend([(sql, rows[0])] if rows else [])
        return executemany(self, sql, rows)

    monkeypatch.setattr(_Connection, "executemany", watched)
    store.record_results(job, [ok("k0")], R)
    sql, params = next((sql, params) for sql, params in sent if sql.startswith("UPDATE requests"))
    plan = "\n".join(row[0] for row in store._query(f"EXPLAIN {sql}", params))
    assert "requests_job" not in plan, plan


def test_reopening_a_store_brings_back_no_index_a_migration_dropped(store):
    # Each extra index on plan_items is one more random-key B-tree written per planned row.
    first = _index_names(store)
    store.close()
    with Store.open() as again:
        assert _index_names(again) == first
        assert "plan_items_key" not in first


def _index_sql(store, name: str) -> str:
    """How the store's engine describes one of its indexes."""
    if hasattr(store, "path"):  # SQLite
        return store._query("SELECT sql FROM sqlite_master WHERE name = ?", (name,))[0][0]
    return store._query("SELECT indexdef FROM pg_indexes WHERE indexname = ? AND schemaname = current_schema()",
                        (name,))[0][0]


def test_the_store_lock_keeps_a_second_process_out(store):
    other = Store.open()  # another process: its own connections
    try:
        with store.lock(5, step="g"):
            errors: list[BaseException] = []

            def contend() -> None:
                try:
                    with other.lock(0.3, step="g"):
                        pass
                except StoreError as exc:
                    errors.append(exc)

            t = threading.Thread(target=contend)
            t.start()
            t.join()
        assert len(errors) == 1 and "another overnight process" in str(errors[0])
        with other.lock(1, step="g"):  # released: the other one gets it at once
            pass
    finally:
        other.close()


# -- the executor end to end, on each backend -----------------------------------------------------------


def plan(prompts):
    return [PlannedRequest(row=i, sample=0, request=ChatRequest("", "m", [Message("user", p)]))
            for i, p in enumerate(prompts)]


def generate(prompts, **open_kwargs):
    with Store.open(**open_kwargs) as store:
        return list(LLM("fake/m").generate_offline(plan(prompts), store=store, step="gen", plan_id="plan-1"))


def test_a_pipeline_step_runs_to_the_end_on_each_backend(fake, backend):
    prompts = [f"question {i}" for i in range(30)]
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(prompts)
    fake.advance()
    results = generate(prompts)
    assert [r.result.text for r in results] == [f"echo: {p}" for p in prompts]
    assert len(fake.jobs()) == 1 and fake.submitted_requests == 30


# -- PostgreSQL only ------------------------------------------------------------------------------------


def test_a_second_host_reassembles_every_row_from_the_shared_store_without_paying(fake, pg_url, tmp_path):
    prompts = [f"question {i}" for i in range(20)]
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(prompts, cache_dir=tmp_path / "host-a", url=pg_url)
    fake.advance()
    first = generate(prompts, cache_dir=tmp_path / "host-a", url=pg_url)
    second = generate(prompts, cache_dir=tmp_path / "host-b", url=pg_url)  # another OVERNIGHT_HOME
    assert [r.result.text for r in second] == [r.result.text for r in first] == [f"echo: {p}" for p in prompts]
    assert len(fake.jobs()) == 1 and fake.submitted_requests == 20
    assert not (tmp_path / "host-b" / "overnight.sqlite").exists()  # nothing of the store is local


def test_the_password_never_shows(pg_server, pg_url, caplog, capsys):
    from pgserver import PASSWORD

    caplog.set_level(logging.DEBUG)
    store = Store.open(url=pg_url)
    try:
        store.start_run("p")
        shown = [repr(store), str(store.location), repr(store.list_runs())]
        rows = store._query("SELECT * FROM runs")
        shown += [repr(list(r)) for r in rows]
    finally:
        store.close()
    assert "***" in store.location and "overnight:***@" in repr(store)
    wrong = pg_url.replace(PASSWORD, PASSWORD + "-wrong")
    with pytest.raises(StoreError) as bad_password:
        Store.open(url=wrong)
    refused = pg_url.replace(f":{pg_server.port}/", ":1/")
    with pytest.raises(StoreError) as no_server:
        Store.open(url=refused)
    with pytest.raises(ConfigurationError) as not_pg:
        Store.open(url=f"mysql://overnight:{PASSWORD}@127.0.0.1/x")
    for exc in (bad_password.value, no_server.value, not_pg.value):
        shown.append(str(exc))
        shown.append(repr(exc))
    assert "Cannot connect to the overnight store" in str(bad_password.value)
    assert "nothing was lost" in str(no_server.value) and "run again" in str(no_server.value)
    out = capsys.readouterr()
    shown += [out.out, out.err, caplog.text]
    assert not [s for s in shown if PASSWORD in s]


def test_a_lost_connection_is_a_clear_error_and_the_lock_is_never_retaken_silently(pg_server, pg_url):
    import psycopg

    from pgserver import PASSWORD

    store = Store.open(url=pg_url)
    try:
        store.write_plan("p", "fake", "g", items(2))
        with pytest.raises(StoreError) as lost:
            with store.lock(5, step="g"):
                pid = store._query("SELECT pg_backend_pid()")[0][0]
                with psycopg.connect(pg_server.url, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                store.create_intent(tag="t", provider="fake", model="m", step="g", plan_id="p",
                                    request_ids=request_ids(store, ["k0"]), nbytes=1)
        message = str(lost.value)
        assert "Nothing was lost" in message and "Run again" in message and PASSWORD not in message
        with pytest.raises(StoreError, match="connection .* was lost"):  # still inside a pass: no reconnect
            with store.lock(5, step="g"):
                with psycopg.connect(pg_server.url, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (store._query("SELECT pg_backend_pid()")[0][0],))
                store.plan_counts("p")
                store.plan_counts("p")
        assert store.plan_counts("p") == {NEW: 2}  # after the pass: a new connection, nothing lost
    finally:
        store.close()


def test_pipeline_store_argument_selects_postgres_and_no_table_holds_the_password(fake, pg_url, tmp_path):
    import psycopg

    from overnight import LoadDataFromDicts, Pipeline, PipelineNotFinished, TextGeneration
    from pgserver import PASSWORD

    def build():
        with Pipeline(name="teams", cache_dir=tmp_path / "home", store=pg_url) as p:
            LoadDataFromDicts(name="load", data=[{"instruction": f"q{i}"} for i in range(5)]) >> TextGeneration(
                name="gen", llm=LLM("fake/m"))
        return p

    with pytest.raises(PipelineNotFinished) as pending:
        build().run()
    assert PASSWORD not in str(pending.value)
    fake.advance()
    assert [r["generation"] for r in build().run()] == [f"echo: q{i}" for i in range(5)]
    assert not (tmp_path / "home" / "overnight.sqlite").exists()
    assert (tmp_path / "home" / "pipelines").exists()  # step outputs stay local
    with psycopg.connect(pg_url, autocommit=True) as db:
        tables = [r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
        assert {"runs", "jobs", "requests", "plans"} <= set(tables)
        for table in tables:
            text = "".join(str(row) for row in db.execute(f"SELECT * FROM {table}").fetchall())
            assert PASSWORD not in text, table
    with pytest.raises(ConfigurationError, match="postgresql:// URL"):
        Pipeline(name="x", store=42)  # type: ignore[arg-type]


# --- commits behind (SQLite: a transaction's commit finished in a second thread) -----------


def test_within_commits_behind_a_plan_is_written_whole_and_each_part_commits_in_a_second_thread(
        store, backend, monkeypatch):
    threads: list[str] = []
    if backend == "sqlite":
        commit = type(store)._commit
        monkeypatch.setattr(type(store), "_commit",
                            lambda self, db: (threads.append(threading.current_thread().name), commit(self, db)))
    assert store.write_plan("p", "fake", "s", items(25), batch=10) == 25
    assert [r for r, _, _, _ in store.plan_results("p")] == list(range(25))
    if backend == "sqlite":  # the three parts; then the plan marked complete, in this thread
        assert len(threads) >= 4 and all(t.startswith("overnight-commit") for t in threads[-4:-1])
        assert threads[-1] == threading.current_thread().name


def test_leaving_commits_behind_with_an_error_keeps_the_commit_under_way_and_that_error(store):
    store.write_plan("p", "fake", "s", items(4))
    job = store.create_intent(tag="t", provider="fake", model="m", step="s", plan_id="p",
                              request_ids=request_ids(store, ["k0", "k1", "k2", "k3"]), nbytes=10)
    with pytest.raises(KeyboardInterrupt):
        with store.commits_behind():
            store.record_results(job, [ok("k0"), ok("k1")], R)
            raise KeyboardInterrupt
    other = Store.open()
    try:
        assert other.plan_counts("p") == {DONE: 2, QUEUED: 2}
    finally:
        other.close()


def test_a_commit_that_fails_behind_is_raised_at_the_next_use_of_the_store(store, backend, monkeypatch):
    if backend != "sqlite":
        pytest.skip("only SQLite commits behind")
    import sqlite3

    def full(self, db):
        self._rolled_back(db, sqlite3.OperationalError("database or disk is full"))

    store.write_plan("p", "fake", "s", items(2))
    job = store.create_intent(tag="t", provider="fake", model="m", step="s", plan_id="p", request_ids=request_ids(store, ["k0", "k1"]),
                              nbytes=10)
    monkeypatch.setattr(type(store), "_commit", full)
    with pytest.raises(DiskError, match="the disk is full"):
        with store.commits_behind():
            store.record_results(job, [ok("k0")], R)
            store.plan_counts("p")  # waits for the commit, and raises its error
    monkeypatch.undo()
    assert store.plan_counts("p") == {QUEUED: 2}  # rolled back: nothing half-stored
