"""The Dataset returned by ``run()``, and the atomic JSONL files behind it."""

from __future__ import annotations

import datetime
import os
import json
import sys
import types

import pytest

from overnight import ConfigurationError, Dataset, ValidationError
from overnight.dataset import write_jsonl_atomic

ROWS = [{"a": i, "b": None if i % 2 else f"t{i}"} for i in range(7)] + [{"a": 7, "b": "x", "c": [1, 2]}]


@pytest.fixture
def ds(tmp_path):
    path = tmp_path / "out.jsonl"
    assert write_jsonl_atomic(path, iter(ROWS), step="s") == len(ROWS)
    return Dataset(path, name="s")


def test_reading(ds):
    assert len(ds) == 8
    assert list(ds) == ROWS == ds.to_list()
    assert ds[0] == ROWS[0] and ds[-1] == ROWS[-1] and ds[3] == ROWS[3]
    assert ds[2:4] == ROWS[2:4] and ds[::3] == ROWS[::3] and ds[5:2] == []
    assert ds["a"] == list(range(8))
    assert ds.column_names == ["a", "b", "c"]
    assert "rows=8" in repr(ds) and ds.path.name == "out.jsonl"
    with pytest.raises(IndexError, match="out of range"):
        ds[8]
    with pytest.raises(KeyError, match="no column 'z'"):
        ds["z"]


def test_facts_follow_a_replaced_file(ds):
    assert len(ds) == 8
    write_jsonl_atomic(ds.path, iter(ROWS[:2] + [{"d": 1}]), step="s")
    assert len(ds) == 3 and ds.column_names == ["a", "b", "d"] and ds[2] == {"d": 1}


def test_to_jsonl(ds, tmp_path):
    target = ds.to_jsonl(tmp_path / "sub" / "copy.jsonl")
    assert [json.loads(line) for line in target.read_text().splitlines()] == ROWS


def test_to_parquet_unifies_columns_across_batches(ds, tmp_path):
    import pyarrow.parquet as pq

    # batch 1 has only nulls in "b" and no "c" at all: the file still gets one schema.
    target = ds.to_parquet(tmp_path / "out.parquet", batch_size=1)
    table = pq.read_table(target)
    assert table.column_names == ["a", "b", "c"]
    assert table.to_pylist() == [{"a": r["a"], "b": r["b"], "c": r.get("c")} for r in ROWS]


def test_to_parquet_without_pyarrow(ds, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ConfigurationError, match=r"overnight\[parquet\]"):
        ds.to_parquet(tmp_path / "x.parquet")


def test_to_pandas(ds):
    frame = ds.to_pandas()
    assert list(frame.columns) == ["a", "b", "c"] and len(frame) == 8
    assert frame["a"].tolist() == list(range(8))


def test_to_hf(ds, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ConfigurationError, match=r"overnight\[hub\]"):
        ds.to_hf()
    seen = []
    fake = types.SimpleNamespace(Dataset=types.SimpleNamespace(from_json=lambda path: seen.append(path) or "hf"))
    monkeypatch.setitem(sys.modules, "datasets", fake)
    assert ds.to_hf() == "hf" and seen == [str(ds.path)]


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "out.jsonl"

    def rows():
        yield {"a": 1}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl_atomic(path, rows(), step="s")
    assert list(tmp_path.iterdir()) == []


def test_values_json_cannot_hold_name_the_column(tmp_path):
    path = tmp_path / "out.jsonl"
    when = datetime.date(2024, 5, 1)
    write_jsonl_atomic(path, iter([{"when": when}]), step="s")
    assert Dataset(path)[0] == {"when": "2024-05-01"}
    with pytest.raises(ValidationError) as exc:
        write_jsonl_atomic(path, iter([{"ok": 1}, {"ok": 2, "blob": object()}]), step="s")
    [problem] = exc.value.problems
    assert (problem.step, problem.row, problem.field) == ("s", 1, "blob")
    assert Dataset(path)[0] == {"when": "2024-05-01"}  # the previous file is untouched


def test_to_parquet_mixed_types_is_a_clear_error(tmp_path):
    path = tmp_path / "mixed.jsonl"
    write_jsonl_atomic(path, iter([{"v": 1}, {"v": "text"}]), step="s")
    with pytest.raises(ConfigurationError, match="different types"):
        Dataset(path).to_parquet(tmp_path / "x.parquet", batch_size=1)


def test_unencodable_text_names_the_row_and_column(tmp_path):
    from overnight import ValidationError
    from overnight.dataset import write_jsonl_atomic

    rows = [{"id": 0, "text": "fine"}, {"id": 1, "text": "lone surrogate \ud800"}]
    with pytest.raises(ValidationError) as exc:
        write_jsonl_atomic(tmp_path / "out.jsonl", rows, step="load")
    assert [(p.row, p.field) for p in exc.value.problems] == [(1, "text")]
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_partial_outputs_of_dead_writers_are_removed(tmp_path):
    import subprocess
    import sys

    from overnight.dataset import write_jsonl_atomic

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = tmp_path / f".step-abc.jsonl.{dead.stdout.strip()}.x1y2.tmp"
    abandoned.write_text('{"half": ')
    live = tmp_path / f".step-abc.jsonl.{os.getpid()}.z9.tmp"  # a writer still running
    live.write_text("{}")
    write_jsonl_atomic(tmp_path / "step-abc.jsonl", [{"a": 1}], step="s")
    assert not abandoned.exists() and live.exists()
