"""bench_online.py still runs (tiny N, no timing asserted): it must not rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_bench_online_completes_and_prints_its_table():
    done = subprocess.run([sys.executable, str(HERE / "bench_online.py"), "20", "--concurrency", "1,4",
                           "--latency", "0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for expected in ("concurrency", "requests/s", "peak RSS"):
        assert expected in done.stdout, done.stdout
