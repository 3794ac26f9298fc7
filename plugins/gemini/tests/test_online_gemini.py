"""overnight-gemini's ``generate`` hook (online mode), through google-genai's
``models.generate_content`` against the sandbox's ``models/{model}:generateContent``,
called through the plugin manager.

One sandbox for the module; each test its own model name (repeat counts and rate windows
are per model), faults and limits cleared after each test.
"""

from __future__ import annotations

from typing import Any

import pytest

import overnight_gemini
from overnight import ChatRequest, GenerationParams, Message, ResultStatus
from overnight.errors import ProviderUnavailable, RateLimited
from overnight.models import Chunk, JobState
from overnight.sandbox import Sandbox, expected_reply
from overnight_gemini import online as gemini_online
from overnight_gemini import options as opts

KEY = "gm-test-online-0123456789"
DONE = 3600


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in (*opts.KEY_ENVS, *opts.BASE_URL_ENVS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OVERNIGHT_ADOPT_HORIZON", "0")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp("sandbox")) as sandbox:
        yield sandbox


@pytest.fixture
def sb(server, registry):
    registry.register(overnight_gemini, name="gemini")
    yield server
    server.clear_faults()
    server.clear_online()


@pytest.fixture
def model(request) -> str:
    return "gemini-online-" + request.node.name.replace("[", "-").replace("]", "")[-40:]


def options(sb: Sandbox) -> dict[str, Any]:
    return {"api_key": KEY, "base_url": sb.gemini_base_url}


def build(registry, model: str, prompt: str, system: str | None = None, **params: Any) -> dict:
    messages = ([Message("system", system)] if system else []) + [Message("user", prompt)]
    return registry.provider("gemini").build_request(ChatRequest("row-0", model, messages, GenerationParams(**params)))


def online(registry, line: dict, opts_: dict, model: str, timeout: float | None = None):
    return registry.provider("gemini")._call("generate", opts_, request=line, timeout=timeout, model=model)


def test_declares_online_with_limits(registry):
    registry.register(overnight_gemini, name="gemini")
    info = registry.info("gemini")
    assert info.capabilities.online and info.online_limits.requests_per_minute
    assert "generate" in registry.implemented_hooks("gemini")


def test_success_and_the_same_answer_as_a_batch(sb, registry, model):
    line = build(registry, model, "what is gemini?", system="be short", max_tokens=4, temperature=0.5)
    got = online(registry, line, options(sb), model)
    assert got.custom_id == "row-0" and got.ok
    assert got.text == expected_reply([{"role": "user", "content": "what is gemini?"}], system="be short",
                                      max_tokens=4)
    assert got.finish_reason == "MAX_TOKENS" and got.usage.output_tokens == 4 and got.usage.input_tokens > 0
    assert got.raw["modelVersion"] == model and "sdkHttpResponse" not in got.raw

    facade = registry.provider("gemini")
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


def test_an_input_past_the_model_limit_is_an_errored_row(sb, registry, model):
    long = " ".join(["word"] * 1_100_000)
    result = online(registry, build(registry, model, long), options(sb), model)
    assert result.status is ResultStatus.ERRORED
    assert "INVALID_ARGUMENT" in result.error and "input token count exceeds" in result.error


def test_online_fault_rules_fail_chosen_requests(sb, registry, model):
    sb.set_faults(provider="gemini", model=model, online_error_match="poison", error_status=400)
    assert online(registry, build(registry, model, "poison"), options(sb), model).status is ResultStatus.ERRORED
    assert online(registry, build(registry, model, "fine"), options(sb), model).ok


def test_the_sandbox_rate_limiter_answers_resource_exhausted_with_retry_info(sb, registry, model):
    sb.set_rate_limit("gemini", model, requests_per_minute=1)
    line = build(registry, model, "hello")
    assert online(registry, line, options(sb), model).ok
    sb.advance(24)
    with pytest.raises(RateLimited) as caught:
        online(registry, line, options(sb), model)
    assert caught.value.retry_after == 36  # from the body's RetryInfo: Gemini sends no Retry-After header
    assert "RESOURCE_EXHAUSTED" in str(caught.value) and KEY not in str(caught.value)
    sb.advance(36)
    assert online(registry, line, options(sb), model).ok


def test_a_429_fault_is_rate_limited(sb, registry, model):
    sb.set_faults(provider="gemini", http_status=429, retry_after=5, http_path=":generateContent$", times=1)
    with pytest.raises(RateLimited) as caught:
        online(registry, build(registry, model, "hello"), options(sb), model)
    assert caught.value.retry_after == 5
    assert online(registry, build(registry, model, "hello"), options(sb), model).ok


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_provider_unavailable(sb, registry, model, status):
    sb.set_faults(provider="gemini", http_status=status, http_path=":generateContent$", times=1)
    with pytest.raises(ProviderUnavailable):
        online(registry, build(registry, model, "hello"), options(sb), model)
    assert sb.faults()[0]["remaining"] == 0


def test_a_timeout_is_provider_unavailable(sb, registry, model):
    sb.set_faults(provider="gemini", http_delay=5, http_path=":generateContent$", times=1)
    with pytest.raises(ProviderUnavailable):
        online(registry, build(registry, model, "slow"), options(sb), model, timeout=0.2)


def test_retry_delay_reads_protobuf_durations():
    info = {"details": [{"@type": "type.googleapis.com/google.rpc.Help"},
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "45.837906927s"}]}
    assert gemini_online.retry_delay(info) == pytest.approx(45.837906927)
    assert gemini_online.retry_delay({"details": [{"@type": "x.RetryInfo", "retryDelay": "soon"}]}) is None
