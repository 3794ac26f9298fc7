"""Contract checks for plugin authors: ``check_plugin(plugin)`` in your own tests.

::

    from overnight.plugin_testing import check_plugin
    import overnight_acme

    def test_contract():
        check_plugin(overnight_acme)

It registers the plugin in an isolated registry and checks what can be checked without
a network: hook names and arguments match the hookspecs, the declared providers are
sane, the hooks each capability promises are implemented, and ``build_request`` gives a
deterministic JSON object carrying the request's custom id for a range of requests (or
refuses one with :class:`~overnight.InvalidRequest` naming the field). Behaviour against
the provider (submit, check, fetch) belongs in tests against a server: the sandbox, if
your provider speaks one of the APIs it emulates.
"""

from __future__ import annotations

import json
from typing import Any

from overnight.errors import InvalidRequest
from overnight.models import ChatRequest, GenerationParams, Message, ProviderInfo
from overnight.plugins import PluginRegistry

#: Requests every provider should either express or refuse with a named field.
SAMPLE_REQUESTS = (
    ChatRequest("0123456789abcdef0123456789abcdef01234567", "model-x", [Message("user", "Hello?")]),
    ChatRequest(
        "89abcdef0123456789abcdef0123456789abcdef",
        "model-x",
        [
            Message("system", "Answer in French."),
            Message("user", "What is 2 + 2?"),
            Message("assistant", "Quatre."),
            Message("user", "And 3 + 3? Reply in JSON."),
        ],
        GenerationParams(max_tokens=64, stop=["\n\n"], response_format={"type": "json_object"}),
    ),
)

_REQUIRED = ("build_request", "submit", "check", "fetch")


def check_plugin(plugin: Any) -> list[ProviderInfo]:
    """Check ``plugin`` against the contract; raise AssertionError listing every problem."""
    registry = PluginRegistry([plugin], entrypoints=False)
    problems = [f"the plugin does not load: {f.error}" for f in registry.failures]
    if problems:
        raise AssertionError("\n".join(problems))
    infos = [registry.info(name) for name in registry.provider_names]
    if not infos:
        raise AssertionError("register_providers declares no provider")
    implemented = {
        name for name in dir(plugin)
        if getattr(getattr(plugin, name, None), "overnight_impl", None) is not None
    }
    for info in infos:
        problems += _check_info(info, implemented)
        provider = registry.provider(info.name)
        for request in SAMPLE_REQUESTS:
            try:
                line = provider.build_request(request)
            except InvalidRequest as exc:
                if not exc.field:
                    problems.append(f"{info.name}: InvalidRequest without field= for {request!r}")
                continue
            text = json.dumps(line, sort_keys=True)  # raises on objects JSON cannot hold
            if request.custom_id not in text:
                problems.append(f"{info.name}: build_request dropped the custom id: {text[:200]}")
            if json.dumps(provider.build_request(request), sort_keys=True) != text:
                problems.append(f"{info.name}: build_request is not deterministic")
    if problems:
        raise AssertionError("plugin contract problems:\n  - " + "\n  - ".join(problems))
    return infos


def _check_info(info: ProviderInfo, implemented: set[str]) -> list[str]:
    problems = []
    if not info.name or "/" in info.name or info.name != info.name.lower():
        problems.append(f"provider name {info.name!r} must be lower case, without '/'")
    limits = info.limits
    if limits.max_requests < 1 or limits.max_bytes < 1 or limits.completion_window < 1:
        problems.append(f"{info.name}: limits must be positive: {limits!r}")
    if limits.max_line_bytes is not None and limits.max_line_bytes > limits.max_bytes:
        problems.append(f"{info.name}: max_line_bytes is larger than max_bytes")
    if implemented:  # objects and modules whose hooks can be listed
        for hook in _REQUIRED:
            if hook not in implemented:
                problems.append(f"{info.name}: the {hook} hook is not implemented")
        if info.capabilities.cancel and "cancel" not in implemented:
            problems.append(f"{info.name}: declares cancel but implements no cancel hook")
        if info.capabilities.find_by_tag and "find_job" not in implemented:
            problems.append(f"{info.name}: declares find_by_tag but implements no find_job hook")
        if info.capabilities.list_jobs and "list_jobs" not in implemented:
            problems.append(f"{info.name}: declares list_jobs but implements no list_jobs hook")
    return problems
