"""The overnight-mistral plugin: pure translation, options, and (through the official
``mistralai`` SDK against the sandbox) the whole batch lifecycle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import overnight_mistral
from overnight.plugin_testing import generate, pending, planned
from overnight import (
    LLM,
    ChatRequest,
    ConfigurationError,
    GenerationParams,
    InvalidRequest,
    JobRef,
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
from overnight.store import Store
from overnight_mistral import MistralPlugin
from overnight_mistral import options as opts
from overnight_mistral import translate

KEY = "mi-test-secret-key-123456"


def request(*messages: tuple[str, str], **params) -> ChatRequest:
    return ChatRequest("cid-1", "mistral-small-latest", [Message(r, c) for r, c in messages], GenerationParams(**params))


@pytest.fixture(autouse=True)
def _fresh_clients(monkeypatch):
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    monkeypatch.delenv("MISTRAL_BASE_URL", raising=False)
    yield


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
        overnight_mistral.connect("mistral", {})


def test_unknown_and_malformed_options_are_configuration_errors():
    with pytest.raises(ConfigurationError, match="unknown Mistral client option.*organization"):
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


def test_connect_builds_one_client_on_first_use_with_retries_configured():
    connection = overnight_mistral.connect("mistral", {"api_key": KEY, "base_url": "http://127.0.0.1:9"})
    assert KEY not in repr(connection)
    first = connection.sdk
    assert connection.sdk is first
    config = first.sdk_configuration
    assert config.server_url == "http://127.0.0.1:9"
    assert config.retry_config.strategy == "backoff" and config.retry_config.retry_connection_errors


@pytest.mark.parametrize("retries", [1, 2, 3, 5, 8])
def test_retry_budget_allows_exactly_that_many_backoffs(retries):
    # The SDK retries while elapsed <= budget; elapsed after k retries is the sum of k
    # backoffs, each with 0..JITTER_MS of jitter.
    def elapsed(k, jitter):
        return sum(min(opts.INITIAL_MS * 2**i, opts.MAX_INTERVAL_MS) + jitter for i in range(k))

    budget = opts.retry_budget_ms(retries)
    assert elapsed(retries - 1, opts.JITTER_MS) < budget  # the last wanted retry still happens
    assert elapsed(retries, 0) > budget  # and no more


# === through the official SDK, against the sandbox ==========================================

sandbox = pytest.importorskip("overnight.sandbox")
Sandbox, expected_reply = sandbox.Sandbox, sandbox.expected_reply

MODEL = "mistral-small-latest"
PROMPTS = [f"question number {i}" for i in range(10)]
DONE = 3600  # sandbox seconds after which every job in these tests has ended


class ScopedSandbox:
    """One module-wide sandbox seen as fresh by each test: its own faults, counters and jobs.

    (Starting and stopping a server per test would cost more than the tests themselves.)
    """

    def __init__(self, box) -> None:
        self.box = box
        box.clear_faults()
        box.reset_counters()
        self._before = {j["id"] for j in box.jobs()}
        self.mistral_base_url = box.mistral_base_url
        self.advance, self.set_faults, self.counters = box.advance, box.set_faults, box.counters

    def jobs(self):
        """This test's jobs, newest first (like the sandbox's own listing)."""
        return [j for j in self.box.jobs() if j["id"] not in self._before]


@pytest.fixture(autouse=True)
def _no_adoption(monkeypatch):
    """The tests share one sandbox (one account): a test would adopt the jobs of the last."""
    monkeypatch.setenv("OVERNIGHT_ADOPT_HORIZON", "0")


@pytest.fixture(scope="module")
def _module_sandbox(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp("mistral-sandbox")) as box:
        yield box


@pytest.fixture
def sb(_module_sandbox):
    yield ScopedSandbox(_module_sandbox)
    _module_sandbox.clear_faults()


@pytest.fixture
def mistral(registry):
    """The plugin module, alone in an isolated registry (what the entry point loads)."""
    registry.register(overnight_mistral, name="mistral")
    return overnight_mistral


def llm(sb, **kwargs) -> LLM:
    kwargs.setdefault("api_key", KEY)
    return LLM(f"mistral/{MODEL}", base_url=sb.mistral_base_url, **kwargs)


def answer(prompt, **options):
    return expected_reply([{"role": "user", "content": prompt}], **options)


def counts(sb):
    return sb.counters()["mistral"]


def job_sizes(sb):
    return [j["total"] for j in reversed(sb.jobs()) if j["provider"] == "mistral"]  # oldest first


@pytest.mark.parametrize("inline_threshold", [1000, 0], ids=["inline", "uploaded-file"])
def test_submit_not_finished_resume_then_results_in_order(sb, mistral, inline_threshold):
    model = llm(sb, inline_threshold=inline_threshold)
    plan = planned(PROMPTS)
    first = pending(model, plan)
    assert first.counts["pending"] == 10 and model.jobs_ids == first.jobs_ids
    assert pending(model, plan).jobs_ids == first.jobs_ids  # checked again, not resubmitted
    assert (counts(sb)["jobs"], counts(sb)["files"]) == (1, 0 if inline_threshold else 1)
    (job,) = sb.jobs()
    assert job["id"] == first.jobs_ids[0] and set(job["metadata"]) == {"overnight_tag"}

    sb.advance(DONE)
    results = generate(model, plan)
    assert [r.row for r in results] == list(range(10))
    assert [r.result.text for r in results] == [answer(p) for p in PROMPTS]
    assert all(r.result.finish_reason == "stop" and r.result.usage.output_tokens > 0 for r in results)
    assert all(r.result.usage.input_tokens > 0 for r in results)
    assert counts(sb)["jobs"] == 1 and counts(sb)["requests"] == 10


def test_uploaded_input_is_a_tagged_jsonl_file_without_model_in_lines(sb, mistral):
    pending(llm(sb, inline_threshold=0), planned(PROMPTS[:2]))
    (job,) = sb.jobs()
    client = opts.client(opts.resolve({"api_key": KEY, "base_url": sb.mistral_base_url}))
    remote = client.batch.jobs.get(job_id=job["id"])
    (file_id,) = remote.input_files
    assert client.files.retrieve(file_id=file_id).filename == f"{job['metadata']['overnight_tag']}.jsonl"
    assert remote.model == MODEL and remote.endpoint == "/v1/chat/completions"
    lines = [json.loads(l) for l in client.files.download(file_id=file_id).iter_lines() if l]
    assert [l["body"]["messages"][-1]["content"] for l in lines] == PROMPTS[:2]
    assert all("model" not in l["body"] for l in lines)


def test_through_the_pipeline_across_runs(sb, mistral):
    def build():
        with Pipeline(name="mistral-answers") as p:
            load = LoadDataFromDicts(name="load", data=[{"instruction": q} for q in PROMPTS[:4]])
            load >> TextGeneration(name="gen", llm=llm(sb), system_prompt="Answer briefly.")
        return p

    for _ in range(2):
        with pytest.raises(PipelineNotFinished) as exc:
            build().run()
    assert "4 pending" in str(exc.value) and counts(sb)["jobs"] == 1
    sb.advance(DONE)
    rows = list(build().run())
    system = {"role": "system", "content": "Answer briefly."}
    assert [r["generation"] for r in rows] == [
        expected_reply([system, {"role": "user", "content": q}]) for q in PROMPTS[:4]
    ]
    assert all(r["generation_error"] is None and r["generation_finish_reason"] == "stop" for r in rows)
    assert all(r["generation_usage"]["output_tokens"] > 0 and r["model_name"] == f"mistral/{MODEL}" for r in rows)
    assert counts(sb)["jobs"] == 1


def test_request_errors_are_retried_then_reported_as_error_rows(sb, mistral):
    sb.set_faults(provider="mistral", error_rate=1.0)
    model, plan = llm(sb, max_attempts=2), planned(PROMPTS[:3])
    pending(model, plan)
    sb.advance(DONE)
    pending(model, plan)  # the failed rows went out again, in a new job
    sb.advance(DONE)
    results = generate(model, plan)
    assert job_sizes(sb) == [3, 3]
    assert [r.row for r in results] == [0, 1, 2]
    assert all(not r.result.ok and r.result.error.startswith("HTTP 500: ") for r in results)
    assert all("fault injection" in r.result.error for r in results)


def test_failed_rows_succeed_on_retry_and_finished_rows_are_not_resent(sb, mistral):
    sb.set_faults(provider="mistral", error_rate=0.5, times=1)  # the first job only
    model, plan = llm(sb), planned(PROMPTS)
    pending(model, plan)
    sb.advance(DONE)
    pending(model, plan)
    first, retry = job_sizes(sb)
    assert first == 10 and 0 < retry < 10
    sb.advance(DONE)
    assert [r.result.text for r in generate(model, plan)] == [answer(p) for p in PROMPTS]


def test_expired_job_keeps_finished_rows_and_resubmits_the_rest_once(sb, mistral):
    sb.set_faults(provider="mistral", expire_after_fraction=0.5, times=1)
    model, plan = llm(sb), planned(PROMPTS)
    first = pending(model, plan)
    sb.advance(DONE)
    ref = JobRef("mistral", first.jobs_ids[0], "t")
    options = {"api_key": KEY, "base_url": sb.mistral_base_url}
    status = mistral.check("mistral", ref, mistral.connect("mistral", options), None)
    assert (status.state, status.raw_status, status.completed) == (JobState.EXPIRED, "TIMEOUT_EXCEEDED", 5)
    assert [r.status for r in mistral.fetch("mistral", ref, mistral.connect("mistral", options), None)] == [ResultStatus.SUCCEEDED] * 5

    pending(model, plan)
    assert job_sizes(sb) == [10, 5]
    sb.advance(DONE)
    assert [r.result.text for r in generate(model, plan)] == [answer(p) for p in PROMPTS]
    assert counts(sb)["requests"] == 15


def test_cancel_keeps_finished_rows_and_resubmits_the_rest(sb, mistral, registry, monkeypatch):
    model, plan = llm(sb), planned(PROMPTS)
    (remote_id,) = pending(model, plan).jobs_ids
    sb.advance(5 + 15)  # validated, then half of the 30 s processing
    # As `overnight cancel` does: no client options, so the environment must do.
    monkeypatch.setenv("MISTRAL_API_KEY", KEY)
    monkeypatch.setenv("MISTRAL_BASE_URL", sb.mistral_base_url)
    provider = registry.provider("mistral")
    ref = JobRef("mistral", remote_id, "t")
    provider.cancel(ref, {})
    assert provider.check(ref, {}).raw_status == "CANCELLATION_REQUESTED"
    assert provider.check(ref, {}).state is JobState.RUNNING
    sb.advance(DONE)
    assert provider.check(ref, {}).state is JobState.CANCELLED
    provider.cancel(ref, {})  # already over: nothing to do, no error

    pending(model, plan)
    first, rest = job_sizes(sb)
    assert first == 10 and 0 < rest < 10
    sb.advance(DONE)
    assert [r.result.text for r in generate(model, plan)] == [answer(p) for p in PROMPTS]


CRASHING_RUN = textwrap.dedent(
    """
    import sys
    import overnight_mistral
    from overnight import ChatRequest, LLM, Message
    from overnight.executor import PlannedRequest
    from overnight.plugins import PluginRegistry, set_registry
    from overnight.store import Store

    set_registry(PluginRegistry([overnight_mistral], entrypoints=False))
    llm = LLM("mistral/%s", api_key=sys.argv[1], base_url=sys.argv[2], inline_threshold=0)
    plan = [PlannedRequest(i, 0, ChatRequest("", "m", [Message("user", p)])) for i, p in enumerate(sys.argv[3:])]
    list(llm.generate_offline(plan, store=Store.open(), step="gen", plan_id="plan-1"))
    """
    % MODEL
)


@pytest.mark.parametrize(("point", "files"), [("after_create", 1), ("after_upload", 2)])
def test_crashed_run_is_recovered_by_tag_without_paying_twice(sb, mistral, point, files):
    client = opts.client(opts.resolve({"api_key": KEY, "base_url": sb.mistral_base_url}))
    before = {f.id for f in client.files.list(page_size=10_000).data}
    env = {**os.environ, "OVERNIGHT_FAULT_POINT": point}
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN, KEY, sb.mistral_base_url, *PROMPTS[:3]],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == -9, done.stderr  # killed at the fault point
    assert counts(sb)["jobs"] == (1 if point == "after_create" else 0)

    model, plan = llm(sb, inline_threshold=0), planned(PROMPTS[:3])
    pending(model, plan)  # after_create: found by tag; after_upload: certainly absent, so submitted
    assert (counts(sb)["jobs"], counts(sb)["files"]) == (1, files)
    # Only the job's own input is left: an interrupted upload is deleted once found orphaned.
    (job,) = sb.jobs()
    left = {f.id for f in client.files.list(page_size=10_000).data} - before
    assert left == set(client.batch.jobs.get(job_id=job["id"]).input_files)
    sb.advance(DONE)
    assert [r.result.text for r in generate(model, plan)] == [answer(p) for p in PROMPTS[:3]]
    assert counts(sb)["jobs"] == 1


def test_find_job_returns_none_only_when_no_job_has_the_tag(sb, mistral):
    options = {"api_key": KEY, "base_url": sb.mistral_base_url}
    assert mistral.find_job("mistral", "ovn-never-used", mistral.connect("mistral", options), None) is None
    first = pending(llm(sb), planned(PROMPTS[:2]))
    tag = sb.jobs()[0]["metadata"]["overnight_tag"]
    pending(llm(sb), planned(PROMPTS[2:4]), plan_id="other")  # another tagged job
    ref = mistral.find_job("mistral", tag, mistral.connect("mistral", options), None)
    assert (ref.remote_id, ref.tag, ref.data) == (first.jobs_ids[0], tag, {"inline": True})


def test_dataset_over_lowered_limits_is_split_into_several_jobs(tmp_path, registry):
    registry.register(MistralPlugin(limits=Limits(max_requests=4, max_bytes=512 * 1024 * 1024)), name="mistral-small")
    # The sandbox refuses a job over 4 requests, so an unsplit dataset could not pass.
    with Sandbox(state_dir=tmp_path / "sb", limits={"mistral": {"max_requests": 4}}) as box:
        model, plan = llm(box), planned(PROMPTS)
        assert len(pending(model, plan).jobs_ids) == 3
        assert job_sizes(box) == [4, 4, 2]
        box.advance(DONE)
        assert [r.result.text for r in generate(model, plan)] == [answer(p) for p in PROMPTS]


def test_byte_limit_splits_too(sb, registry):
    registry.register(MistralPlugin(limits=Limits(max_requests=1000, max_bytes=400)), name="mistral-bytes")
    pending(llm(sb), planned(PROMPTS))
    sizes = job_sizes(sb)
    assert len(sizes) > 2 and sum(sizes) == 10


def test_every_request_option_reaches_mistral_and_shapes_the_answer(sb, mistral):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}, "words": {"type": "integer"}}}
    cases = {
        "stop": ({"stop": ["answer"]}, {"stop": ["answer"]}, "stop"),
        "max_tokens": ({"max_tokens": 3}, {"max_tokens": 3}, "length"),
        "json": (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}},
            {"response_format": {"type": "json_schema", "json_schema": {"schema": schema}}},
            "stop",
        ),
    }
    for name, (kwargs, reply_options, finish) in cases.items():
        model = llm(sb, generation_kwargs=kwargs)
        pending(model, planned(["hello there"]), plan_id=name)
        sb.advance(DONE)
        (row,) = generate(model, planned(["hello there"]), plan_id=name)
        assert row.result.text == answer("hello there", **reply_options), name
        assert row.result.finish_reason == finish, name
    assert row.result.text and json.loads(row.result.text)["words"] > 0
    assert row.result.usage.output_tokens > 0


def test_system_prompt_multi_turn_samples_and_sampling_options_are_sent(sb, mistral):
    conversation = [Message("system", "Be terse."), Message("user", "hi"), Message("assistant", "hello"), Message("user", "why?")]
    plan = [PlannedRequest(0, s, ChatRequest("", "m", conversation)) for s in range(2)]  # num_generations=2
    kwargs = {"temperature": 0.3, "top_p": 0.8, "seed": 7, "safe_prompt": True, "presence_penalty": 0.1}
    model = llm(sb, inline_threshold=0, generation_kwargs=kwargs)
    pending(model, plan)
    assert counts(sb)["requests"] == 2  # two generations are two paid requests
    client = opts.client(opts.resolve({"api_key": KEY, "base_url": sb.mistral_base_url}))
    (file_id,) = client.batch.jobs.get(job_id=sb.jobs()[0]["id"]).input_files
    bodies = [json.loads(l)["body"] for l in client.files.download(file_id=file_id).iter_lines() if l]
    for body in bodies:
        assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
        assert {k: body[k] for k in ("temperature", "top_p", "random_seed", "safe_prompt", "presence_penalty")} == {
            "temperature": 0.3, "top_p": 0.8, "random_seed": 7, "safe_prompt": True, "presence_penalty": 0.1,
        }
    sb.advance(DONE)
    results = generate(model, plan)
    want = expected_reply([{"role": m.role, "content": m.content} for m in conversation])
    second = expected_reply([{"role": m.role, "content": m.content} for m in conversation], variant=1)
    assert [(r.row, r.sample, r.result.text) for r in results] == [(0, 0, want), (0, 1, second)]


def test_unexpressible_request_is_refused_before_anything_is_sent(sb, mistral):
    plan = [PlannedRequest(0, 0, ChatRequest("", "m", [Message("user", "q"), Message("assistant", "prefill")]))]
    with pytest.raises(ValidationError, match="field 'messages'"):
        generate(llm(sb), plan)
    with pytest.raises(ValidationError, match="field 'n'"):
        generate(llm(sb, generation_kwargs={"n": 2}), planned(["q"]))
    assert counts(sb)["http"] == {}


def test_missing_key_fails_before_any_request_reaches_mistral(sb, mistral):
    with pytest.raises(MissingCredentials, match="MISTRAL_API_KEY"):
        generate(LLM(f"mistral/{MODEL}", base_url=sb.mistral_base_url), planned(PROMPTS))
    with pytest.raises(MissingCredentials):
        with Pipeline(name="no-key") as p:
            LoadDataFromDicts(name="load", data=[{"instruction": "q"}]) >> TextGeneration(
                name="gen", llm=LLM(f"mistral/{MODEL}", base_url=sb.mistral_base_url)
            )
        p.run()
    assert counts(sb)["http"] == {} and counts(sb)["jobs"] == 0


def test_transient_429_and_5xx_are_retried_by_the_client(sb, mistral):
    sb.set_faults(provider="mistral", http_status=429, http_method="POST", http_path="/v1/batch/jobs$",
                  retry_after=0.01, times=2)
    sb.set_faults(provider="mistral", http_status=503, http_method="GET", retry_after=0.01, times=1)
    model, plan = llm(sb), planned(PROMPTS[:2])
    pending(model, plan)
    assert counts(sb)["http"]["POST /v1/batch/jobs"] == 3 and counts(sb)["jobs"] == 1
    sb.advance(DONE)
    assert [r.result.ok for r in generate(model, plan)] == [True, True]


def test_a_5xx_on_create_is_not_retried_blindly_but_reconciled_by_tag(sb, mistral):
    # A 500 may hide a created job: retrying the create could pay twice.
    sb.set_faults(provider="mistral", http_status=500, http_method="POST", http_path="/v1/batch/jobs$", times=1)
    model, plan = llm(sb), planned(PROMPTS[:2])
    with pytest.raises(ProviderError, match="intent is saved"):
        generate(model, plan)
    assert counts(sb)["http"]["POST /v1/batch/jobs"] == 1
    pending(model, plan)  # the tag finds nothing, so the chunk goes out now
    assert counts(sb)["jobs"] == 1


def test_the_key_stays_out_of_the_store_metadata_and_logs(sb, mistral, overnight_home, monkeypatch, caplog):
    monkeypatch.setenv("MISTRAL_DEBUG", "1")  # the SDK's own request log, headers included
    caplog.set_level("DEBUG")
    model, plan = llm(sb, inline_threshold=0), planned(PROMPTS[:3])
    pending(model, plan)
    sb.advance(DONE)
    generate(model, plan)
    assert "/v1/batch/jobs" in caplog.text  # the SDK did log its requests (headers included)...
    assert KEY not in caplog.text  # ...without the key
    stored = [p for p in overnight_home.rglob("*") if p.is_file()]
    assert stored and not [p for p in stored if KEY.encode() in p.read_bytes()]
    assert all(set(j["metadata"]) == {"overnight_tag"} for j in sb.jobs())


def test_a_download_cut_short_is_fetched_again_on_the_next_run(sb, mistral):
    model, plan = llm(sb), planned(PROMPTS)
    pending(model, plan)
    sb.advance(DONE)
    sb.set_faults(provider="mistral", download_truncate=0.5, download_truncate_mode="short", times=1)
    # Cut at a line boundary, the body parses cleanly: the missing rows must not look
    # unfinished (they would be paid for again), so the fetch fails and is retried later.
    with pytest.raises(ProviderError, match="stopped after"):
        generate(model, plan)
    assert counts(sb)["jobs"] == 1
    assert [r.result.text for r in generate(model, plan)] == [answer(p) for p in PROMPTS]
    assert counts(sb)["jobs"] == 1 and counts(sb)["http"]["GET /v1/files/{file_id}/content"] == 2


def test_a_job_failing_validation_is_reported_and_resubmitted_whole(sb, mistral):
    sb.set_faults(provider="mistral", fail_validation=True, times=1)
    model, plan = llm(sb), planned(PROMPTS[:3])
    (remote_id,) = pending(model, plan).jobs_ids
    sb.advance(DONE)
    client = mistral.connect("mistral", {"api_key": KEY, "base_url": sb.mistral_base_url})
    status = mistral.check("mistral", JobRef("mistral", remote_id, "t"), client, None)
    assert status.state is JobState.FAILED and "failed validation" in status.message
    pending(model, plan)
    assert job_sizes(sb) == [3, 3]
    sb.advance(DONE)
    assert all(r.result.ok for r in generate(model, plan))


def test_find_job_keeps_the_first_of_duplicate_jobs_and_cancels_the_others(sb, mistral):
    client = opts.client(opts.resolve({"api_key": KEY, "base_url": sb.mistral_base_url}))
    line = translate.build_line(request(("user", "x")))
    made = [
        client.batch.jobs.create(endpoint=translate.ENDPOINT, requests=[line], model=MODEL,
                                 metadata={"overnight_tag": "ovn-dup"})
        for _ in range(2)
    ]
    ref = mistral.find_job("mistral", "ovn-dup", mistral.connect("mistral", {"api_key": KEY, "base_url": sb.mistral_base_url}), None)
    assert ref.remote_id == made[0].id
    assert client.batch.jobs.get(job_id=made[1].id).status == "CANCELLATION_REQUESTED"
    assert client.batch.jobs.get(job_id=made[0].id).status == "QUEUED"


@pytest.mark.parametrize(("status", "deleted", "raised", "jobs"),
                         [(422, 1, OfflineBatchGenerationNotFinished, 1), (500, 0, ProviderError, 0)])
def test_input_file_is_deleted_only_when_the_create_was_certainly_refused(sb, mistral, status, deleted, raised, jobs):
    sb.set_faults(provider="mistral", http_status=status, http_method="POST", http_path="/v1/batch/jobs$", times=1)
    with pytest.raises(raised):
        generate(llm(sb, inline_threshold=0, max_retries=0), planned(PROMPTS[:2]))
    # A 500 may hide a created job that still needs its input; a 4xx created nothing, so it
    # is a SubmissionRejected (an attempt counted) and the same run submits again.
    assert counts(sb)["http"].get("DELETE /v1/files/{file_id}", 0) == deleted
    assert counts(sb)["jobs"] == jobs


def test_job_cancelled_before_it_started_has_no_results_and_is_resubmitted(sb, mistral):
    model, plan = llm(sb), planned(PROMPTS[:3])
    (remote_id,) = pending(model, plan).jobs_ids
    options = {"api_key": KEY, "base_url": sb.mistral_base_url}
    ref = JobRef("mistral", remote_id, "t", {"inline": True})
    mistral.cancel("mistral", ref, mistral.connect("mistral", options))  # still QUEUED
    sb.advance(DONE)
    assert mistral.check("mistral", ref, mistral.connect("mistral", options), None).state is JobState.CANCELLED
    assert list(mistral.fetch("mistral", ref, mistral.connect("mistral", options), None)) == []  # no files, no inline outputs
    pending(model, plan)
    assert job_sizes(sb) == [3, 3]
    sb.advance(DONE)
    assert [r.result.text for r in generate(model, plan)] == [answer(p) for p in PROMPTS[:3]]


@pytest.mark.parametrize("inline_threshold", [1000, 0], ids=["inline", "uploaded-file"])
def test_list_jobs_reads_input_files_at_once_and_inline_jobs_once_ended(sb, mistral, inline_threshold):
    options = {"api_key": KEY, "base_url": sb.mistral_base_url}
    first = pending(llm(sb, inline_threshold=inline_threshold), planned(PROMPTS[:3]), plan_id=f"list-{inline_threshold}")
    [job_id] = first.jobs_ids
    store = Store.open()
    try:
        keys = {row["key"] for row in store._query("SELECT key FROM requests")}
    finally:
        store.close()

    def listed():
        found = [j for j in mistral.list_jobs("mistral", mistral.connect("mistral", options), 3600.0, 1000, frozenset(), frozenset())
                 if j.ref.remote_id == job_id]
        assert len(found) == 1
        return found[0]

    assert listed().custom_ids == (None if inline_threshold else keys)
    sb.advance(DONE)
    assert listed().custom_ids == keys
    client = mistral.connect("mistral", options)
    [skipped] = [j for j in mistral.list_jobs("mistral", client, 3600.0, 1000, frozenset({job_id}), frozenset())
                 if j.ref.remote_id == job_id]
    assert skipped.custom_ids is None
