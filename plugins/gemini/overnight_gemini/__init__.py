"""overnight-gemini: the Gemini Developer API's batch mode as an overnight provider.

Installed, it registers the provider ``gemini`` through the ``overnight`` entry-point
group, so ``LLM("gemini/gemini-2.5-flash")`` works. The hooks below are those of one
:class:`GeminiPlugin` with Gemini's real limits; register your own instance (e.g.
``GeminiPlugin(limits=Limits(...))``) in a :class:`overnight.plugins.PluginRegistry`
to serve the provider with other limits.
"""

from __future__ import annotations

from overnight_gemini.llm import GeminiLLM
from overnight_gemini.options import clear_clients
from overnight_gemini.plugin import LIMITS, GeminiPlugin

__all__ = ["LIMITS", "GeminiPlugin", "clear_clients", "GeminiLLM"]
__version__ = "0.1.0"

_plugin = GeminiPlugin()

# Bound methods keep their @hookimpl marks, so this module is a plugin in its own right.
register_providers = _plugin.register_providers
validate_options = _plugin.validate_options
build_request = _plugin.build_request
submit = _plugin.submit
check = _plugin.check
fetch = _plugin.fetch
cancel = _plugin.cancel
find_job = _plugin.find_job
list_jobs = _plugin.list_jobs
generate = _plugin.generate
