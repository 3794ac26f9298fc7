"""`overnight estimate`, `overnight run --budget-usd` and the money in `overnight status`."""

from __future__ import annotations

import json
import textwrap

import pytest

from overnight import cli
from overnight.sandbox import Sandbox

SCRIPT = textwrap.dedent(
    """
    import sys
    from overnight import LLM, LoadDataFromDicts, Pipeline, TextGeneration

    with Pipeline(name="cli-money") as p:
        load = LoadDataFromDicts(data=[{"instruction": f"Question {i}: why is the sky blue?"} for i in range(20)])
        gen = TextGeneration(name="gen", llm=LLM(
            "openai/gpt-4o-mini", base_url=sys.argv[1], max_retries=0, poll_interval=0.001,
            offline_batch_generation_block_until_done=60, generation_kwargs={"max_tokens": 64}))
        load >> gen
    p.run()
    """
)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("OVERNIGHT_BUDGET_USD", raising=False)
    script = tmp_path / "pipeline.py"
    script.write_text(SCRIPT)
    with Sandbox(state_dir=tmp_path / "sb", speed=20_000) as sb:
        yield sb, str(script)


def test_estimate_prints_figures_and_submits_nothing(setup, capsys):
    sb, script = setup
    assert cli.main(["estimate", "--json", script, sb.openai_base_url]) == 0
    data = json.loads(capsys.readouterr().out)
    [step] = data["steps"]
    assert step["requests"] == 20 and step["max_output_tokens"] == 20 * 64
    assert data["total"]["cost_usd"] == step["cost_usd"] > 0
    assert step["max_cost_usd"] >= step["cost_usd"] and step["online_cost_usd"] == pytest.approx(2 * step["cost_usd"])
    assert sb.counters()["openai"]["requests"] == 0 and not sb.counters()["openai"]["http"]
    assert cli.main(["estimate", script, sb.openai_base_url]) == 0
    out = capsys.readouterr().out
    assert "COST_USD" in out and "MAX_COST_USD" in out and "Nothing was submitted" in out


def test_estimate_needs_no_api_key(setup, capsys, monkeypatch):
    sb, script = setup
    monkeypatch.delenv("OPENAI_API_KEY")
    assert cli.main(["estimate", "--json", script, sb.openai_base_url]) == 0
    assert json.loads(capsys.readouterr().out)["steps"][0]["requests"] == 20
    assert cli.main(["run", script, sb.openai_base_url]) == 1  # a real run still needs it
    assert "OPENAI_API_KEY" in capsys.readouterr().err


def test_run_with_a_budget_below_the_estimate_exits_1_and_submits_nothing(setup, capsys):
    sb, script = setup
    assert cli.main(["run", "--budget-usd", "0.0000001", script, sb.openai_base_url]) == 1
    err = capsys.readouterr().err
    assert "overnight: error:" in err and "budget" in err and "Traceback" not in err
    assert sb.counters()["openai"]["requests"] == 0


def test_status_shows_what_was_billed_and_saved(setup, capsys, caplog):
    caplog.set_level("INFO", logger="overnight")
    sb, script = setup
    assert cli.main(["run", "--budget-usd", "10", script, sb.openai_base_url]) == 0
    last = caplog.records[-1].getMessage()
    assert last.startswith("cost $") and last.endswith("saved against online"), last
    assert cli.main(["status", "--json"]) == 0
    money = json.loads(capsys.readouterr().out)["money"]
    assert money["requests"] == 20 and money["cost_usd"] > 0 and money["saved_usd"] == pytest.approx(money["cost_usd"])
    assert cli.main(["status"]) == 0
    assert "Billed: 20 requests collected" in capsys.readouterr().out
