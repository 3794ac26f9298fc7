"""Input tokens of a request, estimated at plan time, and whether a request fits its model.

overnight must work offline, and tokenizers either download their vocabularies on first
use (tiktoken) or are not public (Anthropic). So every provider gets one deterministic
estimate, shaped like the pre-tokenizers of byte-level BPE vocabularies: a run of letters
is one token per 6 letters (rounded up; a single space before it is free), digits go in
groups of up to 3, punctuation one token per 2 characters, other whitespace one token per
run, and letters of CJK-like scripts 1.25 tokens each; plus 4 tokens per message for the
chat template.

Measured against OpenAI's cl100k_base (``python tests/benchmarks/bench_tokens.py``, with
tiktoken and an offline copy of the vocabulary installed), in total over each kind of
text: English-like prose 1.00 x the real count, Python code 1.12 x, JSON 1.03 x, numbers
1.00 x, Japanese 1.01 x, the quickstart's short prompts 1.14 x (single prompts from 0.87 x
to 1.33 x).
Other vocabularies (Anthropic's, Mistral's Tekken) differ by some tens of percent.

The hard bound: byte-level BPE vocabularies (OpenAI's, Mistral's Tekken) never produce
more tokens than UTF-8 bytes, so a request's real count is at most its bytes plus the
per-message overhead (:func:`upper_bound`); the estimate never exceeds that bound.

The sandbox bills prompt tokens with this same rule, so what overnight estimates for an
input is what the sandbox bills for it.
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

from overnight.models import Message, ModelSpec

#: Tokens a chat template adds per message (role markers), as the real templates do.
MESSAGE_OVERHEAD = 4
#: Letters per token in a run of letters of alphabetic scripts.
LETTERS_PER_TOKEN = 6
#: Tokens per character of scripts written without spaces (CJK and the like).
WIDE_TOKENS_PER_CHAR = 1.25

_PIECES = re.compile(r" ?[^\W\d_]+| ?\d{1,3}| ?[^\w\s]+|\s+|_+")


def _piece_tokens(piece: str) -> float:
    """The estimated tokens of one piece that :data:`_PIECES` cut."""
    head = piece.lstrip(" ") if len(piece) > 1 else piece
    if not head or head[0].isspace():  # a run of whitespace (of spaces only: head is empty)
        return 1
    first = head[0]
    if first.isalpha():
        if ord(first) >= 0x2E80:
            return WIDE_TOKENS_PER_CHAR * len(head)
        return math.ceil(len(head) / LETTERS_PER_TOKEN)
    if first.isdigit():
        return 1 + (len(head) < len(piece))  # a space before digits is a token of its own
    return math.ceil(len(head) / 2)


class _PieceCosts(dict[str, float]):
    """Tokens per piece, remembered: texts share most of their words, and a dict lookup
    costs far less than classifying a piece again (a plan estimates millions of texts)."""

    def __missing__(self, piece: str) -> float:
        if len(self) >= PIECE_CACHE:  # flat memory whatever the vocabulary of the input
            self.clear()
        cost = self[piece] = _piece_tokens(piece)
        return cost


#: Most distinct pieces remembered at once.
PIECE_CACHE = 100_000
_costs = _PieceCosts()


def text_tokens(text: str) -> int:
    """The estimated tokens of one text."""
    # The same sum as adding piece by piece in order, looked up in C.
    return math.ceil(sum(map(_costs.__getitem__, _PIECES.findall(text)), 0.0))


def estimate(messages: Iterable[Message]) -> int:
    """The estimated input tokens of a conversation."""
    return sum(text_tokens(m.content) + MESSAGE_OVERHEAD for m in messages)


def upper_bound(messages: Iterable[Message]) -> int:
    """At most this many tokens with any byte-level BPE vocabulary."""
    return sum(len(m.content.encode("utf-8", "surrogatepass")) + MESSAGE_OVERHEAD for m in messages)


def find_model(models: Sequence[ModelSpec], name: str) -> ModelSpec | None:
    """The spec whose prefix matches ``name`` longest, or None.

    A fine-tuned model (``ft:<base>:...``, OpenAI's form) matches as its base model.
    """
    if name.startswith("ft:"):
        name = name[3:]
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
