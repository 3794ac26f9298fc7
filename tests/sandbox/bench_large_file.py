"""Benchmark: a 200 MB, 50,000-line OpenAI batch through the sandbox (not a pytest test).

Runs the sandbox in a child process (``serve``), drives it with the official openai
SDK and the control API, and prints timings and the server's peak memory, which must
stay far below the file size (uploads are spooled to disk, results are streamed).

    /work/venv/bin/python tests/sandbox/bench_large_file.py [--lines 50000] [--mb 200]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai

from overnight.sandbox import SandboxControl, expected_reply


def make_input(path: Path, lines: int, total_mb: float) -> int:
    per_line = int(total_mb * 1024 * 1024 / lines)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(lines):
            head = {"custom_id": f"row-{i}", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "gpt-bench", "max_tokens": 64,
                             "messages": [{"role": "user", "content": f"prompt {i} "}]}}
            filler = max(0, per_line - len(json.dumps(head)) - 1)
            head["body"]["messages"][0]["content"] += "lorem ipsum " * (filler // 12)
            f.write(json.dumps(head) + "\n")
    return path.stat().st_size


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--mb", type=float, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="overnight-bench-") as tmp:
        work = Path(tmp)
        source = work / "input.jsonl"
        t = time.perf_counter()
        size = make_input(source, args.lines, args.mb)
        print(f"input: {args.lines} lines, {size / 1e6:.1f} MB (generated in {time.perf_counter() - t:.1f} s)")

        port = free_port()
        code = ("from overnight.sandbox import serve; "
                f"serve(port={port}, state_dir={str(work / 'state')!r}, speed=None, log_level='warning')")
        server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL)
        try:
            control = SandboxControl(f"http://127.0.0.1:{port}", timeout=600)
            for _ in range(400):
                try:
                    control.health()
                    break
                except OSError:
                    time.sleep(0.05)
            client = openai.OpenAI(api_key="sk-bench", base_url=control.openai_base_url, max_retries=0, timeout=600)
            rss0 = peak_rss_mb(server.pid)

            def step(label: str, fn):  # type: ignore[no-untyped-def]
                start = time.perf_counter()
                result = fn()
                elapsed = time.perf_counter() - start
                print(f"{label:<34} {elapsed:7.2f} s   {size / 1e6 / elapsed:8.1f} MB/s of input")
                return result

            with open(source, "rb") as f:
                uploaded = step("upload (multipart, spooled)", lambda: client.files.create(
                    file=("input.jsonl", f, "application/jsonl"), purpose="batch"))
            batch = step("create batch (validate all lines)", lambda: client.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"))
            control.advance(24 * 3600 - 1)
            batch = step("complete (respond to every line)", lambda: client.batches.retrieve(batch.id))
            assert batch.status == "completed", batch.status
            out = work / "output.jsonl"
            def fetch() -> None:
                with client.files.with_streaming_response.content(batch.output_file_id) as response:
                    response.stream_to_file(out)

            step("download output (streamed)", fetch)

            count = 0
            with open(out, encoding="utf-8") as f:
                for count, line in enumerate(f, start=1):
                    if count == 1:
                        row = json.loads(line)
                        i = int(row["custom_id"].split("-")[1])
                        with open(source, encoding="utf-8") as src:
                            for j, request in enumerate(src):
                                if j == i:
                                    messages = json.loads(request)["body"]["messages"]
                                    break
                        text = row["response"]["body"]["choices"][0]["message"]["content"]
                        assert text == expected_reply(messages, max_tokens=64), "unexpected answer"
            assert count == args.lines == batch.request_counts.completed
            print(f"output: {count} lines, {out.stat().st_size / 1e6:.1f} MB; counts {batch.request_counts}")
            print(f"server peak RSS: {peak_rss_mb(server.pid):.0f} MB (after start-up: {rss0:.0f} MB)")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
