"""The overnight-anthropic plugin: pure translation, options, and (through the official
``anthropic`` SDK against the sandbox) the whole Message Batches lifecycle."""

from __future__ import annotations

import pytest

import overnight_anthropic
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
from overnight_anthropic import client as anthropic_client
from overnight_anthropic import translate, wire_ids

KEY = "sk-ant-test-secret-key-123456"
CID = "0123456789abcdef0123456789abcdef01234567"  # a core key: 40 hex characters


def request(*messages: tuple[str, str], custom_id: str = CID, **params) -> ChatRequest:
    return ChatRequest(custom_id, "claude-test", [Message(r, c) for r, c in messages], GenerationParams(**params))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_CUSTOM_HEADERS"):
        monkeypatch.delenv(name, raising=False)
    anthropic_client.clear_cache()
    yield
    anthropic_client.clear_cache()


# --- declaration ----------------------------------------------------------------------------


def test_declares_real_limits_capabilities_and_params():
    (info,) = overnight_anthropic.register_providers()
    assert info.name == "anthropic"
    assert info.limits.max_requests == 100_000
    assert 250_000_000 <= info.limits.max_bytes < 256_000_000  # 256 MB, minus framing headroom
    assert info.limits.completion_window == 24 * 3600
    assert info.capabilities.cancel and info.capabilities.find_by_tag
    assert info.unsupported_params == {"seed", "temperature", "top_p"}
    assert {"thinking", "metadata", "output_config"} <= info.extra_params
    assert "ANTHROPIC_API_KEY" in info.secret_env


def test_plugin_object_declares_custom_limits():
    from overnight import Limits

    (info,) = overnight_anthropic.AnthropicPlugin(limits=Limits(max_requests=3, max_bytes=999)).register_providers()
    assert (info.limits.max_requests, info.limits.max_bytes) == (3, 999)


# --- requests -------------------------------------------------------------------------------


def test_line_separates_system_keeps_turns_and_sets_default_max_tokens():
    line = translate.build_line(
        request(("system", "be brief"), ("system", "be kind"), ("user", "hi"), ("assistant", "hello"), ("user", "and?"))
    )
    assert line == {
        "custom_id": CID,
        "params": {
            "model": "claude-test",
            "max_tokens": translate.DEFAULT_MAX_TOKENS,
            "system": "be brief\n\nbe kind",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "and?"},
            ],
        },
    }
    assert translate.DEFAULT_MAX_TOKENS == 1024


def test_line_carries_max_tokens_stop_json_schema_and_extras():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    params = translate.build_line(
        request(
            ("user", "hi"), max_tokens=7, stop=["END", "\n\n"],
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}},
            extra={"output_config": {"effort": "low"}, "thinking": {"type": "disabled"}},
        )
    )["params"]
    assert params["max_tokens"] == 7
    assert params["stop_sequences"] == ["END", "\n\n"]
    assert params["output_config"] == {"effort": "low", "format": {"type": "json_schema", "schema": schema}}
    assert params["thinking"] == {"type": "disabled"}
    assert "system" not in params and "stop" not in params and "response_format" not in params


@pytest.mark.parametrize(
    "messages, params, field",
    [
        ((("user", "hi"),), {"response_format": {"type": "json_object"}}, "response_format"),
        ((("user", "hi"),), {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
        ((("user", "hi"),), {"max_tokens": 0}, "max_tokens"),
        ((("user", "hi"),), {"stop": ["ok", ""]}, "stop"),
        ((("user", "hi"),), {"temperature": 0.5}, "temperature"),
        ((("user", "hi"),), {"seed": 1}, "seed"),
        ((("user", "hi"), ("system", "late")), {}, "messages"),
        ((("system", "only a system prompt"),), {}, "messages"),
        ((("tool", "x"),), {}, "messages"),
        (
            (("user", "hi"),),
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}},
             "extra": {"output_config": {"format": {"type": "json_schema", "schema": {}}}}},
            "response_format",
        ),
    ],
)
def test_inexpressible_requests_are_refused_with_the_field(messages, params, field):
    with pytest.raises(InvalidRequest) as exc:
        translate.build_line(request(*messages, **params))
    assert exc.value.field == field


def test_custom_id_must_be_a_core_key():
    with pytest.raises(InvalidRequest) as exc:
        translate.build_line(request(("user", "hi"), custom_id="not hex!"))
    assert exc.value.field == "custom_id"


# --- wire ids -------------------------------------------------------------------------------


def test_wire_ids_carry_the_tag_fit_anthropic_and_round_trip():
    import re

    wire = wire_ids.encode("ovn-0123456789abcdef01234567", CID)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", wire) and len(wire) == 43
    assert wire_ids.decode(wire) == CID
    assert wire_ids.carries(wire, "ovn-0123456789abcdef01234567")
    assert not wire_ids.carries(wire, "ovn-0123456789abcdef01234568")
    assert wire_ids.encode("t", "ff" * 24)  # the longest key that fits in 64 characters
    assert not wire_ids.encodable("ff" * 37)
    assert wire_ids.decode("short") is None


# --- results --------------------------------------------------------------------------------


def test_succeeded_result_joins_text_blocks_with_usage_and_stop_reason():
    line = {
        "custom_id": "w",
        "result": {
            "type": "succeeded",
            "message": {
                "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
                "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "Hel"},
                            {"type": "text", "text": "lo"}],
                "stop_reason": "max_tokens", "stop_sequence": None,
                "usage": {"input_tokens": 3, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 2,
                          "output_tokens": 5, "service_tier": "batch"},
            },
        },
    }
    result = translate.result_from_line(line, CID)
    assert result.status is ResultStatus.SUCCEEDED and result.custom_id == CID
    assert result.text == "Hello"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (15, 5)
    assert result.finish_reason == "max_tokens"
    assert result.raw == line


def test_errored_result_reports_the_inner_error_of_the_envelope():
    line = {"custom_id": "w", "result": {"type": "errored", "error": {
        "type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_1"}}}
    result = translate.result_from_line(line, CID)
    assert result.status is ResultStatus.ERRORED
    assert result.error == "overloaded_error: Overloaded"


@pytest.mark.parametrize("kind", ["canceled", "expired"])
def test_canceled_and_expired_results_are_unfinished(kind):
    result = translate.result_from_line({"custom_id": "w", "result": {"type": kind}}, CID)
    assert result.status is ResultStatus.UNFINISHED and kind in result.error


def test_unknown_result_type_is_an_error_not_a_success():
    assert translate.result_from_line({"custom_id": "w", "result": {"type": "new"}}, CID).status is ResultStatus.ERRORED


# --- statuses -------------------------------------------------------------------------------


def batch(status, **counts):
    base = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    return {"id": "msgbatch_1", "processing_status": status, "request_counts": {**base, **counts}}


@pytest.mark.parametrize(
    "doc, state",
    [
        (batch("in_progress", processing=5), JobState.RUNNING),
        (batch("canceling", processing=5), JobState.RUNNING),
        (batch("some_future_status", processing=5), JobState.RUNNING),
        (batch("ended", succeeded=4, errored=1), JobState.FINISHED),
        (batch("ended", succeeded=2, expired=3), JobState.EXPIRED),
        (batch("ended", succeeded=2, canceled=3), JobState.CANCELLED),
        (batch("ended", succeeded=1, canceled=1, expired=3), JobState.EXPIRED),
    ],
)
def test_status_mapping(doc, state):
    status = translate.job_status(doc)
    assert status.state is state
    assert status.total == 5
    assert status.raw_status == doc["processing_status"]


def test_ended_counts_are_reported():
    status = translate.job_status(batch("ended", succeeded=4, errored=1))
    assert (status.total, status.completed, status.failed) == (5, 4, 1)


# --- options --------------------------------------------------------------------------------


def test_missing_key_names_the_environment_variable():
    with pytest.raises(MissingCredentials, match="ANTHROPIC_API_KEY"):
        anthropic_client.validate({})


def test_key_from_option_or_environment(monkeypatch):
    anthropic_client.validate({"api_key": KEY})
    anthropic_client.validate({"auth_token": KEY})
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    anthropic_client.validate({})


@pytest.mark.parametrize(
    "options, words",
    [
        ({"api_key": KEY, "organization": "x"}, "organization"),
        ({"api_key": KEY, "base_url": "http://127.0.0.1:1/anthropic/v1"}, "/v1"),
        ({"api_key": KEY, "base_url": "localhost:8080"}, "http"),
        ({"api_key": KEY, "timeout": -1}, "timeout"),
        ({"api_key": KEY, "max_retries": 1.5}, "max_retries"),
        ({"api_key": KEY, "auth_token": "t"}, "either"),
    ],
)
def test_bad_options_are_configuration_errors(options, words):
    with pytest.raises(ConfigurationError, match=words) as exc:
        anthropic_client.validate(options)
    assert KEY not in str(exc.value)


def test_base_url_from_environment_is_checked_too(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "https://api.anthropic.com/v1/")
    with pytest.raises(ConfigurationError, match="ANTHROPIC_BASE_URL"):
        anthropic_client.validate({"api_key": KEY})


def test_client_is_built_once_per_options_and_honours_environment(monkeypatch):
    one = anthropic_client.client({"api_key": KEY, "base_url": "http://127.0.0.1:9"})
    assert anthropic_client.client({"api_key": KEY, "base_url": "http://127.0.0.1:9"}) is one
    assert anthropic_client.client({"api_key": KEY, "base_url": "http://127.0.0.1:8"}) is not one
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:7")
    from_env = anthropic_client.client({})
    assert from_env.api_key == "sk-from-env" and str(from_env.base_url).startswith("http://127.0.0.1:7")
