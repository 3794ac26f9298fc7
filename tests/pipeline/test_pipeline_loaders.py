"""Loader steps: Python lists, JSONL, CSV, Parquet and (optionally) the Hugging Face Hub."""

from __future__ import annotations

import json
import sys
import types

import pytest

from overnight import (
    ConfigurationError,
    LoadDataFromCSV,
    LoadDataFromDicts,
    LoadDataFromHub,
    LoadDataFromJSONL,
    LoadDataFromParquet,
    Pipeline,
    ValidationError,
)

ROWS = [{"instruction": "one", "n": 1}, {"instruction": "two", "n": 2}, {"instruction": "three", "n": 3}]


def load(loader_cls, **kwargs):
    with Pipeline(name="loaders") as p:
        loader_cls(name="load", **kwargs)
    return p.run()


def test_dicts():
    assert load(LoadDataFromDicts, data=ROWS).to_list() == ROWS


def test_num_examples_keeps_the_first_rows():
    assert load(LoadDataFromDicts, data=ROWS, num_examples=2).to_list() == ROWS[:2]


def test_jsonl_skips_blank_lines(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS[:2]) + "\n\n" + json.dumps(ROWS[2]) + "\n")
    assert load(LoadDataFromJSONL, path=path).to_list() == ROWS


def test_jsonl_bad_line_names_the_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(ValidationError) as exc:
        load(LoadDataFromJSONL, path=path)
    assert "line 2" in str(exc.value) and exc.value.problems[0].row == 1
    path.write_text("[1, 2]\n")
    with pytest.raises(ValidationError, match="not an object"):
        load(LoadDataFromJSONL, path=path)


def test_csv(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('instruction,n\none,1\n"two, with a comma",2\n')
    assert load(LoadDataFromCSV, path=path).to_list() == [
        {"instruction": "one", "n": "1"},
        {"instruction": "two, with a comma", "n": "2"},
    ]


def test_csv_row_with_extra_fields(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("instruction\nok\nbad,extra\n")
    with pytest.raises(ValidationError, match="more fields than the header"):
        load(LoadDataFromCSV, path=path)


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert load(LoadDataFromParquet, path=path, batch_size=2).to_list() == ROWS
    assert load(LoadDataFromParquet, path=path, columns=["n"]).to_list() == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_missing_file_is_refused_before_anything_runs(tmp_path, overnight_home):
    with pytest.raises(ConfigurationError, match="does not exist"):
        load(LoadDataFromJSONL, path=tmp_path / "nope.jsonl")
    assert not (overnight_home / "pipelines").exists()


def test_hub_without_datasets_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r"overnight\[hub\]"):
        load(LoadDataFromHub, repo_id="org/data")


def test_hub_loads_through_datasets(monkeypatch):
    calls = []

    def load_dataset(repo_id, *, name, split, revision, streaming):
        calls.append((repo_id, name, split, revision, streaming))
        return iter(ROWS)

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network in tests: else the Hub is checked first
    ds = load(LoadDataFromHub, repo_id="org/data", split="test", revision="abc123")
    assert ds.to_list() == ROWS
    assert calls == [("org/data", None, "test", "abc123", False)]
