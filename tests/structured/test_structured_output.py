"""TextGeneration(response_format=...) on every provider: through the plugins and their SDKs
against the sandbox, answers come back parsed and validated; an answer that breaks its
schema is an error row that keeps the raw text, counted, never dropped (issue 14, part 3)."""

from __future__ import annotations

import json
from typing import Literal, Optional

import pydantic
import pytest

from overnight.errors import ConfigurationError
from overnight.structured import output_schema, schema_problem

from structured_lanes import PROVIDERS, lane, pipeline, run_to_end, sandbox  # noqa: F401 (fixtures)


class Place(pydantic.BaseModel):
    city: str
    population: int


# Only what every provider enforces (Anthropic does not enforce bounds: see its own file).
class Answer(pydantic.BaseModel):
    title: str
    confidence: float
    tags: list[str]
    kind: Literal["fact", "opinion"]
    where: Place
    note: Optional[str] = None


SCHEMA = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "score": {"type": "integer"},
        "flags": {"type": "array", "items": {"type": "boolean"}},
        "label": {"type": "string", "enum": ["good", "bad"]},
    },
    "required": ["summary", "score", "flags", "label"],
    "additionalProperties": False,
}

ROWS = [{"instruction": f"structured question {i}"} for i in range(4)]


def rows_for(tag: str) -> list[dict[str, str]]:
    """Rows of their own: the sandbox is shared by the module, and a job holding the same
    requests would be adopted instead of answering afresh."""
    return [{"instruction": f"{tag}: structured question {i}"} for i in range(4)]


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_a_pydantic_model_gives_model_instances(lane, provider, tmp_path):
    sb = lane(provider)
    rows = rows_for(f"model-{provider}")
    ds = run_to_end(sb, lambda: pipeline(provider, f"model-{provider}", rows, response_format=Answer,
                                         num_generations=2))
    assert [r["instruction"] for r in ds] == [r["instruction"] for r in rows]
    rows = ds.to_list()
    for row in rows:
        first, second = row["generation"]
        assert isinstance(first, Answer) and isinstance(second, Answer)
        assert row["instruction"] in first.title  # each row has its own answer
        assert first != second  # and each sample its own
        assert row["generation_error"] == [None, None]
        assert Answer.model_validate_json(row["generation_raw"][0]) == first
    # The JSON form is what the next step reads and what Parquet stores.
    parquet = ds.to_parquet(tmp_path / "out.parquet")
    import pyarrow.parquet as pq

    table = pq.read_table(parquet)
    assert str(table.schema.field("generation").type) == "list<element: string>"
    assert Answer.model_validate_json(table.column("generation")[0][0].as_py()) == rows[0]["generation"][0]


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_a_json_schema_dict_gives_dicts_that_validate(lane, provider):
    sb = lane(provider)
    rows = rows_for(f"dict-{provider}")
    rows = run_to_end(sb, lambda: pipeline(provider, f"dict-{provider}", rows, response_format=SCHEMA)).to_list()
    for row in rows:
        assert isinstance(row["generation"], dict)
        assert schema_problem(row["generation"], SCHEMA) is None
        assert row["instruction"] in row["generation"]["summary"]
        assert json.loads(row["generation_raw"]) == row["generation"]
        assert row["generation_error"] is None


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("mode", ["missing_field", "malformed"])
def test_answers_that_break_the_schema_are_error_rows_with_the_raw_text(lane, provider, mode, caplog):
    sb = lane(provider)
    sb.set_faults(provider=provider, schema_violation_rate=1.0, schema_violation_mode=mode)
    name = f"bad-{provider}-{mode}"
    with caplog.at_level("INFO", logger="overnight"):
        rows = run_to_end(sb, lambda: pipeline(provider, name, rows_for(name), response_format=Answer)).to_list()
    assert [r["instruction"] for r in rows] == [r["instruction"] for r in rows_for(name)]  # none dropped
    for row in rows:
        assert row["generation"] is None
        assert row["generation_error"].startswith(
            "the answer does not validate as Answer: " if mode == "missing_field" else "the answer does not validate")
        assert row["generation_raw"]  # what was paid for is kept
        assert row["generation_usage"]["output_tokens"] > 0
    if mode == "missing_field":
        assert "title: Field required" in rows[0]["generation_error"]
    # The run's summary counts them.
    assert f"{len(ROWS)} row(s) ended as errors" in caplog.text


def test_a_share_of_bad_answers_fails_only_those_rows(lane):
    sb = lane("openai")
    rows = [{"instruction": f"mixed question {i}"} for i in range(40)]
    sb.set_faults(provider="openai", schema_violation_rate=0.3)
    out = run_to_end(sb, lambda: pipeline("openai", "mixed", rows, response_format=SCHEMA)).to_list()
    bad = [r for r in out if r["generation_error"]]
    assert 0 < len(bad) < len(rows)
    assert all(r["generation"] is None and "the required field 'summary' is missing" in r["generation_error"]
               for r in bad)
    assert all(schema_problem(r["generation"], SCHEMA) is None for r in out if not r["generation_error"])


def test_response_format_is_refused_when_set_twice_or_malformed():
    with pytest.raises(ConfigurationError, match="pydantic model class or a JSON schema dict"):
        output_schema("json")
    with pytest.raises(ConfigurationError, match="root must be an object"):
        output_schema({"type": "array", "items": {"type": "string"}})
    p = pipeline("openai", "twice", ROWS, response_format=SCHEMA,
                 llm={"generation_kwargs": {"response_format": {"type": "json_object"}}})
    with pytest.raises(ConfigurationError, match="either as TextGeneration"):
        p.run()


def test_a_model_schema_is_made_strict_and_a_dict_is_sent_as_given():
    strict = output_schema(Answer)
    assert strict.name == "Answer"
    assert strict.schema["additionalProperties"] is False
    assert strict.schema["required"] == list(Answer.model_fields)  # the optional note too
    place = strict.schema["$defs"]["Place"]
    assert place["additionalProperties"] is False and place["required"] == ["city", "population"]
    assert output_schema(SCHEMA).schema == SCHEMA
    fmt = output_schema(SCHEMA).response_format()
    assert fmt == {"type": "json_schema", "json_schema": {"name": "response", "schema": SCHEMA, "strict": True}}


@pytest.mark.parametrize("value, problem", [
    ({"summary": "s", "score": 1, "flags": [True], "label": "good"}, None),
    ({"summary": "s", "score": 1.5, "flags": [], "label": "good"}, "$.score: must be integer"),
    ({"summary": "s", "score": 1, "flags": ["x"], "label": "good"}, "$.flags[0]: must be boolean"),
    ({"summary": "s", "score": 1, "flags": [], "label": "ugly"}, "$.label: must be one of"),
    ({"summary": "s", "score": 1, "flags": []}, "the required field 'label' is missing"),
    ({"summary": "s", "score": 1, "flags": [], "label": "bad", "x": 1}, "field 'x' is not in the schema"),
])
def test_the_dict_validator(value, problem):
    found = schema_problem(value, SCHEMA)
    assert found == problem if problem is None else problem in found


def test_parquet_types_do_not_depend_on_the_answers(lane, tmp_path):
    import pyarrow.parquet as pq

    sb = lane("openai")
    clean = run_to_end(sb, lambda: pipeline("openai", "pq-clean", rows_for("pq-clean"), response_format=SCHEMA))
    sb.set_faults(provider="openai", schema_violation_rate=1.0)
    broken = run_to_end(sb, lambda: pipeline("openai", "pq-broken", rows_for("pq-broken"), response_format=SCHEMA))
    assert all(r["generation"] is None for r in broken)
    schemas = [pq.read_schema(ds.to_parquet(tmp_path / f"{i}.parquet")) for i, ds in enumerate((clean, broken))]
    for column in ("generation", "generation_raw", "generation_error"):
        assert schemas[0].field(column).type == schemas[1].field(column).type, column
    assert str(schemas[0].field("generation").type) == "string"
