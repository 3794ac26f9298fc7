"""overnight-openai's ``generate`` hook (online mode), through the ``openai`` SDK (Together:
its own SDK) against the sandbox's ``/chat/completions``, called through the plugin manager.

One sandbox for the module; each test its own model name, so the sandbox's repeat counts
and rate windows of one test never meet another's.
"""

from __future__ import annotations

from typing import Any

import pytest

import overnight_openai
from overnight import ChatRequest, GenerationParams, Message, ProviderError, ResultStatus
from overnight.errors import ProviderUnavailable, RateLimited
from overnight.models import Chunk, JobState
from overnight.sandbox import Sandbox, expected_reply

KEY = "sk-test-online-openai-0123456789"
DONE = 3600


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp("sandbox")) as sandbox:
        yield sandbox


@pytest.fixture
def sb(server, registry):
    registry.register(overnight_openai, name="openai")
    yield server
    server.clear_faults()
    server.clear_online()


@pytest.fixture
def model(request) -> str:
    return "gpt-online-" + request.node.name.replace("[", "-").replace("]", "")[-40:]


def options(sb: Sandbox, provider: str = "openai") -> dict[str, Any]:
    return {"api_key": KEY, "base_url": getattr(sb, f"{provider}_base_url")}


def build(registry, provider: str, model: str, prompt: str, custom_id: str = "row-0", **params: Any) -> dict:
    request = ChatRequest(custom_id, model, [Message("user", prompt)], GenerationParams(**params))
    return registry.provider(provider).build_request(request)


def online(registry, provider: str, line: dict, opts: dict, timeout: float | None = None):
    """The hook, called as the core calls it (the provider facade: one plugin, keys redacted)."""
    return registry.provider(provider)._call("generate", opts, request=line, timeout=timeout,
                                            model=(line.get("body") or line.get("params"))["model"])


def batch(registry, sb: Sandbox, provider: str, line: dict, opts: dict):
    """The same line through a batch: submit, let it finish, fetch."""
    facade = registry.provider(provider)
    ref = facade.submit(Chunk(tag=f"ovn-{line['body']['model']}", model=line["body"]["model"], count=1, bytes=100,
                              lines=lambda: iter([line])), opts)
    sb.advance(DONE)
    assert facade.check(ref, opts).state is JobState.FINISHED
    (result,) = list(facade.fetch(ref, opts))
    return result


def test_declares_online_with_limits(registry):
    registry.register(overnight_openai, name="openai")
    for name in ("openai", "groq", "together", "deepinfra", "nebius"):
        info = registry.info(name)
        assert info.capabilities.online, name
        assert info.online_limits.requests_per_minute and info.online_limits.max_concurrency >= 1
    assert "generate" in registry.implemented_hooks("openai")


def test_success_has_the_text_usage_finish_reason_and_raw_body(sb, registry, model):
    line = build(registry, "openai", model, "what is online mode?")
    result = online(registry, "openai", line, options(sb))
    assert result.custom_id == "row-0" and result.status is ResultStatus.SUCCEEDED
    assert result.text == expected_reply([{"role": "user", "content": "what is online mode?"}])
    assert result.finish_reason == "stop"
    assert result.usage.input_tokens > 0 and result.usage.output_tokens == len(result.text.split())
    assert result.raw["object"] == "chat.completion" and result.raw["model"] == model
    assert result.cost_usd is None
    assert sb.counters()["openai"]["online"] >= 1


def test_same_answer_online_as_in_a_batch(sb, registry, model):
    line = build(registry, "openai", model, "the same question", max_tokens=5, temperature=0.3)
    got = online(registry, "openai", line, options(sb))
    want = batch(registry, sb, "openai", line, options(sb))
    assert want.ok and got.ok
    assert (got.text, got.usage, got.finish_reason) == (want.text, want.usage, want.finish_reason)
    assert got.finish_reason == "length"  # max_tokens honoured online too
    assert set(got.raw) == set(want.raw)  # the same response shape


def test_repeated_identical_requests_get_distinct_deterministic_answers(sb, registry, model):
    line = build(registry, "openai", model, "say something")
    texts = [online(registry, "openai", line, options(sb)).text for _ in range(3)]
    messages = [{"role": "user", "content": "say something"}]
    assert texts == [expected_reply(messages, variant=n) for n in range(3)]
    assert len(set(texts)) == 3


def test_a_request_the_api_refuses_is_an_errored_row(sb, registry, model):
    line = build(registry, "openai", model, "too long", max_tokens=500_000)  # past gpt-*'s context window
    result = online(registry, "openai", line, options(sb))
    assert result.status is ResultStatus.ERRORED and result.custom_id == "row-0"
    assert "HTTP 400" in result.error and "context_length_exceeded" in result.error
    assert result.raw["response"]["status_code"] == 400


def test_online_fault_rules_fail_chosen_requests(sb, registry, model):
    sb.set_faults(provider="openai", model=model, online_error_match="^poison", error_status=400)
    bad = online(registry, "openai", build(registry, "openai", model, "poison pill"), options(sb))
    good = online(registry, "openai", build(registry, "openai", model, "fine pill"), options(sb))
    assert bad.status is ResultStatus.ERRORED and "sandbox fault injection" in bad.error
    assert good.ok
    sb.clear_faults()
    sb.set_faults(provider="openai", model=model, online_error_rate=1.0, error_status=503, times=1)
    with pytest.raises(ProviderUnavailable):
        online(registry, "openai", build(registry, "openai", model, "fine pill"), options(sb))
    assert online(registry, "openai", build(registry, "openai", model, "fine pill"), options(sb)).ok  # times=1


def test_a_429_with_retry_after_raises_rate_limited_with_that_wait(sb, registry, model):
    sb.set_faults(provider="openai", http_status=429, retry_after=7.5, http_path="/chat/completions$", times=1)
    line = build(registry, "openai", model, "hello")
    with pytest.raises(RateLimited) as caught:
        online(registry, "openai", line, options(sb))
    assert caught.value.retry_after == 7.5  # retry-after-ms, the exact figure
    assert KEY not in str(caught.value)
    assert online(registry, "openai", line, options(sb)).ok  # the SDK did not retry on its own: one firing


@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_raises_provider_unavailable(sb, registry, model, status):
    sb.set_faults(provider="openai", http_status=status, http_path="/chat/completions$", times=1)
    with pytest.raises(ProviderUnavailable):
        online(registry, "openai", build(registry, "openai", model, "hello"), options(sb))
    assert sb.faults()[0]["remaining"] == 0  # one attempt: the SDK's own retries are off


def test_a_timeout_raises_provider_unavailable(sb, registry, model):
    sb.set_faults(provider="openai", http_delay=5, http_path="/chat/completions$", times=1)
    with pytest.raises(ProviderUnavailable):
        online(registry, "openai", build(registry, "openai", model, "slow"), options(sb), timeout=0.2)


def test_a_wrong_base_url_propagates(sb, registry, model):
    opts = {"api_key": KEY, "base_url": sb.url + "/nowhere/v1"}
    with pytest.raises(Exception) as caught:
        online(registry, "openai", build(registry, "openai", model, "hello"), opts)
    assert not isinstance(caught.value, (RateLimited, ProviderUnavailable))


def test_the_sandbox_rate_limiter_on_its_clock(sb, registry, model):
    sb.set_rate_limit("openai", model, requests_per_minute=2)
    line = build(registry, "openai", model, "hello")
    assert online(registry, "openai", line, options(sb)).ok
    sb.advance(20)
    assert online(registry, "openai", line, options(sb)).ok
    with pytest.raises(RateLimited) as caught:
        online(registry, "openai", line, options(sb))
    assert caught.value.retry_after == 40  # the first request leaves the minute in 40 s
    assert "requests per min" in str(caught.value)
    sb.advance(40)
    assert online(registry, "openai", line, options(sb)).ok
    # Another key has its own window.
    other = {**options(sb), "api_key": "sk-test-another-key-000"}
    assert online(registry, "openai", line, other).ok


def test_tokens_per_minute_and_a_request_too_large(sb, registry, model):
    line = build(registry, "openai", model, "one two three", max_tokens=40)
    sb.set_rate_limit("openai", model, tokens_per_minute=100)
    assert online(registry, "openai", line, options(sb)).ok
    assert online(registry, "openai", line, options(sb)).ok
    with pytest.raises(RateLimited) as caught:
        online(registry, "openai", line, options(sb))
    assert caught.value.retry_after == 60 and "tokens per min" in str(caught.value)
    big = build(registry, "openai", model, "one two three", max_tokens=500)
    result = online(registry, "openai", big, options(sb))  # can never fit: an errored row, not a wait
    assert result.status is ResultStatus.ERRORED and "Request too large" in result.error


@pytest.mark.parametrize("vendor", ["groq", "together", "deepinfra", "nebius"])
def test_vendors_answer_online_through_their_prefix(sb, registry, model, vendor):
    line = build(registry, vendor, model, f"hello {vendor}")
    before = sb.counters()[vendor].get("online", 0)
    result = online(registry, vendor, line, options(sb, vendor))
    assert result.ok and result.text == expected_reply([{"role": "user", "content": f"hello {vendor}"}])
    assert sb.counters()[vendor]["online"] == before + 1
    sb.set_faults(provider=vendor, http_status=429, retry_after=3, times=1)
    with pytest.raises(RateLimited) as caught:
        online(registry, vendor, line, options(sb, vendor))
    assert caught.value.retry_after == 3


def test_groq_refuses_what_its_api_refuses(sb, registry, model):
    line = build(registry, "groq", model, "hello")
    line["body"]["logprobs"] = True  # the core would refuse it first; the API answers 400
    result = online(registry, "groq", line, options(sb, "groq"))
    assert result.status is ResultStatus.ERRORED and "logprobs" in result.error


def test_a_rate_limited_error_is_a_provider_error():
    assert issubclass(RateLimited, ProviderError) and issubclass(ProviderUnavailable, ProviderError)
