"""Structured output on Anthropic: ``output_config.format`` as the SDK's transform_schema
writes it (objects closed, unenforced keywords moved into the description), local
validation of what Anthropic does not enforce, the refusal of models without structured
outputs before spend, and the sandbox refusing schemas the API refuses."""

from __future__ import annotations

import anthropic
import pydantic
import pytest

from overnight.errors import ValidationError
from overnight.structured import output_schema

from structured_lanes import KEY, lane, pipeline, run_to_end, sandbox, sent_requests  # noqa: F401


class Rating(pydantic.BaseModel):
    label: str
    stars: int = pydantic.Field(ge=1, le=5)


def test_the_wire_carries_the_sdk_form_and_unenforced_bounds_are_checked_here(lane):
    sb = lane("anthropic")
    rows = [{"instruction": "anthropic: rate this, with many words to count"}]
    out = run_to_end(sb, lambda: pipeline("anthropic", "wire", rows, response_format=Rating)).to_list()
    (line,) = sent_requests(sb, "anthropic")
    fmt = line["params"]["output_config"]["format"]
    assert fmt == {"type": "json_schema", "schema": anthropic.transform_schema(output_schema(Rating).schema)}
    stars = fmt["schema"]["properties"]["stars"]
    assert "minimum" not in stars and "minimum: 1" in stars["description"] and "maximum: 5" in stars["description"]
    assert fmt["schema"]["additionalProperties"] is False
    # The sandbox, like Claude, is not held to the bounds it was not given: the answer is
    # validated here, and one out of bounds is an error row that keeps what was paid for.
    (row,) = out
    assert row["generation"] is None
    assert "stars: Input should be less than or equal to 5" in row["generation_error"]
    assert '"stars":' in row["generation_raw"].replace(" ", "")


def test_a_model_without_structured_outputs_is_refused_before_anything_is_sent(lane):
    sb = lane("anthropic")
    before = len([j for j in sb.jobs() if j["provider"] == "anthropic"])
    with pytest.raises(ValidationError, match="claude-3-5-haiku-latest has no structured outputs"):
        pipeline("anthropic", "old", [{"instruction": "q"}], model="claude-3-5-haiku-latest",
                 response_format=Rating).run()
    assert len([j for j in sb.jobs() if j["provider"] == "anthropic"]) == before


def test_the_sandbox_refuses_schemas_structured_outputs_cannot_take(lane):
    sb = lane("anthropic")
    client = anthropic.Anthropic(api_key=KEY, base_url=sb.anthropic_base_url, max_retries=0)

    def request(custom_id, schema, model="claude-sonnet-4-5"):
        return {"custom_id": custom_id, "params": {
            "model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "q"}],
            "output_config": {"format": {"type": "json_schema", "schema": schema}}}}

    closed = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    batch = client.messages.batches.create(requests=[
        request("open", {"type": "object", "properties": {"a": {"type": "string"}}}),
        request("bounded", {**closed, "properties": {"a": {"type": "integer", "minimum": 1}}}),
        request("old", closed, model="claude-3-haiku-20240307"),
        request("fine", closed),
    ])
    sb.advance(3600)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["fine"].type == "succeeded"
    messages = {k: v.error.error.message for k, v in results.items() if v.type == "errored"}
    assert messages["open"] == ("output_config.format.schema: For 'object' type, 'additionalProperties' must be "
                                "explicitly set to false")
    assert "'minimum' is not supported" in messages["bounded"]
    assert "does not support output_config.format" in messages["old"]
