"""The executor's invariants, through the LLM, against the fake provider plugin."""

from __future__ import annotations

import pytest

from fakeprovider import FakeProvider, reply_to
from overnight import (
    Capabilities,
    ChatRequest,
    Message,
    OfflineBatchGenerationNotFinished,
    ProviderError,
    ProviderNotFound,
    UnconfirmedSubmission,
    ValidationError,
    Limits,
    MissingCredentials,
    hookimpl,
)
from overnight.executor import PlannedRequest
from overnight.models import evolve
from overnight.llm import LLM
from overnight.policy import RunPolicy
from overnight.store import Store


def plan(prompts, samples=1, model="m"):
    return [
        PlannedRequest(row=i, sample=s, request=ChatRequest("", model, [Message("user", p)]))
        for i, p in enumerate(prompts)
        for s in range(samples)
    ]


def generate(prompts, *, plan_id="plan-1", llm=None, **kwargs):
    llm = llm or LLM("fake/m")
    store = Store.open()
    try:
        return list(llm.generate_offline(plan(prompts), store=store, step="gen", plan_id=plan_id, **kwargs))
    finally:
        store.close()


PROMPTS = [f"question number {i}" for i in range(25)]


def test_submit_then_not_finished_then_done_in_order(fake):
    with pytest.raises(OfflineBatchGenerationNotFinished) as first:
        generate(PROMPTS)
    assert len(first.value.jobs_ids) == 1
    assert first.value.counts["pending"] == 25
    with pytest.raises(OfflineBatchGenerationNotFinished) as second:
        generate(PROMPTS)
    assert second.value.jobs_ids == first.value.jobs_ids
    fake.advance()
    results = generate(PROMPTS)
    assert [r.row for r in results] == list(range(25))
    assert [r.result.text for r in results] == [f"echo: {p}" for p in PROMPTS]
    assert all(r.result.usage.output_tokens > 0 for r in results)
    assert len(fake.jobs()) == 1  # checked twice, submitted once


def test_results_come_back_with_the_raw_answer_unless_the_caller_declines_it(fake):
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(PROMPTS[:3])
    fake.advance()
    whole = generate(PROMPTS[:3])
    assert [r.result.raw for r in whole] == [{"id": r.result.custom_id} for r in whole]
    lean = generate(PROMPTS[:3], raw=False)
    assert [r.result.raw for r in lean] == [None] * 3
    assert [evolve(r.result, raw=None) for r in whole] == [r.result for r in lean]  # the rest is the same


def test_llm_keeps_pending_job_ids(fake):
    llm = LLM("fake/m")
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(PROMPTS, llm=llm)
    assert llm.jobs_ids == (fake.jobs()[0]["id"],)


def test_chunks_follow_declared_limits(fake):
    fake.limits = Limits(max_requests=10, max_bytes=1_000_000, max_line_bytes=2_000)
    from overnight.plugins import PluginRegistry, set_registry

    set_registry(PluginRegistry([fake], entrypoints=False))
    with pytest.raises(OfflineBatchGenerationNotFinished) as exc:
        generate(PROMPTS)
    assert [len(j["lines"]) for j in fake.jobs()] == [10, 10, 5]
    assert len(exc.value.jobs_ids) == 3
    fake.advance()
    assert [r.result.text for r in generate(PROMPTS)] == [f"echo: {p}" for p in PROMPTS]


def test_identical_requests_are_paid_once(fake):
    prompts = ["same"] * 5 + ["other"]
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(prompts)
    assert fake.submitted_requests == 2
    fake.advance()
    assert [r.result.text for r in generate(prompts)] == ["echo: same"] * 5 + ["echo: other"]
    # A second pipeline with the same requests reuses them without a new job.
    assert [r.result.text for r in generate(prompts, plan_id="plan-2")] == ["echo: same"] * 5 + ["echo: other"]
    assert len(fake.jobs()) == 1


def test_changed_prompt_resubmits_only_changed_rows(fake):
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(PROMPTS)
    fake.advance()
    generate(PROMPTS)
    changed = PROMPTS[:3] + ["a brand new question"] + PROMPTS[4:]
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(changed, plan_id="plan-changed")
    assert [len(j["lines"]) for j in fake.jobs()] == [25, 1]
    fake.advance()
    assert generate(changed, plan_id="plan-changed")[3].result.text == "echo: a brand new question"


def test_num_generations_are_distinct_requests(fake):
    with pytest.raises(OfflineBatchGenerationNotFinished):
        list(LLM("fake/m").generate_offline(plan(["hi"], samples=3), store=Store.open(), step="g", plan_id="p"))
    assert fake.submitted_requests == 3


def test_request_errors_are_retried_then_reported(fake):
    fake.set_faults(errors={"*": 99})  # every request fails every time
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(PROMPTS[:4])
    for _ in range(2):
        fake.advance()
        with pytest.raises(OfflineBatchGenerationNotFinished):
            generate(PROMPTS[:4])
    fake.advance()
    results = generate(PROMPTS[:4])
    assert len(fake.jobs()) == 3  # max_attempts=3
    assert [r.row for r in results] == [0, 1, 2, 3]
    assert all(not r.result.ok and r.result.error == "fake server error" for r in results)


def test_request_error_then_success_on_retry(fake):
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(["x"])
    key = fake.jobs()[0]["lines"][0]["custom_id"]
    # Start afresh with a fault on that key, once.
    fake2_prompts = ["x", "y"]
    fake.set_faults(errors={key: 1})
    fake.advance()
    generate(["x"])  # job 0 had no fault: done
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(["y"], plan_id="p-y")
    fake.advance()
    assert generate(["y"], plan_id="p-y")[0].result.ok
    assert [r.result.ok for r in generate(fake2_prompts, plan_id="p-xy")] == [True, True]


def test_expired_job_keeps_finished_rows_and_resubmits_the_rest(fake):
    fake.set_faults(expire_after=10)
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(PROMPTS)
    fake.set_faults()
    fake.advance()
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(PROMPTS)
    jobs = fake.jobs()
    assert [len(j["lines"]) for j in jobs] == [25, 15]
    first_done = {l["custom_id"] for l in jobs[0]["lines"][:10]}
    assert not first_done & {l["custom_id"] for l in jobs[1]["lines"]}
    fake.advance()
    assert [r.result.text for r in generate(PROMPTS)] == [f"echo: {p}" for p in PROMPTS]


def test_failed_job_is_retried_as_a_whole(fake):
    fake.set_faults(fail=True)
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(PROMPTS[:3])
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(PROMPTS[:3])  # the failure is seen and the chunk goes out again
    assert len(fake.jobs()) == 2
    fake.advance()
    assert all(r.result.ok for r in generate(PROMPTS[:3]))


def test_crash_after_create_is_recovered_by_tag(fake):
    fake.set_faults(crash_after_create=True)
    with pytest.raises(Exception, match="connection reset"):
        generate(PROMPTS)
    assert len(fake.jobs()) == 1
    fake.advance()
    results = generate(PROMPTS)  # finds the job by its tag; does not submit again
    assert len(fake.jobs()) == 1
    assert [r.result.text for r in results] == [f"echo: {p}" for p in PROMPTS]


def test_crash_without_find_by_tag_stops_with_clear_message(fake, registry, tmp_path):
    from fakeprovider import FakeProvider
    from overnight.plugins import PluginRegistry, set_registry

    blind = FakeProvider(tmp_path / "blind", find_by_tag=False)
    set_registry(PluginRegistry([blind], entrypoints=False))
    blind.set_faults(crash_after_create=True)
    with pytest.raises(Exception, match="connection reset"):
        generate(PROMPTS)
    with pytest.raises(UnconfirmedSubmission, match="cannot look jobs up by tag") as exc:
        generate(PROMPTS)
    assert "resubmit_unconfirmed" in str(exc.value)
    assert len(blind.jobs()) == 1
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(PROMPTS, policy=RunPolicy(resubmit_unconfirmed=True))
    assert len(blind.jobs()) == 2


def test_provider_not_installed(fake):
    with pytest.raises(ProviderNotFound, match=r"'acme'.*Check the spelling") as exc:
        generate(PROMPTS, llm=LLM("acme/m"))
    assert "fake" in str(exc.value)


def test_missing_key_is_reported_before_any_work(fake, monkeypatch):
    monkeypatch.delenv("FAKE_API_KEY")
    with pytest.raises(MissingCredentials, match="FAKE_API_KEY"):
        generate(PROMPTS)
    assert fake.submitted_requests == 0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"seed": 3}, "seed"),  # declared unsupported by the provider
        ({"frobnicate": 1}, "frobnicate"),  # unknown option
        ({"stop": ["a", "b", "c"]}, "stop"),  # refused by the plugin's build_request
    ],
)
def test_bad_options_are_refused_before_submission(fake, kwargs, field):
    with pytest.raises(ValidationError) as exc:
        generate(PROMPTS, llm=LLM("fake/m", generation_kwargs=kwargs))
    assert any(p.field == field for p in exc.value.problems)
    assert f"field {field!r}" in str(exc.value)
    assert fake.submitted_requests == 0


def test_over_limit_line_names_the_row(fake):
    prompts = ["short", "x " * 5000, "short too"]
    with pytest.raises(ValidationError) as exc:
        generate(prompts)
    assert [(p.row, p.field) for p in exc.value.problems] == [(1, "messages")]  # no input column known at this level
    assert "row 1" in str(exc.value) and "bytes" in str(exc.value)
    assert fake.submitted_requests == 0
    # Fixing the input is enough: the failed plan left nothing behind.
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(["short", "long-ish", "short too"])
    assert fake.submitted_requests == 3


def test_secret_never_reaches_the_store(fake, overnight_home):
    llm = LLM("fake/m", api_key="sk-super-secret-123456")
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(PROMPTS, llm=llm)
    fake.advance()
    generate(PROMPTS, llm=llm)
    for path in overnight_home.rglob("*"):
        if path.is_file():
            assert b"sk-super-secret-123456" not in path.read_bytes()
            assert b"fk-test-secret-0000" not in path.read_bytes()
    assert "sk-super" not in repr(llm)


def test_refused_create_counts_attempts_then_reports_error_rows(fake):
    fake.set_faults(reject=99)
    results = generate(PROMPTS[:3])  # nothing can be created: three attempts, then error rows
    assert fake.jobs() == []
    assert all(not r.result.ok and "model not available" in r.result.error for r in results)


def test_refused_create_once_is_retried_in_the_same_run(fake):
    fake.set_faults(reject=1)
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(PROMPTS[:3])
    assert len(fake.jobs()) == 1
    fake.advance()
    assert all(r.result.ok for r in generate(PROMPTS[:3]))


def test_find_that_cannot_tell_stops_unless_the_user_chooses(fake):
    fake.set_faults(crash_after_create=True)
    with pytest.raises(Exception, match="connection reset"):
        generate(PROMPTS)
    fake.set_faults(find_fails=True)
    with pytest.raises(ProviderError, match="looking up the fake job tagged") as exc:
        generate(PROMPTS)
    assert isinstance(exc.value.__cause__, ConnectionError)
    assert len(fake.jobs()) == 1
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(PROMPTS, policy=RunPolicy(resubmit_unconfirmed=True))
    assert len(fake.jobs()) == 2


def test_the_same_problem_on_every_row_is_listed_once(fake):
    with pytest.raises(ValidationError) as exc:
        generate(PROMPTS, llm=LLM("fake/m", generation_kwargs={"stop": ["a", "b", "c"]}))
    assert len(exc.value.problems) == 1
    assert "(rows 0, 1, 2, 3, 4, ...: 25 rows)" in str(exc.value)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"max_tokens": "lots"}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 2}, "top_p"),
        ({"seed": "x"}, "seed"),
        ({"stop": 5}, "stop"),
        ({"stop": ["ok", ""]}, "stop"),
        ({"response_format": "json"}, "response_format"),
    ],
)
def test_malformed_standard_options_are_refused_before_submission(fake, kwargs, field):
    with pytest.raises(ValidationError) as exc:
        generate(PROMPTS, llm=LLM("fake/m", generation_kwargs=kwargs))
    assert [p.field for p in exc.value.problems] == [field]
    assert fake.submitted_requests == 0


def test_chunks_hand_plugins_the_stored_jsonl_bytes_and_the_decoded_lines_alike(registry):
    import json

    from overnight import Chunk, JobRef, Limits, ProviderInfo, hookimpl
    from overnight.errors import NotFinished

    seen = []

    class Recorder:
        @hookimpl
        def register_providers(self):
            return [ProviderInfo(name="rec", limits=Limits(max_requests=10, max_bytes=10_000_000))]

        @hookimpl
        def build_request(self, provider, request):
            return {"custom_id": request.custom_id, "text": request.messages[0].content}

        @hookimpl
        def submit(self, provider, chunk, options):
            seen.append((list(chunk.lines()), b"".join(chunk.jsonl()), b"".join(chunk.jsonl()), chunk.bytes))
            return JobRef(provider=provider, remote_id=chunk.tag, tag=chunk.tag)

    registry.register(Recorder(), name="rec")
    with pytest.raises(NotFinished):
        generate(["héllo \"quoted\"", "line\nbreak", "plain"], llm=LLM("rec/m"))
    (lines, data, again, size) = seen[0]
    assert data == again and len(data) == size  # callable twice; exactly the bytes measured
    assert [json.loads(raw) for raw in data.splitlines()] == lines
    assert sorted(line["text"] for line in lines) == sorted(["héllo \"quoted\"", "line\nbreak", "plain"])
    # A chunk made without encoded lines (a third party's) encodes its lines() on demand.
    plain = Chunk(tag="t", model="m", count=1, bytes=0, lines=lambda: iter([{"a": "é"}]))
    assert b"".join(plain.jsonl()) == '{"a":"é"}\n'.encode()


class CheckingAhead(FakeProvider):
    """The fake provider, in jobs of 10, logging each check and the end of each fetch."""

    def __init__(self, state_dir, *, check_while_fetching):
        super().__init__(state_dir, limits=Limits(max_requests=10, max_bytes=1_000_000, max_line_bytes=2_000))
        self.capabilities = Capabilities(cancel=True, find_by_tag=True, check_while_fetching=check_while_fetching)
        self.log: list[tuple[str, str]] = []
        self.failing_check: str | None = None

    @hookimpl
    def check(self, provider, job, options):
        self.log.append(("check", job.remote_id))
        if job.remote_id == self.failing_check:
            raise ConnectionError("the provider did not answer")
        return super().check(provider, job, options)

    @hookimpl
    def fetch(self, provider, job, options):
        yield from super().fetch(provider, job, options)
        self.log.append(("fetched", job.remote_id))


@pytest.fixture
def logged(tmp_path, monkeypatch, registry):
    """Registers a CheckingAhead as the fake provider: ``logged(check_while_fetching=...)``."""
    monkeypatch.setenv("FAKE_API_KEY", "fk-test-secret-0000")

    def register(check_while_fetching=True):
        provider = CheckingAhead(tmp_path / "fake-provider", check_while_fetching=check_while_fetching)
        registry.register(provider, name="fake")
        return provider

    return register


def three_ended_jobs(provider):
    with pytest.raises(OfflineBatchGenerationNotFinished):
        generate(PROMPTS)
    provider.advance()
    provider.log.clear()
    return [j["id"] for j in provider.jobs()]


def test_the_next_job_is_checked_while_this_ones_results_are_fetched(logged):
    ahead = logged()
    first, second, third = three_ended_jobs(ahead)
    results = generate(PROMPTS)
    assert [r.result.text for r in results] == [f"echo: {p}" for p in PROMPTS]
    # Each job's state was asked (in either order with the one before) before the previous
    # job's results were all in.
    assert sorted(ahead.log[:2]) == [("check", first), ("check", second)]
    assert ahead.log[2:] == [("fetched", first), ("check", third), ("fetched", second), ("fetched", third)]


def test_a_check_asked_ahead_that_fails_fails_as_its_own_check_and_keeps_what_came(logged):
    ahead = logged()
    _, second, _ = three_ended_jobs(ahead)
    ahead.failing_check = second
    with pytest.raises(ProviderError, match=f"checking the fake job {second} failed"):
        generate(PROMPTS)
    ahead.failing_check = None
    store = Store.open()
    try:
        assert store.plan_counts("plan-1") == {"done": 10, "queued": 15}  # the first job's results are saved
    finally:
        store.close()
    assert [r.result.text for r in generate(PROMPTS)] == [f"echo: {p}" for p in PROMPTS]


def test_without_the_capability_checks_are_asked_one_at_a_time(logged):
    plain = logged(check_while_fetching=False)
    jobs = three_ended_jobs(plain)
    generate(PROMPTS)
    assert plain.log == [(what, job) for job in jobs for what in ("check", "fetched")]
