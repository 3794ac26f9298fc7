"""The official mistralai SDK (strict response validation) against the sandbox."""

from __future__ import annotations

import json

import httpx
import pytest
from mistralai.client import Mistral
from mistralai.client import errors as mistral_errors

from overnight.sandbox import Sandbox, expected_reply
from sandbox_helpers import mistral_lines, prompts, read_jsonl


def upload(client: Mistral, data: bytes, name: str = "batch_input.jsonl") -> str:
    return client.files.upload(file={"file_name": name, "content": data}, purpose="batch").id


def test_files_roundtrip_and_strict_fields(sandbox: Sandbox, mis: Mistral) -> None:
    data = mistral_lines(prompts(3))
    created = mis.files.upload(file={"file_name": "in.jsonl", "content": data}, purpose="batch")
    assert created.size_bytes == len(data) and created.num_lines == 3
    assert (created.sample_type, created.source, created.purpose) == ("batch_request", "upload", "batch")
    retrieved = mis.files.retrieve(file_id=created.id)
    assert retrieved.deleted is False and retrieved.filename == "in.jsonl"
    assert mis.files.download(file_id=created.id).read() == data
    raw = httpx.get(f"{sandbox.mistral_base_url}/v1/files/{created.id}/content", headers={"authorization": "Bearer k"})
    assert raw.headers["content-type"] == "application/octet-stream"
    listing = mis.files.list(page=0, page_size=10)
    assert listing.total == 1 and listing.data[0].id == created.id
    assert mis.files.get_signed_url(file_id=created.id).url.endswith(f"/v1/files/{created.id}/content")
    assert mis.files.delete(file_id=created.id).deleted is True
    with pytest.raises(mistral_errors.SDKError) as info:
        mis.files.retrieve(file_id=created.id)
    assert info.value.status_code == 404


def test_full_lifecycle_with_input_files(sandbox: Sandbox, mis: Mistral) -> None:
    items = prompts(8)
    job = mis.batch.jobs.create(endpoint="/v1/chat/completions", input_files=[upload(mis, mistral_lines(items))],
                                model="mistral-small-latest", metadata={"run": "r1"})
    assert job.status == "QUEUED" and job.errors == [] and job.total_requests == 8
    sandbox.advance(5 + 15)
    job = mis.batch.jobs.get(job_id=job.id)
    assert job.status == "RUNNING" and job.completed_requests == 4 and job.started_at == job.created_at + 5
    sandbox.advance(20)
    job = mis.batch.jobs.get(job_id=job.id)
    assert job.status == "SUCCESS" and job.succeeded_requests == 8 and job.error_file is None
    assert job.completed_at == job.created_at + 40
    output = mis.files.retrieve(file_id=job.output_file)
    assert (output.sample_type, output.source) == ("batch_result", "mistral")
    rows = read_jsonl(mis.files.download(file_id=job.output_file).read().decode())
    assert sorted(r["custom_id"] for r in rows) == sorted(items)
    for row in rows:
        body = row["response"]["body"]
        assert row["response"]["status_code"] == 200 and row["error"] is None
        assert body["model"] == "mistral-small-latest"
        assert body["choices"][0]["message"]["content"] == expected_reply(
            [{"role": "user", "content": items[row["custom_id"]]}])


def test_inline_requests_and_inline_outputs(sandbox: Sandbox, mis: Mistral) -> None:
    requests = [{"custom_id": "a", "body": {"messages": [{"role": "user", "content": "inline one"}], "max_tokens": 4}},
                {"custom_id": "b", "body": {"messages": [{"role": "user", "content": "inline two"}]}}]
    job = mis.batch.jobs.create(endpoint="/v1/chat/completions", requests=requests, model="mistral-small-latest")
    assert job.input_files == []
    assert mis.batch.jobs.get(job_id=job.id, inline=True).outputs is None
    sandbox.advance(60)
    job = mis.batch.jobs.get(job_id=job.id, inline=True)
    outputs = {o["custom_id"]: o["response"]["body"]["choices"][0] for o in job.outputs}
    assert outputs["a"]["finish_reason"] == "length" and outputs["a"]["message"]["content"] == "Sandbox answer to: inline"
    assert "inline two" in outputs["b"]["message"]["content"]


def test_list_pagination_and_filters(sandbox: Sandbox, mis: Mistral) -> None:
    def create(meta: dict, model: str = "m-1") -> str:
        return mis.batch.jobs.create(endpoint="/v1/chat/completions", model=model, metadata=meta, requests=[
            {"custom_id": "x", "body": {"messages": [{"role": "user", "content": "x"}]}}]).id

    ids = [create({"team": "a"}), create({"team": "b"}), create({"team": "a"}, "m-2")]
    page = mis.batch.jobs.list(page=0, page_size=2)
    assert page.total == 3 and [j.id for j in page.data] == ids[::-1][:2]
    assert [j.id for j in mis.batch.jobs.list(page=1, page_size=2).data] == [ids[0]]
    assert {j.id for j in mis.batch.jobs.list(metadata={"team": "a"}).data} == {ids[0], ids[2]}
    assert [j.id for j in mis.batch.jobs.list(model="m-2").data] == [ids[2]]
    assert [j.id for j in mis.batch.jobs.list(order_by="created").data] == ids
    mis.batch.jobs.cancel(job_id=ids[1])
    assert [j.id for j in mis.batch.jobs.list(status=["CANCELLATION_REQUESTED"]).data] == [ids[1]]
    assert mis.batch.jobs.list(status=["RUNNING", "SUCCESS"]).total == 0


def test_cancel_and_delete(sandbox: Sandbox, mis: Mistral) -> None:
    job = mis.batch.jobs.create(endpoint="/v1/chat/completions", model="m",
                                input_files=[upload(mis, mistral_lines(prompts(10)))])
    sandbox.advance(5 + 6)  # 2 of 10 done
    job = mis.batch.jobs.cancel(job_id=job.id)
    assert job.status == "CANCELLATION_REQUESTED"
    with pytest.raises(mistral_errors.SDKError):
        mis.batch.jobs.delete(job_id=job.id)
    sandbox.advance(10)
    job = mis.batch.jobs.get(job_id=job.id)
    assert job.status == "CANCELLED" and job.succeeded_requests == 2
    assert len(read_jsonl(mis.files.download(file_id=job.output_file).read().decode())) == 2
    with pytest.raises(mistral_errors.SDKError):
        mis.batch.jobs.cancel(job_id=job.id)
    deleted = mis.batch.jobs.delete(job_id=job.id)
    assert deleted.deleted is True
    with pytest.raises(mistral_errors.SDKError):
        mis.batch.jobs.get(job_id=job.id)


def test_timeout_exceeded_keeps_partial_output(sandbox: Sandbox, mis: Mistral) -> None:
    sandbox.set_faults(provider="mistral", stuck=True)
    job = mis.batch.jobs.create(endpoint="/v1/chat/completions", model="m", timeout_hours=1,
                                input_files=[upload(mis, mistral_lines(prompts(2)))])
    sandbox.advance(3599)
    assert mis.batch.jobs.get(job_id=job.id).status == "RUNNING"
    sandbox.advance(1)
    job = mis.batch.jobs.get(job_id=job.id)
    assert job.status == "TIMEOUT_EXCEEDED" and job.output_file is None and job.completed_requests == 0


def test_errors_file_and_failed_validation(sandbox: Sandbox, mis: Mistral) -> None:
    sandbox.set_faults(provider="mistral", error_ids=["req-1"], error_status=429)
    job = mis.batch.jobs.create(endpoint="/v1/chat/completions", model="m",
                                input_files=[upload(mis, mistral_lines(prompts(3)))])
    sandbox.advance(60)
    job = mis.batch.jobs.get(job_id=job.id)
    assert job.status == "SUCCESS" and (job.succeeded_requests, job.failed_requests) == (2, 1)
    (error,) = read_jsonl(mis.files.download(file_id=job.error_file).read().decode())
    assert error["custom_id"] == "req-1" and error["response"]["status_code"] == 429 and error["error"]
    assert mis.files.retrieve(file_id=job.error_file).sample_type == "batch_error"

    bad = mis.batch.jobs.create(endpoint="/v1/chat/completions", model="m",
                                input_files=[upload(mis, b'{"custom_id": "a", "body": {}}\nnot json\n')])
    sandbox.advance(60)
    bad = mis.batch.jobs.get(job_id=bad.id)
    assert bad.status == "FAILED" and bad.errors[0].message == "Line 2: invalid JSON"


def test_auth_and_unknown_ids(sandbox: Sandbox) -> None:
    missing = httpx.get(sandbox.mistral_base_url + "/v1/batch/jobs")
    assert missing.status_code == 401 and missing.json()["message"] == "Unauthorized"
    with pytest.raises(mistral_errors.SDKError) as info:
        Mistral(api_key="k", server_url=sandbox.mistral_base_url).batch.jobs.get(job_id="nope")
    assert info.value.status_code == 404


def test_limits(tmp_path) -> None:
    with Sandbox(state_dir=tmp_path, limits={"mistral": {"max_requests": 2, "max_bytes": 500}}) as sb:
        client = Mistral(api_key="k", server_url=sb.mistral_base_url)
        with pytest.raises(mistral_errors.SDKError) as info:
            client.batch.jobs.create(endpoint="/v1/chat/completions", model="m", requests=[
                {"custom_id": str(i), "body": {"messages": [{"role": "user", "content": "x"}]}} for i in range(3)])
        assert info.value.status_code == 400
        with pytest.raises(mistral_errors.SDKError) as info:
            upload(client, mistral_lines({"a": "x" * 600}))
        assert info.value.status_code == 413
        assert sb.counters()["mistral"] == {"files": 0, "jobs": 0, "requests": 0, "http": {
            "POST /v1/batch/jobs": 1, "POST /v1/files": 1}}


def test_embeddings_batch(sandbox: Sandbox, mis: Mistral) -> None:
    job = mis.batch.jobs.create(endpoint="/v1/embeddings", model="mistral-embed", requests=[
        {"custom_id": "e", "body": {"input": ["a", "b"]}}])
    sandbox.advance(60)
    (row,) = mis.batch.jobs.get(job_id=job.id, inline=True).outputs
    assert len(row["response"]["body"]["data"]) == 2
    assert json.dumps(row)  # plain JSON all the way down


def test_sdk_batch_helper_validates_every_output_line(sandbox: Sandbox, mis: Mistral) -> None:
    """mistralai.extra.batch parses each body into the SDK's strict pydantic models."""
    import asyncio

    from mistralai.client.models import ChatCompletionResponse
    from mistralai.extra.batch import BatchClient, BatchInput, BatchRequestError

    sandbox.set_faults(provider="mistral", error_ids=["req-2"])
    helper = BatchClient(mis, endpoint="/v1/chat/completions", response_body_type=ChatCompletionResponse)

    async def run() -> list:
        handle = await helper.create(BatchInput.from_jsonl_bytes(mistral_lines(prompts(4))), model="m")
        sandbox.advance(60)
        return [item async for item in helper.stream_results(handle)]

    items = dict(asyncio.run(run()))
    assert isinstance(items["req-2"], BatchRequestError) and items["req-2"].status_code == 500
    for cid in ("req-0", "req-1", "req-3"):
        assert isinstance(items[cid], ChatCompletionResponse)
        assert items[cid].choices[0].message.content == expected_reply(
            [{"role": "user", "content": f"question number {cid[-1]}"}])
