"""DeepInfra and Nebius: vendors whose Batch API is OpenAI's as it is, served by
overnight-openai under their own names, through the ``openai`` SDK against their sandbox
prefixes (the OpenAI dialect with each vendor's profile: its endpoints, "24h" only)."""

from __future__ import annotations

import io
import json

import openai
import pytest

import overnight_openai
from overnight import LLM, ChatRequest, LoadDataFromDicts, Message, MissingCredentials, Pipeline, PipelineNotFinished
from overnight import TextGeneration
from overnight.models import Chunk, JobState
from overnight.plugins import PluginRegistry
from overnight.sandbox import Sandbox, expected_reply

VENDORS = {"deepinfra": ("DEEPINFRA_TOKEN", "DEEPINFRA_BASE_URL"), "nebius": ("NEBIUS_API_KEY", "NEBIUS_BASE_URL")}
KEY = "vendor-test-key-0123456789"
DONE = 3600

pytestmark = pytest.mark.parametrize("vendor", sorted(VENDORS))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", *(v for pair in VENDORS.values() for v in pair)):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp("sandbox")) as sandbox:
        yield sandbox


@pytest.fixture
def vendor_env(server, monkeypatch, registry, vendor):
    key_env, url_env = VENDORS[vendor]
    monkeypatch.setenv(key_env, KEY)
    monkeypatch.setenv(url_env, getattr(server, f"{vendor}_base_url"))
    registry.register(overnight_openai, name="openai")
    yield server
    server.clear_faults()


def test_round_trip_with_only_the_vendor_key_set(vendor_env, vendor):
    server = vendor_env
    rows = [{"instruction": f"{vendor} question {i}"} for i in range(4)]
    model = f"{vendor}-model-round-trip"

    def build():
        with Pipeline(name=f"{vendor}-answers") as p:
            LoadDataFromDicts(name="load", data=rows) >> TextGeneration(name="gen", llm=LLM(f"{vendor}/{model}"))
        return p

    before = server.counters()
    with pytest.raises(PipelineNotFinished):
        build().run()
    assert server.counters()[vendor]["jobs"] - before[vendor]["jobs"] == 1
    assert server.counters()["openai"]["jobs"] == before["openai"]["jobs"]
    server.advance(DONE)
    assert [r["generation"] for r in build().run().to_list()] == [expected_reply(r["instruction"]) for r in rows]


def test_a_missing_key_names_the_vendor_variable(registry, vendor):
    registry.register(overnight_openai, name="openai")
    with Pipeline(name="no-key") as p:
        LoadDataFromDicts(name="load", data=[{"instruction": "x"}]) >> TextGeneration(
            name="gen", llm=LLM(f"{vendor}/m"))
    with pytest.raises(MissingCredentials, match=VENDORS[vendor][0]):
        p.run()


def test_only_the_24h_window_and_the_vendor_endpoints(server, vendor):
    client = openai.OpenAI(api_key=KEY, base_url=getattr(server, f"{vendor}_base_url"), max_retries=0)
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": f"{vendor}-window", "messages": [{"role": "user", "content": "hi"}]}}
    uploaded = client.files.create(file=("in.jsonl", io.BytesIO(json.dumps(line).encode()), "application/jsonl"),
                                   purpose="batch")
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="48h")
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/responses", completion_window="24h")


def test_cancel_and_find_by_tag(vendor_env, vendor):
    provider = PluginRegistry([overnight_openai], entrypoints=False).provider(vendor)
    body = provider.build_request(ChatRequest("cid-1", "m", [Message("user", "cancel me")]))
    tag = f"ovn-{vendor}-cancel-0001"
    ref = provider.submit(Chunk(tag=tag, model="m", count=1, bytes=100, lines=lambda: iter([body])), {})
    assert provider.find_job(tag, {}).remote_id == ref.remote_id
    assert provider.find_job(f"ovn-{vendor}-never", {}) is None
    provider.cancel(ref, {})
    vendor_env.advance(DONE)
    assert provider.check(ref, {}).state is JobState.CANCELLED
