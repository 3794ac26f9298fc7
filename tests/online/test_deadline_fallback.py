"""The deadline fallback against an in-process provider: at the deadline the open batch
jobs are cancelled, every result they return is kept, only the rest goes online, and each
request ends with exactly one paid answer."""

from __future__ import annotations

import datetime
import time

import pytest

from overnight import OfflineBatchGenerationNotFinished, online, polling
from overnight.llm import LLM
from overnight.store import Store

from onlinefake import PROMPTS, counts, generate

PRICES = {"input_mtok": 1.0, "output_mtok": 2.0}


def batch_answers(results):
    return {r.result.custom_id for r in results if r.result.raw == {"id": r.result.custom_id}}


def online_answers(results):
    return {r.result.custom_id for r in results if r.result.raw == {"online": True}}


def test_fallback_cancels_keeps_partial_results_and_finishes_online(online_fake, monkeypatch, capsys):
    llm = LLM("fake/m", online_fallback_after=3600, prices=PRICES)
    for _ in range(2):  # submitted, then not yet at the deadline: nothing cancelled
        with pytest.raises(OfflineBatchGenerationNotFinished):
            generate(PROMPTS, llm=llm)
    assert not online_fake.jobs()[0]["cancelled"] and online_fake.paid() == []
    # An hour later (a later run, measured from the first submit kept in the store):
    monkeypatch.setattr(online, "wall_clock", lambda: time.time() + 3601)
    online_fake.set_online(cancel_keeps=10, cancel_takes=30)  # cancelling takes 30 s; 10 requests ran
    monkeypatch.setattr(polling, "wait", lambda stop, seconds: online_fake.advance(10) or False)
    results = generate(PROMPTS, llm=llm)
    assert [r.result.text for r in results] == [f"echo: {p}" for p in PROMPTS]
    assert len(online_fake.jobs()) == 1 and online_fake.jobs()[0]["cancelled"]
    kept, sent = batch_answers(results), online_answers(results)
    assert len(kept) == 10 and len(sent) == 15 and not kept & sent  # exactly one answer per request
    assert set(counts(online_fake.paid())) == sent and len(online_fake.paid()) == 15
    err = capsys.readouterr().err
    assert "cancelled 1 open fake job(s)" in err
    assert "10 request(s) answered in batch" in err and "15 online" in err
    assert err.count("answered in batch") == 1  # the online part runs, and reports, once
    batch_cost = sum(r.result.cost_usd for r in results if r.result.custom_id in kept)
    online_cost = sum(r.result.cost_usd for r in results if r.result.custom_id in sent)
    assert f"15 online (${online_cost:.6f} at online prices)" in err or f"${online_cost:,.4f}" in err
    assert batch_cost > 0
    with Store.open() as store:
        assert store.plan_online_money("plan-1")["n"] == 15
    again = generate(PROMPTS, llm=llm)  # nothing more is paid
    assert [r.result.text for r in again] == [r.result.text for r in results]
    assert len(online_fake.paid()) == 15 and len(online_fake.jobs()) == 1


def test_a_polling_run_falls_back_at_its_deadline(online_fake, monkeypatch):
    online_fake.set_faults(stuck=True)  # the batch never finishes by itself
    online_fake.set_online(cancel_keeps=5)
    offset = [0.0]
    monkeypatch.setattr(online, "wall_clock", lambda: time.time() + offset[0])
    waits = []

    def wait(stop, seconds):
        waits.append(seconds)
        offset[0] += seconds
        online_fake.advance(int(seconds) + 1)
        return False

    monkeypatch.setattr(polling, "wait", wait)
    llm = LLM("fake/m", online_fallback_after=30, offline_batch_generation_block_until_done=3600,
              poll_interval=10, prices=PRICES)
    results = generate(PROMPTS, llm=llm)
    assert all(r.result.ok for r in results)
    assert sum(waits) == pytest.approx(30, abs=1)  # the last wait ends at the deadline, not later
    assert len(batch_answers(results)) == 5 and len(online_answers(results)) == 20
    assert len(online_fake.paid()) == 20


def test_a_deadline_already_passed_sends_everything_online(online_fake):
    llm = LLM("fake/m", deadline=datetime.datetime.now() - datetime.timedelta(minutes=1))
    results = generate(PROMPTS, llm=llm)
    assert len(online_answers(results)) == 25 and online_fake.jobs() == []


def test_deadline_takes_a_datetime_or_unix_seconds(online_fake):
    at = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    assert LLM("fake/m", deadline=at).deadline == at.timestamp()
    assert LLM("fake/m", deadline=1_900_000_000).deadline == 1_900_000_000.0
    with pytest.raises(Exception, match="deadline"):
        LLM("fake/m", deadline="tomorrow")
