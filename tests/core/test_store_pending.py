"""``Store.has_new``: whether a plan still has requests to submit, from the requests_to_submit index.

A pass with nothing to submit asks it instead of reading the whole plan; it must see every
way a request becomes new again, and requests of other plans never count.
"""

from __future__ import annotations

from pathlib import Path

from overnight.models import Result, ResultStatus
from overnight.policy import Retries
from overnight.sqlite_store import SqliteStore
from storekeys import request_ids


def test_new_requests_of_the_plan_only_and_every_way_back(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "overnight.sqlite")
    store.write_plan("p", "openai", "s", [(0, 0, "a", "m", "{}", 2), (1, 0, "b", "m", "{}", 2)])
    store.write_plan("other", "openai", "s", [(0, 0, "c", "m", "{}", 2)])
    assert store.has_new("p") and store.has_new("other")
    job = store.create_intent(tag="t", provider="openai", model="m", step="s", plan_id="p",
                              request_ids=request_ids(store, ["a", "b"]), nbytes=4)
    assert not store.has_new("p") and store.has_new("other")  # c is new, but not p's
    # An error with attempts left makes a request new again; so does a job that ends without it.
    store.record_results(job, [Result("a", ResultStatus.ERRORED, error="boom")], Retries(max_attempts=3, max_unfinished=3))
    assert store.has_new("p")
    job2 = store.create_intent(tag="t2", provider="openai", model="m", step="s", plan_id="p",
                               request_ids=request_ids(store, ["a"]), nbytes=2)
    assert not store.has_new("p")
    store.close_job(job2, Retries(max_attempts=3, max_unfinished=3))  # a's result never came: unfinished, resubmitted
    assert store.has_new("p")
    assert store.plan_counts("p") == {"new": 1, "queued": 1}
