"""overnight-mistral's ``generate`` hook (online mode), through the ``mistralai`` SDK's
``chat.complete`` against the sandbox's ``POST /v1/chat/completions``, called through the
plugin manager.

One sandbox for the module; each test its own model name (repeat counts and rate windows
are per model), faults and limits cleared after each test.
"""

from __future__ import annotations

from typing import Any

import pytest

import overnight_mistral
from overnight import ChatRequest, GenerationParams, Message, ResultStatus
from overnight.errors import ProviderUnavailable, RateLimited
from overnight.models import Chunk, JobState
from overnight.sandbox import Sandbox, expected_reply

KEY = "mi-test-online-0123456789"
DONE = 3600


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    monkeypatch.delenv("MISTRAL_BASE_URL", raising=False)
    monkeypatch.setenv("OVERNIGHT_ADOPT_HORIZON", "0")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp("sandbox")) as sandbox:
        yield sandbox


@pytest.fixture
def sb(server, registry):
    registry.register(overnight_mistral, name="mistral")
    yield server
    server.clear_faults()
    server.clear_online()


@pytest.fixture
def model(request) -> str:
    return "mistral-online-" + request.node.name.replace("[", "-").replace("]", "")[-40:]


def options(sb: Sandbox) -> dict[str, Any]:
    return {"api_key": KEY, "base_url": sb.mistral_base_url}


def build(registry, model: str, prompt: str, custom_id: str = "row-0", **params: Any) -> dict:
    request = ChatRequest(custom_id, model, [Message("user", prompt)], GenerationParams(**params))
    return registry.provider("mistral").build_request(request)


def online(registry, line: dict, opts_: dict, model: str, timeout: float | None = None):
    return registry.provider("mistral")._call("generate", opts_, request=line, timeout=timeout, model=model)


def test_declares_online_with_limits(registry):
    registry.register(overnight_mistral, name="mistral")
    info = registry.info("mistral")
    assert info.capabilities.online and info.online_limits.requests_per_minute
    assert "generate" in registry.implemented_hooks("mistral")


def test_success_and_the_same_answer_as_a_batch(sb, registry, model):
    line = build(registry, model, "what is mistral?", max_tokens=4, seed=7, temperature=0.2)
    assert "model" not in line["body"]  # the batch gives it at job level: the hook gets it apart
    got = online(registry, line, options(sb), model)
    assert got.custom_id == "row-0" and got.ok
    assert got.text == expected_reply([{"role": "user", "content": "what is mistral?"}], max_tokens=4)
    assert got.finish_reason == "length" and got.usage.output_tokens == 4 and got.usage.input_tokens > 0
    assert got.raw["model"] == model

    facade = registry.provider("mistral")
    ref = facade.submit(Chunk(tag=f"ovn-{model}", model=model, count=1, bytes=100, lines=lambda: iter([line])),
                        options(sb))
    sb.advance(DONE)
    assert facade.check(ref, options(sb)).state is JobState.FINISHED
    (want,) = list(facade.fetch(ref, options(sb)))
    assert (got.text, got.usage, got.finish_reason) == (want.text, want.usage, want.finish_reason)


def test_repeated_identical_requests_differ_deterministically(sb, registry, model):
    line = build(registry, model, "again")
    texts = [online(registry, line, options(sb), model).text for _ in range(2)]
    assert texts == [expected_reply([{"role": "user", "content": "again"}], variant=n) for n in range(2)]


def test_a_prompt_past_the_context_window_is_an_errored_row(sb, registry, model):
    result = online(registry, build(registry, model, "hello", max_tokens=500_000), options(sb), model)
    assert result.status is ResultStatus.ERRORED
    assert result.error.startswith("HTTP 400:") and "maximum context length" in result.error


def test_an_unknown_field_is_refused_by_the_sdk_and_by_the_sandbox_with_a_422(sb, registry, model):
    line = build(registry, model, "hello")
    line["body"]["min_p"] = 0.1  # not a Mistral field: its validator answers 422 extra_forbidden
    with pytest.raises(TypeError):  # the SDK itself refuses an argument it does not know
        online(registry, line, options(sb), model)
    result = _raw_422(sb, model)
    assert result["message"]["detail"][0]["type"] == "extra_forbidden"


def _raw_422(sb: Sandbox, model: str) -> dict:
    import httpx

    response = httpx.post(sb.mistral_base_url + "/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                          json={"model": model, "messages": [{"role": "user", "content": "x"}], "min_p": 0.1})
    assert response.status_code == 422
    return response.json()


def test_online_fault_rules_fail_chosen_requests(sb, registry, model):
    sb.set_faults(provider="mistral", model=model, online_error_match="poison", error_status=422)
    bad = online(registry, build(registry, model, "poison"), options(sb), model)
    assert bad.status is ResultStatus.ERRORED and "HTTP 422" in bad.error
    assert online(registry, build(registry, model, "fine"), options(sb), model).ok


def test_429_with_retry_after_is_rate_limited(sb, registry, model):
    sb.set_faults(provider="mistral", http_status=429, retry_after=9, http_path="/v1/chat/completions$", times=1)
    with pytest.raises(RateLimited) as caught:
        online(registry, build(registry, model, "hello"), options(sb), model)
    assert caught.value.retry_after == 9 and KEY not in str(caught.value)
    assert online(registry, build(registry, model, "hello"), options(sb), model).ok  # no SDK retry used it up


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_provider_unavailable(sb, registry, model, status):
    sb.set_faults(provider="mistral", http_status=status, http_path="/v1/chat/completions$", times=1)
    with pytest.raises(ProviderUnavailable):
        online(registry, build(registry, model, "hello"), options(sb), model)
    assert sb.faults()[0]["remaining"] == 0


def test_a_timeout_is_provider_unavailable(sb, registry, model):
    sb.set_faults(provider="mistral", http_delay=5, http_path="/v1/chat/completions$", times=1)
    with pytest.raises(ProviderUnavailable):
        online(registry, build(registry, model, "slow"), options(sb), model, timeout=0.2)


def test_the_sandbox_rate_limiter_on_tokens(sb, registry, model):
    sb.set_rate_limit("mistral", model, tokens_per_minute=60)
    line = build(registry, model, "one two three", max_tokens=20)  # ~27 tokens each
    assert online(registry, line, options(sb), model).ok
    sb.advance(10)
    assert online(registry, line, options(sb), model).ok
    with pytest.raises(RateLimited) as caught:
        online(registry, line, options(sb), model)
    assert caught.value.retry_after == 50  # the first request leaves the minute 50 s from now
    sb.advance(50)
    assert online(registry, line, options(sb), model).ok
