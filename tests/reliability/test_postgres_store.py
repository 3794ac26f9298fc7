"""The shared store on PostgreSQL: crashes, two hosts at once, eight processes at once.

Each lane's runs are real ``overnight run`` processes with ``OVERNIGHT_STORE`` pointing
at a schema of the session's test server (tests/pgserver.py); "hosts" are processes
with their own ``OVERNIGHT_HOME`` (their own step outputs) on that one database. The
truth comes from outside, as in the rest of the suite: the sandbox's jobs and counters
(what the provider bills), the output files, and the database read directly.
"""

from __future__ import annotations

import json

import pytest

from harness import FIRST_FETCH_BATCH, PROVIDERS, ROWS, Lane, prompt


class PgLane(Lane):
    """A lane whose store is a PostgreSQL schema (``url``) instead of ``home/overnight.sqlite``."""

    def __init__(self, *args, url: str, **kwargs) -> None:
        super().__init__(*args, extra_env={"OVERNIGHT_STORE": url}, **kwargs)
        self.url = url

    def query(self, sql, params=()):
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            return [tuple(r) for r in db.execute(sql, tuple(params) or None).fetchall()]

    def assert_store_ok(self) -> None:
        remote = {j["id"] for j in self.remote_jobs()}
        local = self.query("SELECT remote_id, state FROM jobs")
        ids = [r for r, _ in local if r]
        assert len(ids) == len(set(ids)), "a remote job recorded twice"
        assert set(ids) <= remote, "the store records a job the provider does not have"
        assert all(state != "intent" for _, state in local), f"unconfirmed intents left: {local}"
        assert set(self.request_states()) <= {"done", "failed"}, self.request_states()
        assert not (self.home / "overnight.sqlite").exists(), "the shared store left a local SQLite file"


@pytest.fixture
def make_pg_lane(runners, control, tmp_path, pg_server):
    count = 0

    def make(provider: str, **options) -> PgLane:
        nonlocal count
        count += 1
        return PgLane(runners, control, provider, tmp_path / f"pg-lane-{count}-{provider}",
                      url=pg_server.schema_url(), **options)

    return make


# --- crashes (a subset of test_crashes.py's matrix) -------------------------------------------------


@pytest.mark.parametrize("point", ["after_intent", "after_create", "mid_fetch"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_sigkill_then_rerun_until_done_on_postgres(make_pg_lane, provider, point):
    lane = make_pg_lane(provider)
    if point == "mid_fetch":
        lane.run(expect=75)
        lane.advance()
    killed = lane.run(fault=point)
    assert killed.killed, killed.describe()
    local = lane.query("SELECT state, remote_id FROM jobs")
    if point == "after_intent":
        assert lane.remote_jobs() == [] and [s for s, _ in local] == ["intent"]
    elif point == "after_create":
        assert len(lane.remote_jobs()) == 1 and [s for s, _ in local] == ["intent"]
    else:
        assert lane.request_states() == {"done": FIRST_FETCH_BATCH, "queued": ROWS - FIRST_FETCH_BATCH}
    assert not lane.output.exists()

    if point == "after_intent":
        lane.run(expect=75)
        lane.advance()
    elif point == "after_create":
        if provider == "anthropic":  # the tag is readable only once the batch has ended (test_crashes.py)
            lane.run().assert_clear_error("cannot tell yet", "Nothing was submitted again")
        else:
            found = lane.run(expect=75)
            assert "found job" in found.stderr and "not submitting again" in found.stderr
        lane.advance()
    lane.run(expect=0)
    lane.assert_complete()
    assert len(lane.remote_jobs()) == 1 and lane.paid_requests() == ROWS
    lane.assert_store_ok()


# --- hosts sharing one database -----------------------------------------------------------------------


def rows_of(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_two_hosts_run_the_same_pipeline_at_once_one_job_both_finish(make_pg_lane, provider):
    lane = make_pg_lane(provider)
    hosts = {name: {"OVERNIGHT_HOME": str(lane.root / f"home-{name}"), "OVERNIGHT_HOST": name,
                    "REL_OUTPUT": str(lane.root / f"out-{name}.jsonl")} for name in ("host-a", "host-b")}
    started = [lane.start(**env) for env in hosts.values()]
    assert [lane.wait(h).status for h in started] == [75, 75], lane.logs()
    assert len(lane.remote_jobs()) == 1
    lane.advance()
    started = [lane.start(**env) for env in hosts.values()]
    assert [lane.wait(h).status for h in started] == [0, 0], lane.logs()
    a, b = (rows_of(lane.root / f"out-{name}.jsonl") for name in hosts)
    assert a == b
    lane.output.write_text((lane.root / "out-host-a.jsonl").read_text())
    lane.assert_complete()  # every row once, in order, each with its own answer
    assert len(lane.remote_jobs()) == 1 and lane.paid_requests() == ROWS
    assert lane.query("SELECT COUNT(*) FROM requests") == [(ROWS,)]  # each request stored once
    lane.assert_store_ok()
    # Each host's runs are shown with its name, whichever host asks.
    status = lane.cli("status", OVERNIGHT_HOME=hosts["host-b"]["OVERNIGHT_HOME"])
    assert status.status == 0 and "host-a" in status.stdout and "host-b" in status.stdout, status.describe()
    assert "pg-secret" not in status.stdout + status.stderr
    jobs = lane.cli("jobs", "--all", OVERNIGHT_HOME=hosts["host-a"]["OVERNIGHT_HOME"])
    assert jobs.status == 0 and "HOST" in jobs.stdout and ("host-a" in jobs.stdout or "host-b" in jobs.stdout)


def test_eight_processes_with_overlapping_pipelines_pay_for_each_request_once(make_pg_lane):
    lane = make_pg_lane("openai")
    # Process i asks for prompts 4i .. 4i+11: each prompt is asked by up to three processes.
    wanted = {i: list(range(4 * i, 4 * i + 12)) for i in range(8)}
    envs = {}
    for i, ids in wanted.items():
        path = lane.root / f"rows-{i}.jsonl"
        path.write_text("".join(json.dumps({"id": j, "instruction": prompt(j)}) + "\n" for j in ids))
        envs[i] = {"OVERNIGHT_HOME": str(lane.root / f"home-{i}"), "OVERNIGHT_HOST": f"host-{i}",
                   "REL_INPUT": str(path), "REL_OUTPUT": str(lane.root / f"out-{i}.jsonl"), "REL_PIPELINE": f"p{i}"}
    for _ in range(2):  # submit (all pending), then collect (all done)
        handles = [lane.start(**env) for env in envs.values()]
        statuses = [lane.wait(h).status for h in handles]
        if statuses == [0] * 8:
            break
        assert set(statuses) <= {0, 75}, lane.logs()
        lane.advance()
    else:
        pytest.fail("not done after the second round:\n" + lane.logs())
    distinct = {j for ids in wanted.values() for j in ids}
    assert lane.paid_requests() == len(distinct)  # every request paid once, whoever asked first
    for i, ids in wanted.items():
        out = rows_of(lane.root / f"out-{i}.jsonl")
        assert [r["id"] for r in out] == ids
        assert all(r["generation"] == lane.expected(r) for r in out)
    lane.assert_store_ok()
