"""Data a user reads back (issue 14, section 4): finish reasons and Parquet column types."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from overnight import LLM, LoadDataFromDicts, Pipeline, TextGeneration
from overnight.errors import PipelineNotFinished
from overnight.finish import FINISH_REASONS, normalise_finish_reason


@pytest.mark.parametrize("raw, word", [
    ("stop", "stop"), ("length", "length"), ("content_filter", "content_filter"), ("tool_calls", "tool_calls"),
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
    (None, None), ("something_new", "something_new"),
])
def test_finish_reasons_are_normalised(raw, word):
    assert normalise_finish_reason(raw) == word
    assert word is None or word in FINISH_REASONS or word == "something_new"


def run(fake, rows, **generation):
    with Pipeline(name="types") as p:
        LoadDataFromDicts(data=rows) >> TextGeneration(llm=LLM("fake/m", max_attempts=1), **generation)
    with pytest.raises(PipelineNotFinished):
        p.run()
    fake.advance()
    return p.run()


def test_rows_keep_the_raw_finish_reason(fake):
    row = run(fake, [{"instruction": "x"}])[0]
    assert (row["generation_finish_reason"], row["generation_finish_reason_raw"]) == ("stop", "stop")


@pytest.mark.parametrize("generations", [1, 2])
def test_parquet_types_do_not_depend_on_the_values(fake, tmp_path, generations):
    clean = run(fake, [{"instruction": "x"}], num_generations=generations)
    fake.set_faults(errors={"*": 99})
    failing = run(fake, [{"instruction": "y"}], num_generations=generations)
    a = pq.read_schema(clean.to_parquet(tmp_path / "clean.parquet"))
    b = pq.read_schema(failing.to_parquet(tmp_path / "failing.parquet"))
    for schema in (a, b):
        for field in schema:
            kind = field.type
            assert not pa.types.is_null(kind) and not (pa.types.is_list(kind) and pa.types.is_null(kind.value_type)), \
                (field.name, kind)
    shared = [name for name in a.names if name in b.names]
    assert {n: a.field(n).type for n in shared} == {n: b.field(n).type for n in shared}
    error = b.field("generation_error").type
    assert error == (pa.string() if generations == 1 else pa.list_(pa.string()))
