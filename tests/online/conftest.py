"""Fixtures of the online tests: the online fake provider, and a fake clock for the pacer
(its sleeps advance the clock at once: no test waits for real)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from overnight import ratelimit

sys.path.insert(0, str(Path(__file__).parent))

from onlinefake import OnlineFake  # noqa: E402


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += max(seconds, 0.0)


@pytest.fixture(autouse=True)
def fake_time(monkeypatch):
    ratelimit.forget()
    t = FakeTime()
    monkeypatch.setattr(ratelimit, "clock", t.clock)
    monkeypatch.setattr(ratelimit, "sleep", t.sleep)
    yield t
    ratelimit.forget()


@pytest.fixture
def online_fake(tmp_path, registry, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", "fk-test-secret-0000")
    provider = OnlineFake(tmp_path / "fake-provider")
    registry.register(provider, name="fake")
    return provider
