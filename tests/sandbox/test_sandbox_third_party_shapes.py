"""What third-party clients send, found by running them against the sandbox (issue 14):
a Gemini batch input file of OpenAI-shaped lines, as LiteLLM uploads it unchanged (the
sandbox judges the lines by their content and answers them OpenAI-shaped; sources in
core/overnight/sandbox/gemini_openai_lines.py), and distilabel's ``n`` choices per line."""

from __future__ import annotations

import io
import json

from google import genai
from google.genai import types

from overnight.sandbox import Sandbox, expected_reply


def test_openai_shaped_lines_run_and_come_back_openai_shaped(sandbox: Sandbox) -> None:
    client = genai.Client(api_key="gm-test", http_options=types.HttpOptions(base_url=sandbox.gemini_base_url))

    def line(custom_id: str, **body: object) -> dict:
        return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "gemini-2.5-flash", **body}}

    lines = [line("plain", messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]),
             line("short", messages=[{"role": "user", "content": "one two three"}], max_tokens=2),
             line("empty", messages=[])]
    data = "".join(json.dumps(x) + "\n" for x in lines).encode()
    upload = client.files.upload(file=io.BytesIO(data), config={"mime_type": "application/jsonl"})
    job = client.batches.create(model="gemini-2.5-flash", src=upload.name)
    sandbox.advance(3600)
    done = client.batches.get(name=job.name)
    assert done.state.value == "JOB_STATE_SUCCEEDED"
    out = {row["custom_id"]: row["response"] for row in
           map(json.loads, client.files.download(file=done.dest.file_name).decode().splitlines())}
    assert out["plain"]["status_code"] == 200
    body = out["plain"]["body"]
    assert body["choices"][0]["message"]["content"] == expected_reply(
        [{"role": "user", "content": "hi"}], system="Be terse.")
    assert set(body["usage"]) == {"promptTokens", "completionTokens", "totalTokens"}
    assert out["short"]["body"]["choices"][0]["finish_reason"] == "length"
    assert out["empty"]["status_code"] == 400 and out["empty"]["body"]["error"]["status"] == "INVALID_ARGUMENT"


def test_a_line_of_neither_shape_still_fails_the_batch(sandbox: Sandbox) -> None:
    client = genai.Client(api_key="gm-test", http_options=types.HttpOptions(base_url=sandbox.gemini_base_url))
    upload = client.files.upload(file=io.BytesIO(b'{"custom_id": "x", "prompt": "hi"}\n'),
                                 config={"mime_type": "application/jsonl"})
    job = client.batches.create(model="gemini-2.5-flash", src=upload.name)
    sandbox.advance(3600)
    assert client.batches.get(name=job.name).state.value == "JOB_STATE_FAILED"


def test_n_choices_are_n_distinct_answers_billed_each(sandbox: Sandbox) -> None:
    """distilabel's OpenAILLM asks for num_generations as ``n`` in one batch line."""
    import openai

    client = openai.OpenAI(api_key="sk-test", base_url=sandbox.openai_base_url, max_retries=0)
    line = {"custom_id": "0", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "q"}], "n": 3}}
    upload = client.files.create(file=("in.jsonl", (json.dumps(line) + "\n").encode()), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    sandbox.advance(3600)
    (row,) = map(json.loads, client.files.content(client.batches.retrieve(batch.id).output_file_id).text.splitlines())
    body = row["response"]["body"]
    texts = [c["message"]["content"] for c in body["choices"]]
    assert texts == [expected_reply("q", variant=i) for i in range(3)] and len(set(texts)) == 3
    assert body["usage"]["completion_tokens"] == sum(len(t.split()) for t in texts)
