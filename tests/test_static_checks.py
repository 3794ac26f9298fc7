"""The static checks CI promises (``py.typed``, a clean lint), run as part of the test suite.

The README's single test command is what CI runs, so ruff and mypy run here: each test
fails with the tool's own report. Both are configured in ``pyproject.toml`` (ruff over
``core/`` and ``plugins/``; mypy over ``core/overnight`` and each plugin's package).
mypy keeps its incremental cache in the temporary directory, so only the first run on a
machine pays the full check (about 30 s); later runs take a few seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(tool) is None:
        pytest.fail(f"{tool} is not installed: it is part of the test extra (pip install -e '.[test]')")
    return subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    done = run("ruff", "check", "--no-cache", "--output-format", "concise", "core", "plugins")
    assert done.returncode == 0, f"ruff check core plugins:\n{done.stdout}{done.stderr}"


def test_mypy_finds_nothing():
    # One cache per checkout, outside it: worktrees do not share (or dirty) each other's.
    cache = Path(tempfile.gettempdir()) / f"overnight-mypy-{hashlib.sha1(str(ROOT).encode()).hexdigest()[:12]}"
    done = run("mypy", "--cache-dir", str(cache))
    assert done.returncode == 0, f"mypy (configured in pyproject.toml):\n{done.stdout}{done.stderr}"
