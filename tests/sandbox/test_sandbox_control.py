"""The HTTP control API, its client, ``serve()`` in another process, counters, concurrency."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from overnight.sandbox import Sandbox, SandboxControl, SandboxControlError
from sandbox_helpers import anthropic_requests, prompts, upload_openai_batch


def test_control_client_drives_a_running_sandbox(sandbox: Sandbox, oai: openai.OpenAI) -> None:
    control = SandboxControl(sandbox.url)
    assert control.health()["ok"] is True
    assert control.openai_base_url == sandbox.openai_base_url
    start = control.now()
    assert control.advance(10) == start + 10 == sandbox.now()

    rule = control.set_faults(provider="openai", error_ids={"req-0"})
    assert [f["id"] for f in control.faults()] == [rule] and control.faults()[0]["error_ids"] == ["req-0"]
    batch = upload_openai_batch(oai, prompts(2))
    control.advance(3600)
    batch = oai.batches.retrieve(batch.id)
    assert batch.request_counts.failed == 1
    assert control.jobs()[0]["phase"] == "completed"
    assert control.remove_fault(rule) is True
    control.set_faults(stuck=True)
    control.clear_faults()
    assert control.faults() == []

    counters = control.counters()
    assert (counters["openai"]["files"], counters["openai"]["jobs"], counters["openai"]["requests"]) == (1, 1, 2)
    assert counters["openai"]["http"]["POST /batches"] == 1
    control.reset_counters()
    assert control.counters()["openai"] == {"files": 0, "jobs": 0, "requests": 0, "http": {}}

    with pytest.raises(SandboxControlError, match="unknown fault fields"):
        control.set_faults(bogus=True)
    with pytest.raises(SandboxControlError):
        control.advance(-1)


def test_results_url_style_over_http(sandbox: Sandbox, ant: anthropic.Anthropic) -> None:
    SandboxControl(sandbox.url).set_results_url("relative")
    batch = ant.messages.batches.create(requests=anthropic_requests(prompts(1)))
    sandbox.advance(60)
    assert ant.messages.batches.retrieve(batch.id).results_url.startswith("/v1/")


def test_raw_control_routes(sandbox: Sandbox) -> None:
    base = sandbox.url + "/_sandbox"
    http = httpx.Client()
    now = http.get(base + "/clock").json()["now"]
    assert http.post(base + "/clock/advance", json={"seconds": 5}).json()["now"] == now + 5
    assert http.post(base + "/clock/advance", json={}).status_code == 400
    rule = http.post(base + "/faults", json={"provider": "mistral", "http_status": 503}).json()["id"]
    assert http.get(base + "/faults").json()["data"][0]["id"] == rule
    assert http.delete(base + "/faults").json() == {"cleared": True}
    assert set(http.get(base + "/counters").json()) == {"openai", "anthropic", "mistral", "gemini", "groq", "together",
                                                        "deepinfra", "nebius"}
    assert http.get(sandbox.url + "/nowhere").status_code == 404


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_in_another_process(tmp_path: Path) -> None:
    port = _free_port()
    code = ("from overnight.sandbox import serve; "
            f"serve(host='127.0.0.1', port={port}, state_dir={str(tmp_path)!r}, speed=None, log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        control = SandboxControl(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 20
        while True:  # waiting for the process to start, not on sandbox time
            try:
                control.health()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        client = openai.OpenAI(api_key="k", base_url=control.openai_base_url, max_retries=0)
        batch = upload_openai_batch(client, prompts(3))
        control.advance(60)
        assert client.batches.retrieve(batch.id).status == "completed"
        assert control.counters()["openai"]["requests"] == 3
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode()
    assert f"http://127.0.0.1:{port}/openai/v1" in out
    assert "sk-" not in out and "Bearer" not in out  # keys are never logged


def test_concurrent_submissions(sandbox: Sandbox) -> None:
    client = anthropic.Anthropic(api_key="k", base_url=sandbox.anthropic_base_url, max_retries=0)
    ids: list[str] = []
    errors: list[BaseException] = []

    def submit(n: int) -> None:
        try:
            for _ in range(3):
                ids.append(client.messages.batches.create(requests=anthropic_requests(prompts(n))).id)
                client.messages.batches.list(limit=5)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i + 1,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(ids)) == 24
    counters = sandbox.counters()["anthropic"]
    assert counters["jobs"] == 24 and counters["requests"] == 3 * sum(range(1, 9))
    sandbox.advance(3600)
    assert all(b.processing_status == "ended" for b in client.messages.batches.list(limit=100).data)


def test_counters_prove_single_submission(sandbox: Sandbox, oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    upload_openai_batch(oai, prompts(4))
    ant.messages.batches.create(requests=anthropic_requests(prompts(2)))
    counters = sandbox.counters()
    assert counters["openai"]["files"] == 1 and counters["openai"]["jobs"] == 1 and counters["openai"]["requests"] == 4
    assert counters["anthropic"]["jobs"] == 1 and counters["anthropic"]["requests"] == 2
    assert counters["mistral"] == {"files": 0, "jobs": 0, "requests": 0, "http": {}}
    sandbox.reset_counters()
    assert sandbox.counters()["openai"]["jobs"] == 0
