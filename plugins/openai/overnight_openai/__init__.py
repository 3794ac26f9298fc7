"""overnight-openai: the ``openai`` provider of overnight, on OpenAI's Batch API.

Installed, it is found through the ``overnight`` entry-point group, and
``LLM("openai/gpt-4o-mini")`` just works with ``OPENAI_API_KEY`` set. This module is
the registered plugin: its hooks are those of a default :class:`OpenAIPlugin`.
Register an ``OpenAIPlugin(limits=...)`` instead to use lower per-job limits.
"""

from __future__ import annotations

from overnight_openai.plugin import DEFAULT_LIMITS, OpenAIPlugin

from overnight_openai.llm import OpenAILLM

__all__ = ["DEFAULT_LIMITS", "OpenAIPlugin", "OpenAILLM"]
__version__ = "0.1.0"

_default = OpenAIPlugin()

# Bound methods keep their @hookimpl marks, so this module is a plugin in its own right.
register_providers = _default.register_providers
validate_options = _default.validate_options
build_request = _default.build_request
submit = _default.submit
check = _default.check
fetch = _default.fetch
cancel = _default.cancel
find_job = _default.find_job
list_jobs = _default.list_jobs
generate = _default.generate
