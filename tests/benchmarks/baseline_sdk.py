"""The hand-written baseline of bench_vs_sdk.py: the same job with the openai SDK only.

    OPENAI_BASE_URL=... OPENAI_API_KEY=... python baseline_sdk.py prompts.jsonl out.jsonl [poll]

Reads the prompts, submits them as batches of 50,000, waits, downloads the results and
writes every row with its answer, in input order. No store, no resume, no retries.
"""

import io
import json
import sys
import time

import openai

BATCH = 50_000


def main(source: str, target: str, poll: float = 0.1) -> None:
    client = openai.OpenAI()
    with open(source, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    batches = []
    for start in range(0, len(rows), BATCH):
        buffer = io.BytesIO()
        for i, row in enumerate(rows[start:start + BATCH], start):
            line = {"custom_id": str(i), "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "gpt-4o-mini",
                             "messages": [{"role": "user", "content": row["instruction"]}]}}
            buffer.write(json.dumps(line).encode() + b"\n")
        uploaded = client.files.create(file=(f"part{start}.jsonl", buffer.getvalue()), purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        batches.append(batch.id)
    answers: dict[str, str | None] = {}
    delay = poll
    while batches:
        time.sleep(delay)
        delay = min(delay * 1.5, 60)
        for batch_id in list(batches):
            batch = client.batches.retrieve(batch_id)
            if batch.status not in ("completed", "failed", "expired", "cancelled"):
                continue
            batches.remove(batch_id)
            for file_id in (batch.output_file_id, batch.error_file_id):
                if not file_id:
                    continue
                for line in client.files.content(file_id).iter_lines():
                    if line:
                        result = json.loads(line)
                        body = (result.get("response") or {}).get("body") or {}
                        choices = body.get("choices") or [{}]
                        answers[result["custom_id"]] = (choices[0].get("message") or {}).get("content")
    with open(target, "w", encoding="utf-8") as out:
        for i, row in enumerate(rows):
            out.write(json.dumps({**row, "generation": answers.get(str(i))}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(float(a) for a in sys.argv[3:4]))
