"""overnight-gemini: the Gemini Developer API's batch mode as an overnight provider.

Installed, it registers the provider ``gemini`` through the ``overnight`` entry-point
group, so ``LLM("gemini/gemini-2.5-flash")`` works. The hooks below delegate to one
:class:`GeminiPlugin` with Gemini's real limits; register your own instance (e.g.
``GeminiPlugin(limits=Limits(...))``) in a :class:`overnight.plugins.PluginRegistry`
to serve the provider with other limits.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from overnight.hookspecs import hookimpl
from overnight.models import ChatRequest, Chunk, JobRef, JobStatus, ProviderInfo, RemoteJob, Result

from overnight_gemini.options import clear_clients
from overnight_gemini.plugin import LIMITS, GeminiPlugin

from overnight_gemini.llm import GeminiLLM

__all__ = ["LIMITS", "GeminiPlugin", "clear_clients", "GeminiLLM"]
__version__ = "0.1.0"

_plugin = GeminiPlugin()


@hookimpl
def register_providers() -> list[ProviderInfo]:
    return _plugin.register_providers()


@hookimpl
def validate_options(provider: str, options: Mapping[str, Any]) -> None:
    _plugin.validate_options(provider, options)


@hookimpl
def build_request(provider: str, request: ChatRequest) -> dict[str, Any]:
    return _plugin.build_request(provider, request)


@hookimpl
def submit(provider: str, chunk: Chunk, options: Mapping[str, Any]) -> JobRef:
    return _plugin.submit(provider, chunk, options)


@hookimpl
def check(provider: str, job: JobRef, options: Mapping[str, Any], timeout: float | None) -> JobStatus:
    return _plugin.check(provider, job, options, timeout)


@hookimpl
def fetch(provider: str, job: JobRef, options: Mapping[str, Any], timeout: float | None) -> Iterator[Result]:
    return _plugin.fetch(provider, job, options, timeout)


@hookimpl
def cancel(provider: str, job: JobRef, options: Mapping[str, Any]) -> None:
    _plugin.cancel(provider, job, options)


@hookimpl
def find_job(provider: str, tag: str, options: Mapping[str, Any], timeout: float | None) -> JobRef | None:
    return _plugin.find_job(provider, tag, options, timeout)


@hookimpl
def list_jobs(provider: str, options: Mapping[str, Any], horizon: float, limit: int,
              skip: frozenset[str], tags: frozenset[str]) -> list[RemoteJob]:
    return _plugin.list_jobs(provider, options, horizon, limit, skip, tags)
