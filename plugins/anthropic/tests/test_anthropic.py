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
    yield


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
    # The SDK's transform_schema closes every object, as structured outputs require.
    closed = {**schema, "additionalProperties": False}
    assert params["output_config"] == {"effort": "low", "format": {"type": "json_schema", "schema": closed}}
    assert params["thinking"] == {"type": "disabled"}
    assert "system" not in params and "stop" not in params and "response_format" not in params


@pytest.mark.parametrize(
    "messages, params, field",
    [
        ((("user", "hi"),), {"response_format": {"type": "json_object"}}, "response_format"),
        ((("user", "hi"),), {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
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


def test_connect_builds_one_client_on_first_use_and_honours_environment(monkeypatch):
    connection = overnight_anthropic.connect("anthropic", {"api_key": KEY, "base_url": "http://127.0.0.1:9"})
    assert KEY not in repr(connection) and KEY not in repr(connection.settings)
    assert connection.sdk is connection.sdk
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:7")
    from_env = anthropic_client.client({})
    assert from_env.api_key == "sk-from-env" and str(from_env.base_url).startswith("http://127.0.0.1:7")


# --- through the SDK against the sandbox ------------------------------------------------------

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from overnight import (  # noqa: E402
    LLM,
    Limits,
    LoadDataFromDicts,
    OfflineBatchGenerationNotFinished,
    Pipeline,
    PipelineNotFinished,
    ProviderError,
    TextGeneration,
    ValidationError,
)
from overnight.executor import PlannedRequest  # noqa: E402
from overnight.store import Store  # noqa: E402

MODEL = "claude-test"
PROMPTS = [f"question number {i}" for i in range(10)]
LATER = 3600  # sandbox seconds after which any unfaulted batch has ended


@pytest.fixture
def sb(tmp_path):
    from overnight.sandbox import Sandbox

    with Sandbox(state_dir=tmp_path / "sandbox") as sandbox:
        yield sandbox


@pytest.fixture
def plugin(registry):
    """The plugin module registered alone, as the entry point would register it."""
    registry.register(overnight_anthropic, name="anthropic")
    return overnight_anthropic


def small_plugin(registry_cls_limits):
    from overnight.plugins import PluginRegistry, set_registry

    set_registry(PluginRegistry([overnight_anthropic.AnthropicPlugin(limits=registry_cls_limits)], entrypoints=False))


def llm_for(sb, **kwargs):
    kwargs.setdefault("api_key", KEY)
    kwargs.setdefault("max_retries", 0)
    return LLM(f"anthropic/{MODEL}", base_url=sb.anthropic_base_url, **kwargs)


def chat(prompt, system=None, history=()):
    messages = ([Message("system", system)] if system else []) + [Message(r, c) for r, c in history]
    return messages + [Message("user", prompt)]


def plan(prompts, samples=1, **chat_kwargs):
    return [
        PlannedRequest(row=i, sample=s, request=ChatRequest("", MODEL, chat(p, **chat_kwargs)))
        for i, p in enumerate(prompts)
        for s in range(samples)
    ]


def generate(llm, prompts=PROMPTS, *, plan_id="plan-1", samples=1, **chat_kwargs):
    store = Store.open()
    try:
        return list(
            llm.generate_offline(plan(prompts, samples, **chat_kwargs), store=store, step="gen", plan_id=plan_id)
        )
    finally:
        store.close()


def counters(sb):
    return sb.counters()["anthropic"]


def reply(prompt, **kwargs):
    from overnight.sandbox import expected_reply

    system = kwargs.pop("system", None)
    history = [{"role": r, "content": c} for r, c in kwargs.pop("history", ())]
    return expected_reply(history + [{"role": "user", "content": prompt}], system=system, **kwargs)


def sdk(sb):
    import anthropic

    return anthropic.Anthropic(api_key=KEY, base_url=sb.anthropic_base_url, max_retries=0)


def test_submit_not_finished_resume_then_results_in_order(sb, plugin):
    llm = llm_for(sb)
    with pytest.raises(OfflineBatchGenerationNotFinished) as first:
        generate(llm)
    assert first.value.counts["pending"] == 10 and len(first.value.jobs_ids) == 1
    assert first.value.jobs_ids[0].startswith("msgbatch_")
    sb.advance(10)  # validated, still processing
    with pytest.raises(OfflineBatchGenerationNotFinished) as second:
        generate(llm)
    assert second.value.jobs_ids == first.value.jobs_ids
    sb.advance(LATER)
    results = generate(llm)
    assert [r.row for r in results] == list(range(10))
    assert [r.result.text for r in results] == [reply(p) for p in PROMPTS]
    for r in results:
        assert r.result.finish_reason == "end_turn"
        assert r.result.usage.input_tokens > 0 and r.result.usage.output_tokens > 0
        assert r.result.raw["result"]["type"] == "succeeded"
        # Stored once, in the text's column, and put back into the raw answer read back.
        assert r.result.raw["result"]["message"]["content"][0]["text"] == r.result.text
    assert counters(sb)["jobs"] == 1 and counters(sb)["requests"] == 10
    # The batch went out with tagged wire ids, one per request, never the bare core keys.
    client = sdk(sb)  # held: a client collected mid-download closes the socket under the stream
    (batch,) = client.messages.batches.list()
    ids = [entry.custom_id for entry in client.messages.batches.results(batch.id)]
    assert all(len(i) == 43 and wire_ids.decode(i) for i in ids) and len(set(ids)) == 10


def test_pipeline_resumes_and_returns_every_row(sb, plugin):
    rows = [{"instruction": p, "id": i} for i, p in enumerate(PROMPTS)]

    def build():
        with Pipeline(name="anthropic-answers") as p:
            load = LoadDataFromDicts(name="load", data=rows)
            gen = TextGeneration(name="gen", llm=llm_for(sb, generation_kwargs={"max_tokens": 64}),
                                 system_prompt="Be brief.")
            load >> gen
        return p

    with pytest.raises(PipelineNotFinished):
        build().run()
    with pytest.raises(PipelineNotFinished):
        build().run()
    sb.advance(LATER)
    ds = build().run()
    assert [row["id"] for row in ds] == list(range(10))
    for row in ds:
        assert row["generation"] == reply(row["instruction"], system="Be brief.", max_tokens=64)
        assert row["generation_error"] is None
        assert (row["generation_finish_reason"], row["generation_finish_reason_raw"]) == ("stop", "end_turn")
        assert row["generation_usage"]["output_tokens"] > 0
    assert counters(sb)["jobs"] == 1


def test_request_options_reach_the_model(sb, plugin):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    history = (("user", "earlier question"), ("assistant", "earlier answer"))
    cases = {
        "plain": ({}, {}),
        "short": ({"max_tokens": 3}, {"max_tokens": 3}),
        "stop": ({"stop": ["number"]}, {"stop": ["number"]}),
        "json": (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}},
            {"response_format": {"type": "json_schema", "json_schema": {"schema": schema}}},
        ),
    }
    for name, (kwargs, _) in cases.items():
        with pytest.raises(OfflineBatchGenerationNotFinished):
            generate(llm_for(sb, generation_kwargs=kwargs), PROMPTS[:2], plan_id=name, samples=2,
                     system="You are terse.", history=history)
    assert counters(sb)["requests"] == 4 * 2 * 2  # num_generations=2: one request per sample
    sb.advance(LATER)
    finish = {"plain": "end_turn", "short": "max_tokens", "stop": "stop_sequence", "json": "end_turn"}
    for name, (kwargs, expect) in cases.items():
        results = generate(llm_for(sb, generation_kwargs=kwargs), PROMPTS[:2], plan_id=name, samples=2,
                           system="You are terse.", history=history)
        assert [(r.row, r.sample) for r in results] == [(0, 0), (0, 1), (1, 0), (1, 1)]
        for r in results:
            assert r.result.text == reply(PROMPTS[r.row], system="You are terse.", history=history, **expect,
                                          variant=r.sample)
            assert r.result.finish_reason == finish[name]
    assert json.loads(results[0].result.text) == {"answer": reply(PROMPTS[0], system="You are terse.", history=history)}


def test_unsupported_options_are_refused_before_any_request(sb, plugin):
    cases = [({"temperature": 0.2}, "temperature"), ({"top_p": 0.9}, "top_p"), ({"seed": 7}, "seed"),
             ({"top_k": 5}, "top_k"), ({"response_format": {"type": "json_object"}}, "response_format")]
    for kwargs, field in cases:
        with pytest.raises(ValidationError) as exc:
            generate(llm_for(sb, generation_kwargs=kwargs))
        assert {p.field for p in exc.value.problems} == {field}
    assert counters(sb)["http"] == {}


def test_request_errors_are_retried_then_become_error_rows(sb, plugin):
    sb.set_faults(provider="anthropic", error_rate=1.0, error_status=529)  # every request, every time
    llm = llm_for(sb, max_attempts=2)
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(llm, PROMPTS[:4])
    sb.advance(LATER)
    with pytest.raises(OfflineBatchGenerationNotFinished):  # all errored: retried in a new batch
        generate(llm, PROMPTS[:4])
    sb.advance(LATER)
    results = generate(llm, PROMPTS[:4])
    assert counters(sb)["jobs"] == 2 and counters(sb)["requests"] == 8
    assert [r.row for r in results] == [0, 1, 2, 3]
    for r in results:
        assert not r.result.ok and r.result.text is None
        assert r.result.error.startswith("overloaded_error: ")  # the inner error of the envelope


def test_failed_requests_succeed_on_retry(sb, plugin):
    sb.set_faults(provider="anthropic", error_rate=1.0, times=1)  # the first batch only
    llm = llm_for(sb)
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(llm)
    sb.advance(LATER)
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(llm)
    sb.advance(LATER)
    assert [r.result.text for r in generate(llm)] == [reply(p) for p in PROMPTS]
    assert counters(sb)["jobs"] == 2


def test_expired_batch_keeps_finished_rows_and_resubmits_the_rest_once(sb, plugin):
    sb.set_faults(provider="anthropic", expire_after_fraction=0.5, times=1)
    llm = llm_for(sb)
    with pytest.raises(OfflineBatchGenerationNotFinished) as first:
        generate(llm)
    sb.advance(LATER)
    status = plugin.check("anthropic", _ref(first.value.jobs_ids[0]),
                          plugin.connect("anthropic", {"api_key": KEY, "base_url": sb.anthropic_base_url}), None)
    assert status.state is JobState.EXPIRED and status.completed == 5 and status.total == 10
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(llm)
    assert counters(sb)["jobs"] == 2 and counters(sb)["requests"] == 15  # only the 5 expired went again
    sb.advance(LATER)
    assert [r.result.text for r in generate(llm)] == [reply(p) for p in PROMPTS]
    assert counters(sb)["jobs"] == 2


def _ref(remote_id):
    from overnight import JobRef

    return JobRef(provider="anthropic", remote_id=remote_id, tag="t", data=jobs_ref_data())


def jobs_ref_data():
    from overnight_anthropic import jobs

    return dict(jobs.REF_DATA)


def test_cancel_keeps_finished_rows_and_resubmits_the_rest(sb, plugin):
    llm = llm_for(sb)
    with pytest.raises(OfflineBatchGenerationNotFinished) as first:
        generate(llm)
    sb.advance(5 + 15)  # validated, half of the processing span done
    options = {"api_key": KEY, "base_url": sb.anthropic_base_url}
    from overnight.plugins import get_registry

    provider = get_registry().provider("anthropic")
    ref = _ref(first.value.jobs_ids[0])
    provider.cancel(ref, options)
    assert provider.check(ref, options).raw_status == "canceling"
    sb.advance(LATER)
    status = provider.check(ref, options)
    assert status.state is JobState.CANCELLED and status.completed == 5
    provider.cancel(ref, options)  # cancelling an ended batch is a no-op, not an error
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(llm)
    assert counters(sb)["requests"] == 15
    sb.advance(LATER)
    assert [r.result.text for r in generate(llm)] == [reply(p) for p in PROMPTS]


def test_dataset_over_the_limits_is_split_into_several_batches(sb, registry):
    small_plugin(Limits(max_requests=4, max_bytes=10_000_000))
    llm = llm_for(sb)
    with pytest.raises(OfflineBatchGenerationNotFinished) as exc:
        generate(llm)
    assert len(exc.value.jobs_ids) == 3
    sizes = sorted(b.request_counts.processing for b in sdk(sb).messages.batches.list())
    assert sizes == [2, 4, 4]
    sb.advance(LATER)
    assert [r.result.text for r in generate(llm)] == [reply(p) for p in PROMPTS]


def test_byte_limit_splits_batches_too(sb, registry):
    line = translate.build_line(ChatRequest(CID, MODEL, chat(PROMPTS[0])))
    size = len(json.dumps(line, separators=(",", ":")).encode()) + 1  # every prompt has the same length
    small_plugin(Limits(max_requests=1000, max_bytes=3 * size + 1))
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(llm_for(sb))
    assert sorted(b.request_counts.processing for b in sdk(sb).messages.batches.list()) == [1, 3, 3, 3]


def test_truncated_results_download_is_fetched_again_not_resubmitted(sb, plugin):
    llm = llm_for(sb)
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(llm)
    sb.advance(LATER)
    sb.set_faults(provider="anthropic", download_truncate=0.5, times=1)
    with pytest.raises(Exception):  # noqa: B017  (whatever the SDK raises for a cut stream)
        generate(llm)
    assert [r.result.text for r in generate(llm)] == [reply(p) for p in PROMPTS]
    assert counters(sb)["jobs"] == 1


CRASHING_RUN = """
import sys
import overnight_anthropic
from overnight import LLM, ChatRequest, Message
from overnight.executor import PlannedRequest
from overnight.plugins import PluginRegistry, set_registry
from overnight.store import Store

set_registry(PluginRegistry([overnight_anthropic], entrypoints=False))
prompts = [f"question number {i}" for i in range(10)]
planned = [PlannedRequest(row=i, sample=0, request=ChatRequest("", "m", [Message("user", p)]))
           for i, p in enumerate(prompts)]
llm = LLM("anthropic/claude-test", base_url=sys.argv[1], max_retries=0)
list(llm.generate_offline(planned, store=Store.open(), step="gen", plan_id="plan-1"))
"""


def crash_at(point, sb, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    env = {**os.environ, "OVERNIGHT_FAULT_POINT": point}
    proc = subprocess.run([sys.executable, "-c", CRASHING_RUN, sb.anthropic_base_url], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr  # SIGKILLed at the fault point


def test_crash_after_create_is_found_by_tag_and_not_paid_twice(sb, plugin, monkeypatch):
    crash_at("after_create", sb, monkeypatch)
    assert counters(sb)["jobs"] == 1
    llm = LLM(f"anthropic/{MODEL}", base_url=sb.anthropic_base_url, max_retries=0)  # key from the environment
    # Its request ids are unreadable while the batch runs: stop, do not resubmit.
    with pytest.raises(ProviderError, match="cannot tell yet") as exc:
        generate(llm)
    assert "Run again" in str(exc.value)
    assert counters(sb)["jobs"] == 1
    sb.advance(LATER)
    assert [r.result.text for r in generate(llm)] == [reply(p) for p in PROMPTS]
    assert counters(sb)["jobs"] == 1


def test_crash_before_create_resubmits_once_all_batches_have_ended(sb, plugin, monkeypatch):
    crash_at("after_intent", sb, monkeypatch)
    assert counters(sb)["jobs"] == 0
    llm = LLM(f"anthropic/{MODEL}", base_url=sb.anthropic_base_url, max_retries=0)
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(llm)  # nothing in the workspace carries the tag: submitted now, once
    assert counters(sb)["jobs"] == 1
    sb.advance(LATER)
    assert [r.result.text for r in generate(llm)] == [reply(p) for p in PROMPTS]


def test_find_job_cannot_tell_while_another_batch_runs(sb, plugin):
    options = {"api_key": KEY, "base_url": sb.anthropic_base_url}
    assert plugin.find_job("anthropic", "ovn-never-submitted", plugin.connect("anthropic", options), None) is None  # empty workspace
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(llm_for(sb))
    with pytest.raises(ProviderError, match="1 batch"):
        plugin.find_job("anthropic", "ovn-never-submitted", plugin.connect("anthropic", options), None)
    sb.advance(LATER)
    assert plugin.find_job("anthropic", "ovn-never-submitted", plugin.connect("anthropic", options), None) is None


def test_refused_create_is_retried_at_once_without_a_lookup(sb, plugin):
    sb.set_faults(provider="anthropic", fail_validation=True, times=1)
    llm = llm_for(sb)
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(llm)  # refused, counted as an attempt, created on the second try
    assert counters(sb)["jobs"] == 1
    assert counters(sb)["http"]["POST /v1/messages/batches"] == 2
    # One listing: the lookup for jobs to adopt before the first submit; no find_job needed.
    assert counters(sb)["http"]["GET /v1/messages/batches"] == 1
    sb.advance(LATER)
    assert all(r.result.ok for r in generate(llm))


def test_missing_key_stops_before_any_request(sb, plugin):
    with pytest.raises(MissingCredentials, match="ANTHROPIC_API_KEY"):
        generate(LLM(f"anthropic/{MODEL}", base_url=sb.anthropic_base_url))
    assert counters(sb)["http"] == {} and counters(sb)["jobs"] == 0


def test_key_never_reaches_the_store(sb, plugin, overnight_home, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "sk-ant-env-token-987654")
    llm = llm_for(sb)
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(llm)
    sb.advance(LATER)
    generate(llm)
    files = [p for p in overnight_home.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert KEY.encode() not in data and b"sk-ant-env-token-987654" not in data


def test_results_are_streamed_lazily(sb, plugin):
    with pytest.raises(OfflineBatchGenerationNotFinished) as exc:
        generate(llm_for(sb))
    sb.advance(LATER)
    options = {"api_key": KEY, "base_url": sb.anthropic_base_url}
    results = plugin.fetch("anthropic", _ref(exc.value.jobs_ids[0]), plugin.connect("anthropic", options), None)
    downloads = "GET /v1/messages/batches/{batch_id}/results"
    assert downloads not in counters(sb)["http"]  # a generator: nothing is fetched before iteration
    first = next(iter(results))
    assert first.ok and wire_ids.encodable(first.custom_id)  # the core's key, decoded from the wire id
    results.close()  # a consumer that stops early releases the stream
    assert counters(sb)["http"][downloads] == 1
    assert len(list(plugin.fetch("anthropic", _ref(exc.value.jobs_ids[0]), plugin.connect("anthropic", options), None))) == 10


def test_relative_results_url_is_joined_to_the_base_url(tmp_path, plugin):
    from overnight.sandbox import Sandbox

    with Sandbox(state_dir=tmp_path / "relative", results_url="relative") as relative:
        llm = llm_for(relative)
        with pytest.raises(OfflineBatchGenerationNotFinished):
            generate(llm)
        relative.advance(LATER)
        assert [r.result.text for r in generate(llm)] == [reply(p) for p in PROMPTS]


def test_create_is_not_retried_blindly_after_a_server_error(sb, plugin):
    # The batch may exist although the call failed: no second create in the same run.
    sb.set_faults(provider="anthropic", http_status=500, http_method="POST", http_path="/v1/messages/batches$", times=1)
    with pytest.raises(ProviderError, match="InternalServerError"):
        generate(llm_for(sb))
    assert counters(sb)["http"]["POST /v1/messages/batches"] == 1


def test_create_is_retried_after_a_rate_limit(sb, plugin):
    sb.set_faults(provider="anthropic", http_status=429, retry_after=0, http_method="POST",
                  http_path="/v1/messages/batches$", times=1)
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(llm_for(sb, max_retries=1))
    assert counters(sb)["http"]["POST /v1/messages/batches"] == 2 and counters(sb)["jobs"] == 1


def test_results_cut_between_two_lines_are_read_again_not_paid_twice(sb, plugin):
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(llm_for(sb))
    sb.advance(LATER)
    sb.set_faults(provider="anthropic", download_truncate=0.5, download_truncate_mode="short", times=1)
    results = generate(llm_for(sb))
    assert all(r.result.ok for r in results) and counters(sb)["jobs"] == 1
    assert counters(sb)["http"]["GET /v1/messages/batches/{batch_id}/results"] == 2


def test_list_jobs_reads_the_keys_of_ended_batches_only(sb, plugin):
    options = {"api_key": KEY, "base_url": sb.anthropic_base_url}
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(llm_for(sb))
    [running] = plugin.list_jobs("anthropic", plugin.connect("anthropic", options), 3600.0, 100, frozenset(), frozenset())
    assert running.custom_ids is None and running.state is JobState.RUNNING  # ids unreadable yet
    sb.advance(LATER)
    store = Store.open()
    try:
        keys = {row["key"] for row in store._query("SELECT key FROM requests")}
        [job] = store.list_jobs()
    finally:
        store.close()
    [ended] = plugin.list_jobs("anthropic", plugin.connect("anthropic", options), 3600.0, 100, frozenset(), frozenset())
    assert ended.custom_ids == keys and ended.ref.data == {"ids": "tagged-v1"}
    assert ended.ref.tag == ""  # only the digest travels: a tag is recognised, not read
    [other] = plugin.list_jobs("anthropic", plugin.connect("anthropic", options), 3600.0, 100, frozenset(), frozenset({"ovn-other"}))
    assert other.ref.tag == "" and other.custom_ids is None  # looking for another tag: not read
    [skipped] = plugin.list_jobs("anthropic", plugin.connect("anthropic", options), 3600.0, 100, frozenset({ended.ref.remote_id}),
                                 frozenset({job["tag"]}))
    assert skipped.custom_ids is None and skipped.ref.tag == job["tag"]
