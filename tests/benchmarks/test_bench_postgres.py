"""The executor benchmark runs on the PostgreSQL store too (tiny N, no timing asserted)."""

from __future__ import annotations

from test_benchmarks_run import HERE, run


def test_bench_executor_runs_on_postgres_and_prints_its_phases(pg_server):
    out = run(str(HERE / "bench_executor.py"), "300", "--store", pg_server.url)
    for expected in ("postgresql://", "plan ", "submit ", "check+fetch", "assemble", "peak RSS"):
        assert expected in out, out
    assert "pg-secret" not in out  # the URL is printed without its password
