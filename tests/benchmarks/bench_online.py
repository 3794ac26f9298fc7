"""Benchmark: online mode's throughput against the sandbox, through the OpenAI SDK.

    python tests/benchmarks/bench_online.py [N] [--latency SECONDS] [--concurrency 1,16,64]

For each concurrency, N requests (default 1,000) go through ``LLM("openai/...",
use_offline_batch_generation=False)``: the plan, the claims in the store, the pacer,
``generate`` through the ``openai`` SDK, the answers committed as they arrive. The
sandbox runs in a child process (so the figures are overnight's own) and holds each
answer back ``--latency`` seconds (default 0.05: a fast model's time to answer), so
throughput shows what concurrency buys. No rate limit is declared (the pacer only bounds
requests in flight). Printed: requests/s per concurrency, and the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def serve(state_dir: str, urls: Any) -> None:
    from overnight.sandbox import Sandbox

    with Sandbox(state_dir=state_dir) as sb:
        urls.put(sb.url)
        while True:
            time.sleep(3600)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", nargs="?", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", default="1,16,64")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    work = Path(tempfile.mkdtemp(prefix="overnight-bench-online-"))
    os.environ["OVERNIGHT_HOME"] = str(work / "home")
    os.environ["OVERNIGHT_PROGRESS"] = "quiet"
    os.environ["OPENAI_API_KEY"] = "sk-bench-online-0123456789"
    context = multiprocessing.get_context("spawn")
    urls = context.Queue()
    child = context.Process(target=serve, args=(str(work / "sandbox"), urls), daemon=True)
    child.start()
    try:
        url = urls.get(timeout=60)
        from overnight.sandbox.control import SandboxControl

        control = SandboxControl(url)
        control.set_online_latency(args.latency)
        run(control, args.n, levels, args.latency)
    finally:
        child.terminate()
        child.join(10)


def run(control: Any, n: int, levels: list[int], latency: float) -> None:
    import overnight_openai
    from overnight import ChatRequest, Message
    from overnight.llm import LLM
    from overnight.models import PlannedRequest
    from overnight.plugins import PluginRegistry, set_registry
    from overnight.store import Store

    set_registry(PluginRegistry([overnight_openai], entrypoints=False))
    print(f"online mode, {n} requests per run, sandbox latency {latency * 1000:.0f} ms per answer, OpenAI SDK")
    print(f"{'concurrency':>11}  {'seconds':>8}  {'requests/s':>10}  {'ideal req/s':>11}")
    for level in levels:
        # Unlimited pacing, so the figures show the runner and the SDK, not a declared limit.
        llm = LLM(f"openai/gpt-4o-mini-bench-{level}", base_url=control.openai_base_url,
                  use_offline_batch_generation=False, online_concurrency=level,
                  requests_per_minute=10**9, tokens_per_minute=10**12, generation_kwargs={"max_tokens": 16})
        planned = [PlannedRequest(i, 0, ChatRequest("", llm.model_name, [Message("user", f"bench {level} row {i}")]))
                   for i in range(n)]
        store = Store.open()
        start = time.perf_counter()
        results = list(llm.generate_offline(iter(planned), store=store, step="bench", plan_id=f"bench-{level}"))
        seconds = time.perf_counter() - start
        store.close()
        ok = sum(1 for r in results if r.result.ok)
        if ok != n:
            sys.exit(f"only {ok} of {n} requests were answered")
        ideal = level / latency if latency > 0 else float("inf")
        print(f"{level:>11}  {seconds:>8.2f}  {n / seconds:>10.1f}  {ideal:>11.1f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"peak RSS {peak:.0f} MB (this process: the core, the store, the SDK clients; not the sandbox)")


if __name__ == "__main__":
    main()
