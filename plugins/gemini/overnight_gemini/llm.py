"""``GeminiLLM``: distilabel's name for an LLM served by the ``gemini`` provider."""

from __future__ import annotations

from overnight.llm import ProviderLLM

__all__ = ["GeminiLLM"]


class GeminiLLM(ProviderLLM):
    """``GeminiLLM(model="...")`` is ``LLM("gemini/...")``, with every argument of :class:`overnight.LLM`."""

    provider_name = "gemini"
