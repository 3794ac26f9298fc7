"""Step output caching: resumed runs redo nothing, changes re-run only what depends on them."""

from __future__ import annotations

import json
import os

import pytest
from attrs import define

from overnight import (
    LLM,
    LoadDataFromDicts,
    LoadDataFromJSONL,
    MapStep,
    Pipeline,
    PipelineNotFinished,
    StaleCache,
    Step,
    TextGeneration,
)

CALLS: dict[str, int] = {}


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


@define(kw_only=True, eq=False)
class Tag(Step):
    """Appends ``suffix`` to ``text`` and counts the rows it processed, per step name."""

    suffix: str = "!"

    def process(self, rows, ctx):
        for row in rows:
            CALLS[self.name] = CALLS.get(self.name, 0) + 1
            yield {**row, "text": row["text"] + self.suffix}


DATA = [{"text": t} for t in ("a", "b", "c")]


def diamond(a_suffix="!", data=DATA):
    """load >> a >> b, and load >> c: a fresh pipeline object, as a re-run script builds it."""
    with Pipeline(name="cache") as p:
        load = LoadDataFromDicts(name="load", data=data)
        a, b, c = Tag(name="a", suffix=a_suffix), Tag(name="b"), Tag(name="c", suffix="?")
        load >> a >> b
        load >> c
    return p


def test_a_resumed_run_redoes_nothing():
    first = diamond().run()
    assert CALLS == {"a": 3, "b": 3, "c": 3}
    second = diamond().run()
    assert CALLS == {"a": 3, "b": 3, "c": 3}
    assert second["b"].path == first["b"].path and second["b"].to_list() == first["b"].to_list()


def test_a_changed_step_reruns_only_itself_and_what_depends_on_it():
    diamond().run()
    CALLS.clear()
    out = diamond(a_suffix="#").run()
    assert CALLS == {"a": 3, "b": 3}  # c does not depend on a
    assert out["b"]["text"] == ["a#!", "b#!", "c#!"] and out["c"]["text"] == ["a?", "b?", "c?"]


def test_changed_input_data_reruns_everything_downstream():
    diamond().run()
    CALLS.clear()
    out = diamond(data=DATA + [{"text": "d"}]).run()
    assert CALLS == {"a": 4, "b": 4, "c": 4}
    assert len(out["b"]) == 4


def test_edited_file_is_seen(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"text": "a"}) + "\n")

    def build():
        with Pipeline(name="file") as p:
            LoadDataFromJSONL(name="load", path=path) >> Tag(name="t")
        return p

    assert build().run()["text"] == ["a!"]
    assert build().run()["text"] == ["a!"] and CALLS == {"t": 1}
    path.write_text(json.dumps({"text": "bb"}) + "\n")
    os.utime(path, ns=(1, 1))  # even with an older mtime, the size tells
    assert build().run()["text"] == ["bb!"] and CALLS == {"t": 2}


def test_edited_map_function_reruns_the_step():
    def build(fn):
        with Pipeline(name="maps") as p:
            LoadDataFromDicts(name="load", data=DATA) >> MapStep(name="m", fn=fn)
        return p

    assert build(lambda r: {"v": r["text"] * 2}).run()["v"] == ["aa", "bb", "cc"]
    assert build(lambda r: {"v": r["text"] * 3}).run()["v"] == ["aaa", "bbb", "ccc"]


def test_use_cache_false_recomputes():
    diamond().run()
    diamond().run(use_cache=False)
    assert CALLS == {"a": 6, "b": 6, "c": 6}


def test_a_failed_step_leaves_no_output_and_reruns(overnight_home):
    @define(kw_only=True, eq=False)
    class Flaky(Step):
        def process(self, rows, ctx):
            for i, row in enumerate(rows):
                if i == 2 and not CALLS.get("healed"):
                    raise RuntimeError("crash mid-step")
                yield row

    def build():
        with Pipeline(name="flaky") as p:
            LoadDataFromDicts(name="load", data=DATA) >> Flaky(name="f") >> Tag(name="t")
        return p

    with pytest.raises(RuntimeError):
        build().run()
    assert not list(overnight_home.glob("pipelines/flaky/f-*"))
    CALLS["healed"] = 1
    assert build().run()["text"] == ["a!", "b!", "c!"]


def test_no_half_written_or_temporary_files_remain(overnight_home):
    @define(kw_only=True, eq=False)
    class Crash(Step):
        def process(self, rows, ctx):
            yield from list(rows)[:1]
            raise RuntimeError("boom")

    with Pipeline(name="crash") as p:
        LoadDataFromDicts(name="load", data=DATA) >> Crash(name="x")
    with pytest.raises(RuntimeError):
        p.run()
    files = sorted(f.name for f in (overnight_home / "pipelines" / "crash").iterdir())
    assert len(files) == 1 and files[0].startswith("load-")


# --- with a batch step ------------------------------------------------------------------


def count_extra(row):
    CALLS["extra"] = CALLS.get("extra", 0) + 1
    return {**row, "length": len(row["generation"])}


def generation(*, extra=False, prompt_suffix=""):
    with Pipeline(name="gen-cache") as p:
        load = LoadDataFromDicts(name="load", data=[{"instruction": f"q{i}{prompt_suffix}"} for i in range(4)])
        gen = TextGeneration(name="gen", llm=LLM("fake/m"))
        load >> gen
        if extra:
            gen >> MapStep(name="extra", fn=count_extra)
    return p


def finish(fake, p, **kwargs):
    with pytest.raises(PipelineNotFinished):
        p.run(**kwargs)
    fake.advance()
    return p.run(**kwargs)


def test_a_step_added_after_a_finished_run_runs_alone_on_cached_inputs(fake):
    finish(fake, generation())
    jobs = fake.jobs()
    ds = generation(extra=True).run()  # no clock advance needed: nothing is pending
    assert CALLS == {"extra": 4}
    assert ds["length"] == [len(f"echo: q{i}") for i in range(4)]
    assert fake.jobs() == jobs  # nothing submitted again


def test_a_changed_prompt_reruns_the_batch_step(fake):
    finish(fake, generation())
    assert fake.submitted_requests == 4
    out = finish(fake, generation(prompt_suffix="?"))
    assert out["generation"] == [f"echo: q{i}?" for i in range(4)]
    assert fake.submitted_requests == 8


def test_cache_disabled_never_pays_twice_silently(fake):
    finish(fake, generation())
    with pytest.raises(StaleCache, match="paid_results='reuse'"):
        generation().run(use_cache=False)
    out = generation().run(use_cache=False, paid_results="reuse")
    assert out["generation"] == [f"echo: q{i}" for i in range(4)]
    assert fake.submitted_requests == 4


def test_paid_results_takes_known_values_only(fake):
    from overnight import ConfigurationError

    with pytest.raises(ConfigurationError, match="paid_results"):
        generation().run(paid_results="yes")


def test_edited_step_code_reruns_the_step():
    def build(step_cls):
        with Pipeline(name="code") as p:
            LoadDataFromDicts(name="load", data=DATA) >> step_cls(name="s")
        return p

    class Upper(Step):
        def process(self, rows, ctx):
            for row in rows:
                yield {"text": row["text"].upper()}

    first = build(Upper).run()

    class Upper(Step):  # noqa: F811 - the "edited" version of the same step
        def process(self, rows, ctx):
            for row in rows:
                yield {"text": row["text"].upper() + "."}

    second = build(Upper).run()
    assert first.path != second.path and second["text"] == ["A.", "B.", "C."]


def test_signatures_are_stable_across_processes(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "sigs.py"
    script.write_text(
        "from attrs import define\n"
        "from overnight import LoadDataFromDicts, MapStep, Pipeline, Step\n"
        "@define(kw_only=True, eq=False)\n"
        "class Pick(Step):\n"
        "    keep: frozenset = frozenset({'a', 'b', 'c'})\n"
        "    def process(self, rows, ctx):\n"
        "        return (r for r in rows if r['k'] in {'a', 'b', 'c'})\n"
        "with Pipeline(name='stable') as p:\n"
        "    LoadDataFromDicts(data=[{'k': 'a'}]) >> Pick() >> MapStep(fn=lambda r: {**r, 'x': r['k'] in {'q', 'r'}})\n"
        "print(p.signatures())\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1, outputs


def test_retry_failed_reruns_the_batch_step_and_what_reads_its_cached_output(fake):
    """Rows that ended as errors go again only with retry_failed; the steps downstream of
    the batch step then run on the new rows, not on their cached copies."""

    def build():
        with Pipeline(name="retry") as p:
            load = LoadDataFromDicts(name="load", data=[{"instruction": f"q{i}"} for i in range(4)])
            gen = TextGeneration(name="gen", llm=LLM("fake/m", max_attempts=1))
            load >> gen >> MapStep(name="extra", fn=count_length)
        return p

    fake.set_faults(errors={"*": 1})  # every request fails once: with one attempt, error rows
    first = finish(fake, build())
    assert first["generation"] == [None] * 4 and all(first["generation_error"])
    assert build().run()["generation"] == [None] * 4  # without the flag nothing changes
    assert fake.submitted_requests == 4
    fake.set_faults()  # the cause is gone
    with pytest.raises(PipelineNotFinished):
        build().run(retry_failed=True)
    assert fake.submitted_requests == 8  # the 4 failed requests, once more
    fake.advance()
    again = build().run()  # collecting needs no flag
    assert again["generation"] == [f"echo: q{i}" for i in range(4)]
    assert again["length"] == [len(f"echo: q{i}") for i in range(4)]
    assert CALLS["length"] == 8  # the first run's error rows, then the new rows (never the stale copy)


def count_length(row):
    CALLS["length"] = CALLS.get("length", 0) + 1
    return {**row, "length": len(row["generation"] or "")}
