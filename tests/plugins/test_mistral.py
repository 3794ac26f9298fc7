"""The overnight-mistral plugin: pure translation, options, and (through the official
``mistralai`` SDK against the sandbox) the whole batch lifecycle."""

from __future__ import annotations

import pytest

import overnight_mistral
from overnight import (
    ChatRequest,
    ConfigurationError,
    GenerationParams,
    InvalidRequest,
    JobState,
    Message,
    MissingCredentials,
    ResultStatus,
)
from overnight_mistral import options as opts
from overnight_mistral import translate

KEY = "mi-test-secret-key-123456"


def request(*messages: tuple[str, str], **params) -> ChatRequest:
    return ChatRequest("cid-1", "mistral-small-latest", [Message(r, c) for r, c in messages], GenerationParams(**params))


@pytest.fixture(autouse=True)
def _fresh_clients(monkeypatch):
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    monkeypatch.delenv("MISTRAL_BASE_URL", raising=False)
    opts.clear_clients()
    yield
    opts.clear_clients()


# --- declaration ----------------------------------------------------------------------------


def test_declares_real_limits_capabilities_and_secret_env():
    (info,) = overnight_mistral.register_providers()
    assert info.name == "mistral"
    assert info.limits.max_requests == 100_000
    assert info.limits.max_bytes == 512 * 1024 * 1024
    assert info.capabilities.cancel and info.capabilities.find_by_tag
    assert info.secret_env == ("MISTRAL_API_KEY",)
    assert {"presence_penalty", "frequency_penalty", "safe_prompt"} <= info.extra_params
    assert "n" not in info.extra_params  # one request per generation, never several choices


# --- requests -------------------------------------------------------------------------------


def test_line_carries_system_prompt_multi_turn_and_every_option_without_model():
    line = translate.build_line(
        request(
            ("system", "be brief"), ("user", "hi"), ("assistant", "hello"), ("user", "and?"),
            max_tokens=7, temperature=0.2, top_p=0.9, stop=["END", "\n\n"], seed=11,
            extra={"safe_prompt": True},
        )
    )
    assert line == {
        "custom_id": "cid-1",
        "body": {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "and?"},
            ],
            "max_tokens": 7, "temperature": 0.2, "top_p": 0.9, "stop": ["END", "\n\n"],
            "random_seed": 11, "safe_prompt": True,
        },
    }


def test_json_schema_is_sent_in_mistral_shape():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    line = translate.build_line(
        request(("user", "x"), response_format={"type": "json_schema", "json_schema": {"schema": schema, "strict": True, "x-openai": 1}})
    )
    assert line["body"]["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "response", "schema": schema, "strict": True},
    }
    json_mode = translate.build_line(request(("user", "x"), response_format={"type": "json_object"}))
    assert json_mode["body"]["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(
    ("req", "field"),
    [
        (request(("user", "x"), response_format={"type": "grammar"}), "response_format"),
        (request(("user", "x"), response_format={"type": "json_schema", "json_schema": {"name": "n"}}), "response_format"),
        (request(("user", "q"), ("assistant", "prefill")), "messages"),
        (request(("tool", "q")), "messages"),
        (request(), "messages"),
        (request(("user", "x"), stop=[""]), "stop"),
    ],
)
def test_requests_mistral_cannot_express_are_refused_with_the_field(req, field):
    with pytest.raises(InvalidRequest) as exc:
        translate.build_line(req)
    assert exc.value.field == field


# --- statuses and results -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("QUEUED", JobState.RUNNING), ("RUNNING", JobState.RUNNING),
        ("CANCELLATION_REQUESTED", JobState.RUNNING), ("SUCCESS", JobState.FINISHED),
        ("FAILED", JobState.FAILED), ("TIMEOUT_EXCEEDED", JobState.EXPIRED),
        ("CANCELLED", JobState.CANCELLED), ("SOMETHING_NEW", JobState.RUNNING),
    ],
)
def test_status_mapping(status, state):
    assert translate.job_state(status) is state


def ok_line(cid="a", content="hello", finish="stop"):
    return {
        "id": "b-1", "custom_id": cid, "error": None,
        "response": {"status_code": 200, "body": {
            "id": "cmpl-1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        }},
    }


def test_success_line_has_text_usage_and_finish_reason():
    result = translate.parse_line(ok_line(finish="length"), JobState.FINISHED)
    assert result.status is ResultStatus.SUCCEEDED
    assert (result.custom_id, result.text, result.finish_reason) == ("a", "hello", "length")
    assert (result.usage.input_tokens, result.usage.output_tokens) == (5, 2)
    assert result.raw["id"] == "cmpl-1"


def test_chunked_content_becomes_text():
    parts = [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}, {"type": "text", "text": "answer"}]
    assert translate.parse_line(ok_line(content=parts), JobState.FINISHED).text == "answer"


def test_error_lines_are_errors_or_unfinished_by_what_happened():
    failed = {"custom_id": "b", "response": {"status_code": 429, "body": None}, "error": "rate limited"}
    result = translate.parse_line(failed, JobState.FINISHED)
    assert result.status is ResultStatus.ERRORED and result.error == "HTTP 429: rate limited"
    # A request that did run and fail stays an error even in an expired job...
    assert translate.parse_line(failed, JobState.EXPIRED).status is ResultStatus.ERRORED
    # ...but one the job never ran is resubmitted.
    never_ran = {"custom_id": "c", "response": None, "error": "job timed out"}
    assert translate.parse_line(never_ran, JobState.EXPIRED).status is ResultStatus.UNFINISHED
    assert translate.parse_line(never_ran, JobState.CANCELLED).status is ResultStatus.UNFINISHED
    assert translate.parse_line(never_ran, JobState.FINISHED).status is ResultStatus.ERRORED
    http_500 = {"custom_id": "d", "response": {"status_code": 500, "body": {"message": "boom"}}, "error": None}
    assert translate.parse_line(http_500, JobState.FINISHED).status is ResultStatus.ERRORED


def test_job_failure_message_joins_errors():
    assert translate.job_failure([{"message": "bad line 3", "count": 2}, {"message": "x"}]) == "bad line 3 (x2); x"
    assert translate.job_failure([]) is None


# --- options --------------------------------------------------------------------------------


def test_missing_key_names_the_env_var():
    with pytest.raises(MissingCredentials, match="MISTRAL_API_KEY"):
        overnight_mistral.validate_options("mistral", {})


def test_unknown_and_malformed_options_are_configuration_errors():
    with pytest.raises(ConfigurationError, match="unknown mistral client option.*organization"):
        opts.resolve({"api_key": KEY, "organization": "x"})
    with pytest.raises(ConfigurationError, match="adds /v1 itself"):
        opts.resolve({"api_key": KEY, "base_url": "https://api.mistral.ai/v1"})
    with pytest.raises(ConfigurationError, match="max_retries"):
        opts.resolve({"api_key": KEY, "max_retries": -1})
    with pytest.raises(ConfigurationError, match="server"):
        opts.resolve({"api_key": KEY, "server": "mars"})


def test_environment_gives_key_and_base_url(monkeypatch):
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    monkeypatch.setenv("MISTRAL_BASE_URL", "http://127.0.0.1:9/mistral/")
    settings = opts.resolve({"timeout": 2.5})
    assert (settings.api_key, settings.server_url, settings.timeout_ms) == (KEY, "http://127.0.0.1:9/mistral", 2500)
    assert KEY not in repr(settings)
    assert opts.resolve({"api_key": "other", "base_url": "http://h:1"}).server_url == "http://h:1"


def test_one_client_per_option_set_with_retries_configured():
    first = opts.client(opts.resolve({"api_key": KEY, "base_url": "http://127.0.0.1:9"}))
    assert opts.client(opts.resolve({"api_key": KEY, "base_url": "http://127.0.0.1:9"})) is first
    assert opts.client(opts.resolve({"api_key": KEY, "base_url": "http://127.0.0.1:10"})) is not first
    config = first.sdk_configuration
    assert config.server_url == "http://127.0.0.1:9"
    assert config.retry_config.strategy == "backoff" and config.retry_config.retry_connection_errors
    assert opts.retry_budget_ms(0) == 0 < opts.retry_budget_ms(1) < opts.retry_budget_ms(3)
