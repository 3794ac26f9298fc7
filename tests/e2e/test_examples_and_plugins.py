"""The shipped examples run against the sandbox, and the installed plugins are discovered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from overnight.cli import main
from overnight.plugins import PluginRegistry
from overnight.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]

EXAMPLES = {
    "openai": ("openai_batch.py", lambda sb: {"OPENAI_BASE_URL": sb.openai_base_url, "OPENAI_API_KEY": "sk-sandbox"}),
    "anthropic": ("anthropic_batch.py", lambda sb: {"ANTHROPIC_BASE_URL": sb.anthropic_base_url, "ANTHROPIC_API_KEY": "sk-ant-sandbox"}),
    "mistral": ("mistral_batch.py", lambda sb: {"MISTRAL_BASE_URL": sb.mistral_base_url, "MISTRAL_API_KEY": "sandbox"}),
    "gemini": ("gemini_batch.py", lambda sb: {"GEMINI_BASE_URL": sb.gemini_base_url, "GEMINI_API_KEY": "sandbox"}),
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp("sandbox")) as sb:
        yield sb


def run_example(script: str, env: dict[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    full_env.update(env, OVERNIGHT_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "overnight.cli", "run", str(ROOT / "examples" / script)],
        env=full_env, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("provider", sorted(EXAMPLES))
def test_example_submits_then_collects(provider, sandbox, tmp_path):
    script, env = EXAMPLES[provider]
    before = sandbox.counters()[provider]["jobs"]
    first = run_example(script, env(sandbox), tmp_path)
    assert first.returncode == 75, first.stderr
    assert "Traceback" not in first.stderr and "still running" in first.stderr
    sandbox.advance(3600)
    second = run_example(script, env(sandbox), tmp_path)
    assert second.returncode == 0, second.stderr
    assert "What is 17 times 23?\n  -> Sandbox answer to: What is 17 times 23?" in second.stdout
    assert sandbox.counters()[provider]["jobs"] - before == 1


def test_installed_plugins_are_found_through_entry_points(capsys):
    registry = PluginRegistry()  # entry points only: the packages pip installed
    assert {"openai", "anthropic", "mistral", "gemini"} <= set(registry.provider_names)
    packages = {entry.package for entry in registry.entries}
    assert {"overnight-openai", "overnight-anthropic", "overnight-mistral", "overnight-gemini"} <= packages
    assert not registry.failures
    assert main(["plugins", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    text = json.dumps(listed)
    for name in ("overnight-openai", "overnight-anthropic", "overnight-mistral", "overnight-gemini"):
        assert name in text
