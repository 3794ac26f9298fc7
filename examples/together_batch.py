"""Together Batch API (Together's SDK: pip install 'overnight-openai[together]').

load → TextGeneration with offline batch generation → run.
The first run submits the batch and stops (exit 75 under `overnight run`); run it again
later to collect. With a real key ($TOGETHER_API_KEY, nothing else) it uses the real API;
to try it offline, against the sandbox::

    overnight sandbox serve --port 8080 --state-dir /tmp/sandbox --speed 60 &
    TOGETHER_BASE_URL=http://127.0.0.1:8080/together TOGETHER_API_KEY=sandbox-key overnight run examples/together_batch.py

Set OVERNIGHT_WAIT=<seconds> to poll until done instead of stopping.
"""

import os

from overnight import LLM, LoadDataFromDicts, Pipeline, TextGeneration

QUESTIONS = [
    "What is the capital of Australia?",
    "Explain why the sky is blue in one sentence.",
    "Give a synonym for 'ephemeral'.",
    "Write a haiku about a lighthouse.",
    "What is 17 times 23?",
]

with Pipeline(name="together-example") as pipeline:
    load = LoadDataFromDicts(data=[{"instruction": q} for q in QUESTIONS])
    generate = TextGeneration(
        llm=LLM(
            "together/meta-llama/Llama-3.3-70B-Instruct-Turbo",
            use_offline_batch_generation=True,
            offline_batch_generation_block_until_done=float(os.environ.get("OVERNIGHT_WAIT", 0)) or None,
            generation_kwargs={"max_tokens": 256, "temperature": 0.3},
        ),
        system_prompt="Answer briefly.",
    )
    load >> generate

if __name__ == "__main__":
    dataset = pipeline.run()
    for row in dataset:
        print(f"{row['instruction']}\n  -> {row['generation'] or row['generation_error']}")
