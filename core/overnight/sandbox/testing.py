"""A pytest fixture for any test directory: ``from overnight.sandbox.testing import sandbox_fixture``.

Usage in a ``conftest.py``::

    from overnight.sandbox.testing import sandbox_fixture  # noqa: F401  (re-exported fixture)

    def test_x(sandbox_fixture):
        sandbox_fixture.advance(60)

The sandbox runs on an ephemeral port with a manual clock and a fresh state dir under
``tmp_path``. Use :func:`make_sandbox` to build one with other options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from .server import Sandbox


def make_sandbox(state_dir: Path, **options: Any) -> Sandbox:
    """A started sandbox (stop it yourself, or use it in a ``with`` block)."""
    return Sandbox(state_dir=state_dir, **options).start()


@pytest.fixture
def sandbox_fixture(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(state_dir=tmp_path / "sandbox-state") as sb:
        yield sb
