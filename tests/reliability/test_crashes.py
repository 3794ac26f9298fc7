"""Process crashes: SIGKILL at every executor phase boundary, for each provider.

Each scenario runs the pipeline script with ``overnight run`` in a child process that
kills itself (SIGKILL, via ``OVERNIGHT_FAULT_POINT``) at one fault point, then runs it
again until it is done, advancing the sandbox clock through the control API between
runs. The truth is read from outside: the sandbox's job list and counters (what the
provider would bill), the output file, and the SQLite store.

Points per provider: ``after_upload`` exists only where the plugin uploads a file
(OpenAI always; Mistral for jobs sent as a file, ``inline_threshold=0``; Anthropic never).
"""

from __future__ import annotations

import pytest

from harness import FIRST_FETCH_BATCH, ROWS

#: (provider, variant) columns: Mistral runs both of its submission paths.
COLUMNS = {
    "openai": {},
    "anthropic": {},
    "mistral": {},
    "mistral-file": {"client_options": {"inline_threshold": 0}},
    "gemini": {},
    "gemini-file": {"client_options": {"inline_threshold": 0}},
    "groq": {},
    "together": {},
    "deepinfra": {},
    "nebius": {},
}
POINTS = ("after_intent", "after_upload", "after_create", "during_poll", "mid_fetch", "during_assembly")
UPLOADS = {"openai", "mistral-file", "gemini-file", "groq", "together", "deepinfra", "nebius"}


def cases():
    for column in COLUMNS:
        for point in POINTS:
            if point == "after_upload" and column not in UPLOADS:
                continue
            yield pytest.param(column, point, id=f"{column}-{point}")


def lane_for(make_lane, column: str, **options):
    provider = column.split("-")[0]
    return make_lane(provider, **{**COLUMNS[column], **options})


@pytest.mark.parametrize("column, point", list(cases()))
def test_sigkill_at_each_phase_then_rerun_until_done(make_lane, column, point):
    lane = lane_for(make_lane, column)
    provider = lane.provider

    # -- the run that dies ---------------------------------------------------------------
    if point in ("mid_fetch", "during_assembly"):
        lane.run(expect=75)  # submits
        lane.advance()       # the job ends; the next run collects and dies collecting
    killed = lane.run(fault=point, block=30 if point == "during_poll" else None)
    assert killed.killed, killed.describe()

    jobs = lane.remote_jobs()
    local = lane.query("SELECT state, remote_id FROM jobs")
    if point == "after_intent":
        assert jobs == [] and lane.counters()["files"] == 0
        assert [s for s, _ in local] == ["intent"]
    elif point == "after_upload":
        assert jobs == [] and lane.counters()["files"] == 1
    elif point == "after_create":
        assert len(jobs) == 1 and [s for s, _ in local] == ["intent"]  # created, id never recorded
    elif point == "during_poll":
        assert len(jobs) == 1 and local == [("running", jobs[0]["id"])]
    elif point == "mid_fetch":
        # Some results stored (the first committed batch), the others not.
        assert lane.request_states() == {"done": FIRST_FETCH_BATCH, "queued": ROWS - FIRST_FETCH_BATCH}
    elif point == "during_assembly":
        assert lane.request_states() == {"done": ROWS}
    assert not lane.output.exists()  # nothing half-written where the dataset goes
    assert lane.query("PRAGMA integrity_check") == [("ok",)]

    # -- re-run until done -----------------------------------------------------------------
    if point in ("after_intent", "after_upload"):
        lane.run(expect=75)  # nothing was created: submits now, once
        lane.advance()
    elif point == "after_create":
        if provider == "anthropic":
            # Message Batches keep no metadata: the tag is readable only in the results of
            # an ended batch, so while the batch runs the plugin cannot tell and says so.
            lane.run().assert_clear_error("cannot tell yet", "Nothing was submitted again")
        else:
            found = lane.run(expect=75)
            assert "found job" in found.stderr and "not submitting again" in found.stderr
        lane.advance()
    elif point == "during_poll":
        lane.run(expect=75)
        lane.advance()
    lane.run(expect=0)

    lane.assert_complete()
    jobs = lane.remote_jobs()
    assert len(jobs) == 1, jobs  # never paid twice
    assert lane.paid_requests() == ROWS
    lane.assert_store_ok()


@pytest.mark.parametrize("provider", ["openai", "anthropic", "mistral", "gemini"])
def test_sigkill_after_create_under_a_real_interpreter(make_lane, provider):
    """The same crash through ``python -m overnight.cli run`` (no fork server)."""
    lane = make_lane(provider)
    assert lane.run(fault="after_create", runner="exec").killed
    lane.advance()
    lane.run(runner="exec", expect=0)
    lane.assert_complete()
    assert len(lane.remote_jobs()) == 1 and lane.paid_requests() == ROWS
    lane.assert_store_ok()


@pytest.mark.parametrize("provider", ["openai", "anthropic", "mistral", "gemini"])
def test_without_lookup_by_tag_an_unconfirmed_submission_stops_clearly(make_lane, provider):
    """A plugin that cannot find jobs by tag: after an ``after_create`` kill, stop and say so.

    Nothing is resubmitted, however often the run is repeated, until the user passes
    ``run(resubmit_unconfirmed=True)``, the explicit way on (which does pay again).
    """
    lane = make_lane(provider, extra_env={"REL_NO_LOOKUP": "1"})
    assert lane.run(fault="after_create").killed
    (tag,) = [t for (t,) in lane.query("SELECT tag FROM jobs WHERE state = 'intent'")]
    for _ in range(2):
        stopped = lane.run()
        stopped.assert_clear_error("stopped before recording their ids", tag, "resubmit_unconfirmed=True")
        assert len(lane.remote_jobs()) == 1  # nothing resubmitted
    lane.advance()
    assert len(lane.remote_jobs()) == 1

    lane.run(expect=75, REL_RESUBMIT_UNCONFIRMED="1")
    lane.advance()
    lane.run(expect=0)
    lane.assert_complete()
    assert len(lane.remote_jobs()) == 2  # the user chose to pay again for the unconfirmed chunk


@pytest.mark.parametrize("provider", ["openai", "anthropic", "mistral", "gemini"])
@pytest.mark.parametrize("point", ["after_intent:3", "after_create:2"])
def test_sigkill_between_the_jobs_of_a_plan_split_into_several(make_lane, provider, point):
    """34 requests in jobs of 10: the kill comes at the 2nd or 3rd job, others exist."""
    lane = make_lane(provider, max_requests=10)
    assert lane.run(fault=point).killed
    before = len(lane.remote_jobs())
    assert before == int(point[-1]) - (1 if point.startswith("after_intent") else 0)
    first = lane.run()
    if provider == "anthropic":
        # Earlier batches of the plan still run, so the plugin cannot tell yet whether the
        # unconfirmed one exists: it stops, and nothing at all is submitted meanwhile.
        first.assert_clear_error("cannot tell yet")
        assert len(lane.remote_jobs()) == before
        lane.advance()
        first = lane.run()
    assert first.status == 75, first.describe()
    assert len(lane.remote_jobs()) == 4
    lane.advance()
    lane.run(expect=0)
    lane.assert_complete()
    assert sorted(j["total"] for j in lane.remote_jobs()) == [4, 10, 10, 10]
    assert lane.paid_requests() == ROWS
    lane.assert_store_ok()


@pytest.mark.parametrize("provider", ["openai", "anthropic", "mistral", "gemini"])
def test_duplicate_rows_and_several_generations_are_paid_once_through_a_kill(make_lane, provider):
    """Requests are content-addressed: 30 rows of which 10 repeat earlier prompts, two
    generations each, make 60 planned requests but 40 distinct ones, paid once each,
    even with a kill in the middle of collecting them; every row gets both samples."""
    from harness import prompt

    rows = [{"id": i, "instruction": prompt(i if i < 20 else i - 20)} for i in range(30)]
    lane = make_lane(provider, rows=rows, task={"num_generations": 2})
    lane.run(expect=75)
    assert [j["total"] for j in lane.remote_jobs()] == [40]
    lane.advance()
    assert lane.run(fault="mid_fetch").killed
    lane.run(expect=0)
    lane.assert_complete()
    assert len(lane.remote_jobs()) == 1 and lane.paid_requests() == 40
    lane.assert_store_ok()


def test_a_killed_run_leaves_no_partial_output_behind_once_done(make_lane):
    lane = make_lane("openai")
    lane.run(expect=75)
    lane.advance()
    assert lane.run(fault="during_assembly").killed
    lane.run(expect=0)
    assert list((lane.home / "pipelines").rglob("*.tmp")) == []


def test_every_way_out_named_by_the_unconfirmed_submission_message_exists(make_lane):
    lane = make_lane("openai", extra_env={"REL_NO_LOOKUP": "1"})
    assert lane.run(fault="after_create").killed
    stopped = lane.run()
    stopped.assert_clear_error("overnight forget-unconfirmed")
    way_out = lane.cli("forget-unconfirmed")
    assert way_out.status == 0, way_out.describe()
    lane.run(expect=75)
