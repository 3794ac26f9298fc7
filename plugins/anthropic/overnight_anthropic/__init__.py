"""overnight-anthropic: the Anthropic Message Batches provider for overnight.

Installed, it serves ``LLM("anthropic/<model>")`` through the entry point
``[project.entry-points.overnight] anthropic = "overnight_anthropic"``. All calls go
through the official ``anthropic`` SDK. The module itself is the plugin; for other
limits (e.g. smaller jobs), register ``AnthropicPlugin(limits=...)`` instead.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from overnight import (
    Capabilities,
    ChatRequest,
    Chunk,
    JobRef,
    JobStatus,
    Limits,
    ModelSpec,
    ProviderInfo,
    RemoteJob,
    QueueLimits,
    Result,
    hookimpl,
)

from overnight.connection import Connection

from overnight_anthropic import client, jobs, online, translate
from overnight_anthropic.client import Settings
from overnight_anthropic.translate import DEFAULT_MAX_TOKENS, EXTRA_PARAMS, UNSUPPORTED_PARAMS

__version__ = "0.1.0"

PROVIDER = "anthropic"

#: Anthropic's per-batch limits: 100,000 requests and 256 MB. The byte bound keeps 1 MB
#: of headroom because the body sent is a JSON array (not JSONL) and each custom id
#: grows by 3 bytes on the wire (it carries the job's tag).
LIMITS = Limits(max_requests=100_000, max_bytes=255_000_000, completion_window=24 * 3600)

#: Context windows and output ceilings (Anthropic's models overview; docs/protocols/anthropic.md).
#: The longest matching prefix wins; "claude-" covers models newer than this table.
MODELS = (
    ModelSpec("claude-", 200_000, 64_000),
    ModelSpec("claude-3-haiku", 200_000, 4_096),
    ModelSpec("claude-3-opus", 200_000, 4_096),
    ModelSpec("claude-3-5-haiku", 200_000, 8_192),
    ModelSpec("claude-3-5-sonnet", 200_000, 8_192),
    ModelSpec("claude-3-7-sonnet", 200_000, 64_000),
    ModelSpec("claude-opus-4", 200_000, 32_000),
    ModelSpec("claude-opus-4-5", 200_000, 64_000),
    ModelSpec("claude-sonnet-4", 200_000, 64_000),
    ModelSpec("claude-haiku-4", 200_000, 64_000),
)

#: Requests an organisation may have waiting in the Message Batches processing queue:
#: 100,000 at usage tier 1 (more at higher tiers). A create past it is refused with 429.
#: Raise it to your tier's figure with LLM(max_queued_requests=...) or
#: OVERNIGHT_ANTHROPIC_MAX_QUEUED_REQUESTS.
QUEUE = QueueLimits(max_queued_requests=100_000)


def provider_info(limits: Limits = LIMITS) -> ProviderInfo:
    return ProviderInfo(
        name=PROVIDER,
        limits=limits,
        capabilities=Capabilities(
            cancel=True, find_by_tag=True, list_jobs=True, online=True, check_while_fetching=True,
        ),
        online_limits=online.LIMITS,
        extra_params=EXTRA_PARAMS,
        unsupported_params=UNSUPPORTED_PARAMS,
        secret_env=client.SECRET_ENV,
        description="Anthropic Message Batches (50% of the Messages API price, results within 24 h)",
        models=MODELS,
        default_max_tokens=DEFAULT_MAX_TOKENS,
        queue=QUEUE,
        batch_discount=0.5,
    )


class AnthropicPlugin:
    """The plugin as an object, for custom :class:`~overnight.Limits`.

    ``PluginRegistry([AnthropicPlugin(limits=Limits(max_requests=1000, max_bytes=10_000_000))])``
    makes the core cut smaller batches. Register it *instead of* the module.
    """

    def __init__(self, limits: Limits = LIMITS) -> None:
        self.info = provider_info(limits)

    @hookimpl
    def register_providers(self) -> list[ProviderInfo]:
        return [self.info]

    @hookimpl
    def connect(self, provider: str, options: Mapping[str, Any]) -> Connection[Settings]:
        return client.connect(options)

    @hookimpl
    def build_request(self, provider: str, request: ChatRequest) -> dict[str, Any]:
        return translate.build_line(request)

    @hookimpl
    def submit(self, provider: str, chunk: Chunk, client: Connection[Settings]) -> JobRef:
        return jobs.submit(provider, chunk, client.sdk)

    @hookimpl
    def check(self, provider: str, job: JobRef, client: Connection[Settings], timeout: float | None) -> JobStatus:
        return jobs.check(job, client.sdk, timeout)

    @hookimpl
    def fetch(self, provider: str, job: JobRef, client: Connection[Settings],
              timeout: float | None) -> Iterable[Result]:
        return jobs.fetch(job, client.sdk, timeout)

    @hookimpl
    def cancel(self, provider: str, job: JobRef, client: Connection[Settings]) -> None:
        jobs.cancel(job, client.sdk)

    @hookimpl
    def find_job(self, provider: str, tag: str, client: Connection[Settings],
                 timeout: float | None) -> JobRef | None:
        return jobs.find_job(provider, tag, client.sdk, timeout)

    @hookimpl
    def generate(self, provider: str, request: dict[str, Any], client: Connection[Settings],
                 timeout: float | None, model: str) -> Result:
        return online.generate(provider, request, client.sdk, timeout)

    @hookimpl
    def list_jobs(self, provider: str, client: Connection[Settings], horizon: float, limit: int,
                  skip: frozenset[str], tags: frozenset[str]) -> list[RemoteJob]:
        return jobs.list_overnight(provider, client.sdk, horizon=horizon, limit=limit, skip=skip, tags=tags)


# The module is the entry point: its hooks are those of a default-limits plugin object.
_default = AnthropicPlugin()
register_providers = _default.register_providers
connect = _default.connect
build_request = _default.build_request
submit = _default.submit
check = _default.check
fetch = _default.fetch
cancel = _default.cancel
find_job = _default.find_job
list_jobs = _default.list_jobs
generate = _default.generate

from overnight_anthropic.llm import AnthropicLLM  # noqa: E402  (distilabel's name for LLM("anthropic/..."))

__all__ = [
    "AnthropicLLM",
    "AnthropicPlugin",
    "DEFAULT_MAX_TOKENS",
    "EXTRA_PARAMS",
    "LIMITS",
    "PROVIDER",
    "UNSUPPORTED_PARAMS",
    "provider_info",
]
