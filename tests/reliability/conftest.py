"""Fixtures of the reliability suite: one fork server per session, one sandbox per test.

Each test gets its own sandbox (about 60 ms to start): the Anthropic plugin's lookup by
tag looks at every batch of the workspace, so lanes must not see each other's jobs.
Tests talk to the sandbox only through its HTTP control API, as an operator would.
"""

from __future__ import annotations

import pytest

from overnight.sandbox import Sandbox, SandboxControl

from harness import Lane, make_runner


@pytest.fixture(scope="session")
def runners():
    """The default runner (fork server unless RELIABILITY_RUNNER=exec) and a real exec one."""
    default = make_runner()
    exec_runner = make_runner("exec")
    yield {"default": default, "exec": exec_runner}
    default.close()


@pytest.fixture
def sandbox(tmp_path):
    with Sandbox(state_dir=tmp_path / "sandbox-state") as sb:
        yield sb


@pytest.fixture
def control(sandbox):
    return SandboxControl(sandbox.url)


@pytest.fixture
def make_lane(runners, control, tmp_path):
    """``make_lane(provider, **options)``: a Lane in this test's sandbox."""
    count = 0

    def make(provider: str, **options) -> Lane:
        nonlocal count
        count += 1
        return Lane(runners, control, provider, tmp_path / f"lane-{count}-{provider}", **options)

    return make
