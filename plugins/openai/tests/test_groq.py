"""Groq as a named provider of overnight-openai, through the ``openai`` SDK against the
sandbox's Groq prefix (the OpenAI dialect with Groq's profile: windows 24h-7d, refused
``logprobs`` / ``logit_bias`` / ``top_logprobs`` / ``messages[].name``, ``n`` must be 1).

``LLM("groq/<model>")`` is configured by ``GROQ_API_KEY`` alone; the tests only point
``GROQ_BASE_URL`` at the sandbox, as a user's shell would point it at Groq.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import openai
import pytest

import overnight_openai
from overnight import (
    LLM,
    InvalidRequest,
    LoadDataFromDicts,
    MissingCredentials,
    Pipeline,
    PipelineNotFinished,
    TextGeneration,
    ValidationError,
)
from overnight.plugins import PluginRegistry
from overnight.sandbox import Sandbox, expected_reply
from overnight_openai import vendors

KEY = "gsk_test-groq-plugin-0123456789"
MODEL = "llama-3.1-8b-instant"
DONE = 3600


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "GROQ_API_KEY",
                "GROQ_BASE_URL", "OVERNIGHT_FAULT_POINT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp("sandbox")) as sandbox:
        yield sandbox


@pytest.fixture
def groq_env(server, monkeypatch, registry):
    """Only Groq's variables set; the installed plugin module registered as its entry point does."""
    monkeypatch.setenv("GROQ_API_KEY", KEY)
    monkeypatch.setenv("GROQ_BASE_URL", server.groq_base_url)
    registry.register(overnight_openai, name="openai")
    yield server
    server.clear_faults()


def sdk(server: Sandbox) -> openai.OpenAI:
    return openai.OpenAI(api_key=KEY, base_url=server.groq_base_url, max_retries=0)


def pipeline(rows, llm, name="groq-answers"):
    with Pipeline(name=name) as p:
        load = LoadDataFromDicts(name="load", data=rows)
        gen = TextGeneration(name="gen", llm=llm)
        load >> gen
    return p


def test_groq_round_trip_with_only_its_key_set(groq_env):
    server = groq_env
    before = server.counters()
    rows = [{"instruction": f"groq question {i}"} for i in range(5)]
    model = MODEL + "-round-trip"  # a prefix of a real model name: its context window is checked
    with pytest.raises(PipelineNotFinished):
        pipeline(rows, LLM(f"groq/{model}")).run()
    after = server.counters()
    # The batch went to Groq's prefix, not OpenAI's.
    assert after["groq"]["jobs"] - before["groq"]["jobs"] == 1
    assert after["openai"]["jobs"] == before["openai"]["jobs"]
    (batch,) = [b for b in sdk(server).batches.list() if b.model == model]
    assert batch.completion_window == "24h" and batch.metadata["overnight_tag"]
    server.advance(DONE)
    out = pipeline(rows, LLM(f"groq/{model}")).run().to_list()
    assert [r["generation"] for r in out] == [expected_reply(r["instruction"]) for r in rows]


def test_a_missing_groq_key_names_groq_variable(registry):
    registry.register(overnight_openai, name="openai")
    with pytest.raises(MissingCredentials, match="GROQ_API_KEY"):
        pipeline([{"instruction": "x"}], LLM(f"groq/{MODEL}")).run()


def test_openai_settings_never_reach_groq(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-must-not-leak")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.openai.com/v1")
    with pytest.raises(MissingCredentials):
        overnight_openai.client.resolve({}, vendors.GROQ)
    monkeypatch.setenv("GROQ_API_KEY", KEY)
    settings = overnight_openai.client.resolve({}, vendors.GROQ)
    assert settings.base_url == "https://api.groq.com/openai/v1" and settings.api_key == KEY
    # GROQ_BASE_URL as the groq SDK takes it (without /openai/v1) works too.
    monkeypatch.setenv("GROQ_BASE_URL", "https://groq.example.com")
    assert overnight_openai.client.resolve({}, vendors.GROQ).base_url == "https://groq.example.com/openai/v1"


def test_openai_organization_and_project_never_reach_groq(monkeypatch):
    import httpx  # noqa: PLC0415

    monkeypatch.setenv("OPENAI_ORG_ID", "org-not-for-groq")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-not-for-groq")
    monkeypatch.setenv("GROQ_API_KEY", KEY)
    seen: dict[str, str] = {}

    def answer(request):
        seen.update(request.headers)
        return httpx.Response(200, json={"object": "list", "data": [], "has_more": False})

    http = httpx.Client(transport=httpx.MockTransport(answer))
    list(overnight_openai.client.client_for({"http_client": http}, vendors.GROQ).batches.list())
    assert seen["authorization"] == f"Bearer {KEY}"
    assert not any(name.startswith("openai-") for name in seen)


@pytest.mark.parametrize("option", ["logprobs", "top_logprobs", "logit_bias"])
def test_options_groq_refuses_are_refused_before_anything_is_spent(groq_env, option):
    server = groq_env
    before = server.counters()["groq"]
    llm = LLM(f"groq/{MODEL}", generation_kwargs={option: True if option == "logprobs" else 2})
    with pytest.raises((ValidationError, InvalidRequest), match=option):
        pipeline([{"instruction": "x"}], llm, name=f"refused-{option}").run()
    assert server.counters()["groq"]["files"] == before["files"]


def _upload(client: openai.OpenAI, bodies):
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
             for i, body in enumerate(bodies)]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    return client.files.create(file=("in.jsonl", io.BytesIO(data), "application/jsonl"), purpose="batch")


def test_the_sandbox_enforces_groq_differences(server):
    client = sdk(server)
    ok = {"model": MODEL + "-differences", "messages": [{"role": "user", "content": "hi"}]}
    uploaded = _upload(client, [ok, {**ok, "logprobs": True}, {**ok, "n": 2},
                                {**ok, "messages": [{"role": "user", "content": "hi", "name": "ann"}]}])
    for window in ("1h", "23h", "8d", "forever"):
        with pytest.raises(openai.BadRequestError, match="completion_window"):
            client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window=window)
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="7d")
    assert batch.completion_window == "7d" and batch.expires_at - batch.created_at == 7 * 24 * 3600
    server.advance(DONE)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed" and (batch.request_counts.completed, batch.request_counts.failed) == (1, 3)
    errors = [json.loads(x) for x in client.files.content(batch.error_file_id).text.splitlines()]
    assert {e["custom_id"]: e["response"]["status_code"] for e in errors} == {"r1": 400, "r2": 400, "r3": 400}
    # A 7-day window outlives the 24-hour one: a job still running at 24 h is not expired.
    slow = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                 completion_window="48h")
    assert slow.expires_at - slow.created_at == 48 * 3600


def test_groq_cancel_and_find_by_tag(groq_env):
    from overnight.models import Chunk  # noqa: PLC0415  (only this test builds chunks by hand)

    registry = PluginRegistry([overnight_openai], entrypoints=False)
    provider = registry.provider("groq")
    options = {}
    body = provider.build_request(_request("cancel me"))
    chunk = Chunk(tag="ovn-groq-cancel-0001", model=MODEL, count=1, bytes=len(json.dumps(body)),
                  lines=lambda: iter([body]))
    ref = provider.submit(chunk, options)
    assert provider.find_job("ovn-groq-cancel-0001", options).remote_id == ref.remote_id
    assert provider.find_job("ovn-groq-never-submitted", options) is None
    provider.cancel(ref, options)
    groq_env.advance(DONE)
    assert provider.check(ref, options).state.value == "cancelled"


def _request(text):
    from overnight import ChatRequest, Message  # noqa: PLC0415

    return ChatRequest("cid-" + text.replace(" ", "-"), MODEL, [Message("user", text)])


def test_overnight_plugins_json_lists_groq_with_limits_and_capabilities():
    out = subprocess.run([str(Path(sys.executable).parent / "overnight"), "plugins", "--json"], capture_output=True, text=True,
                         check=True).stdout
    providers = {p["name"]: p for plugin in json.loads(out)["plugins"] for p in plugin["providers"]}
    groq = providers["groq"]
    assert groq["limits"]["max_requests"] == 50_000 and groq["limits"]["max_bytes"] == 100_000_000
    assert groq["capabilities"] == {"cancel": True, "find_by_tag": True, "list_jobs": True, "online": True,
                                        "check_while_fetching": True}
    assert groq["batch_discount"] == 0.25
    assert "logprobs" not in groq["extra_params"] and "frequency_penalty" in groq["extra_params"]
