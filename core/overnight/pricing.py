"""Prices of a model, online and through the batch API, from pydantic's genai-prices.

genai-prices ships its price table inside the package (no network: overnight never asks
it to update), with batch-processing variants for many models. When the table has no
batch variant for a model, the plugin's declared ``batch_discount`` is applied to the
online price. ``LLM(prices={"input_mtok": ..., "output_mtok": ...})`` (online USD per
million tokens) overrides the library for one LLM.

Rates are taken for a small request, so long-context price tiers (a few models bill
more past 200k input tokens) are not applied.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

from attrs import frozen

from overnight.errors import ConfigurationError
from overnight.models import ProviderInfo, Usage

#: Tokens of the probe request the rates are read from (below every long-context tier).
_PROBE = 1000


@frozen
class Rates:
    """USD per million tokens, online and batch."""

    input_mtok: float
    output_mtok: float
    batch_input_mtok: float
    batch_output_mtok: float
    source: str

    def batch_cost(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.batch_input_mtok + output_tokens * self.batch_output_mtok) / 1e6

    def online_cost(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input_mtok + output_tokens * self.output_mtok) / 1e6

    def bill(self, usage: Usage | None) -> tuple[float | None, float | None]:
        """``(batch cost, online cost)`` of one request's usage."""
        if usage is None:
            return None, None
        return (round(self.batch_cost(usage.input_tokens, usage.output_tokens), 10),
                round(self.online_cost(usage.input_tokens, usage.output_tokens), 10))


def rates(info: ProviderInfo, model: str, override: Mapping[str, Any] | None = None) -> Rates | None:
    """The model's rates, or None when neither the override nor the library knows it."""
    discount = info.batch_discount
    if override:
        try:
            inp, out = float(override["input_mtok"]), float(override["output_mtok"])
        except (KeyError, TypeError, ValueError):
            raise ConfigurationError(
                "prices must be {'input_mtok': <USD per million input tokens>, 'output_mtok': "
                f"<USD per million output tokens>}} (online prices), got {override!r}"
            ) from None
        batch_in, batch_out = float(override.get("batch_input_mtok", inp * (1 - discount))), \
            float(override.get("batch_output_mtok", out * (1 - discount)))
        return Rates(inp, out, batch_in, batch_out, "LLM(prices=...)")
    return _library(info.prices_provider or info.name, model, discount)


@functools.lru_cache(maxsize=256)
def _library(provider: str, model: str, discount: float) -> Rates | None:
    try:
        from genai_prices import Usage as PriceUsage, calc_price
    except ImportError:  # Python 3.10, or the library removed: prices only from LLM(prices=...)
        return None

    def per_mtok(usage: Any, context: Mapping[str, str] | None) -> float | None:
        try:
            price = calc_price(usage, model_ref=model, provider_id=provider, price_context=context)
        except Exception:  # LookupError for an unknown model; anything else: no price rather than no run
            return None
        return float(price.total_price) * 1e6 / _PROBE

    def both(context: Mapping[str, str] | None) -> tuple[float | None, float | None]:
        return (per_mtok(PriceUsage(input_tokens=_PROBE, output_tokens=0), context),
                per_mtok(PriceUsage(input_tokens=0, output_tokens=_PROBE), context))

    inp, out = both(None)
    if inp is None or out is None:
        return None
    batch_in, batch_out = both({"processing": "batch"})
    source = "genai-prices (batch prices)"
    if batch_in is None or batch_out is None or (batch_in, batch_out) == (inp, out):
        batch_in, batch_out = inp * (1 - discount), out * (1 - discount)
        source = f"genai-prices (online) with the plugin's {discount:.0%} batch discount"
    return Rates(inp, out, batch_in, batch_out, source)
