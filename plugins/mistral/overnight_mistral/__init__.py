"""overnight-mistral: the Mistral batch API as an overnight provider.

Installed, it registers the provider ``mistral`` through the ``overnight`` entry-point
group, so ``LLM("mistral/mistral-small-latest")`` works. The hooks below are those of one
:class:`MistralPlugin` with Mistral's real limits; register your own instance (e.g.
``MistralPlugin(limits=Limits(...))``) in a :class:`overnight.plugins.PluginRegistry`
to serve the provider with other limits.
"""

from __future__ import annotations

from overnight_mistral.llm import MistralLLM
from overnight_mistral.options import clear_clients
from overnight_mistral.plugin import LIMITS, MistralPlugin

__all__ = ["LIMITS", "MistralPlugin", "clear_clients", "MistralLLM"]
__version__ = "0.1.0"

_plugin = MistralPlugin()

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
