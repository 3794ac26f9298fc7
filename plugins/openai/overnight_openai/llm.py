"""``OpenAILLM``: distilabel's name for an LLM served by the ``openai`` provider."""

from __future__ import annotations

from overnight.llm import ProviderLLM

__all__ = ["OpenAILLM"]


class OpenAILLM(ProviderLLM):
    """``OpenAILLM(model="...")`` is ``LLM("openai/...")``, with every argument of :class:`overnight.LLM`."""

    provider_name = "openai"
