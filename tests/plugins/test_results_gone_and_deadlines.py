"""The four plugins, through their SDKs against the sandbox: a definitive "gone" is
ResultsGone (and only then), and the core's polling timeout bounds a call to a hung API."""

from __future__ import annotations

import hashlib
import time

import pytest

import overnight_anthropic
import overnight_gemini
import overnight_mistral
import overnight_openai
from overnight import ChatRequest, Chunk, Message, ResultsGone, ResultStatus
from overnight.plugins import PluginRegistry
from overnight.sandbox import Sandbox

PROVIDERS = ("openai", "anthropic", "mistral", "gemini")
MODULES = {"openai": overnight_openai, "anthropic": overnight_anthropic, "mistral": overnight_mistral,
           "gemini": overnight_gemini}
KEY = "sk-test-results-gone-0123456789"
DONE = 3600
STATUS = {"openai": r"/batches/[^/]+$", "anthropic": r"/messages/batches/[^/]+$", "mistral": r"/batch/jobs/[^/]+$",
          "gemini": r"/batches/[^/:]+$"}
CANCEL = {"gemini": r":cancel$"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Sandbox(state_dir=tmp_path_factory.mktemp("sandbox")) as sandbox:
        yield sandbox


@pytest.fixture(params=PROVIDERS)
def world(request, server, monkeypatch):
    name = request.param
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
                "MISTRAL_API_KEY", "MISTRAL_BASE_URL", "GOOGLE_API_KEY", "GEMINI_API_KEY", "GEMINI_BASE_URL",
                "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    base = {"openai": server.openai_base_url, "anthropic": server.anthropic_base_url,
            "mistral": server.mistral_base_url, "gemini": server.gemini_base_url}[name]
    options = {"api_key": KEY, "base_url": base}
    if name in ("mistral", "gemini"):
        options["inline_threshold"] = 0  # result files, as large jobs get
    provider = PluginRegistry([MODULES[name]], entrypoints=False).provider(name)
    yield name, provider, options
    server.clear_faults()


def submit(server, world, prompts: list[str], tag: str):
    name, provider, options = world
    model = f"gone-{name}-{tag}"
    lines = []
    for prompt in prompts:
        key = hashlib.sha256(f"{tag}{prompt}".encode()).hexdigest()[:40]
        lines.append(provider.build_request(ChatRequest(key, model, [Message("user", prompt)])))
    chunk = Chunk(tag=tag, model=model, count=len(lines), bytes=1, lines=lambda: iter(lines))
    return provider.submit(chunk, options), lines


def test_results_lost_to_retention_are_results_gone(server, world):
    name, provider, options = world
    ref, _ = submit(server, world, ["one", "two"], "ovn-retention")
    server.advance(DONE)
    assert provider.check(ref, options).state.terminal
    server.lose_results(name, ref.remote_id)
    with pytest.raises(ResultsGone, match=ref.remote_id):
        list(provider.fetch(ref, options))


def test_a_gemini_results_file_past_its_48_hours_is_results_gone(server, world):
    """The Files API deletes every file 48 hours after its creation, generated results too."""
    name, provider, options = world
    if name != "gemini":
        pytest.skip("only Gemini's results expire with its files (the others: lose-results above)")
    ref, _ = submit(server, world, ["one", "two"], "ovn-file-ttl")
    server.advance(DONE)
    assert len(list(provider.fetch(ref, options))) == 2
    server.advance(48 * 3600)
    assert provider.check(ref, options).state.terminal  # the batch is still there
    with pytest.raises(ResultsGone, match="48 hours"):
        list(provider.fetch(ref, options))


def test_a_deleted_job_is_results_gone_from_check_fetch_and_cancel(server, world):
    name, provider, options = world
    ref, _ = submit(server, world, ["one"], "ovn-deleted")
    server.advance(DONE)
    if name == "openai":  # batches cannot be deleted; a 404 on the batch is what a deletion would answer
        server.set_faults(provider=name, http_status=404, http_method="GET", http_path=STATUS[name])
        server.set_faults(provider=name, http_status=404, http_method="POST", http_path=CANCEL.get(name, r"/cancel$"))
    else:
        server.delete_job(name, ref.remote_id)
    with pytest.raises(ResultsGone, match="no longer exists"):
        provider.check(ref, options)
    with pytest.raises(ResultsGone):
        list(provider.fetch(ref, options))
    with pytest.raises(ResultsGone):
        provider.cancel(ref, options)


def test_a_404_from_every_endpoint_is_not_taken_for_gone(server, world):
    """A wrong base URL or a proxy answers 404 everywhere: that is no proof the job is gone."""
    name, provider, options = world
    ref, _ = submit(server, world, ["one"], "ovn-everywhere")
    server.advance(DONE)
    server.set_faults(provider=name, http_status=404)
    with pytest.raises(Exception) as exc:
        provider.check(ref, options)
    assert not isinstance(exc.value, ResultsGone)
    server.clear_faults()
    assert provider.check(ref, options).state.terminal


def test_successes_are_yielded_before_a_lost_error_file_is_reported(server, world):
    """OpenAI and Mistral keep successes and failures in two files; one can go alone."""
    name, provider, options = world
    if name in ("anthropic", "gemini"):
        pytest.skip(f"{name} serves every result in one stream or file: there is no second file to lose")
    tag = "ovn-error-file"
    bad = hashlib.sha256(f"{tag}bad".encode()).hexdigest()[:40]
    server.set_faults(provider=name, model=f"gone-{name}-{tag}", error_ids=[bad])  # fixed at create
    ref, _ = submit(server, world, ["ok one", "ok two", "bad"], tag)
    server.advance(DONE)
    result = server.engine.get_job(name, ref.remote_id).result
    error_file = result.get("error_file_id") or result.get("error_file")
    assert error_file and server.engine.delete_file(name, error_file)  # as DELETE /files/{id} does
    got = []
    with pytest.raises(ResultsGone, match=f"error file {error_file}"):
        for item in provider.fetch(ref, options):
            got.append(item)
    assert [r.status for r in got] == [ResultStatus.SUCCEEDED] * 2


def test_the_polling_timeout_bounds_a_call_to_a_hung_api(server, world):
    name, provider, options = world
    ref, _ = submit(server, world, ["one"], "ovn-hung")
    server.set_faults(provider=name, http_method="GET", http_path=STATUS[name], http_delay=5.0, times=1)
    started = time.monotonic()
    with pytest.raises(Exception) as exc:
        provider.check(ref, options, timeout=0.2)
    assert time.monotonic() - started < 1.5  # one attempt, cut at the time left (not 600 s, not 3 tries)
    assert not isinstance(exc.value, ResultsGone)
    assert not provider.check(ref, options, timeout=30.0).state.terminal  # a far deadline changes nothing
