"""The README's first command: `overnight quickstart`, end to end with the installed OpenAI plugin."""

from __future__ import annotations

import json

import pytest

from overnight import plugins
from overnight.cli import main
from overnight.quickstart import prompts_path
from overnight.sandbox import expected_reply


@pytest.fixture
def installed_plugins():
    previous = plugins.set_registry(None)  # reload from the installed entry points
    yield plugins.get_registry()
    plugins.set_registry(previous)


def test_quickstart_runs_then_reuses(installed_plugins, overnight_home, capsys):
    assert main(["quickstart", "--rows", "12", "--speed", "2000", "--show", "2"]) == 0
    out = capsys.readouterr().out
    assert "Done: 12 rows, 0 errors; 12 requests were sent" in out
    written = out.split("Dataset written to ")[1].split()[0]
    rows = [json.loads(line) for line in open(written)]
    prompts = [json.loads(line)["instruction"] for line in open(prompts_path())][:12]
    assert [r["instruction"] for r in rows] == prompts
    system = "You are a concise, friendly assistant."
    for row in rows:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": row["instruction"]}]
        assert row["generation"] == expected_reply(messages, max_tokens=256)

    assert main(["quickstart", "--rows", "12", "--speed", "2000"]) == 0
    assert "all reused from the previous run: nothing was submitted" in capsys.readouterr().out


def test_bundled_prompts_are_package_data():
    lines = [json.loads(line) for line in open(prompts_path())]
    assert len(lines) >= 100 and all(line["instruction"].strip() for line in lines)
    assert len({line["instruction"] for line in lines}) == len(lines)
