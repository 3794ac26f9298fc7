"""Online mode end to end: the core's runner, each plugin's ``generate`` through its official
SDK, the sandbox's online endpoint on 127.0.0.1 (its clock driven by the test).

Parametrized over the providers; a provider whose plugin does not offer ``generate`` yet
(branch ``onlineplug`` builds them) is skipped, naming it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from overnight import OfflineBatchGenerationNotFinished, online, polling, ratelimit
from overnight.llm import LLM
from overnight.sandbox import Sandbox, expected_reply
from overnight.store import Store

from onlinefake import generate

PROVIDERS = ["openai", "anthropic", "mistral", "gemini", "groq"]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku", "mistral": "mistral-small",
          "gemini": "gemini-2.0-flash", "groq": "llama-3.1-8b-instant"}
PLUGIN = {"openai": "overnight_openai", "groq": "overnight_openai", "anthropic": "overnight_anthropic",
          "mistral": "overnight_mistral", "gemini": "overnight_gemini"}
KEYS = {"openai": "OPENAI_API_KEY", "groq": "GROQ_API_KEY", "anthropic": "ANTHROPIC_API_KEY",
        "mistral": "MISTRAL_API_KEY", "gemini": "GEMINI_API_KEY"}
PROMPTS = [f"online question {i}" for i in range(12)]


@pytest.fixture(autouse=True)
def _own_prompts(request, monkeypatch):
    """Prompts of its own per test: the sandbox numbers repeated identical bodies (the n-th gets
    the n-th variant), and a Gemini or Mistral body does not name its model."""
    tag = f"{zlib.crc32(request.node.name.encode()):08x}"
    monkeypatch.setitem(globals(), "PROMPTS", [f"online question {i} ({tag})" for i in range(12)])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp("sandbox")) as sandbox:
        yield sandbox


@pytest.fixture(params=PROVIDERS)
def provider(request, registry, monkeypatch):
    import importlib

    name = request.param
    registry.register(importlib.import_module(PLUGIN[name]), name=PLUGIN[name])
    if not registry.info(name).capabilities.online:
        pytest.skip(f"overnight-{PLUGIN[name].split('_')[1]} does not implement generate for {name} yet "
                    "(branch onlineplug)")
    for var in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "MISTRAL_BASE_URL", "GEMINI_BASE_URL", "GROQ_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(KEYS[name], f"sk-test-online-{name}-0123456789")
    return name


@pytest.fixture
def sb(server, request):
    # The pacer's clock is the sandbox's: Retry-After and rate windows are sandbox seconds.
    ratelimit.forget()
    old = ratelimit.clock, ratelimit.sleep
    ratelimit.clock, ratelimit.sleep = server.now, server.advance
    yield server
    ratelimit.clock, ratelimit.sleep = old
    ratelimit.forget()
    server.clear_faults()
    server.clear_online()


def model_for(provider: str, request: Any) -> str:
    """A model name of its own per test (the sandbox's rate windows and repeat counts are per model)."""
    return f"{MODELS[provider]}-{zlib.crc32(request.node.name.encode()):08x}"


def llm(sb: Sandbox, provider: str, model: str, **kwargs: Any) -> LLM:
    return LLM(f"{provider}/{model}", base_url=getattr(sb, f"{provider}_base_url"), **kwargs)


def replies(prompts: list[str]) -> list[str]:
    return [expected_reply([{"role": "user", "content": p}]) for p in prompts]


def online_calls(sb: Sandbox, provider: str) -> int:
    return int(sb.counters().get(provider, {}).get("online", 0))


def test_online_answers_every_row_once_and_a_rerun_pays_nothing(sb, provider, request):
    model = model_for(provider, request)
    before = online_calls(sb, provider)
    results = generate(PROMPTS, llm=llm(sb, provider, model, use_offline_batch_generation=False))
    assert [r.result.text for r in results] == replies(PROMPTS)
    assert all(r.result.usage and r.result.usage.output_tokens > 0 for r in results)
    assert online_calls(sb, provider) - before == 12
    again = generate(PROMPTS, llm=llm(sb, provider, model, use_offline_batch_generation=False))
    assert [r.result.text for r in again] == replies(PROMPTS)
    assert online_calls(sb, provider) - before == 12


def test_a_429_storm_is_ridden_out_and_the_declared_limit_avoids_it(sb, provider, request):
    model = model_for(provider, request)
    sb.set_rate_limit(provider, model, requests_per_minute=4)
    before = online_calls(sb, provider)
    results = generate(PROMPTS, llm=llm(sb, provider, model, use_offline_batch_generation=False,
                                        online_concurrency=1))
    assert [r.result.text for r in results] == replies(PROMPTS)  # every 429 waited out, no error row
    pacer = next(iter(ratelimit._pacers.values()))
    assert pacer.limited_count > 0
    # Declared at the account's figure: paced under it, not one 429.
    ratelimit.forget()
    other = model + "-paced"
    sb.set_rate_limit(provider, other, requests_per_minute=4)
    prompts = [p + " paced" for p in PROMPTS]
    paced = generate(prompts, llm=llm(sb, provider, other, use_offline_batch_generation=False,
                                      online_concurrency=1, requests_per_minute=4), plan_id="paced")
    assert [r.result.text for r in paced] == replies(prompts)
    assert next(iter(ratelimit._pacers.values())).limited_count == 0
    assert online_calls(sb, provider) - before >= 24


def test_5xx_and_per_request_errors(sb, provider, request):
    model = model_for(provider, request)
    sb.set_faults(provider=provider, model=model, online_error_rate=1.0, error_status=503, times=3)
    sb.set_faults(provider=provider, model=model, online_error_match="^poison", error_status=400)
    prompts = PROMPTS[:4] + ["poison pill"]
    results = generate(prompts, llm=llm(sb, provider, model, use_offline_batch_generation=False, max_attempts=2))
    assert [r.result.text for r in results[:4]] == replies(PROMPTS[:4])
    bad = results[4].result
    assert not bad.ok and bad.error  # an explicit error row after its attempts


def test_bad_input_costs_nothing(sb, provider, request):
    from overnight import ValidationError

    model = model_for(provider, request)
    before = online_calls(sb, provider)
    with pytest.raises(ValidationError):
        generate(PROMPTS + [""], llm=llm(sb, provider, model, use_offline_batch_generation=False,
                                         generation_kwargs={"max_tokens": 10**9}))
    assert online_calls(sb, provider) == before


def test_a_killed_run_resumes_with_the_rest(sb, provider, request, tmp_path):
    model = model_for(provider, request)
    script = tmp_path / "kill.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, threading
        sys.path[:0] = {[str(Path(__file__).parent), str(Path(__file__).parent.parent)]!r}
        import importlib
        from overnight import providers
        from overnight.plugins import PluginRegistry, set_registry
        from overnight.llm import LLM
        from onlinefake import generate
        set_registry(PluginRegistry([importlib.import_module({PLUGIN[provider]!r})], entrypoints=False))
        real, lock, answered = providers.Provider.generate, threading.Lock(), [0]
        def generate_then_die(self, *args, **kwargs):
            result = real(self, *args, **kwargs)
            with lock:
                answered[0] += 1
                if answered[0] == 5:
                    os._exit(9)  # killed: this answer was billed and is never stored
            return result
        providers.Provider.generate = generate_then_die
        generate({PROMPTS!r}, llm=LLM({f"{provider}/{model}"!r}, base_url={getattr(sb, f"{provider}_base_url")!r},
                 use_offline_batch_generation=False, online_concurrency=2, requests_per_minute=10**6,
                 tokens_per_minute=10**9))  # real time here: no pacing to wait for
    """))
    before = online_calls(sb, provider)
    done = subprocess.run([sys.executable, str(script)], env=os.environ.copy(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 9, done.stderr
    killed_after = online_calls(sb, provider) - before
    assert 5 <= killed_after <= 5 + 1  # the one that killed it, and at most one more in flight
    results = generate(PROMPTS, llm=llm(sb, provider, model, use_offline_batch_generation=False))
    for prompt, r in zip(PROMPTS, results):  # a request sent again after the kill gets the next variant
        messages = [{"role": "user", "content": prompt}]
        assert r.result.text in {expected_reply(messages, variant=v) for v in range(3)}
    with Store.open() as store:
        assert store.online_owners() == []  # the dead run's claims were released
    # Resumed with the rest: what was stored is not paid again; lost in-flight answers are.
    assert online_calls(sb, provider) - before <= 12 + 2  # lost: at most the 2 in flight (online_concurrency)


def test_switching_modes_pays_nothing_twice(sb, provider, request, monkeypatch):
    model = model_for(provider, request)
    monkeypatch.setattr(polling, "wait", lambda stop, seconds: sb.advance(3600) and False)
    batch = generate(PROMPTS[:6], llm=llm(sb, provider, model, offline_batch_generation_block_until_done=7200,
                                          poll_interval=1))
    assert [r.result.text for r in batch] == replies(PROMPTS[:6])
    before = online_calls(sb, provider)
    results = generate(PROMPTS, llm=llm(sb, provider, model, use_offline_batch_generation=False), plan_id="flip")
    assert [r.result.text for r in results] == replies(PROMPTS)
    assert online_calls(sb, provider) - before == 6  # only those no batch answered
    back = generate(PROMPTS, llm=llm(sb, provider, model), plan_id="flip-back")  # batch again: all answered
    assert [r.result.text for r in back] == replies(PROMPTS)
    assert online_calls(sb, provider) - before == 6


def test_fallback_cancels_a_slow_batch_keeps_its_partial_results_and_finishes_online(
        sb, provider, request, monkeypatch):
    model = model_for(provider, request)
    step_llm = llm(sb, provider, model, online_fallback_after=3600, poll_interval=1)
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(PROMPTS, llm=step_llm)  # submitted; the batch is slow
    sb.advance(5 + 15)  # validated, then half of its 30 s of processing: about half the requests done
    monkeypatch.setattr(online, "wall_clock", lambda: time.time() + 3601)  # the deadline has passed
    monkeypatch.setattr(polling, "wait", lambda stop, seconds: sb.advance(seconds) and False)
    before = online_calls(sb, provider)
    results = generate(PROMPTS, llm=step_llm)
    assert [r.result.text for r in results] == replies(PROMPTS)  # exactly one answer per row
    sent = online_calls(sb, provider) - before
    with Store.open() as store:
        assert store.plan_online_money("plan-1")["n"] == sent
        kept = sum(1 for r in results) - sent
    assert 0 < sent < 12 and kept > 0  # partial results kept, only the rest online
    (job,) = [j for j in sb.jobs() if j.get("provider") == provider and model in str(j)]
    assert "cancel" in str(job).lower()
