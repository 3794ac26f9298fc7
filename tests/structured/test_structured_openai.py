"""Structured output on OpenAI: the strict json_schema on the wire, the refusals before
spend (a schema strict mode refuses, a model without Structured Outputs), and the
sandbox refusing what the real API refuses when a client sends it anyway."""

from __future__ import annotations

import json

import openai
import pydantic
import pytest

from overnight.errors import ValidationError
from overnight.structured import output_schema

from structured_lanes import KEY, find_key, lane, pipeline, run_to_end, sandbox, sent_requests  # noqa: F401


class Verdict(pydantic.BaseModel):
    label: str
    score: int


ROWS = [{"instruction": "openai: judge this"}]
LOOSE = {"type": "object", "properties": {"label": {"type": "string"}, "score": {"type": "integer"}},
         "required": ["label"]}


def jobs(sb, provider="openai"):
    return [j for j in sb.jobs() if j["provider"] == provider]


def test_the_wire_carries_a_strict_named_json_schema(lane):
    sb = lane("openai")
    ds = run_to_end(sb, lambda: pipeline("openai", "wire", ROWS, response_format=Verdict))
    (line,) = sent_requests(sb, "openai")
    assert line["body"]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Verdict", "schema": output_schema(Verdict).schema, "strict": True},
    }
    assert isinstance(ds[0]["generation"], Verdict)


@pytest.mark.parametrize("schema, rule", [
    ({**LOOSE, "required": ["label", "score"]}, "'additionalProperties' is required to be supplied and to be false"),
    ({**LOOSE, "additionalProperties": False}, "Missing 'score'"),
])
def test_a_schema_strict_mode_refuses_is_refused_before_anything_is_sent(lane, schema, rule):
    sb = lane("openai")
    before = len(jobs(sb))
    with pytest.raises(ValidationError, match="field 'response_format'") as caught:
        pipeline("openai", "loose", ROWS, response_format=schema).run()
    assert rule in str(caught.value) and "pydantic model" in str(caught.value)
    assert len(jobs(sb)) == before  # nothing submitted, nothing paid


def test_a_model_without_structured_outputs_is_refused_before_anything_is_sent(lane):
    sb = lane("openai")
    before = len(jobs(sb))
    with pytest.raises(ValidationError, match="gpt-3.5-turbo cannot follow a JSON schema"):
        pipeline("openai", "old", ROWS, model="gpt-3.5-turbo", response_format=Verdict).run()
    assert len(jobs(sb)) == before


def test_the_sandbox_answers_what_openai_answers_to_a_client_that_sends_them_anyway(lane):
    sb = lane("openai")
    client = openai.OpenAI(api_key=KEY, base_url=sb.openai_base_url, max_retries=0)

    def line(custom_id, model, schema):
        fmt = {"type": "json_schema", "json_schema": {"name": "v", "schema": schema, "strict": True}}
        return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": model, "messages": [{"role": "user", "content": "q"}], "response_format": fmt}}

    strict = {**LOOSE, "required": ["label", "score"], "additionalProperties": False}

    def run(*lines):
        data = "".join(json.dumps(x) + "\n" for x in lines).encode()
        upload = client.files.create(file=("in.jsonl", data), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        sb.advance(3600)
        return client.batches.retrieve(batch.id)

    def errors(batch):
        return {e["custom_id"]: e["response"]
                for e in map(json.loads, client.files.content(batch.error_file_id).text.splitlines())}

    # A batch holds one model: the old one goes in a batch of its own.
    batch = run(line("open", "gpt-4o-mini", {**LOOSE, "required": ["label", "score"]}),
                line("partial", "gpt-4o-mini", {**LOOSE, "additionalProperties": False}),
                line("fine", "gpt-4o-mini", strict))
    assert (batch.status, batch.request_counts.completed, batch.request_counts.failed) == ("completed", 1, 2)
    refused = errors(batch)
    assert refused["open"]["status_code"] == 400
    assert refused["open"]["body"]["error"]["message"] == (
        "Invalid schema for response_format 'v': In context=(), 'additionalProperties' is required to be "
        "supplied and to be false.")
    assert "'required' is required to be supplied and to be an array including every key in properties. " \
           "Missing 'score'." in refused["partial"]["body"]["error"]["message"]
    (ok,) = map(json.loads, client.files.content(batch.output_file_id).text.splitlines())
    answer = json.loads(find_key(ok, "content"))
    assert set(answer) == {"label", "score"} and isinstance(answer["score"], int)
    old = run(line("old", "gpt-3.5-turbo", strict))
    assert errors(old)["old"]["body"]["error"]["message"] == (
        "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.")


def test_groq_refuses_a_strict_schema_on_a_model_that_cannot_enforce_it_before_spend(lane):
    sb = lane("groq")
    before = len(jobs(sb, "groq"))
    with pytest.raises(ValidationError, match="Groq enforces a JSON schema .strict mode. only on openai/gpt-oss-20b"):
        pipeline("groq", "best-effort", ROWS, model="llama-3.1-8b-instant", response_format=Verdict).run()
    assert len(jobs(sb, "groq")) == before
    # And the sandbox answers a client that sends one anyway as Groq does: a 400 for that request.
    client = openai.OpenAI(api_key=KEY, base_url=sb.groq_base_url, max_retries=0)
    fmt = {"type": "json_schema", "json_schema": {"name": "v", "schema": output_schema(Verdict).schema, "strict": True}}
    body = {"model": "llama-3.1-8b-instant", "messages": [{"role": "user", "content": "q"}], "response_format": fmt}
    data = (json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n").encode()
    upload = client.files.create(file=("in.jsonl", data), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    sb.advance(3600)
    batch = client.batches.retrieve(batch.id)
    (error,) = map(json.loads, client.files.content(batch.error_file_id).text.splitlines())
    assert error["response"]["status_code"] == 400
    assert "does not support strict mode" in error["response"]["body"]["error"]["message"]
