"""Benchmark: what identifying an input file by its content costs (default 256 MiB).

    python tests/benchmarks/bench_input_digest.py [MiB]

Prints the throughput of the streamed digest overnight uses (SHA-256: what a run pays to
hash an input it has not seen, or to re-verify one before reusing a finished step),
against BLAKE2b and, if installed, xxhash's XXH3-128 (a dependency we do not take unless
it is worth it); what a run already pays to parse the same rows as JSON; and the cost of
the stat shortcut on an unchanged file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from overnight import filedigests


def throughput(name: str, make, path: Path, size: int) -> None:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        h = make()
        with open(path, "rb") as handle:
            while block := handle.read(filedigests.BLOCK):
                h.update(block)
        h.hexdigest()
        best = min(best, time.perf_counter() - start)
    print(f"{name:>14}: {size / best / 2**20:8.0f} MiB/s  ({best * 1000:.0f} ms for {size >> 20} MiB)")


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.jsonl"
        line = b'{"instruction": "' + b"x" * 200 + b'"}\n'
        with open(path, "wb") as handle:
            for _ in range((mib << 20) // len(line)):
                handle.write(line)
        size = path.stat().st_size
        throughput("sha256 (used)", hashlib.sha256, path, size)
        throughput("blake2b-128", lambda: hashlib.blake2b(digest_size=16), path, size)
        try:
            import xxhash
        except ImportError:
            print(f"{'xxh3-128':>14}: (xxhash not installed)")
        else:
            throughput("xxh3-128", xxhash.xxh3_128, path, size)

        start = time.perf_counter()
        with open(path, encoding="utf-8") as handle:
            for text in handle:
                json.loads(text)
        took = time.perf_counter() - start
        print(f"{'json.loads':>14}: {size / took / 2**20:8.0f} MiB/s  (parsing the rows, as every run that reads them does)")

        cache = Path(tmp) / "cache"
        digests = filedigests.FileDigests(cache)
        digests.digest(path)
        digests._load()[str(path.resolve())]["racy"] = False  # as it is 2 s after the last edit
        digests.save()
        start = time.perf_counter()
        runs = 1000
        for _ in range(runs):
            filedigests.FileDigests(cache).digest(path)
        each = (time.perf_counter() - start) / runs
        print(f"{'stat shortcut':>14}: {each * 1e6:8.0f} µs per run (unchanged file, nothing read)")
        os.unlink(path)


if __name__ == "__main__":
    main()
