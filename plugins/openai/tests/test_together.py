"""Together as a named provider of overnight-openai, through Together's official SDK
(``together``) against the sandbox's ``/together`` prefix: the OpenAI dialect with
Together's profile (custom_id + body lines, custom ids of at most 64 characters, purpose
``batch-api``, the 24h window only, no metadata) and Together's HTTP shapes.

``LLM("together/<model>")`` is configured by ``TOGETHER_API_KEY`` alone; the tests only
point ``TOGETHER_BASE_URL`` at the sandbox.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import together

import overnight_openai
from overnight import (
    LLM,
    ChatRequest,
    ConfigurationError,
    LoadDataFromDicts,
    Message,
    MissingCredentials,
    Pipeline,
    PipelineNotFinished,
    TextGeneration,
)
from overnight.models import Chunk, JobState
from overnight.plugins import PluginRegistry
from overnight.sandbox import Sandbox, expected_reply

KEY = "tg-test-together-plugin-0123456789"
MODEL = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
DONE = 3600


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TOGETHER_API_KEY", "TOGETHER_BASE_URL",
                "OVERNIGHT_FAULT_POINT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp("sandbox")) as sandbox:
        yield sandbox


@pytest.fixture
def together_env(server, monkeypatch, registry):
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    monkeypatch.setenv("TOGETHER_BASE_URL", server.together_base_url)
    registry.register(overnight_openai, name="openai")
    yield server
    server.clear_faults()


def sdk(server: Sandbox) -> together.Together:
    return together.Together(api_key=KEY, base_url=server.together_base_url, max_retries=0)


def pipeline(rows, llm, name="together-answers"):
    with Pipeline(name=name) as p:
        load = LoadDataFromDicts(name="load", data=rows)
        gen = TextGeneration(name="gen", llm=llm)
        load >> gen
    return p


def test_together_round_trip_with_only_its_key_set(together_env):
    server = together_env
    before = server.counters()
    rows = [{"instruction": f"together question {i}"} for i in range(5)]
    model = MODEL + "-round-trip"
    llm = LLM(f"together/{model}", generation_kwargs={"max_tokens": 50})
    with pytest.raises(PipelineNotFinished):
        pipeline(rows, llm).run()
    after = server.counters()
    assert after["together"]["jobs"] - before["together"]["jobs"] == 1
    assert after["openai"]["jobs"] == before["openai"]["jobs"]
    client = sdk(server)
    (job,) = [j for j in client.batches.list() if j.model_id == model]
    # The tag is the input file's name; each line is custom_id + body, with max_tokens.
    (uploaded,) = [f for f in client.files.list().data if f.id == job.input_file_id]
    assert uploaded.purpose == "batch-api" and uploaded.filename.startswith("ovn")
    with client.files.with_streaming_response.content(job.input_file_id) as response:
        lines = [json.loads(x) for x in response.read().splitlines()]
    assert all(set(line) == {"custom_id", "body"} for line in lines)
    assert all(line["body"]["max_tokens"] == 50 and "max_completion_tokens" not in line["body"] for line in lines)
    server.advance(DONE)
    out = pipeline(rows, llm).run().to_list()
    assert [r["generation"] for r in out] == [expected_reply(r["instruction"]) for r in rows]


def test_a_missing_together_key_names_its_variable(registry):
    registry.register(overnight_openai, name="openai")
    with pytest.raises(MissingCredentials, match="TOGETHER_API_KEY"):
        pipeline([{"instruction": "x"}], LLM(f"together/{MODEL}")).run()


def test_metadata_is_refused_before_anything_is_spent(together_env):
    before = together_env.counters()["together"]
    with pytest.raises(ConfigurationError, match="metadata"):
        pipeline([{"instruction": "x"}], LLM(f"together/{MODEL}", metadata={"team": "a"})).run()
    assert together_env.counters()["together"]["files"] == before["files"]


def test_without_the_together_sdk_the_error_says_what_to_install(together_env, monkeypatch):
    monkeypatch.setitem(sys.modules, "together", None)  # import together -> ImportError
    with pytest.raises(ConfigurationError, match=r"overnight-openai\[together\]"):
        pipeline([{"instruction": "x"}], LLM(f"together/{MODEL}")).run()


def _upload(client: together.Together, tmp_path: Path, lines, purpose="batch-api"):
    path = tmp_path / "input.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return client.files.upload(file=path, purpose=purpose, check=False)


def test_the_sandbox_enforces_together_differences(server, tmp_path):
    client = sdk(server)
    body = {"model": MODEL + "-differences", "messages": [{"role": "user", "content": "hi"}]}
    good = _upload(client, tmp_path, [{"custom_id": "a", "body": body}, {"custom_id": "b", "body": body}])
    with pytest.raises(together.BadRequestError, match="completion_window"):
        client.batches.create(input_file_id=good.id, endpoint="/v1/chat/completions", completion_window="48h")
    with pytest.raises(together.BadRequestError, match="batch-api"):
        wrong = _upload(client, tmp_path, [{"custom_id": "a", "body": body}], purpose="fine-tune")
        client.batches.create(input_file_id=wrong.id, endpoint="/v1/chat/completions")
    # Metadata is not kept: a tag has to travel some other way (the file name).
    created = client.batches.create(input_file_id=good.id, endpoint="/v1/chat/completions",
                                    extra_body={"metadata": {"overnight_tag": "t"}})
    assert created.job.status == "VALIDATING" and "metadata" not in created.job.model_dump()
    # A custom id longer than 64 characters fails the whole batch at validation.
    long_id = _upload(client, tmp_path, [{"custom_id": "x" * 65, "body": body}])
    failed = client.batches.create(input_file_id=long_id.id, endpoint="/v1/chat/completions").job
    server.advance(DONE)
    assert client.batches.retrieve(failed.id).status == "FAILED"
    assert "64" in client.batches.retrieve(failed.id).error
    done = client.batches.retrieve(created.job.id)
    assert done.status == "COMPLETED" and done.progress == 100.0 and done.output_file_id
    with pytest.raises(together.BadRequestError):
        client.batches.cancel(done.id)


def _chunk(provider, tag, text):
    body = provider.build_request(ChatRequest("cid-" + tag[-8:], MODEL, [Message("user", text)]))
    return Chunk(tag=tag, model=MODEL, count=1, bytes=len(json.dumps(body)), lines=lambda: iter([body]))


def test_together_cancel_and_find_by_tag_through_the_file_name(together_env):
    provider = PluginRegistry([overnight_openai], entrypoints=False).provider("together")
    ref = provider.submit(_chunk(provider, "ovn-together-cancel-0001", "cancel me"), {})
    assert provider.find_job("ovn-together-cancel-0001", {}).remote_id == ref.remote_id
    assert provider.find_job("ovn-together-never-submitted", {}) is None
    provider.cancel(ref, {})
    together_env.advance(DONE)
    assert provider.check(ref, {}).state is JobState.CANCELLED
    provider.cancel(ref, {})  # already over: nothing left to cancel, no error


def test_custom_ids_longer_than_64_characters_are_refused_before_spend():
    provider = PluginRegistry([overnight_openai], entrypoints=False).provider("together")
    from overnight import InvalidRequest  # noqa: PLC0415

    with pytest.raises(InvalidRequest, match="64"):
        provider.build_request(ChatRequest("c" * 65, MODEL, [Message("user", "x")]))


def test_overnight_plugins_json_lists_together_with_limits_and_capabilities():
    out = subprocess.run([str(Path(sys.executable).parent / "overnight"), "plugins", "--json"],
                         capture_output=True, text=True, check=True).stdout
    providers = {p["name"]: p for plugin in json.loads(out)["plugins"] for p in plugin["providers"]}
    info = providers["together"]
    assert info["limits"]["max_requests"] == 50_000 and info["limits"]["max_bytes"] == 100_000_000
    assert info["capabilities"] == {"cancel": True, "find_by_tag": True, "list_jobs": False, "online": True,
                                    "check_while_fetching": True}
    assert info["batch_discount"] == 0.5 and "top_k" in info["extra_params"]
