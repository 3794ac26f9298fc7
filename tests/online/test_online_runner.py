"""Online mode against an in-process provider: every row answered once, in order, paced,
429s and outages ridden out, errors as in batch, and a switch of modes pays nothing twice."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from overnight import (
    ConfigurationError,
    OfflineBatchGenerationNotFinished,
    OnlineGenerationNotFinished,
    OnlineLimits,
    ProviderError,
    ValidationError,
    ratelimit,
)
from overnight.llm import LLM
from overnight.store import Store

from onlinefake import OnlineFake, counts
from onlinefake import PROMPTS, generate, plan

PRICES = {"input_mtok": 1.0, "output_mtok": 2.0}


def online(**kwargs):
    return LLM("fake/m", use_offline_batch_generation=False, prices=PRICES, **kwargs)


def texts(results):
    return [r.result.text for r in results]


def test_online_answers_every_row_in_order_once_at_online_prices(online_fake):
    results = generate(PROMPTS, llm=online())
    assert [r.row for r in results] == list(range(25))
    assert texts(results) == [f"echo: {p}" for p in PROMPTS]
    assert sorted(counts(online_fake.paid()).values()) == [1] * 25
    first = results[0].result
    expected = (first.usage.input_tokens * 1.0 + first.usage.output_tokens * 2.0) / 1e6
    assert first.cost_usd == pytest.approx(expected)  # online price, not half of it
    assert first.online_cost_usd == pytest.approx(expected)
    assert online_fake.jobs() == []  # no batch job
    again = generate(PROMPTS, llm=online())
    assert texts(again) == texts(results)
    assert len(online_fake.paid()) == 25  # the rerun pays nothing
    with Store.open() as store:
        assert store.plan_online_money("plan-1")["n"] == 25


def test_batch_then_online_pays_nothing_twice(online_fake):
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(PROMPTS[:10])  # batch: one job submitted
    online_fake.advance()
    batch = generate(PROMPTS[:10])
    assert online_fake.submitted_requests == 10
    # The same ten and fifteen more, online, in another plan: only the fifteen are sent.
    results = generate(PROMPTS, llm=online(), plan_id="plan-2")
    assert texts(results) == [f"echo: {p}" for p in PROMPTS]
    assert texts(results)[:10] == texts(batch)
    assert sorted(counts(online_fake.paid())) == sorted({r.result.custom_id for r in results[10:]})
    assert online_fake.submitted_requests + len(online_fake.paid()) == 25


def test_online_then_batch_pays_nothing_twice(online_fake):
    generate(PROMPTS[:10], llm=online())
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(PROMPTS, plan_id="plan-2")  # batch: only the fifteen without an answer
    assert online_fake.submitted_requests == 15
    online_fake.advance()
    results = generate(PROMPTS, plan_id="plan-2")
    assert texts(results) == [f"echo: {p}" for p in PROMPTS]
    assert len(online_fake.paid()) + online_fake.submitted_requests == 25


def test_online_leaves_requests_of_running_batch_jobs_to_them(online_fake):
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(PROMPTS[:10])
    with pytest.raises(OnlineGenerationNotFinished) as exc:
        generate(PROMPTS, llm=online(), plan_id="plan-2")
    assert exc.value.jobs_ids == (online_fake.jobs()[0]["id"],)
    assert "batch job" in str(exc.value)
    assert len(online_fake.paid()) == 15  # not the ten a running batch job holds
    online_fake.advance()
    results = generate(PROMPTS, llm=online(), plan_id="plan-2")
    assert texts(results) == [f"echo: {p}" for p in PROMPTS]
    assert len(online_fake.paid()) == 15 and online_fake.submitted_requests == 10


def test_pace_stays_under_the_declared_requests_per_minute(tmp_path, registry, monkeypatch, fake_time):
    monkeypatch.setenv("FAKE_API_KEY", "k" * 8)
    fake = OnlineFake(tmp_path / "p", online_limits=OnlineLimits(requests_per_minute=60, max_concurrency=8))
    registry.register(fake, name="fake")
    fake.set_online(limited=6, retry_after=3)  # a 429 storm on top
    results = generate(PROMPTS, llm=online())
    assert texts(results) == [f"echo: {p}" for p in PROMPTS]
    pacer = ratelimit.pacer("fake", "m", requests_per_minute=60, tokens_per_minute=None, concurrency=8)
    starts = sorted(pacer.starts)
    assert len(starts) == 31  # 25 answers and 6 refusals
    for i, t in enumerate(starts):  # never more than 60 starts in any minute
        assert sum(1 for u in starts[i:] if u < t + 60) <= 60
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert min(gaps) >= 1.0 - 1e-9  # spaced, never bursted
    assert pacer.limited_count == 6
    assert all(n == 1 for n in counts(fake.paid()).values()) and len(fake.paid()) == 25


def test_retry_after_holds_every_sender_and_costs_no_attempt(online_fake, fake_time):
    online_fake.set_online(limited=5, retry_after=7)
    results = generate(PROMPTS[:5], llm=online(max_attempts=1))
    assert all(r.result.ok for r in results)  # five 429s, one attempt allowed: none counted
    assert sum(fake_time.slept) >= 7  # waited at least the Retry-After
    assert [o for _, o in online_fake.calls].count("429") == 5


def test_tokens_per_minute_paces_by_tokens(tmp_path, registry, monkeypatch, fake_time):
    monkeypatch.setenv("FAKE_API_KEY", "k" * 8)
    fake = OnlineFake(tmp_path / "p", online_limits=OnlineLimits(max_concurrency=2))
    registry.register(fake, name="fake")
    start = fake_time.now
    generate(PROMPTS[:6], llm=online(tokens_per_minute=600, generation_kwargs={"max_tokens": 96}))
    # About 100 tokens a request (input + max_tokens), 600 a minute: ~10 s apart.
    assert fake_time.now - start >= 5 * 9


def test_outage_is_retried_with_backoff(online_fake, fake_time):
    online_fake.set_online(unavailable=3)
    results = generate(PROMPTS[:3], llm=online(online_concurrency=1))
    assert all(r.result.ok for r in results)
    assert sum(fake_time.slept) == pytest.approx(1.0 + 2.0 + 4.0)  # doubling backoff, no more


def test_lasting_outage_ends_as_error_rows_and_retry_failed_sends_them_again(online_fake):
    from overnight.online import MAX_UNAVAILABLE
    from overnight.policy import RunPolicy

    online_fake.set_online(unavailable=10_000)
    results = generate(PROMPTS[:3], llm=online(max_attempts=2, online_concurrency=1))
    assert [r.result.ok for r in results] == [False] * 3
    assert "unavailable" in results[0].result.error
    assert len(online_fake.calls) == 3 * 2 * MAX_UNAVAILABLE  # bounded: tries x attempts
    online_fake.set_online()
    assert texts(generate(PROMPTS[:3], llm=online(max_attempts=2))) == texts(generate(PROMPTS[:3], llm=online()))
    assert all(r.result.ok for r in generate(PROMPTS[:3], llm=online(), policy=RunPolicy(retry_failed=True)))
    assert len(online_fake.paid()) == 3


def test_request_errors_count_attempts_then_end_as_error_rows(online_fake):
    bad = generate(PROMPTS[:1], llm=online(), plan_id="probe")[0].result.custom_id
    online_fake.set_online(errors={bad: 99, "*": 1})
    results = generate(PROMPTS[:4], llm=online(max_attempts=3))
    assert results[0].result.ok  # answered by the probe run: not sent again
    online_fake.calls.clear()
    online_fake.set_online(errors={"*": 99})
    results = generate(PROMPTS[4:8], llm=online(max_attempts=3), plan_id="plan-3")
    assert [r.result.ok for r in results] == [False] * 4
    assert results[0].result.error == "400 invalid request"
    assert len(online_fake.calls) == 12  # three attempts each, then an explicit error row


def test_a_refused_key_stops_the_run_without_the_key_and_a_rerun_finishes(online_fake):
    online_fake.set_online(fatal=True)
    with pytest.raises(ProviderError) as exc:
        generate(PROMPTS, llm=online(online_concurrency=1))
    assert "fk-test-secret-0000" not in str(exc.value)
    assert len(online_fake.calls) <= 2  # stopped at once
    online_fake.set_online()
    results = generate(PROMPTS, llm=online())
    assert texts(results) == [f"echo: {p}" for p in PROMPTS]
    assert sorted(counts(online_fake.paid()).values()) == [1] * 25


def test_ctrl_c_stops_at_once_and_a_rerun_sends_the_rest(online_fake):
    def press_ctrl_c(cid, outcome):
        if len(online_fake.calls) == 5:
            os.kill(os.getpid(), signal.SIGINT)

    online_fake.on_call = press_ctrl_c
    with pytest.raises(OnlineGenerationNotFinished) as exc:
        generate(PROMPTS, llm=online(online_concurrency=2))
    assert exc.value.interrupted and "stopped by the user" in str(exc.value)
    sent = len(online_fake.calls)
    assert sent < 25
    online_fake.on_call = None
    results = generate(PROMPTS, llm=online())
    assert texts(results) == [f"echo: {p}" for p in PROMPTS]
    assert sorted(counts(online_fake.paid()).values()) == [1] * 25  # what came in flight was kept


def test_claims_of_a_killed_run_are_released(online_fake):
    with Store.open() as store:
        generate(PROMPTS[:1], llm=online(), plan_id="warm")  # the plan exists once planned
        from overnight.executor import BatchExecutor
        from overnight.policy import RunPolicy

        llm = online()
        ex = BatchExecutor(store, llm.load(), {}, step="gen", plan_id="plan-1", policy=RunPolicy())
        ex.plan(iter(_planned(llm)))
        dead = f"{socket.gethostname()}:{_dead_pid()}:gone"
        held = store.claim_online("plan-1", dead, limit=10)
        assert len(held) == 10
    results = generate(PROMPTS, llm=online())
    assert texts(results) == [f"echo: {p}" for p in PROMPTS]
    assert len(online_fake.paid()) == 25


def _planned(llm):
    from overnight.models import ChatRequest, PlannedRequest

    return [PlannedRequest(p.row, p.sample, ChatRequest(p.request.custom_id, "m", p.request.messages, llm.params()))
            for p in plan(PROMPTS)]


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_bad_input_costs_nothing_online(online_fake):
    with pytest.raises(ValidationError):
        generate(PROMPTS, llm=online(generation_kwargs={"stop": ["a", "b", "c"]}))
    assert online_fake.calls == []


def test_a_provider_without_online_is_refused_at_creation(tmp_path, registry, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", "k" * 8)
    registry.register(OnlineFake(tmp_path / "p", online=False), name="fake")
    with pytest.raises(ConfigurationError, match="online API"):
        LLM("fake/m", use_offline_batch_generation=False)
    with pytest.raises(ConfigurationError, match="online API"):
        LLM("fake/m", online_fallback_after=60)


def test_fallback_without_cancel_is_refused_at_creation(tmp_path, registry, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", "k" * 8)
    registry.register(OnlineFake(tmp_path / "p", cancel=False), name="fake")
    with pytest.raises(ConfigurationError, match="cannot cancel"):
        LLM("fake/m", deadline=2_000_000_000)
    with pytest.raises(ConfigurationError, match="seconds"):
        LLM("fake/m", use_offline_batch_generation=False, online_fallback_after=-1)


def test_online_progress_line(online_fake, monkeypatch, capsys):
    monkeypatch.setenv("OVERNIGHT_PROGRESS", "verbose")
    monkeypatch.setattr("overnight.online.PROGRESS_PERIOD", 0.0)
    generate(PROMPTS, llm=online())
    err = capsys.readouterr().err
    assert "gen: online through fake" in err and "results collected" in err
    assert "gen: 25 request(s) answered online ($" in err  # the step's closing line


def test_a_budget_too_small_for_the_online_part_sends_nothing(online_fake):
    from overnight import BudgetExceeded
    from overnight.money import Budget
    from overnight.policy import RunPolicy

    with pytest.raises(BudgetExceeded, match="online prices"):
        generate(PROMPTS, llm=online(), policy=RunPolicy(budget=Budget(1e-9)))
    assert online_fake.calls == []
    results = generate(PROMPTS, llm=online(), policy=RunPolicy(budget=Budget(1.0)))
    assert all(r.result.ok for r in results)
