"""Results the provider lost, `overnight cancel` against a failing provider, retrying
failed rows on request, and the polling deadline against a hung provider.

For each provider through its real plugin and SDK, against the sandbox, asserting from
the sandbox's own job list (what was billed) and the output file.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from harness import FIRST_FETCH_BATCH, PROVIDERS, RESULT_FILES, ROWS

pytestmark = pytest.mark.parametrize("provider", PROVIDERS)

_PREFIX = {"openai": "/openai/v1", "anthropic": "/anthropic", "mistral": "/mistral", "gemini": "/gemini/v1beta"}
#: Gemini's lanes get their results as a file (RESULT_FILES): the file is what its 48 h
#: retention deletes and what a hung download holds back (inline results come in the job).


def lane_of(make_lane, provider, **options):
    return make_lane(provider, client_options=RESULT_FILES.get(provider), **options)


def provider_http(lane, method: str, path: str) -> dict:
    """One call of the provider's real API (what a user with curl, or a console, does)."""
    headers = {"authorization": f"Bearer {lane.key}", "x-api-key": lane.key, "anthropic-version": "2023-06-01",
               "x-goog-api-key": lane.key}
    request = urllib.request.Request(lane.control.url + _PREFIX[lane.provider] + path, headers=headers, method=method)
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def the_job(lane) -> str:
    (job,) = lane.remote_jobs()
    return job["id"]


def delete_through_the_api(lane, job_id: str) -> None:
    """What a user can do: delete the results (OpenAI: its output file; others: the batch)."""
    if lane.provider == "openai":
        file_id = provider_http(lane, "GET", f"/batches/{job_id}")["output_file_id"]
        assert provider_http(lane, "DELETE", f"/files/{file_id}")["deleted"]
    elif lane.provider == "anthropic":
        provider_http(lane, "DELETE", f"/v1/messages/batches/{job_id}")
    elif lane.provider == "gemini":
        provider_http(lane, "DELETE", f"/{job_id}")  # job_id is batches/<id>
    else:
        lane.control.delete_job("mistral", job_id)


def assert_lost_message(result, job_id: str, count: int) -> None:
    result.assert_clear_error("no longer has the results", job_id, f"{count} request(s)",
                              "overnight resubmit-lost", "resubmit_lost=True", "kept")


# --- results the provider lost --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["expired", "deleted"])
def test_lost_results_stop_clearly_until_the_user_consents_then_only_those_are_paid_again(
    make_lane, provider, how
):
    lane = lane_of(make_lane, provider)
    lane.run(expect=75)
    lane.advance()
    job_id = the_job(lane)
    if how == "expired":
        lane.control.lose_results(provider, job_id)  # retention: files gone, or batch archived
    else:
        delete_through_the_api(lane, job_id)
    for _ in range(2):  # never "run again" forever, never a silent resubmission
        assert_lost_message(lane.run(), job_id, ROWS)
        assert len(lane.remote_jobs()) <= 1
    status = lane.cli("status")
    assert status.status == 0 and "lost" in status.stdout and job_id in status.stdout, status.describe()
    consent = lane.cli("resubmit-lost")
    assert consent.status == 0 and f"{ROWS} request(s)" in consent.stdout, consent.describe()
    lane.run(expect=75)  # one new job, of the lost requests
    lane.advance()
    lane.run(expect=0)
    lane.assert_complete()
    # The lost job and exactly one resubmission (a deleted batch is no longer listed).
    batch_deleted = how == "deleted" and provider != "openai"
    assert [j["total"] for j in lane.remote_jobs()] == [ROWS] * (1 if batch_deleted else 2)
    assert lane.request_states() == {"done": ROWS}
    if not batch_deleted:
        lane.assert_store_ok()


def test_results_collected_before_the_loss_are_kept_and_run_resubmit_lost_pays_only_the_rest(make_lane, provider):
    lane = lane_of(make_lane, provider)
    lane.run(expect=75)
    lane.advance()
    lane.run(fault="mid_fetch")  # killed after the first batch of results was stored
    job_id = the_job(lane)
    lane.control.lose_results(provider, job_id)
    rest = ROWS - FIRST_FETCH_BATCH
    assert_lost_message(lane.run(), job_id, rest)
    lane.run(expect=75, REL_RESUBMIT_LOST="1")  # the explicit choice, in the script
    new = [j for j in lane.remote_jobs() if j["id"] != job_id]
    assert [j["total"] for j in new] == [rest]
    lane.advance()
    lane.run(expect=0)
    lane.assert_complete()
    assert lane.paid_requests() == ROWS + rest


def test_a_wrong_base_url_answering_404_everywhere_is_not_taken_for_lost_results(make_lane, provider):
    lane = lane_of(make_lane, provider)
    lane.run(expect=75)
    lane.advance()
    wrong = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL", "mistral": "MISTRAL_BASE_URL",
             "gemini": "GEMINI_BASE_URL"}[provider]
    lane.run(**{wrong: lane.control.url + _PREFIX[provider] + "/wrong/prefix"}).assert_clear_error("run again")
    assert lane.query("SELECT state FROM jobs") != [("lost",)]
    lane.run(expect=0)
    lane.assert_complete()
    assert len(lane.remote_jobs()) == 1


# --- overnight cancel against a failing provider --------------------------------------------------


def job_local_id(lane) -> str:
    ((local,),) = lane.query("SELECT id FROM jobs")
    return str(local)


def test_cancel_while_the_provider_is_down_is_a_clear_error_and_a_later_cancel_works(make_lane, provider):
    lane = lane_of(make_lane, provider)
    lane.run(expect=75)
    lane.fault(http_status=503, retry_after=0.01)
    failed = lane.cli("cancel", job_local_id(lane))
    failed.assert_clear_error("cancelling the", "failed", "run `overnight cancel")
    lane.control.clear_faults()
    done = lane.cli("cancel", job_local_id(lane))
    assert done.status == 0 and "Cancellation requested" in done.stdout, done.describe()


def test_cancel_answered_404_says_the_job_is_gone_at_the_provider(make_lane, provider):
    lane = lane_of(make_lane, provider)
    lane.run(expect=75)
    lane.fault(http_status=404, http_method="POST", http_path=r":cancel$" if provider == "gemini" else r"/cancel$",
               times=1)
    lane.cli("cancel", job_local_id(lane)).assert_clear_error("is gone at the provider", "nothing left to cancel")


def test_cancel_of_a_batch_deleted_at_the_provider_says_it_is_gone(make_lane, provider):
    if provider == "openai":
        pytest.skip("OpenAI batches cannot be deleted; the 404 fault above covers its shape")
    lane = lane_of(make_lane, provider)
    lane.run(expect=75)
    lane.advance()  # ended at the provider; the store still calls it running
    lane.control.delete_job(provider, the_job(lane))
    lane.cli("cancel", job_local_id(lane)).assert_clear_error("is gone at the provider")


# --- retrying failed rows on request ---------------------------------------------------------------


def test_run_retry_failed_gives_failed_rows_one_more_round_and_pays_only_for_them(make_lane, provider):
    # One attempt per request: the failing share of the first job ends as error rows at once.
    lane = lane_of(make_lane, provider, extra_env={"REL_MAX_ATTEMPTS": "1"})
    rule = lane.fault(error_rate=0.25)
    lane.run_until_done()
    errors = lane.assert_complete(allow_errors=True)
    assert errors
    paid = lane.paid_requests()
    jobs = len(lane.remote_jobs())
    lane.control.remove_fault(rule)  # e.g. the user fixed the cause
    lane.run(expect=0)  # without the flag nothing changes: same errors, nothing submitted
    assert len(lane.assert_complete(allow_errors=True)) == len(errors) and len(lane.remote_jobs()) == jobs
    retried = lane.run(expect=75, run_args=("--retry-failed",))
    assert f"retrying {len(errors)} failed request(s)" in retried.stderr
    (new,) = lane.remote_jobs()[: len(lane.remote_jobs()) - jobs]
    assert new["total"] == len(errors)
    lane.advance()
    lane.run(expect=0)  # no flag needed to collect: the step's cached output was stale
    lane.assert_complete()
    assert lane.paid_requests() == paid + len(errors)
    lane.assert_store_ok()


# --- the polling deadline against a hung provider -------------------------------------------------

STATUS = {"openai": r"/batches/[^/]+$", "anthropic": r"/messages/batches/[^/]+$", "mistral": r"/batch/jobs/[^/]+$",
          "gemini": r"/batches/[^/:]+$"}
DOWNLOAD = {"openai": r"/files/[^/]+/content$", "anthropic": r"/results$", "mistral": r"/files/[^/]+/content$",
            "gemini": r"/files/[^/]+:download$"}


@pytest.mark.parametrize("endpoint", ["status", "download"])
def test_a_hung_provider_cannot_keep_a_blocking_run_past_its_deadline(make_lane, provider, endpoint):
    lane = lane_of(make_lane, provider)
    lane.run(expect=75)
    lane.advance()
    path = (STATUS if endpoint == "status" else DOWNLOAD)[provider]
    lane.fault(http_method="GET", http_path=path, http_delay=10.0)  # answers, but 10 s late
    started = time.monotonic()
    waited = lane.run(block=0.3, expect=75)
    elapsed = time.monotonic() - started
    # The run's own start-up is in there too (~0.1-1 s on a busy machine); the delay is not.
    assert elapsed < 4.0, f"the run took {elapsed:.2f}s for a 0.3 s deadline\n{waited.describe()}"
    assert "still running" in waited.stderr
    lane.control.clear_faults()
    lane.run(expect=0)
    lane.assert_complete()
    assert len(lane.remote_jobs()) == 1
