"""`overnight estimate` against what the sandbox then bills, for the quickstart's prompts
and for a 10,000-row run; and how long the estimate takes once the plan is stored.

Run: ``python tests/benchmarks/bench_estimate.py [ROWS]`` (default 10000). Prints, per
run: the estimate (before anything is submitted, with the default expected output, and
again once results are collected), what was billed, and the time spent in the estimate
itself (the SQL aggregate and the arithmetic) after planning.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

from overnight import LLM, LoadDataFromDicts, Pipeline, PipelineNotFinished, TextGeneration
from overnight import accounting
from overnight.money import estimating, usd
from overnight.sandbox import Sandbox


def build(name, rows, base_url, home):
    with Pipeline(name=name, cache_dir=home) as p:
        load = LoadDataFromDicts(data=rows)
        gen = TextGeneration(name="answer", system_prompt="You are a concise, friendly assistant.", llm=LLM(
            "openai/gpt-4o-mini", base_url=base_url, api_key="sk-bench", max_retries=0, poll_interval=0.01,
            offline_batch_generation_block_until_done=600, generation_kwargs={"max_tokens": 256}))
        load >> gen
    return p


def estimate(name, rows, base_url, home):
    timings = []
    original = accounting.Accounting.estimate

    def timed(self):
        started = time.perf_counter()
        try:
            return original(self)
        finally:
            timings.append(time.perf_counter() - started)

    accounting.Accounting.estimate = timed
    try:
        started = time.perf_counter()
        with estimating() as collected:
            try:
                build(name, rows, base_url, home).run()
            except PipelineNotFinished:
                pass
        total = time.perf_counter() - started
    finally:
        accounting.Accounting.estimate = original
    return collected.steps[0], total, timings[0]


def bench(name, rows, sandbox, home):
    before, total, spent = estimate(name, rows, sandbox.openai_base_url, home)
    started = time.perf_counter()
    out = list(build(name, rows, sandbox.openai_base_url, home).run())
    run_seconds = time.perf_counter() - started
    billed = sum(r["answer_cost_usd"] if "answer_cost_usd" in r else r["generation_cost_usd"] for r in out)
    used_in = sum(r["generation_usage"]["input_tokens"] for r in out)
    used_out = sum(r["generation_usage"]["output_tokens"] for r in out)
    after, _, _ = estimate(name, rows, sandbox.openai_base_url, home)
    print(f"\n{name}: {len(rows):,} rows (openai/gpt-4o-mini, max_tokens=256)")
    print(f"  estimate before submitting: {before.input_tokens:,} input tokens, {before.expected_output_tokens:,} "
          f"expected output ({before.expected_output_from}), cost {usd(before.cost_usd)}, max {usd(before.max_cost_usd)}, "
          f"online {usd(before.online_cost_usd)}")
    print(f"  billed:                     {used_in:,} input tokens, {used_out:,} output tokens, cost {usd(billed)}")
    print(f"  estimate once collected:    cost {usd(after.cost_usd)} ({after.expected_output_from})")
    print(f"  estimate / billed: {before.cost_usd / billed:.2f} before (input tokens {before.input_tokens / used_in:.3f}), "
          f"{after.cost_usd / billed:.3f} once collected")
    print(f"  `estimate` run: {total:.2f}s in all (loading, planning, storing the plan), "
          f"{spent * 1000:.1f} ms computing the figures after planning; the run itself {run_seconds:.1f}s")


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    prompts = [json.loads(line)["instruction"] for line in
               (resources.files("overnight.quickstart") / "prompts.jsonl").read_text().splitlines() if line]
    rng = random.Random(1)
    words = "model batch token price window queue budget answer question data row provider".split()
    big = [{"instruction": f"Row {i}: " + " ".join(rng.choice(words) for _ in range(rng.randint(5, 120)))}
           for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        with Sandbox(state_dir=Path(tmp) / "sandbox", speed=100_000) as sandbox:
            bench("quickstart", [{"instruction": p} for p in prompts], sandbox, home)
            bench(f"rows-{n}", big, sandbox, home)
    return 0


if __name__ == "__main__":
    sys.exit(main())
