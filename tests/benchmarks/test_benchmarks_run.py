"""The benchmark scripts still run (tiny N, no timing asserted): they must not rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(*argv: str) -> str:
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_bench_vs_sdk_completes_and_prints_its_table():
    out = run(str(HERE / "bench_vs_sdk.py"), "200", "--repeat", "1")
    for expected in ("script", "overnight", "ratio", "peak RSS MB", "validate/plan", "submit", "check+fetch",
                     "assemble+write", "no-op re-run", "20-row pipeline", "provider SDKs imported"):
        assert expected in out, out


def test_bench_executor_completes_and_prints_its_phases():
    out = run(str(HERE / "bench_executor.py"), "200")
    for expected in ("plan+submit", "check+fetch", "assemble", "peak RSS"):
        assert expected in out, out
