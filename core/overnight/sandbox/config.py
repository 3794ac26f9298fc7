"""Static configuration of a sandbox: lifecycle durations and per-provider limits.

Both are frozen values. A job copies the durations it was created with into its own
record, so restarting a sandbox with other durations never rewrites a running job's past.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

import attrs

PROVIDERS: tuple[str, ...] = ("openai", "anthropic", "mistral", "gemini", "groq", "together", "deepinfra",
                             "nebius")

ResultsUrlStyle = Literal["absolute", "relative"]


@attrs.frozen
class Durations:
    """How long (in sandbox seconds) each phase of a job lasts.

    validating:   created -> in_progress (Mistral QUEUED -> RUNNING).
    processing:   fixed part of in_progress; requests complete one by one, in input order,
                  evenly spread over this span.
    per_request:  extra processing seconds per request, so big jobs take longer.
    finalizing:   in_progress -> completed (Anthropic and Mistral keep reporting
                  in_progress / RUNNING meanwhile).
    cancelling:   cancel requested -> cancelled.
    window:       completion window (OpenAI "24h", Anthropic 24 h; Gemini uses 48 h); a job still running
                  then expires. Mistral uses the job's own ``timeout_hours`` instead.
    """

    validating: float = 5.0
    processing: float = 30.0
    per_request: float = 0.0
    finalizing: float = 5.0
    cancelling: float = 5.0
    window: float = 24 * 3600.0

    def processing_for(self, total: int) -> float:
        return self.processing + self.per_request * total


@attrs.frozen
class JobLimits:
    """Per-job limits of one provider (requests per job, bytes per input file / body)."""

    max_requests: int
    max_bytes: int


MB = 1024 * 1024

# The real APIs' published limits (Mistral: the conservative "known limitations" figures).
DEFAULT_LIMITS: Mapping[str, JobLimits] = {
    "openai": JobLimits(max_requests=50_000, max_bytes=200 * MB),
    "anthropic": JobLimits(max_requests=100_000, max_bytes=256 * MB),
    "mistral": JobLimits(max_requests=100_000, max_bytes=512 * MB),
    # Gemini publishes no request count per batch (our cap); input files are at most 2 GB.
    "gemini": JobLimits(max_requests=100_000, max_bytes=2048 * MB),
    # Groq: 50,000 lines per batch; its docs give 200 MB per file in one place and 100 MB in
    # another: the lower figure (docs/protocols/groq.md).
    "groq": JobLimits(max_requests=50_000, max_bytes=100 * MB),
    # Together: 50,000 requests and 100 MB per input file.
    "together": JobLimits(max_requests=50_000, max_bytes=100 * MB),
    # DeepInfra publishes no per-batch figures in the pages found: OpenAI's request count and
    # the lower file size, as the plugin assumes (docs/protocols/deepinfra.md).
    "deepinfra": JobLimits(max_requests=50_000, max_bytes=100 * MB),
    # Nebius: up to 5,000,000 requests and 10 GB per file.
    "nebius": JobLimits(max_requests=5_000_000, max_bytes=10 * 1024 * MB),
}


def resolve_limits(overrides: Mapping[str, JobLimits | Mapping[str, Any]] | None) -> dict[str, JobLimits]:
    """Default limits with ``overrides`` applied; an override may give only some fields."""
    merged = dict(DEFAULT_LIMITS)
    for provider, value in (overrides or {}).items():
        if provider not in merged:
            raise ValueError(f"unknown provider {provider!r}; expected one of {PROVIDERS}")
        if isinstance(value, JobLimits):
            merged[provider] = value
        else:
            merged[provider] = attrs.evolve(merged[provider], **dict(value))
    return merged


@attrs.frozen
class SandboxConfig:
    """Everything about a sandbox that is not persisted state."""

    durations: Durations = Durations()
    limits: Mapping[str, JobLimits] = attrs.field(factory=lambda: dict(DEFAULT_LIMITS))
    results_url: ResultsUrlStyle = "absolute"
    forward_url: str | None = None
    forward_model: str | None = None
    forward_timeout: float = 120.0
    #: Account queue limits (see .quota); None: no limit.
    max_enqueued_tokens: int | None = None
    max_queued_requests: int | None = None
