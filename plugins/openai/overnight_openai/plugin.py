"""The hook implementations: what overnight calls to use OpenAI's Batch API.

:class:`OpenAIPlugin` holds the only setting that is not a per-LLM client option, the
per-job limits, so a script or a test can register one with lower limits::

    PluginRegistry([OpenAIPlugin(limits=Limits(max_requests=1_000, max_bytes=50_000_000))])

Installed through its entry point, the plugin reads lower limits from
``OVERNIGHT_OPENAI_MAX_REQUESTS`` / ``OVERNIGHT_OPENAI_MAX_BYTES`` (useful when a model's
enqueued-token limit is smaller than 50 000 requests).
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Mapping

from overnight import hookimpl
from overnight.connection import Connection
from overnight.deadlines import one_attempt_within
from overnight.errors import ConfigurationError
from overnight.models import (
    Capabilities, ChatRequest, Chunk, JobRef, JobStatus, Limits, ModelSpec, ProviderInfo, QueueLimits, RemoteJob,
    Result,
)

from overnight_openai import client as clients, online, together, translate
from overnight_openai.vendors import VENDORS

# ``jobs`` (and with it the openai SDK, ~0.4 s to import) is imported by the hooks that
# call the API, so a run whose batch step is already cached never loads the SDK.

NAME = "openai"
#: Served by its own SDK (overnight_openai.together); the other vendors share the openai path.
TOGETHER = "together"
MB = 1_000_000
#: OpenAI's published per-batch limits: 50 000 requests and a 200 MB input file.
DEFAULT_LIMITS = Limits(max_requests=50_000, max_bytes=200 * MB, completion_window=24 * 3600)
#: Context windows and output ceilings of OpenAI's chat models (model pages of the
#: platform docs; see docs/protocols/openai.md). The longest matching prefix wins; a model
#: matching none is not checked (its errors come back per request).
MODELS = (
    ModelSpec("gpt-3.5-turbo", 16_385, 4_096),
    ModelSpec("gpt-4", 8_192, 8_192),
    ModelSpec("gpt-4-turbo", 128_000, 4_096),
    ModelSpec("gpt-4o", 128_000, 16_384),
    ModelSpec("gpt-4o-mini", 128_000, 16_384),
    ModelSpec("gpt-4.1", 1_047_576, 32_768),
    ModelSpec("gpt-5", 400_000, 128_000),
    ModelSpec("o1", 200_000, 100_000),
    ModelSpec("o3", 200_000, 100_000),
    ModelSpec("o4-mini", 200_000, 100_000),
)
#: OpenAI's enqueued-token limit depends on the model and the organisation's usage tier
#: (e.g. 2,000,000 for gpt-4o-mini at tier 1), so none is assumed: set yours with
#: LLM(max_enqueued_tokens=...) or OVERNIGHT_OPENAI_MAX_ENQUEUED_TOKENS; overnight also
#: learns it from the batches OpenAI fails with ``token_limit_exceeded``.
QUEUE = QueueLimits()
MAX_REQUESTS_ENV = "OVERNIGHT_OPENAI_MAX_REQUESTS"
MAX_BYTES_ENV = "OVERNIGHT_OPENAI_MAX_BYTES"


def limits_from_env() -> Limits:
    """The default limits, lowered (never raised) by the environment."""
    values = {"max_requests": DEFAULT_LIMITS.max_requests, "max_bytes": DEFAULT_LIMITS.max_bytes}
    for field, env in (("max_requests", MAX_REQUESTS_ENV), ("max_bytes", MAX_BYTES_ENV)):
        raw = os.environ.get(env)
        if not raw:
            continue
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigurationError(f"{env} must be a positive integer, got {raw!r}")
        values[field] = min(value, values[field])
    return Limits(completion_window=DEFAULT_LIMITS.completion_window, **values)


class OpenAIPlugin:
    """The ``openai`` provider. ``limits=None`` means OpenAI's own (or the environment's)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits

    @hookimpl
    def register_providers(self) -> list[ProviderInfo]:
        return [
            ProviderInfo(
                name=NAME,
                limits=self.limits or limits_from_env(),
                capabilities=Capabilities(
                    cancel=True, find_by_tag=True, list_jobs=True, online=True, check_while_fetching=True,
                ),
                online_limits=online.OPENAI_LIMITS,
                extra_params=translate.EXTRA_PARAMS,
                unsupported_params=frozenset(),  # chat completions take every standard option
                secret_env=(clients.KEY_ENV,),
                description="OpenAI Batch API (/v1/chat/completions), 50% of the online price",
                models=MODELS,
                queue=QUEUE,
                batch_discount=0.5,
            ),
            # The OpenAI-compatible vendors (one profile each; see overnight_openai.vendors).
            *(vendor.provider_info() for vendor in VENDORS.values()),
        ]

    @hookimpl
    def connect(self, provider: str, options: Mapping[str, Any]) -> Connection[clients.Settings]:
        if provider == TOGETHER:
            return together.connect(options)  # also says when the together SDK is not installed
        return clients.connect(options, VENDORS.get(provider))

    @hookimpl
    def build_request(self, provider: str, request: ChatRequest) -> dict[str, Any]:
        vendor = VENDORS.get(provider)
        refusal = vendor.schema_refusal(request) if vendor is not None else None
        if refusal is not None:
            raise refusal
        if provider == TOGETHER:
            return together.build_line(request)
        return translate.build_line(request)

    @hookimpl
    def submit(self, provider: str, chunk: Chunk, client: Connection[clients.Settings]) -> JobRef:
        if provider == TOGETHER:
            return together.submit(client.sdk, provider, chunk)
        from overnight_openai import jobs

        return jobs.submit(client.sdk, provider, chunk, client.settings.metadata, client.settings.window)

    @hookimpl
    def check(self, provider: str, job: JobRef, client: Connection[clients.Settings], timeout: float | None) -> JobStatus:
        if provider == TOGETHER:
            return together.check(one_attempt_within(client.sdk, timeout), job)
        from overnight_openai import jobs

        return jobs.check(one_attempt_within(client.sdk, timeout), job)

    @hookimpl
    def fetch(self, provider: str, job: JobRef, client: Connection[clients.Settings],
              timeout: float | None) -> Iterator[Result]:
        if provider == TOGETHER:
            return together.fetch(one_attempt_within(client.sdk, timeout), job)
        from overnight_openai import jobs

        return jobs.fetch(one_attempt_within(client.sdk, timeout), job)

    @hookimpl
    def cancel(self, provider: str, job: JobRef, client: Connection[clients.Settings]) -> None:
        if provider == TOGETHER:
            return together.cancel(client.sdk, job)
        from overnight_openai import jobs

        jobs.cancel(client.sdk, job)

    @hookimpl
    def find_job(self, provider: str, tag: str, client: Connection[clients.Settings],
                 timeout: float | None) -> JobRef | None:
        sdk = one_attempt_within(client.sdk, timeout)
        if provider == TOGETHER:
            found = together.find(sdk, tag)
            if found is None:
                together.delete_orphan_input(sdk, tag)
                return None
            return together.job_ref(provider, found, tag, None)
        from overnight_openai import jobs

        batch = jobs.find(sdk, tag)
        if batch is None:
            jobs.delete_orphan_input(sdk, tag)  # the core now resubmits under a new tag
            return None
        return jobs.job_ref(provider, batch, tag)

    @hookimpl
    def generate(self, provider: str, request: dict[str, Any], client: Connection[clients.Settings],
                 timeout: float | None, model: str) -> Result:
        return online.generate(provider, request, client.sdk, timeout)

    @hookimpl
    def list_jobs(self, provider: str, client: Connection[clients.Settings], horizon: float, limit: int,
                  skip: frozenset[str], tags: frozenset[str]) -> list[RemoteJob]:
        if provider == TOGETHER:  # declared list_jobs=False: the core never asks
            raise ConfigurationError("the together provider cannot list its batches with their keys")
        from overnight_openai import jobs

        return jobs.list_overnight(client.sdk, provider, horizon=horizon, limit=limit, skip=skip, tags=tags)
