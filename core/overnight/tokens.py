"""Input tokens of a request, estimated at plan time, and whether a request fits its model.

overnight must work offline, and tokenizers either download their vocabularies on first
use (tiktoken) or do not exist publicly (Anthropic, Mistral). So every provider gets the
same deterministic estimate:

    tokens = sum over messages of (ceil(UTF-8 bytes / 4) + 4)

Measured against OpenAI's cl100k_base vocabulary (``tests/benchmarks/bench_tokens.py``):
English prose and code come out within about 10-25 % of the real count, mostly above it;
text in scripts of 3-byte characters (Chinese, Japanese) comes out *below* it (about
0.75-0.9 x). The hard bound: byte-level BPE vocabularies (OpenAI's, Mistral's Tekken)
never produce more tokens than UTF-8 bytes, so a request's real count is at most its
bytes plus the per-message overhead; :func:`upper_bound` gives that figure.

The sandbox counts prompt tokens with the same rule, so what overnight estimates is what
the sandbox bills.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from overnight.models import Message, ModelSpec

#: UTF-8 bytes per token of the estimate (English text is ~4.2 with cl100k_base).
BYTES_PER_TOKEN = 4
#: Tokens a chat template adds per message (role markers), as the real templates do.
MESSAGE_OVERHEAD = 4


def text_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / BYTES_PER_TOKEN)


def estimate(messages: Iterable[Message]) -> int:
    """The estimated input tokens of a conversation."""
    return sum(text_tokens(m.content) + MESSAGE_OVERHEAD for m in messages)


def upper_bound(messages: Iterable[Message]) -> int:
    """At most this many tokens with any byte-level BPE vocabulary."""
    return sum(len(m.content.encode("utf-8", "surrogatepass")) + MESSAGE_OVERHEAD for m in messages)


def find_model(models: Sequence[ModelSpec], name: str) -> ModelSpec | None:
    """The spec whose prefix matches ``name`` longest, or None."""
    best: ModelSpec | None = None
    for spec in models:
        if name.startswith(spec.prefix) and (best is None or len(spec.prefix) > len(best.prefix)):
            best = spec
    return best


def max_output(spec: ModelSpec | None, max_tokens: int | None, default_max_tokens: int | None,
               input_tokens: int) -> int | None:
    """The most output tokens a request can be billed for, or None when nothing bounds it."""
    asked = max_tokens if max_tokens is not None else default_max_tokens
    if spec is None:
        return asked
    room = max(0, spec.context_window - input_tokens)
    bound = min(spec.max_output_tokens, room)
    return bound if asked is None else min(asked, bound)
