"""The official openai SDK against the sandbox: files, batches, lifecycles, limits, auth."""

from __future__ import annotations

import httpx
import openai
import pytest

from overnight.sandbox import Sandbox, expected_reply
from sandbox_helpers import chat_line, jsonl, prompts, read_jsonl, upload_openai_batch


def test_full_lifecycle_every_row_gets_its_own_answer(sandbox: Sandbox, oai: openai.OpenAI) -> None:
    items = prompts(10)
    batch = upload_openai_batch(oai, items, metadata={"run": "r1"})
    assert batch.status == "validating"
    assert batch.request_counts.total == 0
    assert batch.expires_at == batch.created_at + 24 * 3600
    assert batch.metadata == {"run": "r1"}

    sandbox.advance(5)
    batch = oai.batches.retrieve(batch.id)
    assert batch.status == "in_progress"
    assert batch.in_progress_at == batch.created_at + 5
    assert batch.request_counts.total == 10

    sandbox.advance(15)  # half of the 30 s processing span
    batch = oai.batches.retrieve(batch.id)
    assert batch.status == "in_progress"
    assert batch.request_counts.completed == 5

    sandbox.advance(15)
    batch = oai.batches.retrieve(batch.id)
    assert batch.status == "finalizing"
    assert batch.request_counts.completed == 10
    assert batch.output_file_id is None

    sandbox.advance(5)
    batch = oai.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.completed_at == batch.created_at + 40
    assert batch.model == "gpt-test"
    assert batch.error_file_id is None
    assert batch.usage.output_tokens > 0 and batch.usage.input_tokens > 0

    out_file = oai.files.retrieve(batch.output_file_id)
    assert out_file.purpose == "batch_output"
    rows = read_jsonl(oai.files.content(batch.output_file_id).text)
    assert sorted(r["custom_id"] for r in rows) == sorted(items)
    for row in rows:
        assert row["error"] is None
        assert row["id"].startswith("batch_req_")
        body = row["response"]["body"]
        assert row["response"]["status_code"] == 200
        assert body["object"] == "chat.completion"
        text = body["choices"][0]["message"]["content"]
        prompt = items[row["custom_id"]]
        assert prompt in text
        assert text == expected_reply([{"role": "user", "content": prompt}])
        assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert out_file.bytes == len(oai.files.content(batch.output_file_id).content)


def test_request_options_are_honoured(sandbox: Sandbox, oai: openai.OpenAI) -> None:
    lines = [
        chat_line("long", "one two three four five six", max_tokens=4),
        chat_line("stop", "alpha beta gamma", stop=["beta"]),
        chat_line("json", "give json", response_format={"type": "json_object"}),
        chat_line("schema", "give schema", response_format={"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "object", "properties": {"title": {"type": "string"},
                                                                     "score": {"type": "integer"}}}}}),
    ]
    file = oai.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    batch = oai.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    sandbox.advance(3600)
    batch = oai.batches.retrieve(batch.id)
    rows = {r["custom_id"]: r["response"]["body"]["choices"][0] for r in
            read_jsonl(oai.files.content(batch.output_file_id).text)}
    assert rows["long"]["finish_reason"] == "length"
    assert rows["long"]["message"]["content"] == "Sandbox answer to: one"
    assert rows["stop"]["finish_reason"] == "stop"
    assert rows["stop"]["message"]["content"] == "Sandbox answer to: alpha "
    import json
    assert "give json" in json.loads(rows["json"]["message"]["content"])["answer"]
    schema_obj = json.loads(rows["schema"]["message"]["content"])
    assert set(schema_obj) == {"title", "score"} and isinstance(schema_obj["score"], int)
    assert rows["stop"]["message"]["content"] == expected_reply(
        [{"role": "user", "content": "alpha beta gamma"}], stop=["beta"])


def test_list_pagination_with_after_limit_has_more(sandbox: Sandbox, oai: openai.OpenAI) -> None:
    ids = [upload_openai_batch(oai, prompts(1)).id for _ in range(5)]
    page = oai.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2]
    assert page.has_more is True
    assert [b.id for b in oai.batches.list(limit=2)] == ids[::-1]
    last = oai.batches.list(limit=2, after=ids[1])
    assert [b.id for b in last.data] == [ids[0]] and last.has_more is False

    files = oai.files.list(limit=3)
    assert len(files.data) == 3 and files.has_more is True
    assert len(list(oai.files.list(limit=3))) == 5
    assert [f.id for f in oai.files.list(order="asc").data] == [f.id for f in oai.files.list().data][::-1]


def test_cancel_keeps_partial_output(sandbox: Sandbox, oai: openai.OpenAI) -> None:
    batch = upload_openai_batch(oai, prompts(10))
    sandbox.advance(5 + 12)  # 4 of 10 done
    batch = oai.batches.cancel(batch.id)
    assert batch.status == "cancelling"
    assert batch.cancelling_at is not None
    sandbox.advance(100)
    batch = oai.batches.retrieve(batch.id)
    assert batch.status == "cancelled"
    assert batch.request_counts.completed == 4
    done = read_jsonl(oai.files.content(batch.output_file_id).text)
    assert [r["custom_id"] for r in done] == [f"req-{i}" for i in range(4)]
    dropped = read_jsonl(oai.files.content(batch.error_file_id).text)
    assert len(dropped) == 6
    assert all(r["response"] is None and r["error"]["code"] == "batch_cancelled" for r in dropped)
    with pytest.raises(openai.BadRequestError):
        oai.batches.cancel(batch.id)


def test_cancel_while_validating(sandbox: Sandbox, oai: openai.OpenAI) -> None:
    batch = upload_openai_batch(oai, prompts(3))
    oai.batches.cancel(batch.id)
    sandbox.advance(60)
    batch = oai.batches.retrieve(batch.id)
    assert batch.status == "cancelled"
    assert batch.in_progress_at is None and batch.output_file_id is None


def test_request_errors_go_to_the_error_file(sandbox: Sandbox, oai: openai.OpenAI) -> None:
    sandbox.set_faults(provider="openai", error_ids={"req-1", "req-3"}, error_status=400)
    batch = upload_openai_batch(oai, prompts(5))
    sandbox.advance(60)
    batch = oai.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert (batch.request_counts.completed, batch.request_counts.failed) == (3, 2)
    errors = read_jsonl(oai.files.content(batch.error_file_id).text)
    assert sorted(e["custom_id"] for e in errors) == ["req-1", "req-3"]
    for e in errors:
        assert e["error"] is None
        assert e["response"]["status_code"] == 400
        assert e["response"]["body"]["error"]["type"] == "invalid_request_error"


def test_all_requests_failed_is_still_completed_without_output(sandbox: Sandbox, oai: openai.OpenAI) -> None:
    sandbox.set_faults(error_rate=1.0)
    batch = upload_openai_batch(oai, prompts(3))
    sandbox.advance(60)
    batch = oai.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.output_file_id is None and batch.error_file_id is not None
    assert batch.request_counts.failed == 3


def test_invalid_body_is_a_request_error(sandbox: Sandbox, oai: openai.OpenAI) -> None:
    lines = [chat_line("ok", "fine"), {"custom_id": "bad", "method": "POST", "url": "/v1/chat/completions",
                                        "body": {"model": "gpt-test"}}]
    file = oai.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    batch = oai.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    sandbox.advance(60)
    batch = oai.batches.retrieve(batch.id)
    (error,) = read_jsonl(oai.files.content(batch.error_file_id).text)
    assert error["custom_id"] == "bad" and error["response"]["body"]["error"]["param"] == "messages"


def test_validation_failure_has_line_numbers(sandbox: Sandbox, oai: openai.OpenAI) -> None:
    data = (jsonl([chat_line("a", "x"), chat_line("a", "dup")]) + b"{not json\n"
            + jsonl([{**chat_line("c", "y"), "url": "/v1/embeddings"}, chat_line("d", "z", model="other")]))
    file = oai.files.create(file=("in.jsonl", data), purpose="batch")
    batch = oai.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    sandbox.advance(4)
    assert oai.batches.retrieve(batch.id).status == "validating"
    sandbox.advance(1)
    batch = oai.batches.retrieve(batch.id)
    assert batch.status == "failed"
    assert batch.failed_at == batch.created_at + 5
    codes = [(e.code, e.line) for e in batch.errors.data]
    assert codes == [("duplicate_custom_id", 2), ("invalid_json_line", 3), ("url_mismatch", 4),
                     ("model_mismatch", 5)]
    assert batch.output_file_id is None and batch.error_file_id is None


def test_empty_file_fails_validation(sandbox: Sandbox, oai: openai.OpenAI) -> None:
    file = oai.files.create(file=("in.jsonl", b"\n"), purpose="batch")
    batch = oai.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    sandbox.advance(10)
    assert oai.batches.retrieve(batch.id).errors.data[0].code == "empty_file"


def test_non_jsonl_batch_upload_is_rejected(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="Must be .jsonl"):
        oai.files.create(file=("input.txt", b"{}\n"), purpose="batch")
    # Raw bytes (a part named "upload", no extension) are judged by their content:
    # tests/sandbox/test_sandbox_raw_upload.py.


def test_file_delete_and_missing_objects(sandbox: Sandbox, oai: openai.OpenAI) -> None:
    file = oai.files.create(file=("in.jsonl", jsonl([chat_line("a", "x")])), purpose="batch")
    batch = oai.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    deleted = oai.files.delete(file.id)
    assert deleted.deleted is True and deleted.id == file.id
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(file.id)
    with pytest.raises(openai.NotFoundError):
        oai.files.content(file.id)
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve("batch_missing")
    with pytest.raises(openai.NotFoundError):
        oai.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    sandbox.advance(60)  # the job kept its own copy of the input
    assert oai.batches.retrieve(batch.id).status == "completed"


def test_limits_requests_and_bytes(tmp_path) -> None:
    with Sandbox(state_dir=tmp_path, limits={"openai": {"max_requests": 3, "max_bytes": 2000}}) as sb:
        client = openai.OpenAI(api_key="k", base_url=sb.openai_base_url, max_retries=0)
        batch = upload_openai_batch(client, prompts(4))
        sb.advance(10)
        batch = client.batches.retrieve(batch.id)
        assert batch.status == "failed" and batch.errors.data[0].code == "too_many_tasks"
        big = jsonl([chat_line(f"r{i}", "x" * 700) for i in range(3)])
        assert len(big) > 2000
        with pytest.raises(openai.BadRequestError, match="too large"):
            client.files.create(file=("big.jsonl", big), purpose="batch")
        assert sb.counters()["openai"]["files"] == 1


def test_missing_key_gets_openai_401(sandbox: Sandbox) -> None:
    response = httpx.get(sandbox.openai_base_url + "/batches")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "API key" in error["message"]
    empty = httpx.get(sandbox.openai_base_url + "/batches", headers={"authorization": "Basic abc"})
    assert empty.status_code == 401


def test_base_url_without_v1_and_unknown_paths(sandbox: Sandbox) -> None:
    client = openai.OpenAI(api_key="k", base_url=sandbox.url + "/openai", max_retries=0)
    assert client.batches.list().data == []
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.list()


def test_unsupported_endpoint_and_bad_window(oai: openai.OpenAI) -> None:
    file = oai.files.create(file=("in.jsonl", jsonl([chat_line("a", "x")])), purpose="batch")
    with pytest.raises(openai.BadRequestError):
        oai.batches.create(input_file_id=file.id, endpoint="/v1/moderations", completion_window="24h")
    with pytest.raises(openai.BadRequestError):
        oai.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions",
                           completion_window="48h")  # type: ignore[arg-type]


def test_other_endpoints(sandbox: Sandbox, oai: openai.OpenAI) -> None:
    def run(endpoint: str, body: dict) -> dict:
        line = {"custom_id": "x", "method": "POST", "url": endpoint, "body": {"model": "m", **body}}
        file = oai.files.create(file=("in.jsonl", jsonl([line])), purpose="batch")
        batch = oai.batches.create(input_file_id=file.id, endpoint=endpoint, completion_window="24h")  # type: ignore[arg-type]
        sandbox.advance(60)
        batch = oai.batches.retrieve(batch.id)
        return read_jsonl(oai.files.content(batch.output_file_id).text)[0]["response"]["body"]

    embedding = run("/v1/embeddings", {"input": ["a", "b"], "dimensions": 4})
    assert len(embedding["data"]) == 2 and len(embedding["data"][0]["embedding"]) == 4
    response = run("/v1/responses", {"input": "hello responses", "instructions": "be brief"})
    assert "hello responses" in response["output"][0]["content"][0]["text"]
    assert response["status"] == "completed"
    completion = run("/v1/completions", {"prompt": "legacy prompt"})
    assert "legacy prompt" in completion["choices"][0]["text"]


def test_stuck_job_expires_at_the_window_end(sandbox: Sandbox, oai: openai.OpenAI) -> None:
    sandbox.set_faults(stuck=True)
    batch = upload_openai_batch(oai, prompts(3))
    sandbox.advance(23 * 3600)
    batch = oai.batches.retrieve(batch.id)
    assert batch.status == "in_progress" and batch.request_counts.completed == 0
    sandbox.advance(3600)
    batch = oai.batches.retrieve(batch.id)
    assert batch.status == "expired" and batch.expired_at == batch.expires_at
    assert batch.output_file_id is None
    rows = read_jsonl(oai.files.content(batch.error_file_id).text)
    assert {r["error"]["code"] for r in rows} == {"batch_expired"}


def test_one_batch_is_answered_while_the_results_of_another_are_computed(
        sandbox: Sandbox, oai: openai.OpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client downloading one batch's results while the next batch's are computed is not
    kept waiting for them (a real provider answers calls about other batches meanwhile)."""
    import threading

    first = upload_openai_batch(oai, prompts(3))
    second = upload_openai_batch(oai, {f"b{i}": f"other {i}" for i in range(3)})
    sandbox.advance(3600)
    assert oai.batches.retrieve(first.id).status == "completed"  # the first one's results: computed
    dialect = sandbox.engine.dialects["openai"]
    computing, release = threading.Event(), threading.Event()
    original = dialect.result

    def slow_result(job, *args, **kwargs):  # type: ignore[no-untyped-def]
        if job["id"] == second.id:
            computing.set()
            release.wait(30)
        return original(job, *args, **kwargs)

    monkeypatch.setattr(dialect, "result", slow_result)
    other = threading.Thread(target=lambda: oai.batches.retrieve(second.id))
    other.start()
    try:
        assert computing.wait(30)
        done = oai.batches.retrieve(first.id)  # answered while the second batch's results are computed
        assert done.status == "completed" and oai.files.content(done.output_file_id).text.count("\n") == 3
        assert other.is_alive()
    finally:
        release.set()
        other.join(30)
    second_done = oai.batches.retrieve(second.id)
    assert second_done.status == "completed"
    assert sorted(r["custom_id"] for r in read_jsonl(oai.files.content(second_done.output_file_id).text)) == \
        ["b0", "b1", "b2"]
