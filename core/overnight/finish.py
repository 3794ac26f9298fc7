"""Why a generation ended, in one vocabulary whatever the provider.

Providers name it differently: OpenAI and Mistral say ``stop``/``length``, Anthropic
``end_turn``/``max_tokens``, Gemini ``STOP``/``MAX_TOKENS``. A dataset's
``<output>_finish_reason`` column holds the normalised word (``stop``, ``length``,
``content_filter``, ``tool_calls``); ``<output>_finish_reason_raw`` keeps the provider's
own. A word not in the table passes through unchanged (lower case), so nothing is lost.
"""

from __future__ import annotations

__all__ = ["FINISH_REASONS", "normalise_finish_reason"]

#: The normalised words.
FINISH_REASONS = ("stop", "length", "content_filter", "tool_calls")

_TABLE = {
    # OpenAI, Mistral and OpenAI-compatible servers
    "stop": "stop", "length": "length", "content_filter": "content_filter", "tool_calls": "tool_calls",
    "function_call": "tool_calls", "model_length": "length", "eos": "stop",
    # Anthropic
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter",
    # Gemini
    "finish_reason_unspecified": "stop", "safety": "content_filter", "recitation": "content_filter",
    "blocklist": "content_filter", "prohibited_content": "content_filter", "spii": "content_filter",
    "image_safety": "content_filter", "malformed_function_call": "tool_calls",
    "unexpected_tool_call": "tool_calls",
}


def normalise_finish_reason(raw: str | None) -> str | None:
    """``stop``, ``length``, ``content_filter`` or ``tool_calls`` for a provider's word (None stays None)."""
    if raw is None:
        return None
    word = str(raw).strip().lower()
    return _TABLE.get(word, word)
