"""The pipeline DSL: steps, names, ``>>`` wiring, fan-out/fan-in and run parameters."""

from __future__ import annotations

import pytest
from attrs import define

from overnight import (
    ConfigurationError,
    Dataset,
    KeepColumns,
    LoadDataFromDicts,
    MapStep,
    Pipeline,
    Step,
)
from overnight.steps import FilterRows


@define(kw_only=True, eq=False)
class Tag(Step):
    """Appends ``suffix`` to the ``text`` column."""

    suffix: str = "!"

    def process(self, rows, ctx):
        for row in rows:
            yield {**row, "text": row["text"] + self.suffix}


def rows(*texts):
    return [{"text": t} for t in texts]


def test_rshift_chains_and_returns_the_right_side():
    with Pipeline(name="p") as p:
        load = LoadDataFromDicts(data=rows("a"))
        a, b = Tag(), Tag()
        assert (load >> a) is a
        assert (a >> b) is b
    assert p.predecessors(a.name) == [load.name]
    assert p.predecessors(b.name) == [a.name]
    assert p.leaves == [b.name]


def test_names_are_unique_and_automatic():
    with Pipeline(name="p") as p:
        load = LoadDataFromDicts(data=rows("a"))
        a, b = Tag(), Tag(name="custom")
        c = Tag()
    assert load.name == "load_data_from_dicts_0"
    assert (a.name, b.name, c.name) == ("tag_0", "custom", "tag_1")
    assert list(p.steps) == [load.name, "tag_0", "custom", "tag_1"]


def test_duplicate_or_invalid_names_are_refused():
    with Pipeline(name="p"):
        Tag(name="x")
        with pytest.raises(ConfigurationError, match="already has a step named 'x'"):
            Tag(name="x")
        with pytest.raises(ConfigurationError, match="not valid"):
            Tag(name="a/b")
    with pytest.raises(ConfigurationError, match="not valid"):
        Pipeline(name="../escape")


def test_fan_out_and_fan_in_concatenate_in_order():
    with Pipeline(name="fan") as p:
        load = LoadDataFromDicts(data=rows("a", "b"))
        left, right = Tag(suffix="-L"), Tag(suffix="-R")
        join = KeepColumns(columns=["text"])
        assert (load >> [left, right]) == [left, right]
        assert ([left, right] >> join) is join
    ds = p.run()
    assert isinstance(ds, Dataset)
    assert [r["text"] for r in ds] == ["a-L", "b-L", "a-R", "b-R"]
    assert p.predecessors(join.name) == [left.name, right.name]


def test_several_leaves_return_a_mapping():
    with Pipeline(name="leaves") as p:
        load = LoadDataFromDicts(data=rows("a"))
        left, right = Tag(name="left", suffix="1"), Tag(name="right", suffix="2")
        load >> [left, right]
    out = p.run()
    assert set(out) == {"left", "right"}
    assert out["left"][0] == {"text": "a1"} and out["right"][0] == {"text": "a2"}
    assert p.outputs[load.name].to_list() == rows("a")


def test_wiring_mistakes_are_clear():
    with Pipeline(name="p") as p:
        load = LoadDataFromDicts(data=rows("a"))
        other = LoadDataFromDicts(data=rows("b"))
        a, b = Tag(), Tag()
        load >> a >> b
        with pytest.raises(ConfigurationError, match="cycle"):
            b >> a
        with pytest.raises(ConfigurationError, match="is a loader"):
            a >> other
        with pytest.raises(ConfigurationError, match="not a step"):
            a >> "b"
    loose = Tag()
    with pytest.raises(ConfigurationError, match="not part of a pipeline"):
        loose >> a
    with Pipeline(name="q"):
        foreign = Tag()
    with pytest.raises(ConfigurationError, match="must belong to pipeline"):
        a >> foreign


def test_a_step_without_input_is_refused_before_running():
    with Pipeline(name="p") as p:
        LoadDataFromDicts(data=rows("a"))
        Tag(name="orphan")
    with pytest.raises(ConfigurationError, match="step 'orphan' has no input"):
        p.run()
    with pytest.raises(ConfigurationError, match="no steps"):
        Pipeline(name="empty").run()


def test_parameters_set_step_attributes_for_the_run():
    with Pipeline(name="p") as p:
        load = LoadDataFromDicts(data=rows("a"))
        tag = Tag(name="tag")
        load >> tag
    assert p.run(parameters={"tag": {"suffix": "?"}})[0] == {"text": "a?"}
    assert tag.suffix == "?"


def test_unknown_step_or_parameter_names_are_refused_before_running(overnight_home):
    with Pipeline(name="p") as p:
        load = LoadDataFromDicts(data=rows("a"))
        tag = Tag(name="tag")
        load >> tag
    with pytest.raises(ConfigurationError) as exc:
        p.run(parameters={"tga": {"suffix": "?"}})
    assert "'tga'" in str(exc.value) and "load_data_from_dicts_0, tag" in str(exc.value)
    with pytest.raises(ConfigurationError) as exc:
        p.run(parameters={"tag": {"sufix": "?"}})
    assert "'sufix'" in str(exc.value) and "suffix" in str(exc.value)
    with pytest.raises(ConfigurationError, match="'fn'"):
        with Pipeline(name="m") as m:
            MapStep(name="map", fn=dict)
        m.run(parameters={"map": {"fn": str}})
    assert tag.suffix == "!"
    assert not (overnight_home / "pipelines").exists()  # nothing ran


def test_map_and_filter_steps():
    with Pipeline(name="p") as p:
        load = LoadDataFromDicts(data=[{"n": i} for i in range(6)])
        double = MapStep(fn=lambda row: {"n": row["n"] * 2})
        even = FilterRows(predicate=lambda row: row["n"] % 4 == 0)
        load >> double >> even
    assert p.run()["n"] == [0, 4, 8]


def test_map_step_must_return_a_row():
    with Pipeline(name="p") as p:
        LoadDataFromDicts(data=rows("a")) >> MapStep(fn=lambda row: None)
    with pytest.raises(ConfigurationError, match="must return the new row as a dict"):
        p.run()


def test_keep_columns_reports_the_missing_column():
    from overnight import ValidationError

    with Pipeline(name="p") as p:
        LoadDataFromDicts(data=[{"a": 1}, {"b": 2}]) >> KeepColumns(name="keep", columns=["a"])
    with pytest.raises(ValidationError) as exc:
        p.run()
    [problem] = exc.value.problems
    assert (problem.step, problem.row, problem.field) == ("keep", 1, "a")


def test_cache_dir_holds_the_store_and_the_outputs(tmp_path, overnight_home):
    with Pipeline(name="here", cache_dir=tmp_path / "cache") as p:
        LoadDataFromDicts(name="load", data=rows("a")) >> Tag(name="t")
    ds = p.run()
    assert ds.path.parent == tmp_path / "cache" / "pipelines" / "here"
    assert ds.path.name.startswith("t-") and ds.path.suffix == ".jsonl"
    assert (tmp_path / "cache" / "overnight.sqlite").exists() and not overnight_home.exists()
