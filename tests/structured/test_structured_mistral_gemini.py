"""Structured output on Mistral and Gemini: each provider's wire form of the schema."""

from __future__ import annotations

import pydantic

from overnight.structured import output_schema

from structured_lanes import lane, pipeline, run_to_end, sandbox, sent_requests  # noqa: F401


class Summary(pydantic.BaseModel):
    text: str
    words: int


def test_mistral_gets_a_named_strict_json_schema_response_format(lane):
    sb = lane("mistral")
    out = run_to_end(sb, lambda: pipeline("mistral", "wire", [{"instruction": "mistral: sum up"}],
                                          response_format=Summary))
    (line,) = sent_requests(sb, "mistral")
    assert line["body"]["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "Summary", "schema": output_schema(Summary).schema, "strict": True}}
    assert isinstance(out[0]["generation"], Summary)


def test_gemini_gets_a_json_mime_type_and_a_json_schema(lane):
    sb = lane("gemini")
    out = run_to_end(sb, lambda: pipeline("gemini", "wire", [{"instruction": "gemini: sum up"}],
                                          response_format=Summary))
    (line,) = sent_requests(sb, "gemini")
    config = line["request"]["generationConfig"] if "request" in line else line["config"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == output_schema(Summary).schema
    assert isinstance(out[0]["generation"], Summary)
