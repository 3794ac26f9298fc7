"""The sandbox's online endpoints, through the official SDKs (and raw HTTP where the
wire itself is the point): shapes, rate limits on the sandbox clock with each provider's
headers, online fault rules, latency, and the control API for them."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from overnight.sandbox import Fault, SandboxControl, expected_reply
from overnight.sandbox.faults import hash_fraction
from overnight.sandbox.online import body_digest, go_duration

HI = [{"role": "user", "content": "hi"}]


def chat(client: openai.OpenAI, model: str = "gpt-4o-mini", content: str = "hi", **kwargs):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": content}], **kwargs)


# --- OpenAI ----------------------------------------------------------------------------------


def test_openai_answers_like_the_batch_responder_and_counts(sandbox, oai):
    raw = chat(oai, max_completion_tokens=3)
    body = raw.parse()
    assert body.object == "chat.completion" and body.choices[0].finish_reason == "length"
    assert body.choices[0].message.content == expected_reply(HI, max_tokens=3)
    assert body.usage.completion_tokens == 3 and body.usage.prompt_tokens > 0
    assert raw.headers["x-request-id"].startswith("req_")
    assert "x-ratelimit-limit-requests" not in raw.headers  # no limit set: no rate headers
    assert sandbox.counters()["openai"]["online"] == 1


def test_openai_refuses_what_the_batch_path_refuses_with_its_shape(sandbox, oai):
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model="gpt-4o-mini", messages=HI, max_completion_tokens=10**6)
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model="", messages=HI)
    assert caught.value.param == "model"
    with pytest.raises(openai.BadRequestError, match="stream"):
        oai.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True).close()
    assert sandbox.counters()["openai"]["online_refused"] == 3


def test_openai_rate_limit_per_key_and_model_on_the_sandbox_clock(sandbox, oai):
    sandbox.set_rate_limit("openai", "gpt-limited", requests_per_minute=2)
    first = chat(oai, "gpt-limited")
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    sandbox.advance(10)
    assert chat(oai, "gpt-limited").headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as caught:
        chat(oai, "gpt-limited")
    headers = caught.value.response.headers
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("50", "50000")
    assert headers["x-ratelimit-remaining-requests"] == "0" and headers["x-ratelimit-reset-requests"] == "50s"
    assert caught.value.code == "rate_limit_exceeded" and caught.value.type == "requests"
    assert "Limit 2, Used 2, Requested 1" in caught.value.message
    chat(oai, "gpt-other")  # another model: no limit
    other_key = openai.OpenAI(api_key="sk-another", base_url=sandbox.openai_base_url, max_retries=0)
    chat(other_key, "gpt-limited")  # another key: its own window
    sandbox.advance(50)
    chat(oai, "gpt-limited")
    assert sandbox.counters()["openai"]["online_throttled"] == 1


def test_openai_tokens_per_minute_frees_as_the_window_slides(sandbox, oai):
    sandbox.set_rate_limit("openai", requests_per_minute=None, tokens_per_minute=70)  # every model
    chat(oai, content="a", max_completion_tokens=25)  # weighs 5 + 25 = 30
    sandbox.advance(20)
    chat(oai, content="a", max_completion_tokens=25)
    sandbox.advance(10)
    with pytest.raises(openai.RateLimitError) as caught:
        chat(oai, content="a", max_completion_tokens=25)
    assert caught.value.response.headers["retry-after"] == "30"  # when the first one leaves the minute
    assert caught.value.response.headers["x-ratelimit-remaining-tokens"] == "10"
    with pytest.raises(openai.RateLimitError, match="Request too large"):
        chat(oai, content="a", max_completion_tokens=100)  # alone over the limit: never fits
    sandbox.advance(30)
    chat(oai, content="a", max_completion_tokens=25)


def test_http_faults_apply_to_online_routes(sandbox, oai):
    sandbox.set_faults(provider="openai", http_status=503, retry_after=2, http_path="/chat/completions$", times=1)
    with pytest.raises(openai.InternalServerError) as caught:
        chat(oai)
    assert caught.value.response.headers["retry-after"] == "2"
    chat(oai)


def test_online_error_rate_fails_a_predictable_share(sandbox, oai):
    sandbox.set_faults(provider="openai", model="gpt-rate", online_error_rate=0.5, error_status=500)
    prompts = [f"prompt {i}" for i in range(16)]
    predicted = {p for p in prompts if hash_fraction(f"{body_digest(_body('gpt-rate', p))}:0") < 0.5}
    failed = set()
    for p in prompts:
        try:
            chat(oai, "gpt-rate", p)
        except openai.InternalServerError:
            failed.add(p)
    assert failed == predicted and 0 < len(failed) < len(prompts)
    assert sandbox.counters()["openai"]["online_failed"] == len(failed)


def _body(model: str, content: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}]}


def test_repeats_get_the_next_variant_and_faults_do_not_use_one(sandbox, oai):
    sandbox.set_faults(provider="openai", http_status=500, http_path="/chat/completions$", times=1)
    with pytest.raises(openai.InternalServerError):
        chat(oai, "gpt-repeat")
    texts = [chat(oai, "gpt-repeat").parse().choices[0].message.content for _ in range(3)]
    assert texts == [expected_reply(HI, variant=n) for n in range(3)]


def test_latency_holds_answers_back(sandbox, oai):
    sandbox.set_online_latency(5)
    hurried = oai.with_options(timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        chat(hurried)
    sandbox.set_online_latency(0)
    chat(oai)


@pytest.mark.parametrize("vendor", ["groq", "deepinfra", "nebius"])
def test_openai_compatible_vendors_have_the_endpoint_with_their_refusals(sandbox, vendor):
    client = openai.OpenAI(api_key="sk-v", base_url=getattr(sandbox, f"{vendor}_base_url"), max_retries=0)
    assert chat(client, "llama").parse().choices[0].message.content == expected_reply(HI)
    if vendor == "groq":
        with pytest.raises(openai.BadRequestError, match="logprobs"):
            chat(client, "llama", logprobs=True)
    assert sandbox.counters()[vendor]["online"] == 1 and sandbox.counters()["openai"].get("online", 0) == 0


# --- Anthropic -------------------------------------------------------------------------------


def test_anthropic_messages_shape_limits_and_overload(sandbox, ant):
    message = ant.messages.create(model="claude-haiku-4-5", max_tokens=2, messages=HI)
    assert message.content[0].text == expected_reply(HI, max_tokens=2) and message.stop_reason == "max_tokens"
    assert message.usage.service_tier == "standard"
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Field required"):
        ant.messages.with_raw_response.create(model="claude-haiku-4-5", messages=HI,
                                              extra_body={"max_tokens": None}, max_tokens=5)
    sandbox.set_rate_limit("anthropic", requests_per_minute=1, tokens_per_minute=10)
    raw = ant.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=50, messages=HI)
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "0"  # alone over 10 tokens: admitted alone
    assert raw.headers["anthropic-ratelimit-tokens-reset"].endswith("Z")
    with pytest.raises(anthropic.RateLimitError) as caught:
        ant.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=HI)
    assert caught.value.response.headers["retry-after"] == "60"
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    sandbox.clear_online()
    sandbox.set_faults(provider="anthropic", http_status=529, http_path="/v1/messages$", times=1)
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        ant.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=HI)
    assert overloaded.value.status_code == 529 and overloaded.value.body["error"]["type"] == "overloaded_error"


# --- Mistral ---------------------------------------------------------------------------------


def test_mistral_chat_complete_422_and_rate_limit(sandbox, mis):
    reply = mis.chat.complete(model="mistral-small-latest", messages=HI, max_tokens=2)
    assert reply.choices[0].message.content == expected_reply(HI, max_tokens=2)
    url = sandbox.mistral_base_url + "/v1/chat/completions"
    missing = httpx.post(url, headers={"authorization": "Bearer k"}, json={"model": "mistral-small-latest"})
    assert missing.status_code == 422
    assert missing.json()["message"]["detail"][0]["loc"] == ["body", "messages"]
    sandbox.set_rate_limit("mistral", tokens_per_minute=40)
    first = httpx.post(url, headers={"authorization": "Bearer k"},
                       json={"model": "mistral-small-latest", "messages": HI, "max_tokens": 30})
    assert first.headers["x-ratelimitbysize-remaining-minute"] == str(40 - 35)
    again = httpx.post(url, headers={"authorization": "Bearer k"},
                       json={"model": "mistral-small-latest", "messages": HI, "max_tokens": 30})
    assert again.status_code == 429 and again.headers["retry-after"] == "60"
    assert again.json() == {"object": "error", "message": "Rate limit exceeded", "type": "rate_limited",
                            "param": None, "code": "1300"}


# --- Gemini ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v1beta"])
def test_gemini_generate_content_and_its_400(sandbox, version):
    url = f"{sandbox.gemini_base_url}/{version}/models/gemini-2.5-flash:generateContent"
    headers = {"x-goog-api-key": "k"}
    ok = httpx.post(url, headers=headers, json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert ok.status_code == 200
    assert ok.json()["candidates"][0]["content"]["parts"][0]["text"] == expected_reply(HI)
    bad = httpx.post(url, headers=headers, json={"contents": []})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_gemini_429_has_its_wait_in_the_body_only(sandbox):
    url = f"{sandbox.gemini_base_url}/v1beta/models/gemini-2.5-flash:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    sandbox.set_rate_limit("gemini", "gemini-2.5-flash", requests_per_minute=1)
    httpx.post(url, headers={"x-goog-api-key": "k"}, json=body)
    sandbox.advance(12.5)
    refused = httpx.post(url, headers={"x-goog-api-key": "k"}, json=body)
    assert refused.status_code == 429 and "retry-after" not in refused.headers
    error = refused.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "47.5s"} in error["details"]


# --- the control API -------------------------------------------------------------------------


def test_control_api_sets_and_lists_online_settings(sandbox):
    control = SandboxControl(sandbox.url)
    control.set_rate_limit("openai", "gpt-x", requests_per_minute=3)
    control.set_online_latency(0.5)
    assert control.online() == {"rate_limits": [{"provider": "openai", "model": "gpt-x", "requests_per_minute": 3,
                                                 "tokens_per_minute": None}], "latency": 0.5}
    described = control.describe()
    for provider, endpoint in described["online"].items():  # each listed endpoint is served
        method, path = endpoint.split(" ")
        answer = httpx.post(sandbox.url + path.replace("{model}", "m"), headers={"authorization": "Bearer k",
                                                                                  "x-goog-api-key": "k"}, json={})
        assert answer.status_code in (400, 422), (provider, answer.text)  # an empty body refused, not a 404
    paths = {(r["method"], r["path"]) for r in described["routes"]}
    assert {("GET", "/_sandbox/online"), ("POST", "/_sandbox/online"), ("DELETE", "/_sandbox/online")} <= paths
    control.clear_online()
    assert control.online() == {"rate_limits": [], "latency": 0.0}
    with pytest.raises(Exception, match="requests_per_minute"):
        control.set_rate_limit("openai", requests_per_minute=0)


def test_online_fault_fields_round_trip_and_are_checked():
    rule = Fault(provider="openai", online_error_rate=0.25, online_error_match="^x", error_status=400)
    assert Fault.from_dict(rule.to_dict()) == rule and rule.affects_online and not rule.affects_jobs
    with pytest.raises(ValueError):
        Fault(online_error_rate=1.5)


def test_reset_durations_read_like_openai_s():
    assert [go_duration(s) for s in (0.02, 1, 50, 60, 360, 61.5)] == ["20ms", "1s", "50s", "1m0s", "6m0s", "1m1.5s"]
