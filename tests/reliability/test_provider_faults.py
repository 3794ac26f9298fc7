"""Provider faults, injected by the sandbox, for each provider through its real plugin and SDK.

The four providers and the OpenAI-compatible vendors (groq, together, deepinfra, nebius:
the openai plugin, Together through its own SDK) run every row.

Every scenario ends the same way: a run exits 0, the output holds every input row once,
in order, with its own answer or an explicit error, the sandbox's job list shows no
duplicate submission, and the store passes ``PRAGMA integrity_check``.
"""

from __future__ import annotations

import pytest

from overnight.sandbox.faults import hash_fraction

from harness import _PREFIX, DONE, PAST_WINDOW, PROVIDERS, RESULT_FILES, ROWS, VENDORS

pytestmark = pytest.mark.parametrize("provider", PROVIDERS + VENDORS)

#: Every endpoint each plugin calls, as (method, path regex) of the sandbox's HTTP faults.
#: The list endpoints are called only when looking a job up by its tag.
ENDPOINTS = {
    "openai": [("POST", r"/files$"), ("POST", r"/batches$"), ("GET", r"/batches/[^/]+$"),
               ("GET", r"/files/[^/]+$"), ("GET", r"/files/[^/]+/content$")],
    "anthropic": [("POST", r"/messages/batches$"), ("GET", r"/messages/batches/[^/]+$"),
                  ("GET", r"/messages/batches/[^/]+/results$")],
    "mistral": [("POST", r"/batch/jobs$"), ("GET", r"/batch/jobs/[^/]+$"), ("GET", r"/files/[^/]+$"),
                ("GET", r"/files/[^/]+/content$")],
    # With its results in a file (RESULT_FILES): the resumable upload, the create, the job,
    # the result file's metadata and its download.
    "gemini": [("POST", r"/upload/v1/files$"), ("POST", r":batchGenerateContent$"), ("GET", r"/batches/[^/]+$"),
               ("GET", r"/files/[^/:]+$"), ("GET", r"/files/[^/]+:download$")],
    # The OpenAI-compatible vendors (VENDORS): groq, deepinfra and nebius as OpenAI, on their prefixes.
    "groq": [("POST", r"/files$"), ("POST", r"/batches$"), ("GET", r"/batches/[^/]+$"),
             ("GET", r"/files/[^/]+$"), ("GET", r"/files/[^/]+/content$")],
    # Together's upload: the POST that answers with the URL to PUT to, the PUT, the preprocess.
    "together": [("POST", r"/v1/files$"), ("PUT", r"/v1/uploads/[^/]+$"), ("POST", r"/v1/files/[^/]+/preprocess$"),
                 ("POST", r"/v1/batches$"), ("GET", r"/v1/batches/[^/]+$"), ("GET", r"/v1/files/[^/]+$"),
                 ("GET", r"/v1/files/[^/]+/content$")],
}
ENDPOINTS["deepinfra"] = ENDPOINTS["nebius"] = ENDPOINTS["groq"]
LIST_ENDPOINTS = {"openai": r"/batches$", "anthropic": r"/messages/batches$", "mistral": r"/batch/jobs$",
                  "gemini": r"/batches$", "groq": r"/batches$", "together": r"/v1/batches$",
                  "deepinfra": r"/batches$", "nebius": r"/batches$"}

INJECTED_ERROR = "sandbox fault injection"


def sends_in_store(lane) -> int:
    """Requests the store says were sent: one per failed attempt, unfinished job, success."""
    ((total,),) = lane.query(
        "SELECT SUM(attempts + unfinished + (state = 'done')) FROM requests"
    )
    return total


def finish(lane, *, allow_errors=False, jobs=None, paid=None):
    errors = lane.assert_complete(allow_errors=allow_errors)
    if jobs is not None:
        assert len(lane.remote_jobs()) == jobs, lane.remote_jobs()
    if paid is not None:
        assert lane.paid_requests() == paid
    lane.assert_store_ok()
    return errors


# --- 429 and 5xx storms -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_a_burst_on_every_endpoint_is_ridden_out_without_duplicates(make_lane, provider, status):
    burst(make_lane, provider, status)


def burst(make_lane, provider, status):
    """Two 429s or 5xx on every endpoint the plugin calls: ridden out, one job, every row paid once."""
    lane = make_lane(provider, client_options=RESULT_FILES.get(provider))
    rules = {
        (method, path): lane.fault(http_status=status, http_method=method, http_path=path, times=2,
                                   retry_after=0.01)
        for method, path in ENDPOINTS[provider]
    }
    rules["GET", LIST_ENDPOINTS[provider]] = lane.fault(
        http_status=status, http_method="GET", http_path=LIST_ENDPOINTS[provider], times=2, retry_after=0.01
    )
    runs = lane.run_until_done()
    assert len(runs) <= 4, [r.status for r in runs]
    fired = {f["id"]: f["remaining"] for f in lane.control.faults()}
    for (method, path), rule in rules.items():
        if path != LIST_ENDPOINTS[provider] and not (provider == "mistral" and path == r"/files/[^/]+$"):
            assert fired[rule] < 2, f"{method} {path} was never hit"
    finish(lane, jobs=1, paid=ROWS)


def test_a_persistent_5xx_storm_stops_clearly_and_a_later_run_completes(make_lane, provider):
    # max_retries=1 bounds how long each SDK call keeps retrying a storm that does not end.
    lane = make_lane(provider, client_options={"max_retries": 1})
    lane.fault(http_status=500, retry_after=0.01)
    lane.run().assert_clear_error()  # while submitting
    assert lane.remote_jobs() == []
    lane.control.clear_faults()
    lane.run(expect=75)
    assert len(lane.remote_jobs()) == 1
    lane.advance()
    lane.fault(http_status=502, retry_after=0.01)
    lane.run().assert_clear_error()  # while checking and collecting
    lane.control.clear_faults()
    lane.run(expect=0)
    finish(lane, jobs=1, paid=ROWS)


# --- per-request errors -------------------------------------------------------------------------


def test_per_request_errors_are_retried_up_to_the_bound_then_explicit_error_rows(make_lane, provider):
    lane = make_lane(provider)
    lane.fault(error_rate=0.25)  # the same share of every job of this model fails
    runs = lane.run_until_done()
    assert [r.status for r in runs] == [75] * (len(runs) - 1) + [0]
    errors = finish(lane, allow_errors=True)
    assert all(INJECTED_ERROR in e["generation_error"] for e in errors)
    failed = lane.query("SELECT key, attempts FROM requests WHERE state = 'failed'")
    assert len(failed) == len(errors) and all(attempts == 3 for _, attempts in failed)
    assert lane.paid_requests() == sends_in_store(lane)  # every send accounted for, none twice
    if provider != "anthropic":
        # The wire custom id is the request key, so the failing share is known in advance:
        # exactly those rows fail on all three attempts, in three jobs.
        keys = [k for (k,) in lane.query("SELECT key FROM requests")]
        doomed = {k for k in keys if hash_fraction(k) < 0.25}
        assert doomed and {k for k, _ in failed} == doomed
        assert len(lane.remote_jobs()) == 3
        assert lane.paid_requests() == ROWS + 2 * len(doomed)
    else:
        # Anthropic's wire ids carry the job's tag: other rows fail in each job.
        assert 2 <= len(lane.remote_jobs()) <= 3


def test_transient_per_request_errors_succeed_in_one_retry_job(make_lane, provider):
    lane = make_lane(provider)
    lane.fault(error_rate=0.3, times=1)  # only the first job
    lane.run(expect=75)
    lane.advance()
    lane.run(expect=75)  # collects, resubmits the failed rows alone
    (first, retry) = sorted(lane.remote_jobs(), key=lambda j: j["total"], reverse=True)
    assert first["total"] == ROWS and 0 < retry["total"] < ROWS
    lane.advance()
    lane.run(expect=0)
    finish(lane, jobs=2, paid=ROWS + retry["total"])
    assert lane.request_states() == {"done": ROWS}


# --- failed validation ----------------------------------------------------------------------------


def test_a_job_failing_validation_once_is_resubmitted_whole(make_lane, provider):
    lane = make_lane(provider)
    lane.fault(fail_validation=True, times=1)
    lane.run_until_done()
    if provider == "anthropic":
        # Anthropic validates at create (400): the batch never exists; the same run resubmits.
        finish(lane, jobs=1, paid=ROWS)
    else:
        finish(lane, jobs=2, paid=2 * ROWS)
        assert sorted(j["phase"] for j in lane.remote_jobs()) == ["completed", "failed"]


def test_a_job_failing_validation_every_time_ends_as_explicit_error_rows(make_lane, provider):
    lane = make_lane(provider)
    lane.fault(fail_validation=True)
    lane.run_until_done()
    errors = finish(lane, allow_errors=True)
    assert len(errors) == ROWS  # no row dropped: each says why
    assert lane.request_states() == {"failed": ROWS}
    assert len(lane.remote_jobs()) == (0 if provider == "anthropic" else 3)  # the bound: 3 attempts


# --- expiry and provider-side cancel -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["expire_after_fraction", "cancel_after_fraction"])
def test_a_job_ended_half_way_keeps_finished_rows_and_resubmits_the_rest_once(make_lane, provider, kind):
    lane = make_lane(provider)
    lane.fault(**{kind: 0.5}, times=1)
    lane.run(expect=75)
    lane.advance()
    lane.run(expect=75)  # keeps the finished half, resubmits the rest
    ((done,),) = lane.query("SELECT COUNT(*) FROM requests WHERE state = 'done'")
    # Gemini returns nothing from an expired job ("no results to retrieve"): all go again.
    assert done == (0 if (provider, kind) == ("gemini", "expire_after_fraction") else ROWS // 2)
    jobs = sorted(lane.remote_jobs(), key=lambda j: j["total"], reverse=True)
    assert [j["total"] for j in jobs] == [ROWS, ROWS - done]
    ended = [j for j in jobs if j["phase"] in ("expired", "cancelled")]  # the first job, whatever its size
    assert [j["phase"] for j in ended] == ["expired" if kind.startswith("expire") else "cancelled"]
    assert ended[0]["total"] == ROWS
    lane.advance()
    lane.run(expect=0)
    finish(lane, jobs=2, paid=ROWS + ROWS - done)


# --- a stuck job and the user's deadline ---------------------------------------------------------


def test_a_stuck_job_with_a_deadline_ends_not_finished_then_recovers_after_the_window(make_lane, provider):
    lane = make_lane(provider)
    lane.fault(stuck=True, times=1)
    waited = lane.run(block=0.3, expect=75)  # polls until the user's deadline, then says so
    assert "still running" in waited.stderr and "stopped by the user" not in waited.stderr
    lane.advance()
    lane.run(expect=75)  # still stuck: nothing new submitted
    assert len(lane.remote_jobs()) == 1
    lane.advance(PAST_WINDOW)  # the provider expires it, nothing done
    lane.run(expect=75)
    lane.advance()
    lane.run(expect=0)
    finish(lane, jobs=2, paid=2 * ROWS)


# --- downloads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["abort", "short"])
def test_a_cut_result_download_fails_clearly_keeps_nothing_half_written_and_is_fetched_again(
    make_lane, provider, mode
):
    lane = make_lane(provider, client_options=RESULT_FILES.get(provider))
    lane.run(expect=75)
    lane.advance()
    lane.fault(download_truncate=0.5, download_truncate_mode=mode, times=1)
    lane.run().assert_clear_error()
    assert not lane.output.exists()
    states = lane.request_states()
    assert states.get("done", 0) < ROWS and set(states) <= {"done", "queued"}  # nothing resubmitted
    lane.run(expect=0)
    finish(lane, jobs=1, paid=ROWS)


def test_a_cut_result_download_is_retried_within_a_blocking_run(make_lane, provider):
    lane = make_lane(provider, client_options=RESULT_FILES.get(provider))
    lane.run(expect=75)
    lane.advance()
    lane.fault(download_truncate=0.4, download_truncate_mode="abort", times=2)
    done = lane.run(block=30, expect=0)
    assert "retrying" in done.stderr
    finish(lane, jobs=1, paid=ROWS)


# --- result files that do not match the requests ------------------------------------------------


def test_unknown_duplicate_and_missing_custom_ids(make_lane, provider):
    lane = make_lane(provider)
    lane.fault(result_unknown_id=True, result_duplicate=True, result_missing_count=3, times=1)
    lane.run(expect=75)
    lane.advance()
    lane.run(expect=75)  # a "completed" job that lacks 3 rows: those 3 are resubmitted
    assert sorted(j["total"] for j in lane.remote_jobs()) == [3, ROWS]
    lane.advance()
    lane.run(expect=0)
    finish(lane, jobs=2, paid=ROWS + 3)


def result_body(lane) -> bytes:
    """The job's (successful) results as the provider serves them, fetched over plain HTTP."""
    import json
    import urllib.request

    (job,) = lane.remote_jobs()
    base = lane.control.url + {"openai": "/openai/v1", "anthropic": "/anthropic", "mistral": "/mistral",
                               "gemini": "/gemini/v1beta", "together": "/together/v1"}.get(
        lane.provider, _PREFIX.get(lane.provider))
    headers = {"authorization": f"Bearer {lane.key}", "x-api-key": lane.key, "anthropic-version": "2023-06-01",
               "x-goog-api-key": lane.key}

    def get(path):
        with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers)) as response:
            return response.read()

    if lane.provider in ("openai", *VENDORS):  # Together's job names its output file the same way
        file_id = json.loads(get(f"/batches/{job['id']}"))["output_file_id"]
        return get(f"/files/{file_id}/content")
    if lane.provider == "anthropic":
        return get(f"/v1/messages/batches/{job['id']}/results")
    if lane.provider == "gemini":
        name = json.loads(get(f"/{job['id']}"))["metadata"]["output"]["responsesFile"]
        return get(f"/{name}:download?alt=media")
    file_id = json.loads(get(f"/v1/batch/jobs/{job['id']}"))["output_file"]
    return get(f"/v1/files/{file_id}/content")


def test_a_download_cut_exactly_between_two_lines_is_not_taken_for_the_whole_file(make_lane, provider):
    """A short but well-formed body: parsing alone cannot tell. Taking it for the whole
    file would call the missing rows unfinished and pay for them again. OpenAI, Mistral
    and the OpenAI-compatible vendors (Together included) compare the file's size (the run stops, the next one fetches again);
    Anthropic gives no size, so its plugin reads a stream shorter than the batch's
    request counts once more, in the same run."""
    lane = make_lane(provider, client_options=RESULT_FILES.get(provider))
    lane.run(expect=75)
    lane.advance()
    body = result_body(lane)
    cut = [i for i, byte in enumerate(body) if byte == ord("\n")][9] + 1  # 10 whole lines
    lane.fault(download_truncate=(cut + 0.5) / len(body), download_truncate_mode="short", times=1)
    if provider == "anthropic":
        lane.run(expect=0)
    else:
        lane.run().assert_clear_error()  # noticed: nothing taken as unfinished
        assert len(lane.remote_jobs()) == 1
        lane.run(expect=0)
    finish(lane, jobs=1, paid=ROWS)


def test_a_storm_during_a_blocking_run_is_ridden_out_by_polling(make_lane, provider):
    """While polling, a check that fails (SDK retries off) is retried at the next poll, up
    to the bound of consecutive failures: a storm shorter than that costs nothing."""
    lane = make_lane(provider, client_options={"max_retries": 0})
    lane.run(expect=75)
    lane.advance()
    lane.fault(http_status=503, http_method="GET", http_path=STATUS_ENDPOINT[provider], times=3)
    done = lane.run(block=30, expect=0)
    assert done.stderr.count("retrying at the next check") == 3
    finish(lane, jobs=1, paid=ROWS)


STATUS_ENDPOINT = {"openai": r"/batches/[^/]+$", "anthropic": r"/messages/batches/[^/]+$",
                   "mistral": r"/batch/jobs/[^/]+$", "gemini": r"/batches/[^/]+$", "groq": r"/batches/[^/]+$",
                   "together": r"/v1/batches/[^/]+$", "deepinfra": r"/batches/[^/]+$", "nebius": r"/batches/[^/]+$"}


def test_rows_the_provider_never_runs_end_as_explicit_errors_after_the_bound(make_lane, provider):
    """Every job gets stuck and expires with nothing done: after 5 jobs (the bound on
    resubmitting unfinished rows) each row is an explicit error, none is dropped."""
    lane = make_lane(provider, rows=8)
    lane.fault(stuck=True)
    statuses = []
    for _ in range(8):
        result = lane.run()
        statuses.append(result.status)
        if result.status == 0:
            break
        assert result.status == 75, result.describe()
        lane.advance(PAST_WINDOW)
    assert statuses == [75] * 5 + [0]
    errors = lane.assert_complete(allow_errors=True)
    assert len(errors) == 8 and all("not run by the provider in 5 jobs" in e["generation_error"] for e in errors)
    assert len(lane.remote_jobs()) == 5
    lane.assert_store_ok()
