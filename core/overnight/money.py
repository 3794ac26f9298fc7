"""Estimates and budgets: what a batch step will cost, and what a run may spend.

A :class:`StepEstimate` is computed from what the plan stored (estimated input tokens
and the most output tokens of each request), the model's :class:`~overnight.pricing.Rates`
and the expected output per request: the mean of the step's collected results when
there are some, else ``LLM(expected_output_tokens=...)``, else
:data:`DEFAULT_EXPECTED_OUTPUT` (bounded by each request's ``max_tokens``).

A :class:`Budget` is shared by every batch step of one ``Pipeline.run(budget_usd=...)``:
each step tells it what it has committed (billed so far plus the estimate of what is in
flight) and may submit only what fits in the rest.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

from attrs import asdict, frozen

#: Output tokens expected per request when nothing was collected yet and the user set none.
DEFAULT_EXPECTED_OUTPUT = 256


@frozen
class StepEstimate:
    step: str
    provider: str
    model: str
    requests: int
    input_tokens: int
    expected_output_tokens: int
    max_output_tokens: int
    #: Expected cost at batch prices of the whole step (collected work at its billed cost).
    cost_usd: float | None
    #: The cost if every request not yet collected used its max_tokens.
    max_cost_usd: float | None
    #: The expected cost of the same work through the online API.
    online_cost_usd: float | None
    #: Billed so far, for requests already collected.
    billed_usd: float
    collected: int
    expected_output_from: str
    prices_from: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Budget:
    """A run's ledger across its batch steps (mutable; held by the RunPolicy): the plans
    it ran, for the totals of the run's last line, and with ``limit_usd`` its budget."""

    def __init__(self, limit_usd: float | None = None) -> None:
        self.limit_usd = None if limit_usd is None else float(limit_usd)
        self._committed: dict[str, float] = {}
        #: Plan ids of the batch steps this run went through, in order.
        self.plans: list[str] = []
        #: ``(cost, online cost)`` of the plans whose every result was handed back.
        self.totals: dict[str, tuple[float, float]] = {}

    @property
    def limited(self) -> bool:
        return self.limit_usd is not None

    def joined(self, plan_id: str) -> None:
        if plan_id not in self.plans:
            self.plans.append(plan_id)

    def assembled(self, plan_id: str, cost_usd: float, online_cost_usd: float) -> None:
        """Every result of ``plan_id`` was handed back; together they cost this."""
        self.totals[plan_id] = (cost_usd, online_cost_usd)

    def room(self, plan_id: str) -> float:
        """What the step of ``plan_id`` may commit in all (billed, in flight, to submit)."""
        if self.limit_usd is None:
            return float("inf")
        return self.limit_usd - sum(v for k, v in self._committed.items() if k != plan_id)

    def commit(self, plan_id: str, usd: float) -> None:
        self._committed[plan_id] = usd

    def committed(self) -> float:
        return sum(self._committed.values())


class Estimates:
    """Where ``overnight estimate`` collects each batch step's estimate."""

    def __init__(self) -> None:
        self.steps: list[StepEstimate] = []

    def add(self, estimate: StepEstimate) -> None:
        self.steps = [s for s in self.steps if s.step != estimate.step] + [estimate]

    def total(self) -> dict[str, Any]:
        def add(name: str) -> Any:
            values = [getattr(s, name) for s in self.steps]
            return None if any(v is None for v in values) else sum(values)

        names = ("requests", "input_tokens", "expected_output_tokens", "max_output_tokens", "cost_usd",
                 "max_cost_usd", "online_cost_usd", "billed_usd", "collected")
        return {name: add(name) for name in names}


_estimating: contextvars.ContextVar[Estimates | None] = contextvars.ContextVar("overnight_estimating", default=None)


@contextlib.contextmanager
def estimating() -> Iterator[Estimates]:
    """While active, ``Pipeline.run`` plans its batch steps and submits nothing."""
    collector = Estimates()
    token = _estimating.set(collector)
    try:
        yield collector
    finally:
        _estimating.reset(token)


def active_estimates() -> Estimates | None:
    return _estimating.get()


def usd(value: float | None) -> str:
    if value is None:
        return "unknown (no price for this model; set LLM(prices=...))"
    if value >= 100:
        return f"${value:,.2f}"
    return f"${value:,.4f}" if value >= 0.01 or value == 0 else f"${value:.6f}"
