"""State survives a restart: jobs, files, results, the clock, counters and fault rules."""

from __future__ import annotations

from pathlib import Path

import anthropic
import openai
from mistralai.client import Mistral

from overnight.sandbox import Sandbox
from sandbox_helpers import anthropic_requests, mistral_lines, prompts, read_jsonl, upload_openai_batch


def test_state_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Sandbox(state_dir=state) as first:
        oai = openai.OpenAI(api_key="k", base_url=first.openai_base_url, max_retries=0)
        ant = anthropic.Anthropic(api_key="k", base_url=first.anthropic_base_url, max_retries=0)
        mis = Mistral(api_key="k", server_url=first.mistral_base_url)
        done = upload_openai_batch(oai, prompts(2))
        first.advance(60)
        done_output = oai.files.content(oai.batches.retrieve(done.id).output_file_id).text
        running = upload_openai_batch(oai, prompts(4))
        ab = ant.messages.batches.create(requests=anthropic_requests(prompts(3)))
        file_id = mis.files.upload(file={"file_name": "a.jsonl", "content": mistral_lines(prompts(2))},
                                   purpose="batch").id
        job = mis.batch.jobs.create(endpoint="/v1/chat/completions", model="m", input_files=[file_id])
        first.set_faults(provider="openai", error_ids=["req-9"], times=2)
        first.advance(5 + 15)  # half-way through processing
        now = first.now()
        assert oai.batches.retrieve(running.id).status == "in_progress"
        counters = first.counters()

    with Sandbox(state_dir=state) as second:  # a new server process would see the same
        assert second.now() == now
        assert second.counters() == counters
        assert second.faults()[0]["remaining"] == 2
        oai = openai.OpenAI(api_key="k", base_url=second.openai_base_url, max_retries=0)
        ant = anthropic.Anthropic(api_key="k", base_url=second.anthropic_base_url, max_retries=0)
        mis = Mistral(api_key="k", server_url=second.mistral_base_url)
        assert oai.files.content(oai.batches.retrieve(done.id).output_file_id).text == done_output
        batch = oai.batches.retrieve(running.id)
        assert batch.status == "in_progress" and batch.request_counts.completed == 2
        second.advance(60)
        batch = oai.batches.retrieve(running.id)
        assert batch.status == "completed"
        assert len(read_jsonl(oai.files.content(batch.output_file_id).text)) == 4
        assert [r.result.type for r in ant.messages.batches.results(ab.id)] == ["succeeded"] * 3
        assert mis.batch.jobs.get(job_id=job.id).status == "SUCCESS"
        assert mis.files.retrieve(file_id=file_id).num_lines == 2
        assert {b.id for b in oai.batches.list()} == {done.id, running.id}


def test_restart_in_place(tmp_path: Path) -> None:
    sb = Sandbox(state_dir=tmp_path).start()
    try:
        oai = openai.OpenAI(api_key="k", base_url=sb.openai_base_url, max_retries=0)
        batch = upload_openai_batch(oai, prompts(1))
        sb.stop()
        sb.start()
        oai = openai.OpenAI(api_key="k", base_url=sb.openai_base_url, max_retries=0)
        sb.advance(60)
        assert oai.batches.retrieve(batch.id).status == "completed"
    finally:
        sb.stop()
