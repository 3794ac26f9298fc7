"""Online mode under SIGKILL, for each provider with an online API: ``overnight run`` in a
child process kills itself at an online fault point, then runs again until done.

``online_concurrency=1``: the one worker waits for its answer's commit, so when the kill
comes right after a commit nothing is in flight, and not one request is paid twice (with
more workers, at most the requests in flight are: tests/online/test_online_sdk.py).
"""

from __future__ import annotations

import pytest

from harness import ROWS

PROVIDERS = ("openai", "anthropic", "mistral", "gemini", "groq", "together", "deepinfra", "nebius")
#: The child runs on real time: no pacing to wait for (the sandbox sets no rate limit here).
ONLINE = {"use_offline_batch_generation": False, "online_concurrency": 1,
          "requests_per_minute": 10**6, "tokens_per_minute": 10**9}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("point", ["online_claimed", "online_committed:3"])
def test_online_sigkill_then_rerun(make_lane, provider, point):
    lane = make_lane(provider, client_options=ONLINE)
    killed = lane.run(fault=point)
    assert killed.killed, killed.describe()
    claims = lane.query("SELECT COUNT(*) FROM online_claims")[0][0]
    assert claims > 0  # the dead run's claims are still there
    if point == "online_claimed":
        assert lane.counters().get("online", 0) == 0 and lane.request_states().get("done", 0) == 0
    else:
        assert lane.counters()["online"] == 3 and lane.request_states()["done"] == 3
    assert not lane.output.exists()
    done = lane.run(expect=0)
    assert "released" in done.stderr  # the dead run's claims, given back and sent
    lane.assert_complete()
    lane.assert_store_ok()
    assert lane.counters()["online"] == ROWS  # every row paid once: nothing twice
    assert lane.remote_jobs() == []  # no batch job
    assert lane.query("SELECT COUNT(*) FROM online_claims") == [(0,)]
