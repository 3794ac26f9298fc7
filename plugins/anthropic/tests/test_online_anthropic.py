"""overnight-anthropic's ``generate`` hook (online mode), through the ``anthropic`` SDK
against the sandbox's ``POST /v1/messages``, called through the plugin manager.

One sandbox for the module; each test its own model name (repeat counts and rate windows
are per model), faults and limits cleared after each test.
"""

from __future__ import annotations

from typing import Any

import pytest

import overnight_anthropic
from overnight import ChatRequest, GenerationParams, Message, ResultStatus
from overnight.errors import ProviderUnavailable, RateLimited
from overnight.models import Chunk, JobState
from overnight.sandbox import Sandbox, expected_reply

KEY = "sk-ant-test-online-0123456789"
CID = "0123456789abcdef0123456789abcdef01234567"
DONE = 3600


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_CUSTOM_HEADERS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp("sandbox")) as sandbox:
        yield sandbox


@pytest.fixture
def sb(server, registry):
    registry.register(overnight_anthropic, name="anthropic")
    yield server
    server.clear_faults()
    server.clear_online()


@pytest.fixture
def model(request) -> str:
    return "claude-online-" + request.node.name.replace("[", "-").replace("]", "")[-40:]


def options(sb: Sandbox, **extra: Any) -> dict[str, Any]:
    return {"api_key": KEY, "base_url": sb.anthropic_base_url, **extra}


def build(registry, model: str, prompt: str, system: str | None = None, **params: Any) -> dict:
    messages = ([Message("system", system)] if system else []) + [Message("user", prompt)]
    return registry.provider("anthropic").build_request(ChatRequest(CID, model, messages, GenerationParams(**params)))


def online(registry, line: dict, opts: dict, timeout: float | None = None):
    return registry.provider("anthropic")._call("generate", opts, request=line, timeout=timeout,
                                                model=line["params"]["model"])


def test_declares_online_with_limits(registry):
    registry.register(overnight_anthropic, name="anthropic")
    info = registry.info("anthropic")
    assert info.capabilities.online and info.online_limits.requests_per_minute == 50
    assert "generate" in registry.implemented_hooks("anthropic")


def test_success_and_the_same_answer_as_a_batch(sb, registry, model):
    line = build(registry, model, "what is a batch?", system="be brief", max_tokens=6, stop=["zzz"])
    got = online(registry, line, options(sb))
    assert got.custom_id == CID and got.ok
    assert got.text == expected_reply([{"role": "user", "content": "what is a batch?"}], system="be brief",
                                      max_tokens=6)
    assert got.finish_reason == "max_tokens" and got.usage.input_tokens > 0 and got.usage.output_tokens == 6
    assert got.raw["result"]["message"]["usage"]["service_tier"] == "standard"

    facade = registry.provider("anthropic")
    ref = facade.submit(Chunk(tag=f"ovn-{model}", model=model, count=1, bytes=100, lines=lambda: iter([line])),
                        options(sb))
    sb.advance(DONE)
    assert facade.check(ref, options(sb)).state is JobState.FINISHED
    (want,) = list(facade.fetch(ref, options(sb)))
    assert (got.text, got.usage, got.finish_reason) == (want.text, want.usage, want.finish_reason)


def test_repeated_identical_requests_differ_deterministically(sb, registry, model):
    line = build(registry, model, "again")
    texts = [online(registry, line, options(sb)).text for _ in range(2)]
    assert texts == [expected_reply([{"role": "user", "content": "again"}], variant=n) for n in range(2)]


def test_a_refused_request_is_an_errored_row(sb, registry, model):
    line = build(registry, model, "hello")
    line["params"]["max_tokens"] = 300_000  # past the 200k context window
    result = online(registry, line, options(sb))
    assert result.status is ResultStatus.ERRORED and "prompt is too long" in result.error
    assert result.error.startswith("invalid_request_error")


def test_online_fault_rules_fail_chosen_requests(sb, registry, model):
    sb.set_faults(provider="anthropic", model=model, online_error_match="poison", error_status=400)
    assert online(registry, build(registry, model, "a poison pill"), options(sb)).status is ResultStatus.ERRORED
    assert online(registry, build(registry, model, "a fine pill"), options(sb)).ok


def test_429_with_retry_after_is_rate_limited(sb, registry, model):
    sb.set_faults(provider="anthropic", http_status=429, retry_after=12, http_path="/v1/messages$", times=1)
    with pytest.raises(RateLimited) as caught:
        online(registry, build(registry, model, "hello"), options(sb))
    assert caught.value.retry_after == 12 and KEY not in str(caught.value)


@pytest.mark.parametrize("status", [500, 529])
def test_5xx_and_overloaded_are_provider_unavailable(sb, registry, model, status):
    sb.set_faults(provider="anthropic", http_status=status, http_path="/v1/messages$", times=1)
    with pytest.raises(ProviderUnavailable) as caught:
        online(registry, build(registry, model, "hello"), options(sb))
    assert f"HTTP {status}" in str(caught.value)
    assert sb.faults()[0]["remaining"] == 0  # one attempt, no SDK retry


def test_a_timeout_is_provider_unavailable(sb, registry, model):
    sb.set_faults(provider="anthropic", http_delay=5, http_path="/v1/messages$", times=1)
    with pytest.raises(ProviderUnavailable):
        online(registry, build(registry, model, "slow"), options(sb), timeout=0.2)


def test_the_sandbox_rate_limiter_answers_anthropic_headers(sb, registry, model):
    sb.set_rate_limit("anthropic", model, requests_per_minute=1, tokens_per_minute=10_000)
    line = build(registry, model, "hello")
    assert online(registry, line, options(sb)).ok
    sb.advance(15)
    with pytest.raises(RateLimited) as caught:
        online(registry, line, options(sb))
    assert caught.value.retry_after == 45 and "requests per minute" in str(caught.value)
    sb.advance(45)
    assert online(registry, line, options(sb)).ok


def test_a_large_max_tokens_needs_no_stream(sb, registry, model):
    # The SDK refuses a non-streaming call that may take over 10 minutes unless a timeout is given.
    line = build(registry, model, "long answer", max_tokens=60_000)
    assert online(registry, line, options(sb)).ok
