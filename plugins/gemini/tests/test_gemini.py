"""The overnight-gemini plugin: pure translation, options, and (through the official
``google-genai`` SDK against the sandbox) the whole batch lifecycle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import overnight_gemini
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
from overnight_gemini import GeminiPlugin
from overnight_gemini import options as opts
from overnight_gemini import translate

KEY = "gm-test-secret-key-123456"
MODEL = "gemini-test"


def request(*messages: tuple[str, str], **params) -> ChatRequest:
    return ChatRequest("cid-1", MODEL, [Message(r, c) for r, c in messages], GenerationParams(**params))


@pytest.fixture(autouse=True)
def _fresh_clients(monkeypatch):
    for name in (*opts.KEY_ENVS, *opts.BASE_URL_ENVS):
        monkeypatch.delenv(name, raising=False)
    # The tests share one sandbox (one account): a test would adopt the jobs of the last.
    monkeypatch.setenv("OVERNIGHT_ADOPT_HORIZON", "0")
    yield


# --- declaration ----------------------------------------------------------------------------


def test_declares_real_limits_capabilities_and_secret_env():
    (info,) = overnight_gemini.register_providers()
    assert info.name == "gemini"
    assert info.limits.max_bytes == 2048 * 1024 * 1024  # the Files API's 2 GB per file
    assert info.limits.max_line_bytes == 20 * 1024 * 1024  # an inline request is under 20 MB
    assert info.limits.completion_window == 48 * 3600
    assert info.capabilities.cancel and info.capabilities.find_by_tag
    assert set(info.secret_env) == {"GEMINI_API_KEY", "GOOGLE_API_KEY"}
    assert {"top_k", "thinking_config", "response_schema"} <= info.extra_params


def test_passes_the_contract_checks():
    from overnight.plugin_testing import check_plugin

    (info,) = check_plugin(overnight_gemini)
    assert info.name == "gemini"
    check_plugin(GeminiPlugin(name="gemini-eu", limits=Limits(max_requests=10, max_bytes=10_000)))


# --- requests -------------------------------------------------------------------------------


def test_line_carries_system_instruction_turns_and_every_option():
    line = translate.build_line(
        request(
            ("system", "be brief"), ("user", "hi"), ("assistant", "hello"), ("user", "and?"),
            max_tokens=7, temperature=0.2, top_p=0.9, stop=["END", "\n\n"], seed=11,
            extra={"top_k": 5, "thinking_config": {"thinkingBudget": 0}},
        )
    )
    assert line == {
        "key": "cid-1",
        "request": {
            "contents": [
                {"role": "user", "parts": [{"text": "hi"}]},
                {"role": "model", "parts": [{"text": "hello"}]},
                {"role": "user", "parts": [{"text": "and?"}]},
            ],
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "generationConfig": {
                "maxOutputTokens": 7, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END", "\n\n"],
                "seed": 11, "topK": 5, "thinkingConfig": {"thinkingBudget": 0},
            },
        },
    }


def test_json_modes_map_to_mime_type_and_schema():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    line = translate.build_line(request(("user", "x"),
                                        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}))
    assert line["request"]["generationConfig"] == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    plain = translate.build_line(request(("user", "x"), response_format={"type": "json_object"}))
    assert plain["request"]["generationConfig"] == {"responseMimeType": "application/json"}
    openapi = {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}}
    native = translate.build_line(request(("user", "x"), extra={"response_schema": openapi}))
    assert native["request"]["generationConfig"] == {"responseMimeType": "application/json", "responseSchema": openapi}


@pytest.mark.parametrize(
    ("req", "field"),
    [
        (request(("user", "x"), response_format={"type": "grammar"}), "response_format"),
        (request(("user", "x"), response_format={"type": "json_schema", "json_schema": {"name": "n"}}), "response_format"),
        (request(("user", "q"), ("assistant", "prefill")), "messages"),
        (request(("user", "q"), ("system", "late")), "messages"),
        (request(("tool", "q")), "messages"),
        (request(("system", "only")), "messages"),
        (request(("user", "x"), stop=["a", "b", "c", "d", "e", "f"]), "stop"),
        (request(("user", "x"), temperature=2.5), "temperature"),
    ],
)
def test_requests_gemini_cannot_express_are_refused_with_the_field(req, field):
    with pytest.raises(InvalidRequest) as exc:
        translate.build_line(req)
    assert exc.value.field == field


# --- statuses and results -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "mapped"),
    [
        ("JOB_STATE_PENDING", JobState.RUNNING), ("JOB_STATE_RUNNING", JobState.RUNNING),
        ("JOB_STATE_SUCCEEDED", JobState.FINISHED), ("JOB_STATE_FAILED", JobState.FAILED),
        ("JOB_STATE_CANCELLED", JobState.CANCELLED), ("JOB_STATE_EXPIRED", JobState.EXPIRED),
        ("BATCH_STATE_EXPIRED", JobState.EXPIRED), ("JOB_STATE_CANCELLING", JobState.RUNNING),
        ("JOB_STATE_SOMETHING_NEW", JobState.RUNNING),
    ],
)
def test_state_mapping(state, mapped):
    assert translate.job_state(state) is mapped


def test_result_lines_by_key_with_text_usage_errors_and_blocks():
    ok = translate.parse_file_line({"key": "a", "response": {
        "candidates": [{"content": {"parts": [{"text": "thinking", "thought": True}, {"text": "hel"}, {"text": "lo"}]},
                        "finishReason": "MAX_TOKENS"}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2}}})
    assert (ok.custom_id, ok.status, ok.text, ok.finish_reason) == ("a", ResultStatus.SUCCEEDED, "hello", "MAX_TOKENS")
    assert (ok.usage.input_tokens, ok.usage.output_tokens) == (5, 2)
    failed = translate.parse_file_line({"key": "b", "error": {"code": 3, "message": "bad", "status": "INVALID_ARGUMENT"}})
    assert failed.status is ResultStatus.ERRORED and failed.error == "3 INVALID_ARGUMENT: bad"
    blocked = translate.parse_file_line({"key": "c", "response": {"promptFeedback": {"blockReason": "SAFETY"}}})
    assert blocked.status is ResultStatus.ERRORED and "SAFETY" in blocked.error
    assert translate.parse_file_line({"response": {}}) is None  # no key: matches no request


# --- options --------------------------------------------------------------------------------


def test_missing_key_names_the_env_var():
    with pytest.raises(MissingCredentials, match="GEMINI_API_KEY"):
        overnight_gemini.connect("gemini", {})


def test_unknown_and_malformed_options_are_configuration_errors():
    with pytest.raises(ConfigurationError, match="unknown Gemini client option.*organization"):
        opts.resolve({"api_key": KEY, "organization": "x"})
    with pytest.raises(ConfigurationError, match="API version"):
        opts.resolve({"api_key": KEY, "base_url": "https://generativelanguage.googleapis.com/v1beta"})
    with pytest.raises(ConfigurationError, match="max_retries"):
        opts.resolve({"api_key": KEY, "max_retries": -1})
    with pytest.raises(ConfigurationError, match="api_version"):
        opts.resolve({"api_key": KEY, "api_version": "beta!"})


@pytest.mark.parametrize("key_env", ["GEMINI_API_KEY", "GOOGLE_API_KEY"])
@pytest.mark.parametrize("url_env", ["GEMINI_BASE_URL", "GOOGLE_GEMINI_BASE_URL"])
def test_environment_gives_key_and_base_url(monkeypatch, key_env, url_env):
    monkeypatch.setenv(key_env, KEY)
    monkeypatch.setenv(url_env, "http://127.0.0.1:9/gemini")
    settings = opts.resolve({"timeout": 2.5})
    assert (settings.api_key, settings.base_url, settings.timeout_ms) == (KEY, "http://127.0.0.1:9/gemini/", 2500)
    assert KEY not in repr(settings)


# === through the official SDK, against the sandbox ==========================================

sandbox = pytest.importorskip("overnight.sandbox")
Sandbox, expected_reply = sandbox.Sandbox, sandbox.expected_reply

PROMPTS = [f"question number {i}" for i in range(10)]
DONE = 3600  # sandbox seconds after which every job in these tests has ended


class ScopedSandbox:
    """One module-wide sandbox seen as fresh by each test: its own faults, counters and jobs."""

    def __init__(self, box) -> None:
        self.box = box
        box.clear_faults()
        box.reset_counters()
        self._before = {j["id"] for j in box.jobs()}
        self.gemini_base_url = box.gemini_base_url
        self.advance, self.set_faults, self.counters = box.advance, box.set_faults, box.counters

    def jobs(self):
        return [j for j in self.box.jobs() if j["id"] not in self._before]


@pytest.fixture(scope="module")
def _module_sandbox(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp("gemini-sandbox")) as box:
        yield box


@pytest.fixture
def sb(_module_sandbox):
    yield ScopedSandbox(_module_sandbox)
    _module_sandbox.clear_faults()


@pytest.fixture
def gemini(registry):
    registry.register(overnight_gemini, name="gemini")
    return overnight_gemini


def llm(sb, **kwargs) -> LLM:
    kwargs.setdefault("api_key", KEY)
    return LLM(f"gemini/{MODEL}", base_url=sb.gemini_base_url, **kwargs)


def options(sb):
    return {"api_key": KEY, "base_url": sb.gemini_base_url}


def sdk(sb):
    # The connection keeps the client alive: a genai.Client closes its HTTP client when collected,
    # so ``sdk(sb).batches.create(...)`` on a bare client could find it closed.
    return gemini_connection(sb).sdk


def gemini_connection(sb, _kept={}):  # noqa: B006  (one connection per sandbox, kept for the test run)
    return _kept.setdefault(sb.gemini_base_url, opts.connect(options(sb)))


def answer(prompt, **options):
    return expected_reply([{"role": "user", "content": prompt}], **options)


def counts(sb):
    return sb.counters()["gemini"]


def job_sizes(sb):
    return [j["total"] for j in reversed(sb.jobs()) if j["provider"] == "gemini"]  # oldest first


CREATE = "POST /v1/models/{model}"


@pytest.mark.parametrize("inline_threshold", [1000, 0], ids=["inline", "uploaded-file"])
def test_submit_not_finished_resume_then_results_in_order(sb, gemini, inline_threshold):
    model = llm(sb, inline_threshold=inline_threshold)
    plan = planned(PROMPTS)
    first = pending(model, plan)
    assert first.counts["pending"] == 10 and model.jobs_ids == first.jobs_ids
    assert pending(model, plan).jobs_ids == first.jobs_ids  # checked again, not resubmitted
    assert (counts(sb)["jobs"], counts(sb)["files"]) == (1, 0 if inline_threshold else 1)
    (job,) = sb.jobs()
    assert first.jobs_ids[0] == f"batches/{job['id']}" and set(job["metadata"]) == {"display_name"}

    sb.advance(DONE)
    results = generate(model, plan)
    assert [r.row for r in results] == list(range(10))
    assert [r.result.text for r in results] == [answer(p) for p in PROMPTS]
    assert all(r.result.finish_reason == "STOP" and r.result.usage.output_tokens > 0 for r in results)
    # Stored once, in the text's column, and put back into the raw answer read back.
    assert all(r.result.raw["candidates"][0]["content"]["parts"][0]["text"] == r.result.text for r in results)
    assert counts(sb)["jobs"] == 1 and counts(sb)["requests"] == 10


def test_uploaded_input_is_a_jsonl_file_of_keyed_requests_named_by_the_tag(sb, gemini):
    pending(llm(sb, inline_threshold=0), planned(PROMPTS[:2]))
    (job,) = sb.jobs()
    client = sdk(sb)
    remote = client.batches.get(name=f"batches/{job['id']}")
    (uploaded,) = [f for f in client.files.list() if f.display_name == remote.display_name]
    assert uploaded.mime_type == "application/jsonl" and remote.model == f"models/{MODEL}"
    # Uploaded files cannot be downloaded from the API; read the sandbox's copy.
    body = sb.box.engine.file_path(uploaded.name.removeprefix("files/")).read_text()
    lines = [json.loads(l) for l in body.splitlines()]
    assert sorted(l["request"]["contents"][-1]["parts"][0]["text"] for l in lines) == PROMPTS[:2]
    assert len({l["key"] for l in lines}) == 2


def test_results_are_matched_by_key_not_position(sb, gemini):
    # Corrupt the result: a duplicate and an unknown key; the rows still map one to one.
    sb.set_faults(provider="gemini", result_duplicate=True, result_unknown_id=True, times=1)
    model, plan = llm(sb, inline_threshold=0), planned(PROMPTS[:4])
    pending(model, plan)
    sb.advance(DONE)
    assert [r.result.text for r in generate(model, plan)] == [answer(p) for p in PROMPTS[:4]]


def test_through_the_pipeline_across_runs(sb, gemini):
    def build():
        with Pipeline(name="gemini-answers") as p:
            load = LoadDataFromDicts(name="load", data=[{"instruction": q} for q in PROMPTS[:4]])
            load >> TextGeneration(name="gen", llm=llm(sb), system_prompt="Answer briefly.")
        return p

    for _ in range(2):
        with pytest.raises(PipelineNotFinished):
            build().run()
    assert counts(sb)["jobs"] == 1
    sb.advance(DONE)
    rows = list(build().run())
    system = {"role": "system", "content": "Answer briefly."}
    assert [r["generation"] for r in rows] == [expected_reply([system, {"role": "user", "content": q}]) for q in PROMPTS[:4]]
    assert all(r["generation_error"] is None and r["model_name"] == f"gemini/{MODEL}" for r in rows)


@pytest.mark.parametrize("inline_threshold", [1000, 0], ids=["inline", "uploaded-file"])
def test_request_errors_are_retried_then_reported_as_error_rows(sb, gemini, inline_threshold):
    sb.set_faults(provider="gemini", error_rate=1.0)
    model, plan = llm(sb, max_attempts=2, inline_threshold=inline_threshold), planned(PROMPTS[:3])
    pending(model, plan)
    sb.advance(DONE)
    pending(model, plan)
    sb.advance(DONE)
    results = generate(model, plan)
    assert job_sizes(sb) == [3, 3]
    assert all(not r.result.ok and "fault injection" in r.result.error for r in results)


@pytest.mark.parametrize("inline_threshold", [1000, 0], ids=["inline", "uploaded-file"])
def test_expired_job_gives_nothing_back_so_every_row_goes_out_again_once(sb, gemini, inline_threshold):
    # Gemini's guide: an expired job "will not have any results to retrieve".
    sb.set_faults(provider="gemini", expire_after_fraction=0.5, times=1)
    model, plan = llm(sb, inline_threshold=inline_threshold), planned(PROMPTS)
    first = pending(model, plan)
    sb.advance(DONE)
    ref = JobRef("gemini", first.jobs_ids[0], "t")
    status = gemini.check("gemini", ref, gemini.connect("gemini", options(sb)), None)
    assert (status.state, status.raw_status) == (JobState.EXPIRED, "JOB_STATE_EXPIRED")
    assert list(gemini.fetch("gemini", ref, gemini.connect("gemini", options(sb)), None)) == []
    pending(model, plan)
    assert job_sizes(sb) == [10, 10]
    sb.advance(DONE)
    assert [r.result.text for r in generate(model, plan)] == [answer(p) for p in PROMPTS]
    assert counts(sb)["requests"] == 20


def test_cancelled_job_keeps_finished_rows_inline_too(sb, gemini):
    sb.set_faults(provider="gemini", cancel_after_fraction=0.5, times=1)
    model, plan = llm(sb), planned(PROMPTS)
    first = pending(model, plan)
    sb.advance(DONE)
    ref = JobRef("gemini", first.jobs_ids[0], "t")
    assert [r.status for r in gemini.fetch("gemini", ref, gemini.connect("gemini", options(sb)), None)] == [ResultStatus.SUCCEEDED] * 5
    pending(model, plan)
    assert job_sizes(sb) == [10, 5]


def test_a_stuck_job_expires_after_48_hours(sb, gemini):
    sb.set_faults(provider="gemini", stuck=True, times=1)
    model, plan = llm(sb), planned(PROMPTS[:2])
    (remote_id,) = pending(model, plan).jobs_ids
    sb.advance(47 * 3600)
    assert gemini.check("gemini", JobRef("gemini", remote_id, "t"), gemini.connect("gemini", options(sb)), None).state is JobState.RUNNING
    sb.advance(2 * 3600)
    assert gemini.check("gemini", JobRef("gemini", remote_id, "t"), gemini.connect("gemini", options(sb)), None).state is JobState.EXPIRED
    pending(model, plan)
    sb.advance(DONE)
    assert [r.result.text for r in generate(model, plan)] == [answer(p) for p in PROMPTS[:2]]


def test_provider_cancel_part_way_keeps_what_finished(sb, gemini):
    sb.set_faults(provider="gemini", cancel_after_fraction=0.3, times=1)
    model, plan = llm(sb, inline_threshold=0), planned(PROMPTS)
    pending(model, plan)
    sb.advance(DONE)
    pending(model, plan)
    assert job_sizes(sb) == [10, 7]
    sb.advance(DONE)
    assert [r.result.text for r in generate(model, plan)] == [answer(p) for p in PROMPTS]


def test_cancel_keeps_finished_rows_and_resubmits_the_rest(sb, gemini, registry, monkeypatch):
    model, plan = llm(sb), planned(PROMPTS)
    (remote_id,) = pending(model, plan).jobs_ids
    sb.advance(5 + 15)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)  # as `overnight cancel` does: the environment must do
    monkeypatch.setenv("GEMINI_BASE_URL", sb.gemini_base_url)
    provider = registry.provider("gemini")
    ref = JobRef("gemini", remote_id, "t")
    provider.cancel(ref, {})
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
    import overnight_gemini
    from overnight import ChatRequest, LLM, Message
    from overnight.executor import PlannedRequest
    from overnight.plugins import PluginRegistry, set_registry
    from overnight.store import Store

    set_registry(PluginRegistry([overnight_gemini], entrypoints=False))
    llm = LLM("gemini/%s", api_key=sys.argv[1], base_url=sys.argv[2], inline_threshold=0)
    plan = [PlannedRequest(i, 0, ChatRequest("", "m", [Message("user", p)])) for i, p in enumerate(sys.argv[3:])]
    list(llm.generate_offline(plan, store=Store.open(), step="gen", plan_id="plan-1"))
    """
    % MODEL
)


@pytest.mark.parametrize(("point", "files"), [("after_create", 1), ("after_upload", 2)])
def test_crashed_run_is_recovered_by_tag_without_paying_twice(sb, gemini, point, files):
    client = sdk(sb)
    before = {f.name for f in client.files.list()}
    env = {**os.environ, "OVERNIGHT_FAULT_POINT": point}
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN, KEY, sb.gemini_base_url, *PROMPTS[:3]],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == -9, done.stderr
    assert counts(sb)["jobs"] == (1 if point == "after_create" else 0)
    model, plan = llm(sb, inline_threshold=0), planned(PROMPTS[:3])
    pending(model, plan)
    assert (counts(sb)["jobs"], counts(sb)["files"]) == (1, files)
    (job,) = sb.jobs()
    left = {f.name for f in client.files.list()} - before
    assert left == {f.name for f in client.files.list() if f.display_name == job["metadata"]["display_name"]}
    assert len(left) == 1
    sb.advance(DONE)
    assert [r.result.text for r in generate(model, plan)] == [answer(p) for p in PROMPTS[:3]]
    assert counts(sb)["jobs"] == 1


def test_find_job_returns_none_only_when_no_job_has_the_tag(sb, gemini):
    assert gemini.find_job("gemini", "ovn-never-used", gemini.connect("gemini", options(sb)), None) is None
    first = pending(llm(sb), planned(PROMPTS[:2]))
    tag = sb.jobs()[0]["metadata"]["display_name"]
    pending(llm(sb), planned(PROMPTS[2:4]), plan_id="other")
    ref = gemini.find_job("gemini", tag, gemini.connect("gemini", options(sb)), None)
    assert (ref.remote_id, ref.tag) == (first.jobs_ids[0], tag)


def test_find_job_keeps_the_first_of_duplicate_jobs_and_cancels_the_others(sb, gemini):
    client = sdk(sb)
    src = [translate.inline_request(translate.build_line(request(("user", "x"))))]
    made = [client.batches.create(model=MODEL, src=src, config={"display_name": "ovn-dup"}) for _ in range(2)]
    ref = gemini.find_job("gemini", "ovn-dup", gemini.connect("gemini", options(sb)), None)
    assert ref.remote_id == made[0].name
    sb.advance(DONE)
    assert client.batches.get(name=made[1].name).state.value == "JOB_STATE_CANCELLED"
    assert client.batches.get(name=made[0].name).state.value == "JOB_STATE_SUCCEEDED"


def test_dataset_over_lowered_limits_is_split_into_several_jobs(tmp_path, registry):
    registry.register(GeminiPlugin(limits=Limits(max_requests=4, max_bytes=2**30)), name="gemini-small")
    with Sandbox(state_dir=tmp_path / "sb", limits={"gemini": {"max_requests": 4}}) as box:
        model, plan = llm(box), planned(PROMPTS)
        assert len(pending(model, plan).jobs_ids) == 3
        assert [j["total"] for j in reversed(box.jobs())] == [4, 4, 2]
        box.advance(DONE)
        assert [r.result.text for r in generate(model, plan)] == [answer(p) for p in PROMPTS]


@pytest.mark.parametrize("inline_threshold", [1000, 0], ids=["inline", "uploaded-file"])
def test_every_request_option_reaches_gemini_and_shapes_the_answer(sb, gemini, inline_threshold):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}, "words": {"type": "integer"}}}
    cases = {
        "stop": ({"stop": ["answer"]}, {"stop": ["answer"]}, "STOP"),
        "max_tokens": ({"max_tokens": 3}, {"max_tokens": 3}, "MAX_TOKENS"),
        "json": (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}},
            {"response_format": {"type": "json_schema", "json_schema": {"schema": schema}}},
            "STOP",
        ),
    }
    for name, (kwargs, reply_options, finish) in cases.items():
        model = llm(sb, generation_kwargs=kwargs, inline_threshold=inline_threshold)
        pending(model, planned(["hello there"]), plan_id=name)
        sb.advance(DONE)
        (row,) = generate(model, planned(["hello there"]), plan_id=name)
        assert row.result.text == answer("hello there", **reply_options), name
        assert row.result.finish_reason == finish, name
    assert json.loads(row.result.text)["words"] > 0


def test_multi_turn_and_system_instruction_through_the_sdk_inline(sb, gemini):
    conversation = [Message("system", "Be terse."), Message("user", "hi"), Message("assistant", "hello"), Message("user", "why?")]
    plan = [PlannedRequest(0, s, ChatRequest("", "m", conversation)) for s in range(2)]
    model = llm(sb, generation_kwargs={"temperature": 0.3, "top_p": 0.8, "seed": 7, "top_k": 3})
    pending(model, plan)
    assert counts(sb)["requests"] == 2
    sb.advance(DONE)
    want = expected_reply([{"role": m.role, "content": m.content} for m in conversation])
    second = expected_reply([{"role": m.role, "content": m.content} for m in conversation], variant=1)
    assert [(r.row, r.sample, r.result.text) for r in generate(model, plan)] == [(0, 0, want), (0, 1, second)]


def test_bad_input_is_refused_before_anything_is_sent(sb, gemini):
    plan = [PlannedRequest(0, 0, ChatRequest("", "m", [Message("user", "q"), Message("assistant", "prefill")]))]
    with pytest.raises(ValidationError, match="field 'messages'"):
        generate(llm(sb), plan)
    with pytest.raises(ValidationError, match="field 'n'"):
        generate(llm(sb, generation_kwargs={"n": 2}), planned(["q"]))
    with pytest.raises(ValidationError, match="field 'stop'"):
        generate(llm(sb, generation_kwargs={"stop": list("abcdef")}), planned(["q"]))
    with pytest.raises(MissingCredentials, match="GEMINI_API_KEY"):
        generate(LLM(f"gemini/{MODEL}", base_url=sb.gemini_base_url), planned(PROMPTS))
    assert counts(sb)["http"] == {} and counts(sb)["jobs"] == 0


def test_transient_429_and_5xx_are_retried(sb, gemini):
    sb.set_faults(provider="gemini", http_status=429, http_method="POST", http_path=":batchGenerateContent$",
                  retry_after=0.01, times=2)
    sb.set_faults(provider="gemini", http_status=503, http_method="GET", retry_after=0.01, times=1)
    model, plan = llm(sb), planned(PROMPTS[:2])
    pending(model, plan)
    assert counts(sb)["http"][CREATE] == 3 and counts(sb)["jobs"] == 1
    sb.advance(DONE)
    assert [r.result.ok for r in generate(model, plan)] == [True, True]


def test_a_5xx_on_create_is_not_retried_blindly_but_reconciled_by_tag(sb, gemini):
    sb.set_faults(provider="gemini", http_status=500, http_method="POST", http_path=":batchGenerateContent$", times=1)
    model, plan = llm(sb), planned(PROMPTS[:2])
    with pytest.raises(ProviderError, match="intent is saved"):
        generate(model, plan)
    assert counts(sb)["http"][CREATE] == 1
    pending(model, plan)  # the tag finds nothing, so the chunk goes out now
    assert counts(sb)["jobs"] == 1


@pytest.mark.parametrize(("status", "deleted"), [(400, 1), (500, 0)])
def test_input_file_is_deleted_only_when_the_create_was_certainly_refused(sb, gemini, status, deleted):
    sb.set_faults(provider="gemini", http_status=status, http_method="POST", http_path=":batchGenerateContent$", times=1)
    model = llm(sb, inline_threshold=0, max_retries=0)
    # A 400 created nothing: a failed attempt, submitted again at once. A 500 may hide a
    # created job that still needs its input: the run stops and reconciles by tag later.
    with pytest.raises(OfflineBatchGenerationNotFinished if status == 400 else ProviderError):
        generate(model, planned(PROMPTS[:2]))
    assert counts(sb)["http"].get("DELETE /v1/files/{name}", 0) == deleted
    assert counts(sb)["jobs"] == (1 if status == 400 else 0)


def test_the_key_stays_out_of_the_store_metadata_and_logs(sb, gemini, overnight_home, caplog):
    caplog.set_level("DEBUG")
    model, plan = llm(sb, inline_threshold=0), planned(PROMPTS[:3])
    pending(model, plan)
    sb.advance(DONE)
    generate(model, plan)
    assert KEY not in caplog.text
    stored = [p for p in overnight_home.rglob("*") if p.is_file()]
    assert stored and not [p for p in stored if KEY.encode() in p.read_bytes()]
    assert all(set(j["metadata"]) == {"display_name"} for j in sb.jobs())


@pytest.mark.parametrize("mode", ["short", "abort"])
def test_a_download_cut_short_is_fetched_again_on_the_next_run(sb, gemini, mode):
    model, plan = llm(sb, inline_threshold=0), planned(PROMPTS)
    pending(model, plan)
    sb.advance(DONE)
    sb.set_faults(provider="gemini", download_truncate=0.5, download_truncate_mode=mode, times=1)
    with pytest.raises(ProviderError):
        generate(model, plan)
    assert [r.result.text for r in generate(model, plan)] == [answer(p) for p in PROMPTS]
    assert counts(sb)["jobs"] == 1


def test_a_job_failing_validation_is_reported_and_resubmitted_whole(sb, gemini):
    sb.set_faults(provider="gemini", fail_validation=True, times=1)
    model, plan = llm(sb), planned(PROMPTS[:3])
    (remote_id,) = pending(model, plan).jobs_ids
    sb.advance(DONE)
    status = gemini.check("gemini", JobRef("gemini", remote_id, "t"), gemini.connect("gemini", options(sb)), None)
    assert status.state is JobState.FAILED and status.message
    pending(model, plan)
    assert job_sizes(sb) == [3, 3]
    sb.advance(DONE)
    assert all(r.result.ok for r in generate(model, plan))


def test_job_cancelled_before_it_started_has_no_results_and_is_resubmitted(sb, gemini):
    model, plan = llm(sb), planned(PROMPTS[:3])
    (remote_id,) = pending(model, plan).jobs_ids
    ref = JobRef("gemini", remote_id, "t", {"inline": True})
    gemini.cancel("gemini", ref, gemini.connect("gemini", options(sb)))  # still pending
    sb.advance(DONE)
    assert gemini.check("gemini", ref, gemini.connect("gemini", options(sb)), None).state is JobState.CANCELLED
    assert list(gemini.fetch("gemini", ref, gemini.connect("gemini", options(sb)), None)) == []
    pending(model, plan)
    assert job_sizes(sb) == [3, 3]
    sb.advance(DONE)
    assert [r.result.text for r in generate(model, plan)] == [answer(p) for p in PROMPTS[:3]]


def test_plugins_json_lists_gemini_with_limits_and_capabilities(capsys):
    from overnight import plugins
    from overnight.cli import main

    previous = plugins.set_registry(plugins.PluginRegistry())  # what an installed tool loads
    try:
        main(["plugins", "--json"])
    finally:
        plugins.set_registry(previous)
    data = json.loads(capsys.readouterr().out)
    (plugin,) = [p for p in data["plugins"] if p["name"] == "gemini"]
    (provider,) = plugin["providers"]
    assert provider["name"] == "gemini"
    assert provider["limits"] == {"max_requests": 100_000, "max_bytes": 2048 * 1024 * 1024,
                                  "max_line_bytes": 20 * 1024 * 1024, "completion_window": 48 * 3600}
    assert provider["capabilities"] == {"cancel": True, "find_by_tag": True, "list_jobs": True, "online": True,
                                        "check_while_fetching": True}
    assert "thinking_config" in provider["extra_params"]
    assert not [f for f in data["failures"] if f["name"] == "gemini"]


@pytest.mark.parametrize("inline_threshold", [1000, 0], ids=["inline", "uploaded-file"])
def test_list_jobs_reads_keys_once_a_job_has_ended_and_never_of_an_expired_one(sb, gemini, inline_threshold):
    """The SDK shows no input of a Developer-API job and uploads cannot be downloaded: keys
    come from the results (inline ``metadata.key`` or the results file), once ended."""
    first = pending(llm(sb, inline_threshold=inline_threshold), planned(PROMPTS[:3]),
                    plan_id=f"list-{inline_threshold}")
    [job_id] = first.jobs_ids
    store = Store.open()
    try:
        keys = {row["key"] for row in store._query("SELECT key FROM requests")}
    finally:
        store.close()
    foreign = sdk(sb).batches.create(model=MODEL, src=[translate.inline_request(translate.build_line(
        request(("user", "x"))))], config={"display_name": "someone else's batch"})

    def listed(skip=frozenset(), tags=frozenset()):
        found = gemini.list_jobs("gemini", gemini.connect("gemini", options(sb)), 3600.0, 1000, skip, tags)
        assert foreign.name not in {j.ref.remote_id for j in found}  # not overnight's: not listed
        (mine,) = [j for j in found if j.ref.remote_id == job_id]
        return mine

    running = listed()
    assert running.state is JobState.RUNNING and running.custom_ids is None and running.ref.tag.startswith("ovn-")
    sb.advance(DONE)
    assert listed().custom_ids == keys and listed().state is JobState.FINISHED
    assert listed(skip=frozenset({job_id})).custom_ids is None  # the store knows it: nothing downloaded
    assert listed(tags=frozenset({"ovn-another"})).custom_ids is None  # not a tag looked for

    sb.set_faults(provider="gemini", stuck=True, times=1)
    expired = pending(llm(sb, inline_threshold=inline_threshold), planned(PROMPTS[3:5]),
                      plan_id=f"list-expired-{inline_threshold}")
    sb.advance(49 * 3600)
    (gone,) = [j for j in gemini.list_jobs("gemini", gemini.connect("gemini", options(sb)), 10**6, 1000, frozenset(), frozenset())
               if j.ref.remote_id == expired.jobs_ids[0]]
    assert gone.state is JobState.EXPIRED and gone.custom_ids is None  # no results, ever
