"""Creates whose answer is lost, and stores that are lost: never two paid jobs, nothing paid again.

The sandbox accepts a create, creates the job, drops the response (the SDK sees a
connection error) and hides the job from get and list for a while: a create that lands
late. Each test reads the truth from the sandbox's own job list.
"""

from __future__ import annotations

import shutil

import pytest

from harness import DONE, PROVIDERS, ROWS

pytestmark = pytest.mark.parametrize("provider", PROVIDERS)

#: A settle window far longer than the tests take: "not found" is never proof in them.
LONG_SETTLE = {"OVERNIGHT_CREATE_SETTLE_SECONDS": "3600"}
#: Sandbox seconds a normal job of these tests takes to end (validating + processing).
RUNNING = 20.0


def one_job_every_row(lane) -> None:
    lane.assert_complete()
    assert len(lane.remote_jobs()) == 1, lane.remote_jobs()
    assert lane.paid_requests() == ROWS
    lane.assert_store_ok()


def test_a_lost_create_answer_within_the_settle_window_is_found_not_paid_again(make_lane, provider):
    lane = make_lane(provider, extra_env=LONG_SETTLE)
    lane.fault(create_response_lost=True, visible_after=8, times=1)
    lane.run().assert_clear_error("intent is saved under tag")
    assert len(lane.remote_jobs()) == 1  # created (and billed), though the caller never heard
    # Still invisible: "not found" right after an ambiguous create proves nothing.
    waiting = lane.run(expect=75)
    assert "its create may still land" in waiting.stderr
    assert len(lane.remote_jobs()) == 1
    lane.advance(10)  # the create lands: the job becomes visible
    if provider == "anthropic":
        # Its tag is readable only in the results of an ended batch: it cannot tell yet.
        lane.run().assert_clear_error("cannot tell yet")
        lane.advance()
        lane.run(expect=0)
    else:
        found = lane.run(expect=75)
        assert "found job" in found.stderr and "not submitting again" in found.stderr
        lane.advance()
        lane.run(expect=0)
    one_job_every_row(lane)


def test_a_lost_create_answer_while_polling_waits_instead_of_resubmitting(make_lane, provider):
    lane = make_lane(provider, extra_env=LONG_SETTLE)
    lane.fault(create_response_lost=True, invisible_lookups=3, times=1)
    # Polling: the failed submit, then passes that find nothing (hidden for 3 lookups),
    # then found (Anthropic: cannot tell until it ends), until the time bound.
    polled = lane.run(block=2.0)  # long enough for a loaded machine to reach its first lookup
    assert polled.status in (1, 75), polled.describe()  # Anthropic: "cannot tell yet" at the end
    assert "its create may still land" in polled.stderr, polled.describe()
    assert len(lane.remote_jobs()) == 1
    lane.advance()
    lane.run_until_done()
    one_job_every_row(lane)


def test_a_create_landing_after_the_settle_window_is_a_duplicate_cancelled_and_reported(make_lane, provider):
    lane = make_lane(provider)  # settle window 0: resubmitted at the next run
    lane.fault(create_response_lost=True, visible_after=10, times=1)
    lane.run().assert_clear_error("intent is saved under tag")
    resubmitted = lane.run(expect=75)
    assert "submitting it again under the same tag" in resubmitted.stderr
    assert len(lane.remote_jobs()) == 2  # the late create has landed too: two paid jobs exist
    lane.advance(12)  # the late one is visible now; both still run
    if provider == "anthropic":
        lane.run(expect=75)  # running batches show no ids: cannot be told apart yet
        lane.advance()
    else:
        lane.run(expect=75)
    report = [r for r in lane.history if "two " + provider in r.stderr]
    if provider != "anthropic":
        assert report, lane.logs()
    else:
        lane.run(expect=0)
        report = [r for r in lane.history if "two " + provider in r.stderr]
        assert report, lane.logs()
    kept, extra = _duplicate(lane)
    line = report[0].stderr
    assert kept in line and extra in line and f"Up to {ROWS} request(s) were billed twice" in line
    phases = {j["id"]: j["phase"] for j in lane.remote_jobs()}
    if provider != "anthropic":
        assert phases[extra] in ("cancelling", "cancelled"), phases  # the extra one is stopped
    lane.advance()
    lane.run_until_done()
    lane.assert_complete()  # every row once, its own answer; results of one job kept
    assert len(lane.remote_jobs()) == 2
    lane.assert_store_ok()


def test_results_of_either_job_are_kept_each_request_counted_once(make_lane, provider):
    if provider != "anthropic":
        pytest.skip("elsewhere the extra job is cancelled as soon as it is visible (test above)")
    # Running Message Batches show no ids, so the late one runs to its end. The kept job
    # expires half-way: the late one's answers fill the rest; nothing is paid a third time.
    lane = make_lane(provider)
    lane.fault(create_response_lost=True, visible_after=10, times=1)
    lane.run().assert_clear_error("intent is saved under tag")
    lane.fault(expire_after_fraction=0.5, times=1)  # the resubmitted (kept) job
    lane.run(expect=75)
    lane.advance()
    done = lane.run(expect=0)
    assert "billed twice" in done.stderr and "kept " in done.stderr, done.describe()
    lane.assert_complete()
    assert len(lane.remote_jobs()) == 2  # no third job
    lane.assert_store_ok()


def _duplicate(lane) -> tuple[str, str]:
    rows = lane.query("SELECT j.remote_id, k.remote_id FROM duplicates d JOIN jobs j ON j.id = d.job_id "
                      "JOIN jobs k ON k.id = d.of_job")
    assert len(rows) == 1, rows
    extra, kept = rows[0]
    return kept, extra


# --- the provider as second source of truth ------------------------------------------------------


@pytest.mark.parametrize("when, options", [
    ("running", {}), ("running", {"inline_threshold": 0}), ("ended", {}),
], ids=["running", "running-file", "ended"])
def test_a_lost_store_adopts_the_providers_jobs_and_pays_nothing_again(make_lane, provider, when, options):
    if options and provider != "mistral":
        pytest.skip("only Mistral sends small jobs inline")
    if when == "running" and (provider in ("anthropic", "gemini") or (provider == "mistral" and not options)):
        # A running Message Batch shows no custom ids (results only), nor does a running
        # Gemini batch (no input through the SDK, uploads cannot be downloaded) or a running
        # inline Mistral job (outputs only): README says so; they are adopted once ended.
        pytest.skip("not readable while running (see README: guarantees)")
    lane = make_lane(provider, client_options=options)
    lane.run(expect=75)
    assert len(lane.remote_jobs()) == 1
    lane.advance(DONE if when == "ended" else RUNNING / 4)
    shutil.rmtree(lane.home)  # a lost cache directory, a power loss, another machine
    adopted = lane.run(expect=0 if when == "ended" else 75)
    assert "adopted " + provider + " job" in adopted.stderr, adopted.describe()
    assert lane.remote_jobs()[0]["id"] in adopted.stderr
    lane.advance()
    lane.run_until_done()
    one_job_every_row(lane)


LIST = {"openai": "GET /batches", "anthropic": "GET /v1/messages/batches", "mistral": "GET /v1/batch/jobs",
        "gemini": "GET /v1/batches"}


def test_looking_for_jobs_to_adopt_is_one_listing_and_only_while_requests_are_unsent(make_lane, provider):
    lane = make_lane(provider)
    lane.run(expect=75)  # a new plan: one listing (nothing to adopt), then the submit
    assert lane.counters()["http"].get(LIST[provider], 0) == 1
    lane.run(expect=75)  # every request is in a job: nothing asked
    lane.advance()
    lane.run(expect=0)
    assert lane.counters()["http"].get(LIST[provider], 0) == 1
    one_job_every_row(lane)


def test_overnight_adopt_recovers_paid_work_explicitly(make_lane, provider):
    lane = make_lane(provider, extra_env={"OVERNIGHT_ADOPT_HORIZON": "0"})  # runs do not adopt
    lane.run(expect=75)
    lane.advance()
    shutil.rmtree(lane.home)
    listed = lane.cli("adopt", provider)
    assert listed.status == 0, listed.describe()
    assert f"{ROWS} requests" in listed.stdout
    lane.run(expect=0)  # adopted from what `overnight adopt` recorded: collected, not paid again
    one_job_every_row(lane)
