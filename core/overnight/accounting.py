"""What one batch step's requests weigh: tokens against the model's context window,
in-flight figures against the account's queue limits, dollars against the run's budget.

The executor asks :class:`Accounting` at plan time (does this request fit?), before
each submission (a :class:`Gate`: how much more may go now?), when a job is refused or
fails for the account's queue (:meth:`Accounting.quota_refused`: no attempt, a lower
figure learned) and at fetch time (what did this result cost?). Everything it knows
comes from the plugin's :class:`~overnight.ProviderInfo`, the run's :class:`~overnight.policy.RunPolicy`
and the store.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from overnight import polling, pricing, tokens
from overnight.errors import BudgetExceeded, ConfigurationError
from overnight.money import DEFAULT_EXPECTED_OUTPUT, StepEstimate, usd
from overnight.models import ChatRequest, ModelSpec
from overnight.policy import RunPolicy
from overnight.providers import Provider
from overnight.store import DONE, NEW, QUEUED, JobPhase, JobRecord, Store


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigurationError(f"{name} must be a positive whole number, got {raw!r}")
    return value


def queue_env(provider: str) -> tuple[str, str]:
    """The environment variables that set an account's queue figures for ``provider``."""
    stem = f"OVERNIGHT_{provider.upper().replace('-', '_')}"
    return f"{stem}_MAX_ENQUEUED_TOKENS", f"{stem}_MAX_QUEUED_REQUESTS"


class Accounting:
    def __init__(self, store: Store, provider: Provider, policy: RunPolicy, *, plan_id: str, step: str) -> None:
        self.store = store
        self.provider = provider
        self.policy = policy
        self.plan_id = plan_id
        self.step = step
        self._rates: dict[str, pricing.Rates | None] = {}
        self._specs: dict[str, ModelSpec | None] = {}
        #: Quota figures already announced this run, so each is said once.
        self._announced: set[tuple[str, Any]] = set()

    @property
    def info(self) -> Any:
        return self.provider.info

    # -- context windows -------------------------------------------------------------------

    def spec(self, model: str) -> ModelSpec | None:
        if model not in self._specs:
            spec = tokens.find_model(self.info.models, model)
            if spec is None and self.info.models:
                # A model the table does not know: no model of this provider takes more than
                # its largest window, so a request past that cannot fit any of them.
                spec = ModelSpec(model, max(m.context_window for m in self.info.models),
                                 max(m.max_output_tokens for m in self.info.models))
            if self.policy.context_window is not None:
                spec = ModelSpec(model, self.policy.context_window,
                                 min(spec.max_output_tokens, self.policy.context_window) if spec
                                 else self.policy.context_window)
            self._specs[model] = spec
        return self._specs[model]

    def weigh(self, request: ChatRequest) -> tuple[int, int | None, str | None]:
        """``(input tokens, most output tokens, why it cannot fit or None)``."""
        count = tokens.estimate(request.messages)
        spec = self.spec(request.model)
        asked = request.params.max_tokens if request.params.max_tokens is not None else self.info.default_max_tokens
        problem = None
        if spec is not None:
            if spec.max_output_tokens and asked is not None and asked > spec.max_output_tokens:
                problem = (f"max_tokens={asked:,} is more than {self.info.name}/{request.model} can generate "
                           f"({spec.max_output_tokens:,} tokens)")
            elif count + (asked or 0) > spec.context_window:
                output = f" plus max_tokens={asked:,}" if asked else ""
                problem = (f"about {count:,} input tokens{output} cannot fit the "
                           f"{spec.context_window:,}-token context window of {self.info.name}/{request.model}; "
                           "shorten the text (or lower max_tokens)")
        return count, tokens.max_output(spec, request.params.max_tokens, self.info.default_max_tokens, count), problem

    # -- queue limits ----------------------------------------------------------------------

    def queue_limits(self, model: str) -> tuple[int | None, int | None]:
        """The lowest known ``(enqueued tokens, queued requests)`` figures for ``model``."""
        token_env, request_env = queue_env(self.info.name)
        learned_tokens, learned_requests = self.store.learned_quota(self.info.name, model)

        def lowest(*values: int | None) -> int | None:
            known = [v for v in values if v is not None]
            return min(known) if known else None

        def first(*values: int | None) -> int | None:
            return next((v for v in values if v is not None), None)

        # The user's figure (LLM, then environment) replaces the plugin's default, which is
        # often a low tier's; what overnight learned from a refusal only ever lowers it.
        return (
            lowest(first(self.policy.max_enqueued_tokens, _env_int(token_env), self.info.queue.max_enqueued_tokens),
                   learned_tokens),
            lowest(first(self.policy.max_queued_requests, _env_int(request_env), self.info.queue.max_queued_requests),
                   learned_requests),
        )

    def gate(self, model: str) -> "Gate":
        """A fresh gate for one chunk of ``model``'s requests about to be submitted."""
        return Gate(self, model)

    # -- quotas and budgets ----------------------------------------------------------------

    def quota_refused(self, job: Mapping[str, Any] | JobRecord, reason: str, *, failed: bool) -> bool:
        """A job refused (at create) or failed (at validation) for the account's queue limit.

        Not an attempt: its requests wait again. The figure overnight keeps to for this
        model drops to what the provider held besides this job (or half this job when it
        held nothing else), and the run says so once. Returns whether submitting may go on
        now (only when nothing else is in flight and the job can still be made smaller).
        """
        model = str(job["model"])
        requests = int(job["requests"])
        chunk_tokens = int(job.get("tokens") or self.store.job_tokens(job["id"]))
        _, held = self.store.in_flight(self.info.name, model)
        others = held - (0 if failed else requests)  # a refused create is still an intent here
        if others == 0 and requests <= 1:
            # One request alone, nothing else in flight, and still refused: no smaller figure
            # helps, so this is a real failure and counts as an attempt like any other.
            message = (f"the {self.info.name} account refused this request for its queue limit with "
                       f"nothing else in flight ({reason}); raise the account's limit")
            polling.report(f"{self.step}: {message}")
            if failed:
                self.store.close_job(job["id"], self.policy.retries, failure=message)
            else:
                self.store.reject_intent(job["id"], message, self.policy.retries)
            return False
        self.store.requeue_job(job["id"], JobPhase.QUOTA.value, reason)
        held_tokens, held_requests = self.store.in_flight(self.info.name, model)
        new_tokens = held_tokens if held_requests else max(1, chunk_tokens // 2)
        new_requests = held_requests if held_requests else max(1, requests // 2)
        lowered = self.store.learn_quota(self.info.name, model, tokens=new_tokens, requests=new_requests,
                                         reason=reason)
        if lowered and (model, "quota") not in self._announced:
            self._announced.add((model, "quota"))
            what = "failed at validation" if failed else "was refused"
            polling.report(
                f"{self.step}: a job of {requests} {self.info.name} requests {what} for the account's "
                f"queue limit ({reason}); its requests wait and go again, not counted as attempts. "
                f"overnight now keeps at most {new_tokens:,} input tokens / {new_requests:,} requests of "
                f"{model} in flight (set LLM(max_enqueued_tokens=...) to your account's figure)."
            )
        return held_requests == 0

    def budget_error(self, over_budget: str) -> BudgetExceeded:
        estimate = self.estimate()
        budget = self.policy.budget
        spent = budget.committed() if budget is not None else 0.0
        left = (estimate.cost_usd or 0.0) - estimate.billed_usd
        return BudgetExceeded(
            f"step {self.step!r}: {over_budget}. Spent so far (billed and in flight, all steps): "
            f"{usd(spent)} of the {usd(budget.limit_usd if budget else None)} budget; this step is "
            f"estimated at {usd(estimate.cost_usd)} in all, {usd(left)} of it not yet billed. Nothing past the "
            "budget was submitted and what was submitted is collected. To go on, run again with a higher "
            "budget (run(budget_usd=...) or overnight run --budget-usd ...).",
            budget_usd=budget.limit_usd if budget else 0.0, spent_usd=spent, estimate_usd=estimate.cost_usd or 0.0,
        )

    def commit_to_budget(self) -> None:
        """Tell the run's budget what this step has billed and has in flight, so the run's
        other steps see it even when this one has nothing left to submit."""
        budget = self.policy.budget
        if budget is None or not budget.limited:
            return
        money = self.store.plan_money(self.plan_id)
        model = str(next((v["model"] for v in money.values() if v["model"]), ""))
        expected, _ = self.expected_output(money)
        budget.commit(self.plan_id, self.committed(money, model, expected))

    # -- money -----------------------------------------------------------------------------

    def rates(self, model: str) -> pricing.Rates | None:
        if model not in self._rates:
            self._rates[model] = pricing.rates(self.info, model, self.policy.prices)
        return self._rates[model]

    def expected_output(self, money: Mapping[str, Mapping[str, Any]]) -> tuple[float, str]:
        done = money.get(DONE)
        if done and done["n"] and done["used_out"]:
            return done["used_out"] / done["n"], f"the mean of the {int(done['n'])} results collected"
        if self.policy.expected_output_tokens is not None:
            return float(self.policy.expected_output_tokens), "LLM(expected_output_tokens=...)"
        return float(DEFAULT_EXPECTED_OUTPUT), f"the default of {DEFAULT_EXPECTED_OUTPUT} tokens per request"

    def request_cost(self, model: str, input_tokens: float, max_output: float | None, expected: float) -> float:
        """The expected batch cost of one request (0 when the price is unknown)."""
        rates = self.rates(model)
        if rates is None:
            return 0.0
        out = expected if max_output is None else min(expected, max_output)
        return rates.batch_cost(input_tokens, out)

    def committed(self, money: Mapping[str, Mapping[str, Any]], model: str, expected: float) -> float:
        """Billed so far plus the expected cost of what is in flight."""
        billed = sum(v["cost"] for v in money.values())
        queued = money.get(QUEUED)
        if queued and queued["n"]:
            mean_max = queued["max_output"] / queued["n"] if not queued["unbounded"] else None
            billed += queued["n"] * self.request_cost(model, queued["tokens"] / queued["n"], mean_max, expected)
        return billed

    def estimate(self) -> StepEstimate:
        money = self.store.plan_money(self.plan_id)
        model = str(next((v["model"] for v in money.values() if v["model"]), ""))
        expected, source = self.expected_output(money)
        rates = self.rates(model)
        collected = money.get(DONE, {"n": 0, "used_in": 0, "used_out": 0, "cost": 0.0, "online": 0.0})
        left = [money[s] for s in (NEW, QUEUED) if s in money]
        requests = int(sum(v["n"] for v in money.values()))
        left_in = sum(v["tokens"] for v in left)
        left_max = sum(v["max_output"] for v in left)
        unbounded = sum(v["unbounded"] or 0 for v in left)
        left_expected = sum(
            min(expected * v["n"], v["max_output"]) if not v["unbounded"] else expected * v["n"] for v in left
        )
        cost = max_cost = online = None
        if rates is not None:
            cost = collected["cost"] + rates.batch_cost(left_in, left_expected)
            max_cost = collected["cost"] + rates.batch_cost(left_in, left_max) if not unbounded else None
            online = collected["online"] + rates.online_cost(left_in, left_expected)
        return StepEstimate(
            step=self.step, provider=self.info.name, model=model, requests=requests,
            input_tokens=int(collected["used_in"] + left_in),
            expected_output_tokens=int(collected["used_out"] + left_expected),
            max_output_tokens=int(collected["used_out"] + left_max),
            cost_usd=cost, max_cost_usd=max_cost, online_cost_usd=online,
            billed_usd=float(collected["cost"]), collected=int(collected["n"]),
            expected_output_from=source, prices_from=rates.source if rates else "no price known",
        )


class Gate:
    """Decides, request by request, how much of the queue may be submitted in this pass:
    what is in flight stays under the account's queue figures, and what is committed
    stays within the run's budget."""

    def __init__(self, acc: "Accounting", model: str) -> None:
        self.acc = acc
        self.model = model
        self.max_tokens, self.max_requests = acc.queue_limits(model)
        self.held_tokens, self.held_requests = acc.store.in_flight(acc.info.name, model)
        self.tokens = 0
        self.requests = 0
        self.stopped = False
        self.over_budget: str | None = None
        budget = acc.policy.budget
        self.budget = budget if budget is not None and budget.limited else None
        self.plan_id = acc.plan_id
        if self.budget is not None:
            if acc.rates(model) is None:
                raise ConfigurationError(
                    f"step {acc.step!r}: a budget was set but no price is known for "
                    f"{acc.info.name}/{model}, so nothing can be held to it. Give the online prices: "
                    "LLM(..., prices={'input_mtok': ..., 'output_mtok': ...}) (USD per million tokens). "
                    "Nothing was submitted."
                )
            money = acc.store.plan_money(acc.plan_id)
            self.expected, _ = acc.expected_output(money)
            self.committed = acc.committed(money, model, self.expected)
            self.budget.commit(self.plan_id, self.committed)
            self.room = self.budget.room(self.plan_id)

    def admits(self, row: Any, *, first: bool) -> bool:
        tokens = row["tokens"] if row["tokens"] is not None else (row["bytes"] + 3) // 4
        nothing_held = self.held_requests == 0 and first
        if self.max_tokens is not None and self.held_tokens + self.tokens + tokens > self.max_tokens \
                and not nothing_held:
            self.stopped = True
            return False
        if self.max_requests is not None and self.held_requests + self.requests + 1 > self.max_requests \
                and not nothing_held:
            self.stopped = True
            return False
        if self.budget is not None:
            cost = self.acc.request_cost(self.model, tokens, row["max_output"], self.expected)
            if self.committed + cost > self.room + 1e-12:
                self.stopped = True
                self.over_budget = (
                    f"submitting the next request (about {usd(cost)}) would pass the budget of "
                    f"{usd(self.budget.limit_usd)}"
                )
                return False
            self.committed += cost
            self.budget.commit(self.plan_id, self.committed)
        self.tokens += tokens
        self.requests += 1
        return True
