"""Results the provider loses, a hung provider and a 404 on cancel: the sandbox produces
each through the real SDKs and its control API, with the real shapes (404s)."""

from __future__ import annotations

import time

import anthropic
import openai
import pytest
from mistralai.client.errors import MistralError

from overnight.sandbox import SandboxControl, SandboxControlError

from sandbox_helpers import anthropic_requests, mistral_lines, prompts, upload_openai_batch

DONE = 3600
DAY = 24 * 3600


def ended_openai(oai, sandbox):
    batch = upload_openai_batch(oai, prompts(3))
    sandbox.advance(DONE)
    return oai.batches.retrieve(batch.id)


def ended_anthropic(ant, sandbox):
    batch = ant.messages.batches.create(requests=anthropic_requests(prompts(3)))
    sandbox.advance(DONE)
    return ant.messages.batches.retrieve(batch.id)


def ended_mistral(mis, sandbox):
    up = mis.files.upload(file={"file_name": "in.jsonl", "content": mistral_lines(prompts(3))}, purpose="batch")
    job = mis.batch.jobs.create(input_files=[up.id], endpoint="/v1/chat/completions", model="mistral-test")
    sandbox.advance(DONE)
    return mis.batch.jobs.get(job_id=job.id)


# --- deleted and expired result files ---------------------------------------------------------


def test_openai_output_file_deleted_through_the_api_answers_404_while_the_batch_keeps_its_id(oai, sandbox):
    batch = ended_openai(oai, sandbox)
    assert oai.files.delete(batch.output_file_id).deleted
    assert oai.batches.retrieve(batch.id).output_file_id == batch.output_file_id
    with pytest.raises(openai.NotFoundError, match="No such File object"):
        oai.files.retrieve(batch.output_file_id)
    with pytest.raises(openai.NotFoundError):
        oai.files.content(batch.output_file_id)


def test_openai_output_files_expire_after_30_days_by_default(oai, sandbox):
    batch = ended_openai(oai, sandbox)
    meta = oai.files.retrieve(batch.output_file_id)
    assert meta.expires_at == meta.created_at + 30 * DAY
    sandbox.advance(31 * DAY)
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(batch.output_file_id)
    assert batch.output_file_id not in {f.id for f in oai.files.list()}


def test_control_api_loses_an_openai_batch_results_at_once(oai, sandbox):
    batch = ended_openai(oai, sandbox)
    control = SandboxControl(sandbox.url)
    lost = control.lose_results("openai", batch.id)
    assert lost["deleted_files"] == [batch.output_file_id]
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(batch.output_file_id)
    with pytest.raises(SandboxControlError, match="cannot be deleted|no endpoint"):
        control.delete_job("openai", batch.id)


def test_anthropic_batch_deleted_through_the_api_answers_404(ant, sandbox):
    batch = ended_anthropic(ant, sandbox)
    assert ant.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        ant.messages.batches.retrieve(batch.id)
    with pytest.raises(anthropic.NotFoundError):
        ant.messages.batches.cancel(batch.id)


def test_anthropic_batches_are_archived_29_days_after_creation_or_at_once_by_the_control_api(ant, sandbox):
    first = ended_anthropic(ant, sandbox)
    second = ended_anthropic(ant, sandbox)
    assert first.archived_at is None
    SandboxControl(sandbox.url).lose_results("anthropic", first.id)
    archived = ant.messages.batches.retrieve(first.id)
    assert archived.archived_at is not None and archived.processing_status == "ended"
    with pytest.raises(anthropic.NotFoundError):
        ant.messages.batches.results(first.id)
    assert len(list(ant.messages.batches.results(second.id))) == 3
    sandbox.advance(29 * DAY)
    assert ant.messages.batches.retrieve(second.id).archived_at is not None
    with pytest.raises(anthropic.NotFoundError):
        ant.messages.batches.results(second.id)


def test_mistral_result_file_and_job_deleted_answer_404(mis, sandbox):
    job = ended_mistral(mis, sandbox)
    mis.files.delete(file_id=job.output_file)
    with pytest.raises(MistralError) as gone:
        mis.files.retrieve(file_id=job.output_file)
    assert gone.value.status_code == 404
    SandboxControl(sandbox.url).delete_job("mistral", job.id)
    with pytest.raises(MistralError) as deleted:
        mis.batch.jobs.get(job_id=job.id)
    assert deleted.value.status_code == 404


def test_control_api_loses_a_mistral_job_results_and_refuses_a_running_job(mis, sandbox):
    job = ended_mistral(mis, sandbox)
    control = SandboxControl(sandbox.url)
    assert control.lose_results("mistral", job.id)["deleted_files"] == [job.output_file]
    with pytest.raises(MistralError):
        mis.files.download(file_id=job.output_file)
    running = mis.batch.jobs.create(requests=[{"custom_id": "a", "body": {"messages": [
        {"role": "user", "content": "hi"}]}}], endpoint="/v1/chat/completions", model="mistral-test")
    with pytest.raises(SandboxControlError, match="has not ended"):
        control.lose_results("mistral", running.id)
    with pytest.raises(SandboxControlError, match="has not ended"):
        control.delete_job("mistral", running.id)


# --- a hung provider and a 404 on cancel -------------------------------------------------------


def test_a_response_delay_holds_the_answer_and_a_client_timeout_cuts_it(oai, sandbox):
    batch = upload_openai_batch(oai, prompts(2))
    sandbox.set_faults(provider="openai", http_method="GET", http_path=r"/batches/[^/]+$", http_delay=0.3, times=1)
    started = time.monotonic()
    assert oai.batches.retrieve(batch.id).id == batch.id  # the real answer, late
    assert time.monotonic() - started >= 0.3
    sandbox.set_faults(provider="openai", http_method="GET", http_path=r"/batches/[^/]+$", http_delay=5.0, times=1)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        oai.with_options(timeout=0.1).batches.retrieve(batch.id)
    assert time.monotonic() - started < 2.0


def test_a_delay_with_a_status_answers_the_status_late(ant, sandbox):
    sandbox.set_faults(provider="anthropic", http_status=503, http_delay=0.2, times=1)
    started = time.monotonic()
    with pytest.raises(anthropic.InternalServerError):
        ant.messages.batches.list()
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize("provider", ["openai", "anthropic", "mistral"])
def test_a_404_on_cancel_is_injected_with_the_provider_error_shape(sandbox, oai, ant, mis, provider):
    sandbox.set_faults(provider=provider, http_status=404, http_method="POST", http_path=r"/cancel$", times=1)
    if provider == "openai":
        batch = upload_openai_batch(oai, prompts(1))
        with pytest.raises(openai.NotFoundError):
            oai.batches.cancel(batch.id)
    elif provider == "anthropic":
        batch = ant.messages.batches.create(requests=anthropic_requests(prompts(1)))
        with pytest.raises(anthropic.NotFoundError) as exc:
            ant.messages.batches.cancel(batch.id)
        assert exc.value.body["error"]["type"] == "not_found_error"
    else:
        job = mis.batch.jobs.create(requests=[{"custom_id": "a", "body": {"messages": [
            {"role": "user", "content": "hi"}]}}], endpoint="/v1/chat/completions", model="mistral-test")
        with pytest.raises(MistralError) as exc:
            mis.batch.jobs.cancel(job_id=job.id)
        assert exc.value.status_code == 404
