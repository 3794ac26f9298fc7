"""``overnight status / jobs / cancel / plugins / sandbox / quickstart``, in-process."""

from __future__ import annotations

import json
import sys
import types

import pytest

from overnight import LLM, LoadDataFromDicts, Pipeline, PipelineNotFinished, TextGeneration, hookimpl
from overnight.cli import main


def pending_run(rows=3):
    with Pipeline(name="ops") as p:
        LoadDataFromDicts(data=[{"instruction": f"p{i}"} for i in range(rows)]) >> TextGeneration(
            name="gen", llm=LLM("fake/m")
        )
    with pytest.raises(PipelineNotFinished):
        p.run()
    return p


def test_status_shows_runs_and_open_jobs(fake, capsys):
    assert main(["status"]) == 0
    assert "No runs yet" in capsys.readouterr().out
    pending_run()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    remote = fake.jobs()[0]["id"]
    assert "ops" in out and "pending" in out
    assert "Batch jobs still open (1)" in out and remote in out and "gen" in out
    assert main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["runs"][0]["pipeline"] == "ops" and data["runs"][0]["state"] == "pending"
    assert data["open_jobs"][0]["remote_id"] == remote
    # Each run says what it submitted; each job which run submitted it.
    assert (data["runs"][0]["jobs_submitted"], data["runs"][0]["requests_submitted"]) == (1, 3)
    assert data["open_jobs"][0]["run_id"] == data["runs"][0]["id"]
    assert "1 job(s), 3 requests" in out


def test_jobs_lists_open_jobs_and_all_with_flag(fake, capsys):
    assert main(["jobs"]) == 0
    assert "No open batch jobs" in capsys.readouterr().out
    p = pending_run()
    assert main(["jobs", "--json"]) == 0
    [job] = json.loads(capsys.readouterr().out)
    assert job["provider"] == "fake" and job["step"] == "gen" and job["requests"] == 3
    assert job["ref"]["remote_id"] == job["remote_id"] == fake.jobs()[0]["id"]
    fake.advance()
    p.run()
    assert main(["jobs"]) == 0
    assert "No open batch jobs" in capsys.readouterr().out
    assert main(["jobs", "--all"]) == 0
    out = capsys.readouterr().out
    assert job["remote_id"] in out and "finished" in out


def test_cancel_by_remote_id_tag_or_local_id(fake, capsys):
    pending_run()
    remote = fake.jobs()[0]["id"]
    assert main(["cancel", remote]) == 0
    assert "Cancellation requested" in capsys.readouterr().out
    assert fake.jobs()[0]["cancelled"] is True


def test_cancel_unknown_or_finished_job(fake, capsys):
    assert main(["cancel", "nope"]) == 1
    assert "no job 'nope'" in capsys.readouterr().err
    p = pending_run()
    fake.advance()
    p.run()
    assert main(["cancel", "1"]) == 0
    assert "already finished" in capsys.readouterr().out
    assert fake.jobs()[0]["cancelled"] is False


def test_cancel_when_the_provider_cannot(tmp_path, registry, capsys, monkeypatch):
    from fakeprovider import FakeProvider

    monkeypatch.setenv("FAKE_API_KEY", "k")
    registry.register(FakeProvider(tmp_path / "nocancel", cancel=False), name="fake")
    pending_run()
    assert main(["cancel", "1"]) == 1
    assert "cannot cancel" in capsys.readouterr().err


class Broken:
    @hookimpl
    def register_providers(self):
        raise ImportError("No module named 'acme_sdk'")


def test_plugins_json(fake, capsys):
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    [plugin] = data["plugins"]
    assert plugin["name"] == "fake"
    [provider] = plugin["providers"]
    assert provider["name"] == "fake"
    assert provider["limits"] == {"max_requests": 100, "max_bytes": 1_000_000, "max_line_bytes": 2_000, "completion_window": 86400}
    assert provider["capabilities"] == {"cancel": True, "find_by_tag": True, "list_jobs": False, "online": False,
                                        "check_while_fetching": False}
    assert provider["extra_params"] == ["fake_option"] and provider["unsupported_params"] == ["seed"]
    assert data["failures"] == []


def test_plugins_report_load_failures(fake, registry, capsys):
    registry.register(Broken(), name="acme", package="overnight-acme", version="0.1")
    assert main(["plugins", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in data["plugins"]] == ["fake"]
    assert data["failures"] == [{"name": "acme", "package": "overnight-acme", "error": "ImportError: No module named 'acme_sdk'"}]
    assert main(["plugins"]) == 1
    out = capsys.readouterr().out
    assert "provider fake: up to 100 requests" in out and "can: cancel, find by tag" in out
    assert "acme (overnight-acme): ImportError" in out


def test_plugins_none_installed(registry, capsys):
    assert main(["plugins"]) == 0
    assert "pip install overnight-openai" in capsys.readouterr().out


def test_sandbox_serve_calls_the_sandbox(monkeypatch, tmp_path, overnight_home):
    calls = []
    module = types.ModuleType("overnight.sandbox")
    module.serve = lambda **kwargs: calls.append(kwargs)
    monkeypatch.setitem(sys.modules, "overnight.sandbox", module)
    args = ["sandbox", "serve", "--port", "9999", "--state-dir", str(tmp_path / "s"), "--speed", "60"]
    assert main(args) == 0
    assert calls == [{"host": "127.0.0.1", "port": 9999, "state_dir": tmp_path / "s", "speed": 60.0}]
    assert main(["sandbox", "serve"]) == 0
    assert calls[-1]["state_dir"] == overnight_home / "sandbox" and calls[-1]["port"] == 8080
    assert main(["sandbox", "serve", "--max-enqueued-tokens", "5000", "--max-queued-requests", "70"]) == 0
    assert (calls[-1]["max_enqueued_tokens"], calls[-1]["max_queued_requests"]) == (5000, 70)


def test_sandbox_not_installed(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "overnight.sandbox", None)
    assert main(["sandbox", "serve"]) == 1
    assert "pip install 'overnight[sandbox]'" in capsys.readouterr().err


def test_quickstart_is_loaded_lazily(monkeypatch):
    seen = []
    module = types.ModuleType("overnight.quickstart")
    module.quickstart = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "overnight.quickstart", module)
    assert main(["quickstart", "--fast"]) == 0
    assert seen == [["--fast"]]


def test_no_command_prints_usage(capsys):
    assert main([]) == 2
    assert "usage: overnight" in capsys.readouterr().err


def test_resubmit_lost_with_nothing_lost_or_an_unknown_job(fake, capsys):
    pending_run()
    assert main(["resubmit-lost"]) == 0
    assert "No job with lost results." in capsys.readouterr().out
    assert main(["resubmit-lost", "no-such-job"]) == 1
    assert "matching no-such-job" in capsys.readouterr().out


def test_run_retry_failed_reaches_the_script_and_is_undone_after(tmp_path, capsys, monkeypatch):
    import os

    from overnight.policy import RETRY_FAILED_ENV

    monkeypatch.delenv(RETRY_FAILED_ENV, raising=False)
    script = tmp_path / "show.py"
    script.write_text(f"import os\nprint('flag=' + os.environ.get({RETRY_FAILED_ENV!r}, 'unset'))\n")
    assert main(["run", "--retry-failed", str(script)]) == 0
    assert main(["run", str(script)]) == 0
    assert capsys.readouterr().out.splitlines() == ["flag=1", "flag=unset"]
    assert RETRY_FAILED_ENV not in os.environ
def test_adopt_says_clearly_when_the_provider_cannot_list_its_jobs(fake, capsys):
    assert main(["adopt", "fake"]) == 1
    err = capsys.readouterr().err
    assert "overnight: error:" in err and "cannot list its jobs" in err and "Traceback" not in err
