"""The pipeline the reliability suite runs with ``python -m overnight.cli run`` (a subprocess).

Everything comes from the environment, as an operator's cron job would set it:

* the provider's own variables for the key and the sandbox URL (``OPENAI_API_KEY`` /
  ``OPENAI_BASE_URL``, ``ANTHROPIC_API_KEY`` / ``ANTHROPIC_BASE_URL``,
  ``MISTRAL_API_KEY`` / ``MISTRAL_BASE_URL``) and ``OVERNIGHT_HOME`` for the store;
* ``REL_PROVIDER``, ``REL_MODEL``: which ``LLM("provider/model")``;
* ``REL_INPUT``: the JSONL rows to load; ``REL_OUTPUT``: where the finished dataset goes;
* optional ``REL_TASK`` (JSON: TextGeneration arguments), ``REL_GENERATION_KWARGS``
  (JSON), ``REL_CLIENT_OPTIONS`` (JSON: extra LLM client options), ``REL_BLOCK``
  (seconds to poll), ``REL_MAX_REQUESTS`` / ``REL_MAX_BYTES`` (lower per-job limits),
  ``REL_MAX_ATTEMPTS``, ``REL_NO_LOOKUP=1`` (the plugin declares it cannot find jobs
  by tag, like a provider whose API keeps no metadata), ``REL_RESUBMIT_UNCONFIRMED=1``
  (``run(resubmit_unconfirmed=True)``, the explicit way past an unconfirmed submission),
  ``REL_RESUBMIT_LOST=1`` (``run(resubmit_lost=True)``: pay again for lost results),
  ``REL_PIPELINE`` (the pipeline's name).

Only the plugin of the provider under test is registered (not every installed one), so
a run imports one SDK and stays short. An unknown provider name goes through the
ordinary entry-point registry, as a user's script would.
"""

from __future__ import annotations

import json
import os
from typing import Any

import attrs

from overnight import LLM, Limits, LoadDataFromJSONL, Pipeline, TextGeneration, hookimpl
from overnight.plugins import PluginRegistry, set_registry


def plugin(provider: str, limits: Limits | None, lookup: bool):
    """The plugin under test, alone; with other limits or without lookup when asked."""
    if provider == "openai":
        import overnight_openai
        from overnight_openai import OpenAIPlugin

        base: Any = OpenAIPlugin(limits=limits) if limits else overnight_openai
    elif provider == "anthropic":
        import overnight_anthropic
        from overnight_anthropic import AnthropicPlugin

        base = AnthropicPlugin(limits=limits) if limits else overnight_anthropic
    elif provider == "mistral":
        import overnight_mistral
        from overnight_mistral import MistralPlugin

        base = MistralPlugin(limits=limits) if limits else overnight_mistral
    elif provider == "gemini":
        import overnight_gemini
        from overnight_gemini import GeminiPlugin

        base = GeminiPlugin(limits=limits) if limits else overnight_gemini
    elif provider in ("groq", "together", "deepinfra", "nebius"):  # named providers of overnight-openai (its own limits)
        import overnight_openai

        base = overnight_openai
    else:
        return None
    if lookup:
        return base
    return WithoutLookup(base)


class WithoutLookup:
    """The same plugin, declaring ``find_by_tag=False`` and ``list_jobs=False`` (no ``find_job``,
    no ``list_jobs``): a provider that cannot find its jobs again."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @hookimpl
    def register_providers(self):
        return [attrs.evolve(info, capabilities=attrs.evolve(info.capabilities, find_by_tag=False, list_jobs=False))
                for info in self.inner.register_providers()]

    @hookimpl
    def connect(self, provider, options):
        return self.inner.connect(provider, options)

    @hookimpl
    def build_request(self, provider, request):
        return self.inner.build_request(provider, request)

    @hookimpl
    def submit(self, provider, chunk, client):
        return self.inner.submit(provider, chunk, client)

    @hookimpl
    def check(self, provider, job, client, timeout):
        return self.inner.check(provider, job, client, timeout)

    @hookimpl
    def fetch(self, provider, job, client, timeout):
        return self.inner.fetch(provider, job, client, timeout)


def env_json(name: str, default):
    raw = os.environ.get(name)
    return json.loads(raw) if raw else default


provider = os.environ["REL_PROVIDER"]
limits = None
if os.environ.get("REL_MAX_REQUESTS") or os.environ.get("REL_MAX_BYTES"):
    limits = Limits(
        max_requests=int(os.environ.get("REL_MAX_REQUESTS") or 100_000),
        max_bytes=int(os.environ.get("REL_MAX_BYTES") or 100_000_000),
    )
chosen = plugin(provider, limits, lookup=os.environ.get("REL_NO_LOOKUP") != "1")
if chosen is not None:
    set_registry(PluginRegistry([chosen], entrypoints=False))

block = os.environ.get("REL_BLOCK")
llm = LLM(
    f"{provider}/{os.environ['REL_MODEL']}",
    offline_batch_generation_block_until_done=float(block) if block else None,
    poll_interval=0.02,
    max_attempts=int(os.environ.get("REL_MAX_ATTEMPTS") or 3),
    generation_kwargs=env_json("REL_GENERATION_KWARGS", {}),
    **env_json("REL_CLIENT_OPTIONS", {}),
)

with Pipeline(name=os.environ.get("REL_PIPELINE", "reliability")) as pipeline:
    load = LoadDataFromJSONL(path=os.environ["REL_INPUT"])
    generate = TextGeneration(llm=llm, **env_json("REL_TASK", {}))
    load >> generate

dataset = pipeline.run(
    resubmit_unconfirmed=os.environ.get("REL_RESUBMIT_UNCONFIRMED") == "1",
    resubmit_lost=os.environ.get("REL_RESUBMIT_LOST") == "1",
)
dataset.to_jsonl(os.environ["REL_OUTPUT"])
print(f"rows: {len(dataset)}")
