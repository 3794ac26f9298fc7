"""The overnight-openai plugin, through the official ``openai`` SDK against the sandbox.

Every test runs a fresh sandbox (manual clock: jobs move only with ``sb.advance``) and
an isolated plugin registry holding only this plugin. A few pure tests cover the
translation of requests, result lines and batch statuses.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace
from typing import Any

import httpx2
import openai
import pytest

import overnight_openai
from overnight.plugin_testing import generate, pending, planned
from overnight import (
    LLM,
    ChatRequest,
    ConfigurationError,
    GenerationParams,
    InvalidRequest,
    JobState,
    Limits,
    LoadDataFromDicts,
    Message,
    MissingCredentials,
    OfflineBatchGenerationNotFinished,
    Pipeline,
    PipelineNotFinished,
    ProviderError,
    ResultStatus,
    TextGeneration,
    ValidationError,
)
from overnight.executor import PlannedRequest
from overnight.plugins import PluginRegistry, set_registry
from overnight.sandbox import Sandbox, expected_reply
from overnight.store import Store
from overnight_openai import OpenAIPlugin, jobs, translate

KEY = "sk-test-openai-plugin-0123456789"
MODEL = "gpt-4o-mini"  # for the pure tests; sandbox tests use a model per test
PROMPTS = [f"question number {i}" for i in range(25)]
DONE = 3600  # sandbox seconds after which a default job is over


# --- fixtures and helpers -------------------------------------------------------------


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """No real key, URL or limit from the developer's shell reaches a test."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID",
                "OVERNIGHT_OPENAI_MAX_REQUESTS", "OVERNIGHT_OPENAI_MAX_BYTES", "OVERNIGHT_FAULT_POINT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One sandbox for the module: starting and stopping one per test would triple the runtime."""
    with Sandbox(state_dir=tmp_path_factory.mktemp("sandbox")) as sandbox:
        yield sandbox


class Lane:
    """One test's view of the shared sandbox: its own model name, batches and counters.

    Job faults select this lane's model; HTTP faults cannot, so they are cleared after
    the test. Counters are deltas since the test started.
    """

    def __init__(self, server: Sandbox, model: str) -> None:
        self.server = server
        self.model = model
        self.openai_base_url = server.openai_base_url
        self._start = server.counters()["openai"]
        self.client = openai.OpenAI(api_key=KEY, base_url=server.openai_base_url, max_retries=0)

    def advance(self, seconds: float) -> None:
        self.server.advance(seconds)

    def set_faults(self, **fields: Any) -> None:
        if "http_status" not in fields:
            fields.setdefault("model", self.model)
        self.server.set_faults(provider="openai", **fields)

    def counters(self) -> dict[str, Any]:
        now = self.server.counters()["openai"]
        delta = {k: now[k] - self._start[k] for k in ("files", "jobs", "requests")}
        http = {k: n - self._start["http"].get(k, 0) for k, n in now["http"].items()}
        delta["http"] = {k: n for k, n in http.items() if n}
        return delta


@pytest.fixture
def sb(server, request):
    name = request.node.name.replace("[", "-").replace("]", "")[-40:]
    yield Lane(server, f"gpt-test-{name}")
    server.clear_faults()


@pytest.fixture
def openai_plugin(registry):
    """The installed module itself (as its entry point registers it), in this test's registry."""
    registry.register(overnight_openai, name="openai")
    return registry


def use_plugin(plugin: Any) -> None:
    """Replace the test's registry by one holding ``plugin`` (the registry fixture restores it)."""
    set_registry(PluginRegistry([plugin], entrypoints=False))


def make_llm(sb: Lane, **kwargs: Any) -> LLM:
    options = {"api_key": KEY, "base_url": sb.openai_base_url, **kwargs}
    return LLM(f"openai/{sb.model}", **options)


def sdk(sb: Lane) -> openai.OpenAI:
    return sb.client


def batches(sb: Lane) -> list[Any]:
    """Every batch of this test, oldest first."""
    return [b for b in reversed(list(sb.client.batches.list(limit=100))) if b.model == sb.model]


def input_lines(sb: Lane, batch: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in sb.client.files.content(batch.input_file_id).text.splitlines()]


def counters(sb: Lane) -> dict[str, Any]:
    return sb.counters()


def reply(prompt: str, system: str | None = None, **options: Any) -> str:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return expected_reply(messages, **options)


# --- the whole cycle --------------------------------------------------------------------


def test_submit_not_finished_resume_then_results_in_order(sb, openai_plugin):
    llm = make_llm(sb)
    first = pending(llm, planned(PROMPTS))
    assert first.counts["pending"] == 25 and len(first.jobs_ids) == 1
    assert counters(sb)["jobs"] == 1 and counters(sb)["files"] == 1

    sb.advance(20)  # in progress: the run checks and stops again, submitting nothing
    second = pending(llm, planned(PROMPTS))
    assert second.jobs_ids == first.jobs_ids

    sb.advance(DONE)
    results = generate(llm, planned(PROMPTS))
    assert [r.row for r in results] == list(range(25))
    assert [r.result.text for r in results] == [reply(p) for p in PROMPTS]
    assert all(r.result.finish_reason == "stop" for r in results)
    assert all(r.result.usage.input_tokens > 0 and r.result.usage.output_tokens > 0 for r in results)
    # Stored once, in the text's column, and put back into the raw answer read back.
    assert all(r.result.raw["choices"][0]["message"]["content"] == r.result.text for r in results)
    assert counters(sb)["jobs"] == 1 and counters(sb)["requests"] == 25  # paid once

    (batch,) = batches(sb)
    assert batch.metadata["overnight_tag"].startswith("ovn-")
    assert batch.endpoint == "/v1/chat/completions" and batch.completion_window == "24h"
    assert sdk(sb).files.retrieve(batch.input_file_id).filename == batch.metadata["overnight_tag"] + ".jsonl"
    assert {line["url"] for line in input_lines(sb, batch)} == {"/v1/chat/completions"}


def test_pipeline_submits_then_resumes_to_a_full_dataset(sb, openai_plugin):
    rows = [{"instruction": p, "id": i} for i, p in enumerate(PROMPTS[:12])]

    def build():
        with Pipeline(name="openai-answers") as pipeline:
            load = LoadDataFromDicts(name="load", data=rows)
            gen = TextGeneration(name="gen", llm=make_llm(sb), system_prompt="Answer briefly.")
            load >> gen
        return pipeline

    with pytest.raises(PipelineNotFinished) as exc:
        build().run()
    assert len(exc.value.jobs_ids) == 1
    sb.advance(DONE)
    dataset = build().run()
    out = dataset.to_list()
    assert [r["id"] for r in out] == list(range(12))
    assert [r["generation"] for r in out] == [reply(p, "Answer briefly.") for p in PROMPTS[:12]]
    assert all(r["generation_error"] is None and r["generation_finish_reason"] == "stop" for r in out)
    assert counters(sb)["jobs"] == 1
    # A third run reuses the dataset: nothing more reaches the provider.
    before = counters(sb)["http"]
    assert build().run().to_list() == out
    assert counters(sb)["http"] == before


def test_the_installed_distribution_declares_its_entry_point():
    (ep,) = [ep for ep in importlib.metadata.entry_points(group="overnight") if ep.name == "openai"]
    assert ep.dist.name == "overnight-openai"
    assert ep.load() is overnight_openai
    # The OpenAI-compatible vendors are served by this distribution too.
    names = PluginRegistry([ep.load()], entrypoints=False).provider_names
    assert names == ["deepinfra", "groq", "nebius", "openai", "together"]


# --- per-request errors, expiry, cancel ---------------------------------------------------


def test_request_errors_are_retried_then_reported_per_row(sb, openai_plugin):
    sb.set_faults(error_rate=1.0, error_status=500)  # every request, every job
    llm = make_llm(sb)
    pending(llm, planned(PROMPTS[:4]))
    for _ in range(2):
        sb.advance(DONE)
        pending(llm, planned(PROMPTS[:4]))
    sb.advance(DONE)
    results = generate(llm, planned(PROMPTS[:4]))
    assert counters(sb)["jobs"] == 3  # max_attempts=3
    assert [r.row for r in results] == [0, 1, 2, 3]
    assert all(r.result.status is ResultStatus.ERRORED for r in results)
    assert all(r.result.error.startswith("HTTP 500") for r in results)
    # Every request failed: OpenAI then writes no output file, only an error file.
    last = batches(sb)[-1]
    assert last.status == "completed" and last.output_file_id is None and last.error_file_id


def test_failed_rows_alone_go_into_the_retry_job(sb, openai_plugin):
    sb.set_faults(error_rate=0.4, times=1)  # the first job only
    llm = make_llm(sb)
    pending(llm, planned(PROMPTS))
    sb.advance(DONE)
    pending(llm, planned(PROMPTS))
    first, retry = batches(sb)
    assert 0 < first.request_counts.failed < 25
    assert len(input_lines(sb, retry)) == first.request_counts.failed
    sb.advance(DONE)
    assert [r.result.text for r in generate(llm, planned(PROMPTS))] == [reply(p) for p in PROMPTS]


def test_expired_job_keeps_finished_rows_and_resubmits_the_rest_once(sb, openai_plugin):
    sb.set_faults(expire_after_fraction=0.4, times=1)
    llm = make_llm(sb)
    pending(llm, planned(PROMPTS))
    sb.advance(DONE)
    pending(llm, planned(PROMPTS))
    expired, again = batches(sb)
    assert expired.status == "expired"
    done = {line["custom_id"] for line in input_lines(sb, expired)[:10]}  # 40% of 25, in input order
    resent = {line["custom_id"] for line in input_lines(sb, again)}
    assert len(resent) == 15 and not done & resent
    sb.advance(DONE)
    assert [r.result.text for r in generate(llm, planned(PROMPTS))] == [reply(p) for p in PROMPTS]
    assert counters(sb)["jobs"] == 2 and counters(sb)["requests"] == 40


def test_cancel_keeps_finished_rows_and_marks_the_rest_unfinished(sb, openai_plugin):
    llm = make_llm(sb)
    pending(llm, planned(PROMPTS))
    provider = openai_plugin.provider("openai")
    store = Store.open()
    try:
        (job,) = store.open_jobs("plan-1")
    finally:
        store.close()
    ref = job["ref"]
    sb.advance(5 + 12)  # validated, 12 of 30 processing seconds: 10 of 25 requests done
    provider.cancel(ref, llm.client_options)
    assert provider.check(ref, llm.client_options).state is JobState.RUNNING  # cancelling
    sb.advance(DONE)
    status = provider.check(ref, llm.client_options)
    assert (status.state, status.raw_status) == (JobState.CANCELLED, "cancelled")
    results = list(provider.fetch(ref, llm.client_options))
    by_status = {s: sum(r.status is s for r in results) for s in ResultStatus}
    assert by_status == {ResultStatus.SUCCEEDED: 10, ResultStatus.ERRORED: 0, ResultStatus.UNFINISHED: 15}
    assert all("batch_cancelled" in r.error for r in results if r.status is ResultStatus.UNFINISHED)
    provider.cancel(ref, llm.client_options)  # cancelling a job that is over is a quiet no-op

    pending(llm, planned(PROMPTS))  # the 15 unfinished rows go out again
    assert len(input_lines(sb, batches(sb)[-1])) == 15
    sb.advance(DONE)
    assert [r.result.text for r in generate(llm, planned(PROMPTS))] == [reply(p) for p in PROMPTS]


def test_a_batch_rejected_as_a_whole_is_failed_with_the_reason(sb, openai_plugin):
    sb.set_faults(fail_validation=True, times=1)
    llm = make_llm(sb)
    pending(llm, planned(PROMPTS[:3]))
    sb.advance(DONE)
    provider = openai_plugin.provider("openai")
    batch = batches(sb)[0]
    ref = jobs.job_ref("openai", batch, batch.metadata["overnight_tag"])
    status = provider.check(ref, llm.client_options)
    assert status.state is JobState.FAILED and status.message.startswith(f"OpenAI rejected batch {batch.id}")
    pending(llm, planned(PROMPTS[:3]))  # the chunk goes out again
    sb.advance(DONE)
    assert all(r.result.ok for r in generate(llm, planned(PROMPTS[:3])))


# --- crash recovery by tag ----------------------------------------------------------------

CRASHING_RUN = textwrap.dedent(
    """
    import sys
    import overnight_openai
    from overnight import ChatRequest, LLM, Message
    from overnight.executor import PlannedRequest
    from overnight.plugins import PluginRegistry, set_registry
    from overnight.store import Store

    set_registry(PluginRegistry([overnight_openai], entrypoints=False))
    llm = LLM("openai/" + sys.argv[2], api_key="sk-test-crash", base_url=sys.argv[1])
    planned = [PlannedRequest(i, 0, ChatRequest("", "m", [Message("user", p)])) for i, p in enumerate(sys.argv[3:])]
    list(llm.generate_offline(planned, store=Store.open(), step="gen", plan_id="plan-1"))
    """
)


def crash_at(point: str, sb: Lane, prompts: list[str]) -> None:
    env = {**os.environ, "OVERNIGHT_FAULT_POINT": point}
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN, sb.openai_base_url, sb.model, *prompts],
        env=env, capture_output=True, timeout=60,
    )
    assert done.returncode == -9, done.stderr.decode()  # SIGKILL at the fault point


def test_crash_after_create_finds_the_batch_by_tag(sb, openai_plugin):
    crash_at("after_create", sb, PROMPTS)
    assert counters(sb)["jobs"] == 1
    llm = make_llm(sb)
    found = pending(llm, planned(PROMPTS))  # finds the batch by its tag; does not submit again
    assert found.jobs_ids == (batches(sb)[0].id,)
    assert counters(sb)["jobs"] == 1
    sb.advance(DONE)
    assert [r.result.text for r in generate(llm, planned(PROMPTS))] == [reply(p) for p in PROMPTS]
    assert counters(sb)["jobs"] == 1


def test_crash_after_upload_submits_once_the_tag_is_not_found(sb, openai_plugin):
    before = {f.id for f in sdk(sb).files.list()}
    crash_at("after_upload", sb, PROMPTS[:5])
    assert (counters(sb)["files"], counters(sb)["jobs"]) == (1, 0)
    [orphan] = [f for f in sdk(sb).files.list() if f.id not in before]
    llm = make_llm(sb)
    pending(llm, planned(PROMPTS[:5]))
    assert (counters(sb)["files"], counters(sb)["jobs"]) == (2, 1)
    assert orphan.id not in {f.id for f in sdk(sb).files.list()}  # the interrupted upload is cleaned up
    sb.advance(DONE)
    assert all(r.result.ok for r in generate(llm, planned(PROMPTS[:5])))


class DropFirstBatchResponse(httpx2.BaseTransport):
    """Lets the first ``POST .../batches`` through, then loses its response."""

    def __init__(self) -> None:
        self.inner = httpx2.HTTPTransport()
        self.dropped = 0

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path.endswith("/batches") and not self.dropped:
            self.dropped += 1
            response.close()
            raise httpx2.ReadError("connection reset after the batch was created", request=request)
        return response


def test_a_lost_create_response_never_creates_a_second_batch(sb, openai_plugin):
    transport = DropFirstBatchResponse()
    llm = make_llm(sb, http_client=openai.DefaultHttpxClient(transport=transport))
    pending(llm, planned(PROMPTS[:5]))
    assert transport.dropped == 1
    assert counters(sb)["jobs"] == 1  # the SDK alone would have retried the create
    sb.advance(DONE)
    assert all(r.result.ok for r in generate(llm, planned(PROMPTS[:5])))


def test_a_5xx_on_create_is_never_retried_on_one_lookup(sb, openai_plugin, monkeypatch):
    # A 5xx may hide a created batch: looked up once by tag (not there), not created again.
    sb.set_faults(http_status=503, http_method="POST", http_path="/batches$", times=1, retry_after=0.01)
    llm = make_llm(sb)
    with pytest.raises(ProviderError, match="intent is saved under tag"):
        generate(llm, planned(PROMPTS[:5]))
    assert counters(sb)["http"]["POST /batches"] == 1 and counters(sb)["jobs"] == 0
    # Within the settle window "not found" is no proof: nothing is submitted.
    monkeypatch.setenv("OVERNIGHT_CREATE_SETTLE_SECONDS", "300")
    pending(llm, planned(PROMPTS[:5]))
    assert counters(sb)["http"]["POST /batches"] == 1 and counters(sb)["jobs"] == 0
    # After it, submitted again under the same tag (and the same uploaded file name), once.
    monkeypatch.setenv("OVERNIGHT_CREATE_SETTLE_SECONDS", "0")
    pending(llm, planned(PROMPTS[:5]))
    assert counters(sb)["http"]["POST /batches"] == 2 and counters(sb)["jobs"] == 1
    [batch] = batches(sb)
    store = Store.open()
    try:
        [job] = store.list_jobs()
    finally:
        store.close()
    assert batch.metadata["overnight_tag"] == job["tag"] and job["remote_id"] == batch.id


def test_a_rejected_create_deletes_the_uploaded_file(sb, openai_plugin):
    sb.set_faults(http_status=400, http_method="POST", http_path="/batches$", times=3)
    before = {f.id for f in sdk(sb).files.list()}
    results = generate(make_llm(sb), planned(PROMPTS[:5]))  # refused on each of the 3 attempts
    assert all(not r.result.ok and "refused to create the batch" in r.result.error for r in results)
    assert counters(sb)["files"] == 3 and counters(sb)["jobs"] == 0
    assert {f.id for f in sdk(sb).files.list()} == before  # every uploaded input file is gone


def test_a_create_refused_once_is_retried_at_once(sb, openai_plugin):
    sb.set_faults(http_status=400, http_method="POST", http_path="/batches$", times=1)
    llm = make_llm(sb)
    pending(llm, planned(PROMPTS[:5]))
    assert counters(sb)["files"] == 2 and counters(sb)["jobs"] == 1
    sb.advance(DONE)
    assert [r.result.text for r in generate(llm, planned(PROMPTS[:5]))] == [reply(p) for p in PROMPTS[:5]]


def test_find_job_returns_none_for_an_unknown_tag(sb, openai_plugin):
    llm = make_llm(sb)
    pending(llm, planned(PROMPTS[:2]))
    provider = openai_plugin.provider("openai")
    assert provider.find_job("ovn-never-submitted", llm.client_options) is None
    tag = batches(sb)[0].metadata["overnight_tag"]
    assert provider.find_job(tag, llm.client_options).remote_id == batches(sb)[0].id


# --- chunking -------------------------------------------------------------------------


def test_a_dataset_over_the_request_limit_is_split_into_several_jobs(sb, registry):
    use_plugin(OpenAIPlugin(limits=Limits(max_requests=10, max_bytes=1_000_000)))
    llm = make_llm(sb)
    assert len(pending(llm, planned(PROMPTS)).jobs_ids) == 3
    assert [len(input_lines(sb, b)) for b in batches(sb)] == [10, 10, 5]
    sb.advance(DONE)
    assert [r.result.text for r in generate(llm, planned(PROMPTS))] == [reply(p) for p in PROMPTS]


@pytest.mark.parametrize("env, value", [("OVERNIGHT_OPENAI_MAX_REQUESTS", 12), ("OVERNIGHT_OPENAI_MAX_BYTES", 1000)])
def test_limits_lowered_through_the_environment(sb, registry, monkeypatch, env, value):
    monkeypatch.setenv(env, str(value))
    use_plugin(overnight_openai)
    pending(make_llm(sb), planned(PROMPTS))
    sizes = [len(input_lines(sb, b)) for b in batches(sb)]
    assert sum(sizes) == 25
    if env.endswith("REQUESTS"):
        assert sizes == [12, 12, 1]
    else:  # lines are ~200 bytes: about 5 per job
        assert len(sizes) >= 4 and max(sizes) < 12
        assert all(sdk(sb).files.retrieve(b.input_file_id).bytes <= 1000 for b in batches(sb))


def test_bad_limit_environment_is_reported_as_a_plugin_failure(monkeypatch):
    monkeypatch.setenv("OVERNIGHT_OPENAI_MAX_REQUESTS", "lots")
    registry = PluginRegistry([overnight_openai], entrypoints=False)
    assert "openai" not in registry.provider_names
    assert "OVERNIGHT_OPENAI_MAX_REQUESTS" in registry.failures[0].error


# --- request options ----------------------------------------------------------------------


def test_every_request_option_reaches_the_batch_and_shapes_the_answer(sb, openai_plugin):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
              "additionalProperties": False}
    options = {
        "max_tokens": 4,
        "temperature": 0.3,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["never-said"],
        "presence_penalty": 0.5,
    }
    llm = make_llm(sb, generation_kwargs=options)
    rows = planned(["tell me"], samples=3, system="You are terse.")
    rows.append(  # a multi-turn conversation as one more row
        PlannedRequest(row=1, sample=0, request=ChatRequest("", "m", [
            Message("system", "You are terse."), Message("user", "hi"),
            Message("assistant", "hello"), Message("user", "and now?"),
        ]))
    )
    pending(llm, rows)
    lines = input_lines(sb, batches(sb)[0])
    assert len({line["custom_id"] for line in lines}) == 4  # num_generations: distinct requests
    single = [line["body"] for line in lines if len(line["body"]["messages"]) == 2]
    (multi,) = [line["body"] for line in lines if len(line["body"]["messages"]) == 4]
    assert len(single) == 3 and all(body == single[0] for body in single)
    body = single[0]
    assert body["model"] == sb.model
    assert body["messages"] == [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "tell me"}]
    assert body["max_completion_tokens"] == 4 and "max_tokens" not in body
    assert (body["temperature"], body["top_p"], body["seed"], body["stop"]) == (0.3, 0.9, 7, ["never-said"])
    assert body["presence_penalty"] == 0.5
    assert [m["role"] for m in multi["messages"]] == ["system", "user", "assistant", "user"]
    sb.advance(DONE)
    results = generate(llm, planned)
    assert [r.result.finish_reason for r in results] == ["length"] * 4  # max_tokens honoured
    assert results[0].result.text == reply("tell me", "You are terse.", max_tokens=4)
    assert results[0].result.usage.output_tokens == 4

    stop = make_llm(sb, generation_kwargs={"stop": ["answer"]})
    pending(stop, planned(["cut me"]), plan_id="stop")
    sb.advance(DONE)
    (cut,) = generate(stop, planned(["cut me"]), plan_id="stop")
    assert cut.result.text == reply("cut me", stop=["answer"]) == "Sandbox "

    fmt = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}
    structured = make_llm(sb, generation_kwargs={"response_format": fmt})
    pending(structured, planned(["give json"]), plan_id="json")
    assert input_lines(sb, batches(sb)[-1])[0]["body"]["response_format"] == fmt
    sb.advance(DONE)
    (answer,) = generate(structured, planned(["give json"]), plan_id="json")
    assert set(json.loads(answer.result.text)) == {"answer"}


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"response_format": {"type": "json_object"}}, "response_format"),  # no "JSON" in the prompt
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
        ({"response_format": {"type": "yaml"}}, "response_format"),
        ({"n": 2}, "n"),  # num_generations is the core's job, not an extra option
    ],
)
def test_requests_openai_would_refuse_cost_nothing(sb, openai_plugin, kwargs, field):
    with pytest.raises(ValidationError) as exc:
        generate(make_llm(sb, generation_kwargs=kwargs), planned(PROMPTS[:3]))
    assert any(p.field == field for p in exc.value.problems)
    assert counters(sb)["http"] == {}


def test_roles_openai_does_not_know_are_refused():
    request = ChatRequest("c", MODEL, [Message("tool", "x")])
    with pytest.raises(InvalidRequest, match="roles") as exc:
        translate.build_line(request)
    assert exc.value.field == "messages"


def test_json_mode_with_json_in_the_prompt_passes():
    params = GenerationParams(response_format={"type": "json_object"})
    request = ChatRequest("c", MODEL, [Message("user", "Reply in JSON")], params)
    assert translate.build_line(request)["body"]["response_format"] == {"type": "json_object"}


def test_a_schema_without_a_name_gets_one():
    fmt = {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}
    request = ChatRequest("c", MODEL, [Message("user", "x")], GenerationParams(response_format=fmt))
    body = translate.build_line(request)["body"]
    assert body["response_format"]["json_schema"]["name"] == "response"


# --- credentials, options, secrets ----------------------------------------------------------


def test_missing_key_is_reported_before_any_request(sb, openai_plugin):
    llm = LLM(f"openai/{sb.model}", base_url=sb.openai_base_url)
    with pytest.raises(MissingCredentials, match="OPENAI_API_KEY"):
        generate(llm, planned(PROMPTS))
    assert counters(sb)["http"] == {} and counters(sb)["files"] == 0


def test_key_and_base_url_come_from_the_environment(sb, openai_plugin, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", sb.openai_base_url)
    llm = LLM(f"openai/{sb.model}")
    pending(llm, planned(PROMPTS[:2]))
    assert counters(sb)["jobs"] == 1


@pytest.mark.parametrize(
    "options, match",
    [
        ({"api_kee": "sk-x"}, "unknown OpenAI client option"),
        ({"timeout": -1}, "timeout"),
        ({"max_retries": "2"}, "max_retries"),
        ({"base_url": "localhost:8080"}, "base_url"),
        ({"metadata": {"overnight_tag": "x"}}, "reserved"),
        ({"metadata": {f"k{i}": "v" for i in range(14)}}, "at most 13"),
    ],
)
def test_bad_client_options_are_configuration_errors(sb, openai_plugin, options, match):
    llm = LLM(f"openai/{sb.model}", api_key=KEY, **options)
    with pytest.raises(ConfigurationError, match=match) as exc:
        generate(llm, planned(PROMPTS[:2]))
    assert KEY not in str(exc.value)
    assert counters(sb)["http"] == {}


def test_user_metadata_labels_every_batch(sb, openai_plugin):
    pending(make_llm(sb, metadata={"team": "research"}), planned(PROMPTS[:2]))
    (batch,) = batches(sb)
    assert batch.metadata["team"] == "research" and batch.metadata["overnight_requests"] == "2"


def test_the_key_never_reaches_the_store_or_the_batch(sb, openai_plugin, overnight_home):
    llm = make_llm(sb)
    pending(llm, planned(PROMPTS))
    sb.advance(DONE)
    generate(llm, planned(PROMPTS))
    for path in overnight_home.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    (batch,) = batches(sb)
    assert KEY not in json.dumps(batch.model_dump())
    assert KEY not in repr(llm)


def test_connect_builds_the_client_once_and_on_first_use(sb):
    options = {"api_key": KEY, "base_url": sb.openai_base_url}
    connection = overnight_openai.connect("openai", options)
    assert KEY not in repr(connection)
    assert connection.sdk is connection.sdk
    assert connection.sdk.max_retries == 2
    assert overnight_openai.connect("openai", {**options, "timeout": 5}).sdk.timeout == 5


# --- downloads and result shapes ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["short", "abort"])
def test_a_cut_download_is_fetched_again_on_the_next_run(sb, openai_plugin, mode):
    llm = make_llm(sb, max_retries=0)
    pending(llm, planned(PROMPTS))
    sb.advance(DONE)
    sb.set_faults(download_truncate=0.5, download_truncate_mode=mode, times=1)
    with pytest.raises(Exception) as exc:
        generate(llm, planned(PROMPTS))
    assert not isinstance(exc.value, OfflineBatchGenerationNotFinished)
    assert [r.result.text for r in generate(llm, planned(PROMPTS))] == [reply(p) for p in PROMPTS]
    assert counters(sb)["jobs"] == 1


def test_a_download_cut_between_two_lines_is_not_taken_for_the_whole_file(sb, openai_plugin):
    llm = make_llm(sb)
    pending(llm, planned(PROMPTS))
    sb.advance(DONE)
    (batch,) = batches(sb)
    content = sdk(sb).files.content(batch.output_file_id).content
    cut = [i for i, byte in enumerate(content) if byte == ord("\n")][9] + 1  # 10 whole lines
    sb.set_faults(download_truncate=(cut + 0.5) / len(content), download_truncate_mode="short", times=1)
    with pytest.raises(ProviderError, match=f"stopped after {cut:,} of {len(content):,} bytes"):
        generate(llm, planned(PROMPTS))
    # Had the 15 missing rows been taken for unfinished, they would be paid for again.
    assert [r.result.text for r in generate(llm, planned(PROMPTS))] == [reply(p) for p in PROMPTS]
    assert counters(sb)["jobs"] == 1 and counters(sb)["requests"] == 25


def line(custom_id, **fields):
    return {"id": "batch_req_1", "custom_id": custom_id, **fields}


def test_result_lines_of_every_shape():
    ok = translate.result_from_line(line("a", error=None, response={"status_code": 200, "body": {
        "choices": [{"message": {"content": "hi"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5},
    }}))
    assert (ok.status, ok.text, ok.finish_reason) == (ResultStatus.SUCCEEDED, "hi", "length")
    assert (ok.usage.input_tokens, ok.usage.output_tokens) == (3, 5)

    bad = translate.result_from_line(line("b", error=None, response={"status_code": 400, "body": {
        "error": {"message": "bad stop", "type": "invalid_request_error", "code": "invalid_value"}}}))
    assert bad.status is ResultStatus.ERRORED and "bad stop" in bad.error and "400" in bad.error

    for code in ("batch_expired", "batch_cancelled"):
        never = translate.result_from_line(line("c", response=None, error={"code": code, "message": "not run"}))
        assert never.status is ResultStatus.UNFINISHED and code in never.error

    refused = translate.result_from_line(line("d", error=None, response={"status_code": 200, "body": {
        "choices": [{"message": {"content": None, "refusal": "I can't"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }}))
    assert refused.ok and refused.text is None and refused.error == "refusal: I can't"


@pytest.mark.parametrize(
    "status, state",
    [
        ("validating", JobState.RUNNING),
        ("in_progress", JobState.RUNNING),
        ("finalizing", JobState.RUNNING),
        ("cancelling", JobState.RUNNING),
        ("completed", JobState.FINISHED),
        ("failed", JobState.FAILED),
        ("expired", JobState.EXPIRED),
        ("cancelled", JobState.CANCELLED),
        ("some_future_status", JobState.RUNNING),
    ],
)
def test_batch_statuses_map_to_job_states(status, state):
    errors = SimpleNamespace(data=[SimpleNamespace(line=3, code="invalid_json_line", message="not JSON")])
    batch = SimpleNamespace(
        id="batch_1", status=status, errors=errors if status == "failed" else None,
        request_counts=SimpleNamespace(total=10, completed=6, failed=1),
    )
    result = translate.job_status(batch)
    assert (result.state, result.total, result.completed, result.failed) == (state, 10, 6, 1)
    assert result.raw_status == status
    if state is JobState.FAILED:
        assert result.message == "OpenAI rejected batch batch_1: line 3: invalid_json_line: not JSON"


# --- list_jobs: the provider as second source of truth ---------------------------------------


def _store_keys() -> set[str]:
    store = Store.open()
    try:
        return {row["key"] for row in store._query("SELECT key FROM requests")}
    finally:
        store.close()


def test_list_jobs_reads_each_tagged_batch_input_unless_skipped(sb, openai_plugin):
    llm = make_llm(sb)
    pending(llm, planned(PROMPTS[:3]))
    provider = openai_plugin.provider("openai")
    [batch] = batches(sb)
    everything = provider.list_jobs(llm.client_options, horizon=3600, limit=100, skip=frozenset())
    [listed] = [j for j in everything if j.ref.remote_id == batch.id]
    assert listed.ref.tag == batch.metadata["overnight_tag"] and listed.state is JobState.RUNNING
    assert listed.custom_ids == _store_keys()
    downloads = counters(sb)["http"].get("GET /files/{file_id}/content", 0)
    all_ids = frozenset(j.ref.remote_id for j in everything)  # the module's sandbox has other tests' too
    [skipped] = [j for j in provider.list_jobs(llm.client_options, horizon=3600, limit=100, skip=all_ids)
                 if j.ref.remote_id == batch.id]
    assert skipped.custom_ids is None
    assert counters(sb)["http"].get("GET /files/{file_id}/content", 0) == downloads  # nothing read
    assert provider.list_jobs(llm.client_options, horizon=3600, limit=0, skip=frozenset()) == []
