"""Benchmark: the executor's time and peak memory for N requests (default 1,000,000).

    python tests/benchmarks/bench_executor.py [N] [--store sqlite|postgresql|postgresql://...]

``--store`` picks the backend: ``sqlite`` (the default, a file in a temporary home),
``postgresql`` (a throwaway server started for the run, tests/pgserver.py) or the URL
of a server (a new schema in it is used, then dropped). Peak RSS is this process's: a
PostgreSQL server's own memory is not in it.

Uses an in-process provider that answers instantly and keeps its jobs on disk, so the
figures are the core's own: planning (validation + store), submission (streaming lines
out of the store), fetching (streaming results in) and assembly. The goal is a flat
memory profile: the executor under 300 MB RSS at 1,000,000 requests.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from overnight import (
    Capabilities,
    ChatRequest,
    JobRef,
    JobState,
    JobStatus,
    Limits,
    Message,
    ProviderInfo,
    Result,
    Usage,
    hookimpl,
)
from overnight.executor import PlannedRequest
from overnight.llm import LLM
from overnight.plugins import PluginRegistry, set_registry
from overnight.store import Store
from overnight.errors import OfflineBatchGenerationNotFinished


class InstantProvider:
    """Jobs are files of custom ids; every job is finished when checked."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @hookimpl
    def register_providers(self):
        return [ProviderInfo(name="instant", limits=Limits(50_000, 200_000_000), capabilities=Capabilities(find_by_tag=False))]

    @hookimpl
    def build_request(self, provider, request):
        return {"custom_id": request.custom_id, "messages": [{"role": m.role, "content": m.content} for m in request.messages]}

    @hookimpl
    def submit(self, provider, chunk, options):
        path = self.dir / f"{chunk.tag}.ids"
        with open(path, "w") as out:
            for line in chunk.lines():
                out.write(line["custom_id"] + "\n")
        return JobRef(provider=provider, remote_id=chunk.tag, tag=chunk.tag)

    @hookimpl
    def check(self, provider, job, options):
        return JobStatus(state=JobState.FINISHED)

    @hookimpl
    def fetch(self, provider, job, options):
        with open(self.dir / f"{job.remote_id}.ids") as ids:
            for cid in ids:
                yield Result(custom_id=cid.strip(), status="succeeded", text="ok", usage=Usage(5, 1), finish_reason="stop")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _postgres(choice: str) -> tuple[str, Any]:
    """A URL of a new schema, and what to call at the end."""
    import uuid

    import psycopg

    server = None
    if choice == "postgresql":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from pgserver import Server

        server = Server()
        choice = server.url
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(choice, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in choice else "?"

    def done() -> None:
        if server is not None:
            server.stop()
            return
        with psycopg.connect(choice, autocommit=True) as db:
            db.execute(f"DROP SCHEMA {schema} CASCADE")

    return f"{choice}{sep}options=-csearch_path%3D{schema}", done


def main(n: int, backend: str = "sqlite") -> None:
    cleanup = None
    if backend != "sqlite":
        os.environ["OVERNIGHT_STORE"], cleanup = _postgres(backend)
    try:
        _bench(n, backend)
    finally:
        if cleanup is not None:
            cleanup()


def _bench(n: int, backend: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["OVERNIGHT_HOME"] = tmp
        set_registry(PluginRegistry([InstantProvider(Path(tmp))], entrypoints=False))
        planned = (
            PlannedRequest(i, 0, ChatRequest("", "m", [Message("user", f"Question {i}: what is {i} squared?")]))
            for i in range(n)
        )
        store = Store.open()
        llm = LLM("instant/m")
        planning: dict[str, float] = {}
        write_plan = store.write_plan

        def timed_plan(*args: Any, **kwargs: Any) -> int:  # validation + storing: the plan phase
            begin = time.perf_counter()
            try:
                return write_plan(*args, **kwargs)
            finally:
                planning["s"], planning["rss"] = time.perf_counter() - begin, rss_mb()

        store.write_plan = timed_plan  # type: ignore[method-assign]
        start = time.perf_counter()
        try:
            llm.generate_offline(planned, store=store, step="bench", plan_id="bench")
        except OfflineBatchGenerationNotFinished as exc:
            jobs = len(exc.jobs_ids)
        t_submit = time.perf_counter() - start
        from overnight.postgres_store import redact

        print(f"store              {redact(backend):>12}")
        print(f"requests           {n:>12,}")
        print(f"plan               {planning['s']:>11.1f}s  (peak RSS {planning['rss']:.0f} MB)")
        print(f"submit             {t_submit - planning['s']:>11.1f}s  ({jobs} jobs)")
        print(f"plan+submit        {t_submit:>11.1f}s  ({jobs} jobs, peak RSS {rss_mb():.0f} MB)")
        start = time.perf_counter()
        results = llm.generate_offline(iter(()), store=store, step="bench", plan_id="bench")
        t_fetch = time.perf_counter() - start
        print(f"check+fetch        {t_fetch:>11.1f}s  (peak RSS {rss_mb():.0f} MB)")
        start = time.perf_counter()
        count = sum(1 for r in results if r.result.ok)
        t_assemble = time.perf_counter() - start
        assert count == n, (count, n)
        print(f"assemble           {t_assemble:>11.1f}s  (peak RSS {rss_mb():.0f} MB)")
        if hasattr(store, "path"):
            print(f"store size         {Path(store.path).stat().st_size / 1e6:>11.0f} MB")
        store.close()
        print(f"peak RSS (process) {rss_mb():>11.0f} MB")


if __name__ == "__main__":
    args = sys.argv[1:]
    chosen = "sqlite"
    if "--store" in args:
        at = args.index("--store")
        chosen = args[at + 1]
        del args[at : at + 2]
    main(int(args[0]) if args else 1_000_000, chosen)
