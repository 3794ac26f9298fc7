"""One sandbox, one provider: pipelines of a TextGeneration step run through the real
plugins and their official SDKs against the sandbox on 127.0.0.1 (shared by the tests of
structured output and of distinct samples)."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from overnight import LLM, LoadDataFromDicts, Pipeline, TextGeneration
from overnight.errors import PipelineNotFinished
from overnight.sandbox import Sandbox

KEY = "sk-sandbox-structured-0000"
#: Sandbox seconds after which every job of a few rows has ended.
DONE = 3600.0

#: provider -> (key variable, base URL variable, the sandbox's URL attribute, a model).
PROVIDERS: dict[str, tuple[str, str, str, str]] = {
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "openai_base_url", "gpt-4o-mini"),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "anthropic_base_url", "claude-sonnet-4-5"),
    "mistral": ("MISTRAL_API_KEY", "MISTRAL_BASE_URL", "mistral_base_url", "mistral-small-latest"),
    "gemini": ("GEMINI_API_KEY", "GEMINI_BASE_URL", "gemini_base_url", "gemini-2.5-flash"),
    "groq": ("GROQ_API_KEY", "GROQ_BASE_URL", "groq_base_url", "openai/gpt-oss-20b"),
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Iterator[Sandbox]:
    with Sandbox(state_dir=tmp_path_factory.mktemp("sandbox")) as sb:
        yield sb


@pytest.fixture
def lane(sandbox, monkeypatch):
    """``lane(provider)`` sets that provider's key and sandbox URL; faults are cleared after."""

    def use(provider: str) -> Sandbox:
        key_env, url_env, attribute, _ = PROVIDERS[provider]
        monkeypatch.setenv(key_env, KEY)
        monkeypatch.setenv(url_env, getattr(sandbox, attribute))
        return sandbox

    yield use
    sandbox.clear_faults()


def pipeline(provider: str, name: str, rows: list[dict[str, Any]], *, model: str | None = None,
             llm: dict[str, Any] | None = None, **task: Any) -> Pipeline:
    model = model or PROVIDERS[provider][3]
    with Pipeline(name=name) as p:
        LoadDataFromDicts(name="load", data=rows) >> TextGeneration(
            name="gen", llm=LLM(f"{provider}/{model}", **(llm or {})), **task)
    return p


def run_to_end(sandbox: Sandbox, build: Any) -> Any:
    """Submit (the first run stops), let the sandbox finish, collect: the dataset."""
    with pytest.raises(PipelineNotFinished):
        build().run()
    sandbox.advance(DONE)
    return build().run()


def sent_requests(sandbox: Sandbox, provider: str) -> list[dict[str, Any]]:
    """The request lines of the provider's newest job, as the sandbox received them."""
    import json

    jobs = [j for j in sandbox.jobs() if j["provider"] == provider]
    path = sandbox.engine.job_input_path(jobs[0]["id"])
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def find_key(value: Any, key: str) -> Any:
    """The first value under ``key`` anywhere in a nested JSON value (None if absent)."""
    if isinstance(value, dict):
        if key in value:
            return value[key]
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = find_key(item, key)
            if found is not None:
                return found
    return None
