"""Benchmark: the sandbox's own cost on the OpenAI batch path, per phase (not a pytest test).

Starts ``overnight sandbox serve`` (manual clock) in a child process and drives it with
bare httpx, as baseline_sdk.py's requests look: upload, create, advance the clock,
retrieve (which computes the results), download the output. For each phase it prints
the wall time and the server's CPU time (from /proc), in total and per request, so the
client's cost is out of the figures.

    python tests/benchmarks/bench_sandbox.py [--requests 200000] [--batch 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def part(start: int, count: int) -> bytes:
    lines = (json.dumps({"custom_id": str(i), "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": "gpt-4o-mini", "messages": [
                             {"role": "user", "content": f"Question {i}: what is {i} squared?"}]}})
             for i in range(start, start + count))
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=50_000)
    args = parser.parse_args()
    parts = [part(s, min(args.batch, args.requests - s)) for s in range(0, args.requests, args.batch)]

    with tempfile.TemporaryDirectory(prefix="overnight-bench-") as tmp:
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "overnight.cli", "sandbox", "serve", "--host", "127.0.0.1",
                                   "--port", str(port), "--state-dir", str(Path(tmp) / "state")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            client = httpx.Client(base_url=base + "/openai/v1", headers={"authorization": "Bearer sk-bench"},
                                  timeout=600)
            for _ in range(400):
                try:
                    httpx.get(base + "/_sandbox/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            totals: dict[str, list[float]] = {}

            def step(label: str, fn):  # type: ignore[no-untyped-def]
                cpu, start = cpu_seconds(server.pid), time.perf_counter()
                result = fn()
                wall, used = time.perf_counter() - start, cpu_seconds(server.pid) - cpu
                entry = totals.setdefault(label, [0.0, 0.0])
                entry[0] += wall
                entry[1] += used
                return result

            batches = []
            for i, body in enumerate(parts):
                upload = step("upload", lambda i=i, body=body: client.post(
                    "/files", data={"purpose": "batch"}, files={"file": (f"part{i}.jsonl", body)}).json())
                batch = step("create", lambda file_id=upload["id"]: client.post("/batches", json={
                    "input_file_id": file_id, "endpoint": "/v1/chat/completions",
                    "completion_window": "24h"}).json())
                batches.append(batch["id"])
            httpx.post(base + "/_sandbox/clock/advance", json={"seconds": 3600})

            def fetch(file_id: str) -> int:
                with client.stream("GET", f"/files/{file_id}/content") as response:
                    return sum(chunk.count(b"\n") for chunk in response.iter_bytes(1 << 20))

            lines = 0
            for batch_id in batches:
                batch = step("retrieve", lambda batch_id=batch_id: client.get(f"/batches/{batch_id}").json())
                assert batch["status"] == "completed", batch["status"]
                lines += step("download", lambda file_id=batch["output_file_id"]: fetch(file_id))
            assert lines == args.requests, lines
            print(f"{args.requests:,} requests in batches of {args.batch:,}")
            print(f"{'phase':<10} {'wall s':>8} {'cpu s':>8} {'cpu us/req':>11}")
            for label, (wall, used) in totals.items():
                print(f"{label:<10} {wall:8.2f} {used:8.2f} {used / args.requests * 1e6:11.1f}")
            wall, used = sum(v[0] for v in totals.values()), sum(v[1] for v in totals.values())
            print(f"{'total':<10} {wall:8.2f} {used:8.2f} {used / args.requests * 1e6:11.1f}")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
