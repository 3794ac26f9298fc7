"""Fixtures shared by every test: an isolated cache dir and a per-test plugin registry.

No installed plugin leaks into core tests: the registry holds only what a test registers.
"""

from __future__ import annotations

import os

import pytest

from overnight.plugin_testing import registry  # noqa: F401  (the published fixture, also used by plugins/*/tests)
from overnight.sandbox.testing import sandbox_fixture  # noqa: F401  (the published fixture)

from fakeprovider import FakeProvider


def pytest_addoption(parser):
    parser.addoption(
        "--store", choices=("sqlite", "postgresql"), default="sqlite",
        help="the state store every test's Store.open() gets (postgresql: a schema of the test server each)",
    )


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server for the session (tests/pgserver.py); skipped, with the reason,
    when none can be started here, except in CI (CI=true), where that is a failure."""
    try:
        import psycopg  # noqa: F401
        from pgserver import Server, Unavailable
    except ImportError as exc:
        reason = f"psycopg is not installed ({exc}): pip install 'overnight[postgres]'"
        Server = Unavailable = None  # type: ignore[assignment,misc]
    else:
        try:
            server = Server()
        except Unavailable as exc:
            reason = str(exc)
        else:
            yield server
            server.stop()
            return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the PostgreSQL tests, but no server could be started: {reason}")
    pytest.skip(f"no PostgreSQL server could be started: {reason}")


@pytest.fixture
def pg_url(pg_server):
    """The URL of a new, empty schema of the test server: one shared store per test."""
    return pg_server.schema_url()


@pytest.fixture(autouse=True)
def overnight_home(request, tmp_path, monkeypatch):
    """Every test gets its own store and cache directory."""
    home = tmp_path / "overnight-home"
    monkeypatch.setenv("OVERNIGHT_HOME", str(home))
    monkeypatch.delenv("OVERNIGHT_STORE", raising=False)
    if request.config.getoption("--store") == "postgresql":
        monkeypatch.setenv("OVERNIGHT_STORE", request.getfixturevalue("pg_url"))
    # A crash or a failed create is resubmitted at once unless a test asks for the settle
    # window (the default, 300 s, is for real providers: tests drive no wall clock).
    monkeypatch.setenv("OVERNIGHT_CREATE_SETTLE_SECONDS", "0")
    return home


@pytest.fixture
def sandbox(sandbox_fixture):  # noqa: F811
    """A fresh sandbox per test, on a clock the test drives: the published fixture, under the
    name the tests use."""
    return sandbox_fixture


@pytest.fixture
def fake(tmp_path, registry, monkeypatch):
    """The fake provider plugin, registered for this test only."""
    monkeypatch.setenv("FAKE_API_KEY", "fk-test-secret-0000")
    provider = FakeProvider(tmp_path / "fake-provider")
    registry.register(provider, name="fake")
    return provider
