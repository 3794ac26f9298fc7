"""Helpers shared by the sandbox tests (request builders, JSONL)."""

from __future__ import annotations

import json
from typing import Any

import openai


def chat_line(custom_id: str, prompt: str, model: str = "gpt-test", **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": prompt}], **body}}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return ("\n".join(json.dumps(line) for line in lines) + "\n").encode()


def prompts(n: int, prefix: str = "question") -> dict[str, str]:
    return {f"req-{i}": f"{prefix} number {i}" for i in range(n)}


def upload_openai_batch(client: openai.OpenAI, items: dict[str, str], model: str = "gpt-test",
                        metadata: dict[str, str] | None = None, **body: Any) -> Any:
    data = jsonl([chat_line(cid, prompt, model, **body) for cid, prompt in items.items()])
    file = client.files.create(file=("batch_input.jsonl", data, "application/jsonl"), purpose="batch")
    return client.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions",
                                 completion_window="24h", metadata=metadata)


def anthropic_requests(items: dict[str, str], model: str = "claude-test", max_tokens: int = 200,
                       **params: Any) -> list[dict[str, Any]]:
    return [{"custom_id": cid, "params": {"model": model, "max_tokens": max_tokens,
                                          "messages": [{"role": "user", "content": prompt}], **params}}
            for cid, prompt in items.items()]


def mistral_lines(items: dict[str, str], **body: Any) -> bytes:
    return jsonl([{"custom_id": cid, "body": {"messages": [{"role": "user", "content": p}], **body}}
                  for cid, p in items.items()])


def read_jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
