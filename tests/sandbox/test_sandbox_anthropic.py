"""The official anthropic SDK against the sandbox: message batches, results, auth, limits."""

from __future__ import annotations

import httpx
import anthropic
import pytest

from overnight.sandbox import Sandbox, expected_reply
from sandbox_helpers import anthropic_requests, prompts


def test_full_lifecycle_counts_fill_in_at_the_end(sandbox: Sandbox, ant: anthropic.Anthropic) -> None:
    items = prompts(6)
    batch = ant.messages.batches.create(requests=anthropic_requests(items, system="Be terse."))
    assert batch.id.startswith("msgbatch_")
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 6
    assert batch.results_url is None and batch.ended_at is None
    assert (batch.expires_at - batch.created_at).total_seconds() == 24 * 3600

    sandbox.advance(30)  # most requests done, but counts stay at processing until the end
    batch = ant.messages.batches.retrieve(batch.id)
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 6 and batch.request_counts.succeeded == 0
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        list(ant.messages.batches.results(batch.id))

    sandbox.advance(10)
    batch = ant.messages.batches.retrieve(batch.id)
    assert batch.processing_status == "ended"
    assert batch.request_counts.succeeded == 6 and batch.request_counts.processing == 0
    assert batch.results_url == f"{sandbox.url}/anthropic/v1/messages/batches/{batch.id}/results"
    assert (batch.ended_at - batch.created_at).total_seconds() == 40

    results = list(ant.messages.batches.results(batch.id))
    assert sorted(r.custom_id for r in results) == sorted(items)
    for r in results:
        assert r.result.type == "succeeded"
        message = r.result.message
        assert message.stop_reason == "end_turn" and message.usage.service_tier == "batch"
        assert message.content[0].text == expected_reply(
            [{"role": "user", "content": items[r.custom_id]}], system="Be terse.")
        assert items[r.custom_id] in message.content[0].text


def test_relative_results_url(tmp_path) -> None:
    with Sandbox(state_dir=tmp_path, results_url="relative") as sb:
        client = anthropic.Anthropic(api_key="k", base_url=sb.anthropic_base_url, max_retries=0)
        batch = client.messages.batches.create(requests=anthropic_requests(prompts(2)))
        sb.advance(60)
        batch = client.messages.batches.retrieve(batch.id)
        assert batch.results_url == f"/v1/messages/batches/{batch.id}/results"
        assert [r.result.type for r in client.messages.batches.results(batch.id)] == ["succeeded"] * 2
        sb.set_results_url("absolute")
        assert client.messages.batches.retrieve(batch.id).results_url.startswith("http://127.0.0.1:")


def test_results_stream_has_no_blank_lines(sandbox: Sandbox, ant: anthropic.Anthropic) -> None:
    batch = ant.messages.batches.create(requests=anthropic_requests(prompts(3)))
    sandbox.advance(60)
    url = ant.messages.batches.retrieve(batch.id).results_url
    body = httpx.get(url, headers={"x-api-key": "k"}).text
    assert body.endswith("\n") and "\n\n" not in body and len(body.splitlines()) == 3


def test_options_max_tokens_and_stop_sequences(sandbox: Sandbox, ant: anthropic.Anthropic) -> None:
    requests = (anthropic_requests({"short": "one two three"}, max_tokens=4)
                + anthropic_requests({"stop": "alpha beta gamma"}, stop_sequences=["gamma"])
                + anthropic_requests({"json": "shape"}, output_config={"format": {
                    "type": "json_schema", "schema": {"type": "object", "properties": {"a": {"type": "string"}},
                                                      "additionalProperties": False}}}))
    batch = ant.messages.batches.create(requests=requests)
    sandbox.advance(60)
    results = {r.custom_id: r.result.message for r in ant.messages.batches.results(batch.id)}
    assert results["short"].stop_reason == "max_tokens" and results["short"].usage.output_tokens == 4
    assert results["stop"].stop_reason == "stop_sequence" and results["stop"].stop_sequence == "gamma"
    assert results["stop"].content[0].text == "Sandbox answer to: alpha beta "
    import json
    assert "shape" in json.loads(results["json"].content[0].text)["a"]


def test_pagination_after_and_before(sandbox: Sandbox, ant: anthropic.Anthropic) -> None:
    ids = [ant.messages.batches.create(requests=anthropic_requests(prompts(1))).id for _ in range(5)]
    newest_first = ids[::-1]
    page = ant.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == newest_first[:2]
    assert page.has_more and page.first_id == newest_first[0] and page.last_id == newest_first[1]
    assert [b.id for b in ant.messages.batches.list(limit=2)] == newest_first  # the SDK's auto-pager
    after = ant.messages.batches.list(limit=2, after_id=newest_first[1])
    assert [b.id for b in after.data] == newest_first[2:4] and after.has_more
    before = ant.messages.batches.list(limit=2, before_id=newest_first[3])
    assert [b.id for b in before.data] == newest_first[1:3] and before.has_more
    last = ant.messages.batches.list(limit=10, after_id=newest_first[3])
    assert [b.id for b in last.data] == newest_first[4:] and not last.has_more


def test_cancel_then_results_are_canceled(sandbox: Sandbox, ant: anthropic.Anthropic) -> None:
    batch = ant.messages.batches.create(requests=anthropic_requests(prompts(10)))
    sandbox.advance(5 + 9)  # 3 of 10 done
    batch = ant.messages.batches.cancel(batch.id)
    assert batch.processing_status == "canceling" and batch.cancel_initiated_at is not None
    with pytest.raises(anthropic.BadRequestError):
        ant.messages.batches.delete(batch.id)
    sandbox.advance(10)
    batch = ant.messages.batches.retrieve(batch.id)
    assert batch.processing_status == "ended"
    assert (batch.request_counts.succeeded, batch.request_counts.canceled) == (3, 7)
    types = {r.custom_id: r.result.type for r in ant.messages.batches.results(batch.id)}
    assert [types[f"req-{i}"] for i in range(10)] == ["succeeded"] * 3 + ["canceled"] * 7
    with pytest.raises(anthropic.BadRequestError):
        ant.messages.batches.cancel(batch.id)
    deleted = ant.messages.batches.delete(batch.id)
    assert deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        ant.messages.batches.retrieve(batch.id)


def test_errored_results_have_the_full_envelope(sandbox: Sandbox, ant: anthropic.Anthropic) -> None:
    sandbox.set_faults(provider="anthropic", error_ids=["req-0"], error_status=529)
    requests = anthropic_requests(prompts(2)) + [{"custom_id": "no-max", "params": {
        "model": "claude-test", "messages": [{"role": "user", "content": "x"}]}}]
    batch = ant.messages.batches.create(requests=requests)
    sandbox.advance(60)
    batch = ant.messages.batches.retrieve(batch.id)
    assert (batch.request_counts.succeeded, batch.request_counts.errored) == (1, 2)
    results = {r.custom_id: r.result for r in ant.messages.batches.results(batch.id)}
    assert results["req-0"].type == "errored"
    assert results["req-0"].error.type == "error"
    assert results["req-0"].error.error.type == "overloaded_error"
    assert results["req-0"].error.request_id
    assert results["no-max"].error.error.type == "invalid_request_error"
    assert results["req-1"].type == "succeeded"


def test_expired_results(sandbox: Sandbox, ant: anthropic.Anthropic) -> None:
    sandbox.set_faults(provider="anthropic", expire_after_fraction=0.5)
    batch = ant.messages.batches.create(requests=anthropic_requests(prompts(4)))
    sandbox.advance(5 + 15)
    batch = ant.messages.batches.retrieve(batch.id)
    assert batch.processing_status == "ended"
    assert (batch.request_counts.succeeded, batch.request_counts.expired) == (2, 2)
    types = [r.result.type for r in ant.messages.batches.results(batch.id)]
    assert types == ["succeeded", "succeeded", "expired", "expired"]


def test_auth_headers(sandbox: Sandbox) -> None:
    url = sandbox.anthropic_base_url + "/v1/messages/batches"
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert missing.json()["type"] == "error"
    assert missing.json()["error"]["type"] == "authentication_error"
    assert httpx.get(url, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}).status_code == 200
    assert httpx.get(url, headers={"authorization": "Bearer k"}).status_code == 200


def test_create_validation(sandbox: Sandbox, ant: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="duplicate"):
        ant.messages.batches.create(requests=anthropic_requests({"a": "x"}) * 2)
    with pytest.raises(anthropic.BadRequestError, match="custom_id"):
        ant.messages.batches.create(requests=anthropic_requests({"bad id!": "x"}))
    with pytest.raises(anthropic.BadRequestError):
        ant.messages.batches.create(requests=[])
    assert sandbox.counters()["anthropic"]["jobs"] == 0


def test_limits(tmp_path) -> None:
    with Sandbox(state_dir=tmp_path, limits={"anthropic": {"max_requests": 2, "max_bytes": 1000}}) as sb:
        client = anthropic.Anthropic(api_key="k", base_url=sb.anthropic_base_url, max_retries=0)
        with pytest.raises(anthropic.BadRequestError, match="at most 2"):
            client.messages.batches.create(requests=anthropic_requests(prompts(3)))
        with pytest.raises(anthropic.APIStatusError) as info:
            client.messages.batches.create(requests=anthropic_requests({"a": "x" * 2000}))
        assert info.value.status_code == 413
        assert client.messages.batches.create(requests=anthropic_requests(prompts(2))).request_counts.processing == 2


def test_beta_namespace_works_too(sandbox: Sandbox, ant: anthropic.Anthropic) -> None:
    batch = ant.beta.messages.batches.create(requests=anthropic_requests(prompts(1)), betas=["some-beta-2025-01-01"])
    sandbox.advance(60)
    assert ant.beta.messages.batches.retrieve(batch.id).processing_status == "ended"
