"""Fixtures shared by every test: an isolated cache dir and a per-test plugin registry.

No installed plugin leaks into core tests: the registry holds only what a test registers.
"""

from __future__ import annotations

import pytest

from overnight import plugins
from overnight.plugins import PluginRegistry

from fakeprovider import FakeProvider


@pytest.fixture(autouse=True)
def overnight_home(tmp_path, monkeypatch):
    """Every test gets its own store and cache directory."""
    home = tmp_path / "overnight-home"
    monkeypatch.setenv("OVERNIGHT_HOME", str(home))
    # A crash or a failed create is resubmitted at once unless a test asks for the settle
    # window (the default, 300 s, is for real providers: tests drive no wall clock).
    monkeypatch.setenv("OVERNIGHT_CREATE_SETTLE_SECONDS", "0")
    return home


@pytest.fixture
def registry():
    """An empty plugin registry installed as the process-wide one for this test."""
    reg = PluginRegistry(entrypoints=False)
    previous = plugins.set_registry(reg)
    yield reg
    plugins.set_registry(previous)


@pytest.fixture
def fake(tmp_path, registry, monkeypatch):
    """The fake provider plugin, registered for this test only."""
    monkeypatch.setenv("FAKE_API_KEY", "fk-test-secret-0000")
    provider = FakeProvider(tmp_path / "fake-provider")
    registry.register(provider, name="fake")
    return provider
