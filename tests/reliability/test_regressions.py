"""Bugs the reliability suite found in the core, each pinned by the scenario that showed it."""

from __future__ import annotations

import pytest

from harness import PROVIDERS, ROWS

LIST_ENDPOINTS = {"openai": r"/batches$", "anthropic": r"/messages/batches$", "mistral": r"/batch/jobs$"}
STATUS_ENDPOINTS = {"openai": r"/batches/[^/]+$", "anthropic": r"/messages/batches/[^/]+$",
                    "mistral": r"/batch/jobs/[^/]+$"}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("phase", ["lookup", "check", "download"])
def test_a_provider_failure_after_submission_is_a_clear_error_not_a_traceback(make_lane, provider, phase):
    """A provider outage while looking a job up, checking it or downloading its results
    used to escape as the SDK's raw exception (a traceback, as if overnight had a bug).
    It is a ProviderError now, like a failed submit: exit 1, what failed, run again."""
    lane = make_lane(provider, client_options={"max_retries": 0})
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
