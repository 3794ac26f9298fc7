"""``MistralLLM``: distilabel's name for an LLM served by the ``mistral`` provider."""

from __future__ import annotations

from overnight.llm import ProviderLLM

__all__ = ["MistralLLM"]


class MistralLLM(ProviderLLM):
    """``MistralLLM(model="...")`` is ``LLM("mistral/...")``, with every argument of :class:`overnight.LLM`."""

    provider_name = "mistral"
