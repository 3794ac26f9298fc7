"""The reusable fixture other test directories import, and the async SDK clients."""

from __future__ import annotations

import asyncio

import anthropic
import openai

from overnight.sandbox import Sandbox
from overnight.sandbox.testing import sandbox_fixture  # noqa: F401  (a fixture, used by name below)
from sandbox_helpers import anthropic_requests, chat_line, jsonl, prompts


def test_reusable_fixture_and_async_clients(sandbox_fixture: Sandbox) -> None:  # noqa: F811
    sb = sandbox_fixture

    async def run() -> tuple[str, str]:
        oai = openai.AsyncOpenAI(api_key="k", base_url=sb.openai_base_url, max_retries=0)
        ant = anthropic.AsyncAnthropic(api_key="k", base_url=sb.anthropic_base_url, max_retries=0)
        file = await oai.files.create(file=("in.jsonl", jsonl([chat_line("a", "async")])), purpose="batch")
        batch = await oai.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions",
                                         completion_window="24h")
        message_batch = await ant.messages.batches.create(requests=anthropic_requests(prompts(1)))
        sb.advance(60)
        batch = await oai.batches.retrieve(batch.id)
        results = [r async for r in await ant.messages.batches.results(message_batch.id)]
        return batch.status, results[0].result.type

    assert asyncio.run(run()) == ("completed", "succeeded")
    assert sb.counters()["openai"]["jobs"] == 1
