"""The kit's create_once, as each of the four plugins runs its create through it (SDK against
the sandbox): a certain refusal is SubmissionRejected with the uploaded input file deleted, a
5xx is left to the core with the file kept (the job may exist), a passing 429 is tried again
after its Retry-After and creates exactly one job."""

from __future__ import annotations

import hashlib

import pytest

import overnight_anthropic
import overnight_gemini
import overnight_mistral
import overnight_openai
from overnight import ChatRequest, Chunk, Message, SubmissionRejected
from overnight.plugins import PluginRegistry
from overnight.sandbox import Sandbox

PROVIDERS = ("openai", "anthropic", "mistral", "gemini")
MODULES = {"openai": overnight_openai, "anthropic": overnight_anthropic, "mistral": overnight_mistral,
           "gemini": overnight_gemini}
KEY = "sk-test-create-once-0123456789"
CREATE = {"openai": r"/batches$", "anthropic": r"/messages/batches$", "mistral": r"/batch/jobs$",
          "gemini": r":batchGenerateContent$"}
#: A status each provider answers a create it refuses for its content with.
REFUSAL = {"openai": 400, "anthropic": 400, "mistral": 422, "gemini": 400}
#: Providers whose create takes an uploaded input file (Anthropic's takes the requests inline).
UPLOADS = {"openai", "mistral", "gemini"}


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
    base = getattr(server, f"{name}_base_url")
    options = {"api_key": KEY, "base_url": base, "max_retries": 2}
    if name in ("mistral", "gemini"):
        options["inline_threshold"] = 0  # an uploaded file, as large jobs get
    provider = PluginRegistry([MODULES[name]], entrypoints=False).provider(name)
    server.reset_counters()
    yield name, provider, options
    server.clear_faults()


def chunk(provider, name: str, tag: str) -> Chunk:
    model = f"once-{name}"
    lines = [provider.build_request(ChatRequest(hashlib.sha256(f"{tag}{i}".encode()).hexdigest()[:40], model,
                                                [Message("user", f"question {i}")])) for i in range(2)]
    return Chunk(tag=tag, model=model, count=len(lines), bytes=1, lines=lambda: iter(lines))


def deletes(server, name: str) -> int:
    return sum(n for route, n in server.counters()[name]["http"].items() if route.startswith("DELETE"))


#: The sandbox's route name of each provider's create (Gemini's: POST /v1/models/{model}:batchGenerateContent).
CREATE_ROUTE = {"openai": "POST /batches", "anthropic": "POST /v1/messages/batches",
                "mistral": "POST /v1/batch/jobs", "gemini": "POST /v1/models/{model}"}


def creates(server, name: str) -> int:
    return server.counters()[name]["http"].get(CREATE_ROUTE[name], 0)


def test_a_refused_create_is_submission_rejected_and_its_input_file_deleted(server, world):
    name, provider, options = world
    server.set_faults(provider=name, http_status=REFUSAL[name], http_method="POST", http_path=CREATE[name], times=1)
    with pytest.raises(SubmissionRejected, match="refused to create the batch"):
        provider.submit(chunk(provider, name, "ovn-refused"), options)
    assert server.counters()[name]["jobs"] == 0
    assert creates(server, name) == 1  # never tried again: a refusal is final
    assert deletes(server, name) == (1 if name in UPLOADS else 0)


def test_a_5xx_create_is_left_to_the_core_and_keeps_its_file(server, world):
    name, provider, options = world
    server.set_faults(provider=name, http_status=500, http_method="POST", http_path=CREATE[name], times=1)
    with pytest.raises(Exception) as exc:
        provider.submit(chunk(provider, name, "ovn-five-hundred"), options)
    assert not isinstance(exc.value, SubmissionRejected)
    assert creates(server, name) == 1  # one attempt: the job may exist, the core looks it up by tag
    assert deletes(server, name) == 0  # that job would need its input


def test_a_passing_429_is_tried_again_and_creates_one_job(server, world):
    name, provider, options = world
    server.set_faults(provider=name, http_status=429, retry_after=0, http_method="POST", http_path=CREATE[name],
                      times=1)
    ref = provider.submit(chunk(provider, name, "ovn-rate-limited"), options)
    assert ref.remote_id and ref.tag == "ovn-rate-limited"
    assert server.counters()[name]["jobs"] == 1
    assert creates(server, name) == 2
