"""``AnthropicLLM``: distilabel's name for an LLM served by the ``anthropic`` provider."""

from __future__ import annotations

from overnight.llm import ProviderLLM

__all__ = ["AnthropicLLM"]


class AnthropicLLM(ProviderLLM):
    """``AnthropicLLM(model="...")`` is ``LLM("anthropic/...")``, with every argument of :class:`overnight.LLM`."""

    provider_name = "anthropic"
