"""A batch file uploaded as raw bytes (the SDK names the part `upload`) is judged by its content."""

from __future__ import annotations

import io

import openai
import pytest

from sandbox_helpers import chat_line, jsonl, prompts


def test_raw_bytes_upload_runs_as_a_batch(sandbox, oai):
    data = jsonl([chat_line(cid, text) for cid, text in prompts(3).items()])
    uploaded = oai.files.create(file=io.BytesIO(data), purpose="batch")  # what several clients do
    assert uploaded.filename == "upload"
    batch = oai.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    sandbox.advance(3600)
    batch = oai.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.request_counts.completed == 3


def test_raw_bytes_that_are_not_jsonl_are_refused(oai):
    with pytest.raises(openai.BadRequestError, match="Invalid file format for Batch API"):
        oai.files.create(file=io.BytesIO(b"just some text\n"), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="Invalid file format for Batch API"):
        oai.files.create(file=io.BytesIO(b"\xff\xfe{}\n"), purpose="batch")


def test_a_wrong_extension_is_still_refused(oai):
    data = jsonl([chat_line("a", "hello")])
    with pytest.raises(openai.BadRequestError, match="Must be .jsonl"):
        oai.files.create(file=("notes.txt", data, "text/plain"), purpose="batch")
