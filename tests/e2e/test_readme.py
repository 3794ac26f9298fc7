"""The README's two fresh-machine commands stay true: CI runs exactly the second one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)[:2]


def test_readme_starts_with_quickstart_and_test_commands():
    quickstart, tests = readme_commands()
    assert quickstart.endswith("overnight quickstart")
    assert "pytest" in tests
    for plugin in ("openai", "anthropic", "mistral"):
        assert f"plugins/{plugin}" in tests


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = [l for l in (ROOT / ".ci" / "run").read_text().splitlines() if l and not l.startswith(("#", "set ", "cd "))]
    assert ci_lines == [readme_commands()[1]]
