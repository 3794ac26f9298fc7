"""TextGeneration through the pipeline, against the fake provider plugin."""

from __future__ import annotations

import pytest

from fakeprovider import reply_to
from overnight import (
    LLM,
    ConfigurationError,
    LoadDataFromDicts,
    MapStep,
    MissingCredentials,
    PipelineNotFinished,
    ProviderNotFound,
    Pipeline,
    TextGeneration,
    ValidationError,
)
from overnight.store import Store

PROMPTS = [f"question number {i}" for i in range(12)]
ROWS = [{"instruction": p, "id": i} for i, p in enumerate(PROMPTS)]
CALLS: dict[str, int] = {}


def count(name):
    def fn(row):
        CALLS[name] = CALLS.get(name, 0) + 1
        return {**row, "seen_by": name}

    return fn


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def build(rows=ROWS, *, llm=None, downstream=True, **gen_kwargs):
    """A fresh Pipeline object each time, as a re-run script would build it."""
    with Pipeline(name="answers") as p:
        load = LoadDataFromDicts(name="load", data=rows)
        gen = TextGeneration(name="gen", llm=llm or LLM("fake/m"), **gen_kwargs)
        load >> gen
        if downstream:
            gen >> MapStep(name="after", fn=count("after"))
    return p


def runs_states():
    store = Store.open()
    try:
        return [r["state"] for r in reversed(store.list_runs())]
    finally:
        store.close()


def test_submit_not_finished_twice_then_done_across_runs(fake):
    for _ in range(2):
        with pytest.raises(PipelineNotFinished) as exc:
            build().run()
        assert CALLS == {}  # the downstream step waits
    message = str(exc.value)
    assert "'answers' is not finished" in message and "step 'gen'" in message
    assert "12 pending" in message and "after" in message  # says who waits
    assert exc.value.jobs_ids == (fake.jobs()[0]["id"],)
    assert len(fake.jobs()) == 1 and fake.submitted_requests == 12  # checked twice, paid once

    fake.advance()
    ds = build().run()
    assert CALLS == {"after": 12}
    assert [r["id"] for r in ds] == list(range(12))
    for row in ds:
        line = {"messages": [{"role": "user", "content": row["instruction"]}]}
        assert row["generation"] == reply_to(line)
        assert row["generation_error"] is None
        assert row["generation_finish_reason"] == "stop"
        assert row["generation_usage"]["output_tokens"] > 0
        assert row["model_name"] == "fake/m"
    assert runs_states() == ["pending", "pending", "done"]

    # Done is done: a further run redoes nothing and pays nothing.
    again = build().run()
    assert again.path == ds.path and CALLS == {"after": 12} and len(fake.jobs()) == 1


def test_pending_blocks_only_its_descendants(fake):
    with Pipeline(name="branches") as p:
        load = LoadDataFromDicts(name="load", data=ROWS)
        gen = TextGeneration(name="gen", llm=LLM("fake/m"))
        side = MapStep(name="side", fn=count("side"))
        after = MapStep(name="after", fn=count("after"))
        load >> [gen, side]
        gen >> after
    with pytest.raises(PipelineNotFinished) as exc:
        p.run()
    assert CALLS == {"side": 12}  # the independent branch ran
    assert "after" in str(exc.value)
    assert set(p.outputs) == {"load", "side"}
    fake.advance()
    out = p.run()
    assert set(out) == {"side", "after"} and CALLS == {"side": 12, "after": 12}


def test_llm_keeps_pending_jobs_ids(fake):
    llm = LLM("fake/m")
    with pytest.raises(PipelineNotFinished):
        build(llm=llm).run()
    assert llm.jobs_ids == (fake.jobs()[0]["id"],)


def test_block_until_done_polls_to_completion(fake, monkeypatch):
    from overnight import polling

    def wait(stop, seconds):  # each poll moves the fake clock instead of sleeping
        fake.advance(5)
        return False

    monkeypatch.setattr(polling, "wait", wait)
    llm = LLM("fake/m", offline_batch_generation_block_until_done=3600)
    assert len(build(llm=llm).run()) == 12


def test_template_system_prompt_and_generation_kwargs(fake):
    rows = [{"lang": "French", "text": f"hello {i}"} for i in range(3)]
    llm = LLM("fake/m", generation_kwargs={"max_tokens": 64, "fake_option": "x"})
    p = build(rows, llm=llm, template="Translate to {lang}: {text}", system_prompt="Be brief.", downstream=False)
    with pytest.raises(PipelineNotFinished):
        p.run()
    [line] = [l for l in fake.jobs()[0]["lines"] if l["messages"][-1]["content"].endswith("hello 0")]
    assert line["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Translate to French: hello 0"},
    ]
    assert line["max_tokens"] == 64 and line["fake_option"] == "x" and line["model"] == "m"
    fake.advance()
    assert p.run()["generation"] == [f"echo: Translate to French: hello {i}" for i in range(3)]


def test_num_generations_gives_lists(fake):
    p = build(ROWS[:3], num_generations=3, output_column="answers", downstream=False)
    with pytest.raises(PipelineNotFinished):
        p.run()
    assert fake.submitted_requests == 9
    fake.advance()
    row = p.run()[1]
    assert row["answers"] == [f"echo: {PROMPTS[1]}"] * 3
    assert row["answers_error"] == [None] * 3 and len(row["answers_usage"]) == 3


def test_failed_generations_become_error_rows_never_dropped(fake):
    fake.set_faults(errors={"*": 99})
    p = build(ROWS[:4], llm=LLM("fake/m", max_attempts=2), downstream=False)
    with pytest.raises(PipelineNotFinished):
        p.run()
    fake.advance()
    with pytest.raises(PipelineNotFinished):  # the retry job
        p.run()
    fake.advance()
    ds = p.run()
    assert [r["id"] for r in ds] == [0, 1, 2, 3]
    assert all(r["generation"] is None and r["generation_error"] == "fake server error" for r in ds)
    assert ds.column_names[:3] == ["instruction", "id", "generation"]


def test_runtime_llm_parameters_change_the_requests(fake):
    p = build(ROWS[:2], downstream=False)
    with pytest.raises(PipelineNotFinished):
        p.run(parameters={"gen": {"llm": {"generation_kwargs": {"max_tokens": 7}}}})
    assert fake.jobs()[0]["lines"][0]["max_tokens"] == 7
    with pytest.raises(ConfigurationError, match="'temperature'"):
        p.run(parameters={"gen": {"llm": {"temperature": 1}}})
    with pytest.raises(ConfigurationError, match="num_generations"):
        p.run(parameters={"gen": {"num_generations": 0}})


# --- bad input costs nothing ------------------------------------------------------------


@pytest.mark.parametrize(
    "rows, kwargs, row, field, words",
    [
        ([{"instruction": "ok"}, {"prompt": "x"}], {}, 1, "instruction", "missing column"),
        ([{"instruction": "ok"}, {"instruction": "  "}], {}, 1, "instruction", "empty prompt"),
        ([{"instruction": 42}], {}, 0, "instruction", "must be a string"),
        ([{"instruction": None}], {}, 0, "instruction", "is null"),
        ([{"a": "x"}, {"b": "y"}], {"template": "{a} and {b}"}, 0, "b", "missing column"),
        ([{"instruction": "x" * 3000}], {}, 0, "instruction", "over the fake limit"),
        ([{"instruction": "ok"}], {"llm": LLM("fake/m", generation_kwargs={"seed": 1})}, None, "seed", "does not support"),
        ([{"instruction": "ok"}], {"llm": LLM("fake/m", generation_kwargs={"nope": 1})}, None, "nope", "unknown generation option"),
        ([{"instruction": "ok"}], {"llm": LLM("fake/m", generation_kwargs={"stop": ["a", "b", "c"]})}, 0, "stop", "stop sequences"),
    ],
    ids=["missing-column", "empty-prompt", "non-string", "null", "template-column", "over-limit-line",
         "unsupported-option", "unknown-option", "provider-refuses"],
)
def test_bad_input_names_row_and_field_and_submits_nothing(fake, rows, kwargs, row, field, words):
    p = build(rows, **kwargs)
    with pytest.raises(ValidationError) as exc:
        p.run()
    assert fake.submitted_requests == 0
    assert any(
        (pr.step, pr.row, pr.field) == ("gen", row, field) and words in str(pr) for pr in exc.value.problems
    ), exc.value.problems
    assert "nothing was submitted" in str(exc.value)
    assert runs_states() == ["failed"]


def test_every_bad_row_is_reported_at_once(fake):
    rows = [{"instruction": "ok"}, {}, {"instruction": ""}, {"instruction": 3}]
    with pytest.raises(ValidationError) as exc:
        build(rows).run()
    assert [(p.row, p.field) for p in exc.value.problems] == [(1, "instruction"), (2, "instruction"), (3, "instruction")]
    assert fake.submitted_requests == 0


def test_unknown_provider_is_refused_before_anything_runs(fake, overnight_home):
    with pytest.raises(ProviderNotFound) as exc:
        build(llm=LLM("nosuch/m")).run()
    assert "'nosuch'" in str(exc.value) and "fake" in str(exc.value)
    assert "pip install" not in str(exc.value)  # no package is known for that name
    assert fake.submitted_requests == 0 and not (overnight_home / "pipelines").exists()


def test_missing_credentials_are_refused_before_anything_runs(fake, monkeypatch):
    monkeypatch.delenv("FAKE_API_KEY")
    with pytest.raises(MissingCredentials, match="FAKE_API_KEY"):
        build().run()
    assert fake.submitted_requests == 0


def test_unknown_step_in_parameters_submits_nothing(fake):
    with pytest.raises(ConfigurationError, match="'generate'.*load, gen, after"):
        build().run(parameters={"generate": {"num_generations": 2}})
    assert fake.submitted_requests == 0


def test_api_key_never_reaches_step_outputs_or_signatures(fake, overnight_home):
    secret = "sk-very-secret-value-1234"
    p = build(llm=LLM("fake/m", api_key=secret), downstream=False)
    with pytest.raises(PipelineNotFinished):
        p.run()
    fake.advance()
    p.run()
    for path in (overnight_home / "pipelines").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text()
    assert secret not in repr(p.signatures())


def test_llm_must_be_an_llm(fake):
    with pytest.raises(ConfigurationError, match="llm must be an LLM"):
        build(llm="fake/m").run()


def test_ctrl_c_while_polling_stops_the_whole_run(fake):
    """The executor turns a first Ctrl+C into an interrupted not-finished: no other step starts."""
    from attrs import define

    from overnight import OfflineBatchGenerationNotFinished, Step

    @define(kw_only=True, eq=False)
    class Interrupted(Step):
        def process(self, rows, ctx):
            raise OfflineBatchGenerationNotFinished(["job-9"], provider="fake", interrupted=True)
            yield

    with Pipeline(name="stop") as p:
        load = LoadDataFromDicts(name="load", data=ROWS)
        load >> Interrupted(name="wait")
        load >> MapStep(name="later", fn=count("later"))
    with pytest.raises(PipelineNotFinished) as exc:
        p.run()
    assert exc.value.interrupted and "polling stopped by the user" in str(exc.value)
    assert "step 'wait'" in str(exc.value) and CALLS == {}
    assert runs_states() == ["pending"]


@pytest.mark.parametrize(
    "column, output_column",
    [("generation", "generation"), ("generation_error", "generation"), ("generation_usage", "generation"),
     ("generation_finish_reason", "generation"), ("model_name", "generation"), ("answer", "answer"),
     ("answer_usage", "answer")],
)
def test_an_input_column_named_like_an_output_is_refused_before_any_spend(fake, column, output_column):
    rows = [{**r, column: "mine"} if r["id"] >= 3 else r for r in ROWS]
    with pytest.raises(ValidationError) as exc:
        build(rows, output_column=output_column).run()
    assert fake.jobs() == [] and fake.submitted_requests == 0
    (problem,) = [p for p in exc.value.problems if p.field == column]
    assert problem.row == 3 and "would be overwritten" in problem.message
    assert "rows 3, 4, 5, 6, 7, ...: 9 rows" in problem.message  # every row counted, a few listed
    way_out = "rename or drop" if column == "model_name" else "output_column="
    assert way_out in str(exc.value)


def test_a_different_output_column_is_the_way_out(fake):
    rows = [{**r, "generation": "mine"} for r in ROWS]
    with pytest.raises(PipelineNotFinished):
        build(rows, output_column="answer").run()
    fake.advance()
    ds = build(rows, output_column="answer").run()
    assert [r["generation"] for r in ds] == ["mine"] * len(ROWS) and all(r["answer"] for r in ds)
