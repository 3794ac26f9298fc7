"""`overnight sandbox advance|status`, `GET /_sandbox`, and a quiet access log (issue 14, section 4)."""

from __future__ import annotations

import json
import os
import signal
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from overnight.cli import main
from overnight.sandbox.control import ROUTE_DOCS



def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (127.0.0.1)
        return json.loads(response.read())


def test_advance_moves_the_clock_of_a_running_sandbox(sandbox, capsys):
    before = sandbox.now()
    assert main(["sandbox", "advance", "90", "--url", sandbox.url]) == 0
    assert sandbox.now() == pytest.approx(before + 90)
    assert f"now t={sandbox.now():g}s" in capsys.readouterr().out
    assert main(["sandbox", "advance", "-5", "--url", sandbox.url]) == 1


def test_status_shows_the_clock_and_jobs(sandbox, capsys, monkeypatch):
    monkeypatch.setenv("OVERNIGHT_SANDBOX_URL", sandbox.url)
    sandbox.advance(10)
    assert main(["sandbox", "status", "--url", sandbox.url]) == 0
    out = capsys.readouterr().out
    assert f"sandbox at {sandbox.url}: t={sandbox.now():g}s, clock manual" in out
    assert "openai" in out and "no jobs" in out
    assert main(["sandbox", "status", "--json", "--url", sandbox.url]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["clock"]["now"] == sandbox.now() and data["jobs"] == []


def test_commands_say_when_no_sandbox_answers(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    assert main(["sandbox", "status", "--url", url]) == 1
    assert f"no sandbox answers at {url}" in capsys.readouterr().err
    assert main(["sandbox", "advance", "5", "--url", url]) == 1


def test_get_sandbox_lists_its_routes(sandbox):
    for path in ("/_sandbox", "/_sandbox/"):
        listed = get(sandbox.url + path)
        routes = {(r["method"], r["path"]) for r in listed["routes"]}
        assert ("POST", "/_sandbox/clock/advance") in routes and ("GET", "/_sandbox/counters") in routes
        assert listed["providers"]["openai"] == "/openai/v1"
    assert len(routes) == len(ROUTE_DOCS)


def test_every_listed_route_exists(sandbox):
    from overnight.sandbox.server import build_app

    app = build_app(sandbox.engine)
    control = next(r for r in app.routes if getattr(r, "path", "") == "/_sandbox" and hasattr(r, "routes"))
    # Starlette path converters ("{job_id:path}": Gemini ids hold a slash) are not part of the name.
    served = {re.sub(r":\w+}", "}", "/_sandbox" + route.path).rstrip("/") for route in control.routes}
    for _method, path, _does in ROUTE_DOCS:
        assert path.replace("{id}", "{fault_id}") in served or \
            path.replace("{id}", "{job_id}") in served, path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(tmp_path, *extra: str) -> tuple[str, str]:
    """Run `overnight sandbox serve`, make one request, stop it; return its stdout and stderr."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "overnight.cli", "sandbox", "serve", "--port", str(port), "--state-dir",
         str(tmp_path / "state"), "--speed", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # waiting for a process to listen, not for sandbox time
            try:
                get(f"http://127.0.0.1:{port}/_sandbox/health")
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        get(f"http://127.0.0.1:{port}/_sandbox/counters")
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    return out, err


def test_access_log_is_off_by_default_and_goes_to_stderr(tmp_path):
    out, err = serve(tmp_path)
    assert "overnight sandbox on" in out
    assert "/_sandbox/counters" not in out + err
    out, err = serve(tmp_path, "--access-log")
    assert "/_sandbox/counters" not in out
    assert "GET /_sandbox/counters" in err
