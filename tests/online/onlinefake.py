"""The fake provider with an online API, for the online runner's tests.

``generate`` answers as the batch side does (:func:`fakeprovider.reply_to`), and logs
every call it was asked to bill (one line per paid answer, in ``paid.log``) so a test
counts paid answers per request, across processes. Faults come from ``set_online``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from fakeprovider import FakeProvider, reply_to
from overnight import (
    Capabilities,
    OnlineLimits,
    ProviderInfo,
    ProviderUnavailable,
    RateLimited,
    Result,
    Usage,
    hookimpl,
)


class OnlineFake(FakeProvider):
    def __init__(self, state_dir: Any, *, online_limits: OnlineLimits | None = None, online: bool = True,
                 cancel: bool = True, **kwargs: Any) -> None:
        super().__init__(state_dir, cancel=cancel, **kwargs)
        self.capabilities = Capabilities(cancel=cancel, find_by_tag=True, online=online)
        self.online_limits = online_limits or OnlineLimits(max_concurrency=4)
        self._lock = threading.Lock()
        #: Every generate call: (custom_id, outcome) in call order (this process).
        self.calls: list[tuple[str, str]] = []
        self.on_call: Any = None

    # -- test controls -----------------------------------------------------------------

    def set_online(self, **faults: Any) -> None:
        """``limited``: the next n calls get a 429 (``retry_after`` seconds); ``unavailable``:
        the next n a 5xx; ``errors``: {custom_id or "*": times} refused with a 400;
        ``fatal``: every call raises like a 401; ``exit_after``: the process dies (os._exit)
        after that many paid answers."""
        self._write("online.json", faults)

    def paid(self) -> list[str]:
        path = self.dir / "paid.log"
        return path.read_text().split() if path.exists() else []

    # -- the hooks ---------------------------------------------------------------------

    @hookimpl
    def cancel(self, provider: str, job: Any, options: Any) -> None:
        """Cancelling takes ``cancel_takes`` seconds of the fake clock; the job then keeps the
        results of its first ``cancel_keeps`` requests (partial results, paid for)."""
        data = self._load(job.remote_id)
        faults = self._read("online.json", {})
        data["cancelled"] = True
        data["cancelled_at"] = self.now
        data["cancel_takes"] = faults.get("cancel_takes", 0)
        data["partial"] = faults.get("cancel_keeps", 0)
        self._save(data)

    def _state(self, job: dict[str, Any]) -> Any:
        from overnight import JobState

        if job.get("cancelled") and self.now < job.get("cancelled_at", 0) + job.get("cancel_takes", 0):
            return JobState.RUNNING  # cancelling
        return super()._state(job)

    @hookimpl
    def fetch(self, provider: str, job: Any, options: Any) -> Any:
        data = self._load(job.remote_id)
        if data.get("cancelled"):
            return self._results(data, data.get("partial", 0))
        return super().fetch(provider, job, options)

    @hookimpl
    def register_providers(self) -> list[ProviderInfo]:
        return [
            ProviderInfo(
                name=self.name, limits=self.limits, capabilities=self.capabilities,
                extra_params={"fake_option"}, unsupported_params={"seed"}, secret_env=("FAKE_API_KEY",),
                online_limits=self.online_limits,
            )
        ]

    @hookimpl
    def generate(self, provider: str, request: dict[str, Any], options: Any, timeout: float | None,
                 model: str) -> Result:
        cid = request["custom_id"]
        assert model == request["model"]
        with self._lock:
            faults = self._read("online.json", {})
            outcome = "ok"
            if faults.get("fatal"):
                outcome = "fatal"
            elif faults.get("limited"):
                faults["limited"] -= 1
                outcome = "429"
            elif faults.get("unavailable"):
                faults["unavailable"] -= 1
                outcome = "503"
            else:
                errors = faults.get("errors", {})
                key = cid if cid in errors else "*" if "*" in errors else None
                if key is not None and errors[key] > 0:
                    errors[key] -= 1
                    outcome = "400"
            self._write("online.json", faults)
            self.calls.append((cid, outcome))
            if outcome == "ok":
                with open(self.dir / "paid.log", "a") as log:
                    log.write(cid + "\n")
                paid = len(self.paid())
        if self.on_call is not None:
            self.on_call(cid, outcome)
        if outcome == "fatal":
            raise PermissionError("401 invalid api key fk-test-secret-0000")
        if outcome == "429":
            raise RateLimited("429 rate limit reached", retry_after=faults.get("retry_after"))
        if outcome == "503":
            raise ProviderUnavailable("503 service unavailable")
        if outcome == "400":
            return Result(custom_id=cid, status="errored", error="400 invalid request")
        if faults.get("exit_after") and paid >= faults["exit_after"]:
            os._exit(9)  # a kill: the answer was billed, never stored
        text = reply_to(request)
        return Result(custom_id=cid, status="succeeded", text=text, finish_reason="stop",
                      usage=Usage(input_tokens=len(request["messages"][-1]["content"].split()),
                                  output_tokens=len(text.split())), raw={"online": True})


def counts(paid: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for cid in paid:
        out[cid] = out.get(cid, 0) + 1
    return out


PROMPTS = [f"question number {i}" for i in range(25)]


def plan(prompts: list[str], model: str = "m") -> list[Any]:
    from overnight import ChatRequest, Message
    from overnight.models import PlannedRequest

    return [PlannedRequest(row=i, sample=0, request=ChatRequest("", model, [Message("user", p)]))
            for i, p in enumerate(prompts)]


def generate(prompts: list[str], *, plan_id: str = "plan-1", llm: Any = None, **kwargs: Any) -> list[Any]:
    from overnight.llm import LLM
    from overnight.store import Store

    llm = llm or LLM("fake/m")
    store = Store.open()
    try:
        return list(llm.generate_offline(plan(prompts), store=store, step="gen", plan_id=plan_id, **kwargs))
    finally:
        store.close()
