"""Benchmark: overnight against a hand-written openai-SDK script, N requests round trip.

    python tests/benchmarks/bench_vs_sdk.py N [--repeat 3] [--poll 0.1] [--speed 100000] [--no-rerun]

Both do the same job against the sandbox, started out of process on 127.0.0.1 (``overnight
sandbox serve``) the way a user would: read N prompts from JSONL, submit them as batches of
50,000, wait, download, write the N rows with their answers in input order.
``baseline_sdk.py`` is the script (the SDK only); ``overnight_pipeline.py`` is the
pipeline (``LoadDataFromJSONL >> TextGeneration``, polling, the OpenAI plugin).

They run in turn, interleaved, ``--repeat`` times each, each run against a fresh sandbox
and a fresh store. The sandbox clock runs 100,000x real time, so every job is over by the
first check (``--speed``: at 100,000x a batch's output file, kept 30 sandbox days, is gone
26 real seconds after the batch ends; on a loaded machine a 1M run can take longer than
that between a batch's end and its download, so give a slower clock, e.g. 5000, there):
both clients poll on the same schedule (``--poll`` seconds, then x1.5) and
wait on the same sandbox work (validating the upload, computing the results at the first
check after the end), so the sandbox's time is equal for both. CPU and peak RSS are the
client process's own (``wait4``), never the sandbox's.

Printed: medians of wall, CPU (user+sys) and peak RSS with the ratios overnight/script,
overnight's phase split, the no-op re-run of the finished pipeline, and the re-run of a
finished 20-row pipeline through ``overnight run`` (wall, and which provider SDKs it
imported, from ``python -X importtime``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baseline_sdk.py"
PIPELINE = HERE / "overnight_pipeline.py"
PHASES = ["startup", "load", "validate/plan", "submit", "check+fetch", "poll wait", "assemble+write", "other"]
SDKS = ("openai", "anthropic", "mistralai")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SandboxProcess:
    """``overnight sandbox serve`` in a child process, on a fresh state dir."""

    def __init__(self, state_dir: Path, speed: float = 100_000) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "overnight.cli", "sandbox", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--state-dir", str(state_dir), "--speed", str(speed)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        from overnight.sandbox import SandboxControl

        control = SandboxControl(self.url, timeout=5)
        deadline = time.monotonic() + 30
        while True:
            try:
                control.health()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the sandbox did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measured(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run a child; its wall time, CPU (user+sys) and peak RSS, from wait4."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    # stderr is read only after exit; progress lines are few (one per job and check).
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{err[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024}


def write_prompts(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for i in range(n):
            out.write(json.dumps({"instruction": f"Question {i}: what is {i} squared?"}) + "\n")


def check_output(path: Path, n: int) -> None:
    """Every row came back, in order, with its own answer."""
    from overnight.sandbox import expected_reply

    count = 0
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i % 997 == 0 or i < 3:
                row = json.loads(line)
                want = expected_reply([{"role": "user", "content": f"Question {i}: what is {i} squared?"}])
                if row["generation"] != want:
                    raise AssertionError(f"row {i} of {path}: {row['generation']!r} != {want!r}")
            count += 1
    if count != n:
        raise AssertionError(f"{path} has {count} rows, expected {n}")


def run_one(kind: str, root: Path, prompts: Path, n: int, poll: float, rerun: bool,
            speed: float = 100_000) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=root))
    sandbox = SandboxProcess(work / "sandbox", speed)
    try:
        env = {**os.environ, "OPENAI_BASE_URL": sandbox.url + "/openai/v1", "OPENAI_API_KEY": "sk-bench",
               "OVERNIGHT_HOME": str(work / "home")}
        out = work / "out.jsonl"
        if kind == "script":
            figures: dict[str, object] = measured([sys.executable, str(BASELINE), str(prompts), str(out), str(poll)], env)
        else:
            phases = work / "phases.json"
            figures = measured([sys.executable, str(PIPELINE), str(prompts), str(out), str(poll), str(phases)], env)
            figures["phases"] = json.loads(phases.read_text())
            if rerun:
                # With the same phase timers: they wrap methods, which changes the step's code identity.
                out.unlink()
                figures["rerun"] = measured(
                    [sys.executable, str(PIPELINE), str(prompts), str(out), str(poll), str(phases)], env)
        check_output(out, n)
        return figures
    finally:
        sandbox.stop()
        shutil.rmtree(work, ignore_errors=True)


def small_rerun(root: Path, poll: float) -> tuple[float, list[str]]:
    """Wall of `overnight run` on a finished 20-row pipeline, and the provider SDKs it imported."""
    work = Path(tempfile.mkdtemp(prefix="small-", dir=root))
    prompts = work / "prompts.jsonl"
    write_prompts(prompts, 20)
    sandbox = SandboxProcess(work / "sandbox")
    try:
        env = {**os.environ, "OPENAI_BASE_URL": sandbox.url + "/openai/v1", "OPENAI_API_KEY": "sk-bench",
               "OVERNIGHT_HOME": str(work / "home")}
        argv = [sys.executable, "-m", "overnight.cli", "run", str(PIPELINE), str(prompts), str(work / "out.jsonl"),
                str(poll)]
        measured(argv, env)  # the first run does the work
        walls = [measured(argv, env)["wall"] for _ in range(3)]
        trace = subprocess.run([sys.executable, "-X", "importtime", *argv[1:]], env=env, capture_output=True,
                               text=True, check=True).stderr
        imported = sorted({line.rsplit("|", 1)[-1].strip().split(".")[0] for line in trace.splitlines()
                           if line.startswith("import time:")} & set(SDKS))
        return statistics.median(walls), imported
    finally:
        sandbox.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("n", type=int, nargs="?", default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--speed", type=float, default=100_000, help="the sandbox clock's speed-up")
    parser.add_argument("--no-rerun", action="store_true", help="skip the no-op re-runs")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-vs-sdk-"))
    try:
        prompts = root / "prompts.jsonl"
        write_prompts(prompts, args.n)
        runs: dict[str, list[dict[str, object]]] = {"script": [], "overnight": []}
        for i in range(args.repeat):
            for kind in (("script", "overnight") if i % 2 == 0 else ("overnight", "script")):
                runs[kind].append(run_one(kind, root, prompts, args.n, args.poll, rerun=not args.no_rerun,
                                          speed=args.speed))
        small = None if args.no_rerun else small_rerun(root, args.poll)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def med(kind: str, key: str) -> float:
        return statistics.median(float(r[key]) for r in runs[kind])  # type: ignore[arg-type]

    print(f"N = {args.n:,} requests, {args.repeat} runs each (medians), sandbox on 127.0.0.1 "
          f"(clock x{args.speed:g})")
    print(f"{'':<12}{'wall s':>10}{'CPU s':>10}{'peak RSS MB':>14}")
    for kind in ("script", "overnight"):
        print(f"{kind:<12}{med(kind, 'wall'):>10.2f}{med(kind, 'cpu'):>10.2f}{med(kind, 'rss'):>14.0f}")
    print(f"{'ratio':<12}{med('overnight', 'wall') / med('script', 'wall'):>9.2f}x"
          f"{med('overnight', 'cpu') / med('script', 'cpu'):>9.2f}x"
          f"{med('overnight', 'rss') / med('script', 'rss'):>13.2f}x")
    print(f"overnight phases (median s){'wall':>8}{'CPU':>8}")
    for phase in PHASES:
        wall, cpu = (statistics.median(r["phases"][kind][phase] for r in runs["overnight"])  # type: ignore[index]
                     for kind in ("wall", "cpu"))
        print(f"  {phase:<24}{wall:>8.2f}{cpu:>8.2f}")
    if not args.no_rerun:
        rerun = statistics.median(r["rerun"]["wall"] for r in runs["overnight"])  # type: ignore[index]
        print(f"no-op re-run of the finished pipeline: {rerun:.2f} s wall "
              f"({100 * rerun / med('overnight', 'wall'):.1f}% of the first run)")
        assert small is not None
        print(f"`overnight run` re-run of a finished 20-row pipeline: {small[0]:.2f} s wall; "
              f"provider SDKs imported: {', '.join(small[1]) or 'none'}")


if __name__ == "__main__":
    main()
