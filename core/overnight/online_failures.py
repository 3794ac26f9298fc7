"""How a plugin's ``generate`` reads an HTTP failure of the provider's online API (plugin kit).

Three outcomes, as the ``generate`` hookspec asks: a refusal of this request for what it
holds (the plugin returns an errored Result: one attempt), a passing failure the core
waits out and sends again (:class:`~overnight.RateLimited`,
:class:`~overnight.ProviderUnavailable`), and anything else, which propagates.
"""

from __future__ import annotations

from overnight.create_once import REFUSED
from overnight.errors import ProviderUnavailable, RateLimited

__all__ = ["REFUSED", "TRANSIENT", "raise_if_passing"]  # REFUSED: those that refuse a create refuse one request too
#: Statuses besides 429 and the 5xx worth sending the same request again after a wait.
TRANSIENT = frozenset({408, 409})


def raise_if_passing(status: int, message: str, *, retry_after: float | None, provider: str, call: str,
                     model: object) -> None:
    """Raise :class:`RateLimited` for a 429 and :class:`ProviderUnavailable` for a 5xx (529
    included), 408 or 409, with the provider's wait; return for any other status.

    ``provider`` and ``call`` name what failed in the message ("Anthropic", "a message").
    """
    if status == 429:
        raise RateLimited(f"{provider} rate limit (429) for {model}: {message}", retry_after=retry_after) from None
    if status >= 500 or status in TRANSIENT:
        raise ProviderUnavailable(f"{provider} failed {call} for {model} (HTTP {status}): {message}",
                                  retry_after=retry_after) from None
