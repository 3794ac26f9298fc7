"""The official google-genai SDK, unmodified, against the sandbox's Gemini dialect."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from overnight.sandbox import Sandbox, expected_reply
from sandbox_helpers import prompts

MODEL = "gemini-test"


@pytest.fixture
def gem(sandbox: Sandbox) -> genai.Client:
    return genai.Client(api_key="gm-test", http_options=types.HttpOptions(base_url=sandbox.gemini_base_url))


def inline(items: dict[str, str], **config) -> list[dict]:
    return [{"contents": [{"role": "user", "parts": [{"text": p}]}], "metadata": {"key": k},
             **({"config": config} if config else {})} for k, p in items.items()]


def jsonl_input(items: dict[str, str], **generation_config) -> bytes:
    lines = [{"key": k, "request": {"contents": [{"role": "user", "parts": [{"text": p}]}],
                                     **({"generationConfig": generation_config} if generation_config else {})}}
             for k, p in items.items()]
    return ("\n".join(json.dumps(line) for line in lines) + "\n").encode()


def upload(client: genai.Client, data: bytes, name: str = "input") -> types.File:
    return client.files.upload(file=io.BytesIO(data), config={"mime_type": "application/jsonl", "display_name": name})


def file_lines(client: genai.Client, name: str) -> list[dict]:
    return [json.loads(line) for line in client.files.download(file=name).decode().splitlines() if line]


def answer(prompt: str, **options) -> str:
    return expected_reply([{"role": "user", "content": prompt}], **options)


def test_sdk_base_url_env_var_is_honoured(sandbox: Sandbox, monkeypatch) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", sandbox.gemini_base_url)
    monkeypatch.setenv("GEMINI_API_KEY", "gm-env")
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    client = genai.Client()
    assert list(client.batches.list()) == []
    assert sandbox.counters()["gemini"]["http"] == {"GET /v1/batches": 1}


def test_key_is_required_in_the_google_header_or_query(sandbox: Sandbox) -> None:
    url = f"{sandbox.gemini_base_url}/v1beta/batches"
    refused = httpx.get(url)
    assert refused.status_code == 401 and refused.json()["error"]["status"] == "UNAUTHENTICATED"
    assert httpx.get(url, headers={"x-goog-api-key": "k"}).status_code == 200
    assert httpx.get(url, params={"key": "k"}).status_code == 200


def test_resumable_upload_get_list_pages_and_delete(sandbox: Sandbox, gem: genai.Client) -> None:
    data = jsonl_input(prompts(3))
    created = upload(gem, data, "my-input")
    assert created.name.startswith("files/") and created.size_bytes == len(data)
    assert (created.display_name, created.mime_type, created.state.value, created.source.value) == (
        "my-input", "application/jsonl", "ACTIVE", "UPLOADED")
    assert gem.files.get(name=created.name).sha256_hash
    for i in range(3):
        upload(gem, data, f"more-{i}")
    assert len(list(gem.files.list(config={"page_size": 2}))) == 4  # the pager follows nextPageToken
    assert sandbox.counters()["gemini"]["http"]["GET /v1/files"] == 2
    with pytest.raises(genai_errors.ClientError, match="uploaded files cannot"):
        gem.files.download(file=created.name)  # as in the real API, only generated files download
    gem.files.delete(name=created.name)
    with pytest.raises(genai_errors.ClientError):
        gem.files.get(name=created.name)


def test_chunked_upload_checks_offsets(sandbox: Sandbox) -> None:
    base = f"{sandbox.gemini_base_url}/upload/v1beta/files"
    start = httpx.post(base, headers={"x-goog-api-key": "k", "x-goog-upload-protocol": "resumable",
                                      "x-goog-upload-command": "start", "x-goog-upload-header-content-length": "6",
                                      "x-goog-upload-header-content-type": "application/jsonl"},
                       json={"file": {"displayName": "two-chunks"}})
    url = start.headers["x-goog-upload-url"]
    assert url.startswith(sandbox.gemini_base_url)
    first = httpx.post(url, content=b"abc", headers={"x-goog-upload-command": "upload", "x-goog-upload-offset": "0"})
    assert first.headers["x-goog-upload-status"] == "active"
    wrong = httpx.post(url, content=b"def", headers={"x-goog-upload-command": "upload, finalize",
                                                      "x-goog-upload-offset": "1"})
    assert wrong.status_code == 400
    done = httpx.post(url, content=b"def", headers={"x-goog-upload-command": "upload, finalize",
                                                     "x-goog-upload-offset": "3"})
    assert done.headers["x-goog-upload-status"] == "final" and done.json()["file"]["sizeBytes"] == "6"


def test_inline_batch_lifecycle_states_and_results_by_key(sandbox: Sandbox, gem: genai.Client) -> None:
    items = prompts(6)
    job = gem.batches.create(model=MODEL, src=inline(items, system_instruction="be brief"),
                             config={"display_name": "inline-job"})
    assert job.name.startswith("batches/") and job.state.value == "JOB_STATE_PENDING"
    assert (job.display_name, job.model) == ("inline-job", f"models/{MODEL}")
    sandbox.advance(5 + 15)
    assert gem.batches.get(name=job.name).state.value == "JOB_STATE_RUNNING"
    sandbox.advance(20)
    done = gem.batches.get(name=job.name)
    assert done.state.value == "JOB_STATE_SUCCEEDED" and done.end_time is not None
    responses = done.dest.inlined_responses
    assert len(responses) == 6
    system = {"role": "system", "content": "be brief"}
    for item in responses:
        key = item.metadata["key"]
        assert item.response.text == expected_reply([system, {"role": "user", "content": items[key]}])
        assert item.response.usage_metadata.candidates_token_count > 0
    raw = httpx.get(f"{sandbox.gemini_base_url}/v1beta/{job.name}", headers={"x-goog-api-key": "k"}).json()
    assert raw["done"] is True and raw["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert raw["metadata"]["batchStats"] == {"requestCount": "6", "successfulRequestCount": "6",
                                             "failedRequestCount": "0", "pendingRequestCount": "0"}


def test_file_batch_results_file_with_options_and_request_errors(sandbox: Sandbox, gem: genai.Client) -> None:
    items = prompts(3)
    data = jsonl_input(items, maxOutputTokens=3) + b'{"key":"broken","request":{"contents":[]}}\n'
    job = gem.batches.create(model=MODEL, src=upload(gem, data).name, config={"display_name": "file-job"})
    sandbox.advance(3600)
    done = gem.batches.get(name=job.name)
    assert done.state.value == "JOB_STATE_SUCCEEDED" and done.dest.file_name.startswith("files/")
    result_file = gem.files.get(name=done.dest.file_name)
    assert result_file.source.value == "GENERATED" and result_file.download_uri
    lines = {line["key"]: line for line in file_lines(gem, done.dest.file_name)}
    assert set(lines) == set(items) | {"broken"}
    for key, prompt in items.items():
        candidate = lines[key]["response"]["candidates"][0]
        assert candidate["content"]["parts"][0]["text"] == answer(prompt, max_tokens=3)
        assert candidate["finishReason"] == "MAX_TOKENS"
    assert lines["broken"]["error"]["status"] == "INVALID_ARGUMENT"


def test_json_schema_and_stop_sequences_shape_the_answer(sandbox: Sandbox, gem: genai.Client) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    job = gem.batches.create(model=MODEL, src=inline({"j": "hello"}, response_mime_type="application/json",
                                                     response_json_schema=schema) + inline({"s": "hello"}, stop_sequences=["answer"]))
    sandbox.advance(3600)
    by_key = {r.metadata["key"]: r.response.text for r in gem.batches.get(name=job.name).dest.inlined_responses}
    fmt = {"type": "json_schema", "json_schema": {"schema": schema}}
    assert by_key == {"j": answer("hello", response_format=fmt), "s": answer("hello", stop=["answer"])}


def test_list_with_page_tokens_cancel_and_delete(sandbox: Sandbox, gem: genai.Client) -> None:
    jobs = [gem.batches.create(model=MODEL, src=inline({"a": "x"}), config={"display_name": f"j{i}"}) for i in range(5)]
    assert [j.display_name for j in gem.batches.list(config={"page_size": 2})] == ["j4", "j3", "j2", "j1", "j0"]
    assert sandbox.counters()["gemini"]["http"]["GET /v1/batches"] == 3
    with pytest.raises(genai_errors.ClientError, match="FAILED_PRECONDITION"):
        gem.batches.delete(name=jobs[0].name)  # still running
    gem.batches.cancel(name=jobs[0].name)
    assert gem.batches.get(name=jobs[0].name).state.value == "JOB_STATE_RUNNING"  # cancelling
    sandbox.advance(3600)
    cancelled = gem.batches.get(name=jobs[0].name)
    assert cancelled.state.value == "JOB_STATE_CANCELLED" and not cancelled.dest.inlined_responses
    with pytest.raises(genai_errors.ClientError, match="cannot be cancelled"):
        gem.batches.cancel(name=jobs[1].name)
    gem.batches.delete(name=jobs[0].name)
    with pytest.raises(genai_errors.ClientError) as info:
        gem.batches.get(name=jobs[0].name)
    assert info.value.code == 404
    sandbox.advance(3600)
    deleted = httpx.post(f"{sandbox.gemini_base_url}/v1beta/{jobs[1].name}:delete", headers={"x-goog-api-key": "k"})
    assert deleted.status_code == 200 and len(list(gem.batches.list())) == 3


def test_jobs_expire_48_hours_after_creation_and_files_too(sandbox: Sandbox, gem: genai.Client) -> None:
    sandbox.set_faults(provider="gemini", stuck=True, times=1)
    uploaded = upload(gem, jsonl_input(prompts(2)))
    job = gem.batches.create(model=MODEL, src=uploaded.name)
    sandbox.advance(47 * 3600)
    assert gem.batches.get(name=job.name).state.value == "JOB_STATE_RUNNING"
    sandbox.advance(2 * 3600)
    expired = gem.batches.get(name=job.name)
    assert expired.state.value == "JOB_STATE_EXPIRED" and expired.dest is None  # no results at all
    with pytest.raises(genai_errors.ClientError) as info:
        gem.files.get(name=uploaded.name)  # uploads are kept 48 hours, then deleted
    # A file past its 48 hours answers like any missing one: the real API's 403 (python-genai#1218).
    assert info.value.code == 403 and info.value.status == "PERMISSION_DENIED" and "may not exist" in info.value.message
    with pytest.raises(genai_errors.ClientError):
        gem.batches.create(model=MODEL, src=uploaded.name)


def test_faults_request_errors_validation_expiry_and_provider_cancel(sandbox: Sandbox, gem: genai.Client) -> None:
    items = prompts(10)
    sandbox.set_faults(provider="gemini", error_ids=["req-1"], times=1)
    errored = gem.batches.create(model=MODEL, src=inline(items))
    sandbox.set_faults(provider="gemini", fail_validation=True, times=1)
    failed = gem.batches.create(model=MODEL, src=inline(items))
    sandbox.set_faults(provider="gemini", expire_after_fraction=0.5, times=1)
    expired = gem.batches.create(model=MODEL, src=upload(gem, jsonl_input(items)).name)
    sandbox.set_faults(provider="gemini", cancel_after_fraction=0.3, times=1)
    cancelled = gem.batches.create(model=MODEL, src=inline(items))
    sandbox.advance(3600)
    responses = gem.batches.get(name=errored.name).dest.inlined_responses
    (bad,) = [r for r in responses if r.error is not None]
    assert bad.metadata["key"] == "req-1" and bad.error.code == 13 and "fault injection" in bad.error.message
    failed_job = gem.batches.get(name=failed.name)
    assert failed_job.state.value == "JOB_STATE_FAILED" and failed_job.dest is None
    raw = httpx.get(f"{sandbox.gemini_base_url}/v1beta/{failed.name}", headers={"x-goog-api-key": "k"}).json()
    assert "failed validation" in raw["error"]["message"]
    expired_job = gem.batches.get(name=expired.name)
    # "The job will not have any results to retrieve", even the half it had finished.
    assert expired_job.state.value == "JOB_STATE_EXPIRED" and expired_job.dest is None
    cancelled_job = gem.batches.get(name=cancelled.name)
    assert cancelled_job.state.value == "JOB_STATE_CANCELLED" and len(cancelled_job.dest.inlined_responses) == 3


def test_result_corruption_uses_gemini_keys(sandbox: Sandbox, gem: genai.Client) -> None:
    sandbox.set_faults(provider="gemini", result_unknown_id=True, result_duplicate=True, result_missing_ids=["req-2"])
    job = gem.batches.create(model=MODEL, src=upload(gem, jsonl_input(prompts(4))).name)
    sandbox.advance(3600)
    keys = [line["key"] for line in file_lines(gem, gem.batches.get(name=job.name).dest.file_name)]
    assert "req-2" not in keys and len(keys) == 5 and any(k.startswith("sandbox-unknown-") for k in keys)
    assert all("custom_id" not in line for line in file_lines(gem, gem.batches.get(name=job.name).dest.file_name))


def test_http_bursts_and_truncated_downloads(sandbox: Sandbox, gem: genai.Client) -> None:
    sandbox.set_faults(provider="gemini", http_status=429, http_method="GET", http_path="/batches$", retry_after=2,
                       times=1)
    with pytest.raises(genai_errors.ClientError) as info:
        gem.batches.list()
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
    sandbox.set_faults(provider="gemini", http_status=503, times=1)
    with pytest.raises(genai_errors.ServerError):
        gem.batches.list()
    retrying = genai.Client(api_key="k", http_options=types.HttpOptions(
        base_url=sandbox.gemini_base_url, retry_options=types.HttpRetryOptions(attempts=3, initial_delay=0.01, jitter=0)))
    sandbox.set_faults(provider="gemini", http_status=500, times=2)
    assert list(retrying.batches.list()) == []

    job = gem.batches.create(model=MODEL, src=upload(gem, jsonl_input(prompts(20))).name)
    sandbox.advance(3600)
    name = gem.batches.get(name=job.name).dest.file_name
    full = gem.files.download(file=name)
    rest = httpx.get(f"{sandbox.gemini_base_url}/download/v1beta/{name}:download", params={"alt": "media"},
                     headers={"x-goog-api-key": "k"})
    assert rest.content == full  # the REST guide's download path serves the same body
    sandbox.set_faults(provider="gemini", download_truncate=0.5, download_truncate_mode="short", times=1)
    assert len(gem.files.download(file=name)) == len(full) // 2
    sandbox.set_faults(provider="gemini", download_truncate=0.5, times=1)
    with pytest.raises(Exception, match="peer closed connection"):  # the SDK's httpx2 raises
        gem.files.download(file=name)
    assert gem.files.download(file=name) == full


def test_inline_create_over_20_mb_is_refused(sandbox: Sandbox, gem: genai.Client) -> None:
    big = "word " * (5 * 1024 * 1024)  # 25 MB of text in one request
    with pytest.raises(genai_errors.ClientError) as info:
        gem.batches.create(model=MODEL, src=inline({"big": big}))
    assert info.value.code == 413
    assert sandbox.counters()["gemini"]["jobs"] == 0


def test_slow_validation_keeps_a_job_pending(sandbox: Sandbox, gem: genai.Client) -> None:
    sandbox.set_faults(provider="gemini", validation_delay=600, times=1)
    slow = gem.batches.create(model=MODEL, src=inline({"a": "x"}))
    quick = gem.batches.create(model=MODEL, src=inline({"a": "x"}))
    sandbox.advance(60)
    assert gem.batches.get(name=slow.name).state.value == "JOB_STATE_PENDING"
    assert gem.batches.get(name=quick.name).state.value == "JOB_STATE_SUCCEEDED"
    sandbox.advance(3600)
    assert gem.batches.get(name=slow.name).state.value == "JOB_STATE_SUCCEEDED"


# --- late-landing creates, lost results, deletion (the control API takes batches/<id>) -----------

def test_a_lost_create_response_still_creates_a_batch_hidden_for_a_while(sandbox: Sandbox, gem: genai.Client) -> None:
    sandbox.set_faults(provider="gemini", create_response_lost=True, visible_after=30, times=1)
    with pytest.raises(Exception, match="peer closed connection|incomplete"):  # the SDK's httpx, unwrapped
        gem.batches.create(model=MODEL, src=inline(prompts(2)), config={"display_name": "ovn-late"})
    (truth,) = [j for j in sandbox.jobs() if j["provider"] == "gemini"]  # created, and billed
    name = f"batches/{truth['id']}"
    assert list(gem.batches.list()) == []
    with pytest.raises(genai_errors.ClientError) as info:
        gem.batches.get(name=name)
    assert (info.value.code, info.value.status) == (404, "NOT_FOUND")
    sandbox.advance(31)
    assert [b.display_name for b in gem.batches.list()] == ["ovn-late"]
    assert gem.batches.get(name=name).name == name


def test_invisible_lookups_hide_a_batch_from_the_next_n_lookups(sandbox: Sandbox, gem: genai.Client) -> None:
    sandbox.set_faults(provider="gemini", invisible_lookups=2, times=1)
    job = gem.batches.create(model=MODEL, src=inline(prompts(1)))  # the answer arrives
    assert list(gem.batches.list()) == []
    with pytest.raises(genai_errors.ClientError):
        gem.batches.get(name=job.name)
    assert gem.batches.get(name=job.name).name == job.name


def test_lose_results_deletes_the_results_file_and_delete_removes_the_batch(sandbox: Sandbox, gem: genai.Client) -> None:
    from overnight.sandbox import SandboxControl, SandboxControlError

    control = SandboxControl(sandbox.url)  # over HTTP: the id travels in the path, slash and all
    job = gem.batches.create(model=MODEL, src=upload(gem, jsonl_input(prompts(2))).name)
    inline_job = gem.batches.create(model=MODEL, src=inline(prompts(1)))
    sandbox.advance(3600)
    results = gem.batches.get(name=job.name).dest.file_name
    assert control.lose_results("gemini", job.name)["deleted_files"] == [results.removeprefix("files/")]
    with pytest.raises(genai_errors.ClientError) as info:
        gem.files.get(name=results)
    assert info.value.code == 403 and "may not exist" in info.value.message
    assert gem.batches.get(name=job.name).dest.file_name == results  # the batch still names it
    with pytest.raises(SandboxControlError, match="inline"):
        control.lose_results("gemini", inline_job.name)  # its responses live in the batch itself
    assert control.delete_job("gemini", inline_job.name)["deleted"]
    with pytest.raises(genai_errors.ClientError) as info:
        gem.batches.get(name=inline_job.name)
    assert info.value.code == 404
