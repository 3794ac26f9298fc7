"""The sandbox's control API: drive the clock, set faults, read counters.

The same operations exist three ways, with the same method names:

* :class:`Controller` works on an in-process engine (what :class:`~.server.Sandbox` uses);
* ``/_sandbox/...`` HTTP routes expose it to other processes (no key needed)::

      GET    /_sandbox/health              {"ok": true, "now": ...}
      GET    /_sandbox/clock               {"now": t, "speed": s|null}
      POST   /_sandbox/clock/advance       {"seconds": N}        -> {"now": t}
      GET    /_sandbox/faults              {"data": [rule, ...]}
      POST   /_sandbox/faults              {selector + fault fields} -> {"id": ...}
      DELETE /_sandbox/faults              remove every rule
      DELETE /_sandbox/faults/{id}         remove one rule
      GET    /_sandbox/counters            {"openai": {"files", "jobs", "requests", "http": {...}}, ...}
      POST   /_sandbox/counters/reset
      GET    /_sandbox/jobs                every job with its phase (a debugging aid)
      POST   /_sandbox/jobs/{provider}/{id}/lose-results
                                           an ended job's results go, as retention does it
                                           (OpenAI/Mistral/Gemini: its files deleted; Anthropic: archived)
      DELETE /_sandbox/jobs/{provider}/{id}  delete an ended job (Anthropic, Mistral, Gemini: as their
                                           DELETE endpoints do; OpenAI batches cannot be deleted)
                                           (a Gemini id may be given as the API names it, batches/<id>)
      POST   /_sandbox/config              {"results_url": "absolute" | "relative",
                                            "max_enqueued_tokens": N | null, "max_queued_requests": N | null}
      GET    /_sandbox/online              {"rate_limits": [...], "latency": s}
      POST   /_sandbox/online              {"provider", "model"?, "requests_per_minute"?, "tokens_per_minute"?}
                                           and/or {"latency": wall seconds per online answer}
      DELETE /_sandbox/online              no online rate limits, no latency

* :class:`SandboxControl` is a small stdlib-only client for those routes.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Mapping

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .engine import Engine
from .faults import Fault
from .online import state as online_state

PROVIDER_PREFIXES = {"openai": "/openai/v1", "anthropic": "/anthropic", "mistral": "/mistral",
                     "gemini": "/gemini", "groq": "/groq/openai/v1",
                     "together": "/together", "deepinfra": "/deepinfra/v1/openai", "nebius": "/nebius/v1"}


class ProviderUrls:
    """The base URL to give each provider's SDK, from the sandbox's ``url``."""

    url: str

    @property
    def openai_base_url(self) -> str:
        return self.url + PROVIDER_PREFIXES["openai"]

    @property
    def anthropic_base_url(self) -> str:
        return self.url + PROVIDER_PREFIXES["anthropic"]

    @property
    def mistral_base_url(self) -> str:
        return self.url + PROVIDER_PREFIXES["mistral"]

    @property
    def groq_base_url(self) -> str:
        """For ``OpenAI(base_url=...)`` (Groq's own URL is https://api.groq.com/openai/v1)."""
        return self.url + PROVIDER_PREFIXES["groq"]

    @property
    def together_base_url(self) -> str:
        """For ``Together(base_url=...)``; the SDK adds ``/v1/...`` (its own URL is https://api.together.ai)."""
        return self.url + PROVIDER_PREFIXES["together"]

    @property
    def deepinfra_base_url(self) -> str:
        """For ``OpenAI(base_url=...)`` (DeepInfra's own: https://api.deepinfra.com/v1/openai)."""
        return self.url + PROVIDER_PREFIXES["deepinfra"]

    @property
    def nebius_base_url(self) -> str:
        """For ``OpenAI(base_url=...)`` (Nebius's own: https://api.studio.nebius.com/v1)."""
        return self.url + PROVIDER_PREFIXES["nebius"]

    @property
    def gemini_base_url(self) -> str:
        """For ``genai.Client(http_options=HttpOptions(base_url=...))``; the SDK adds ``/v1/``."""
        return self.url + PROVIDER_PREFIXES["gemini"]


class Controller:
    """Control operations on an in-process engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def now(self) -> float:
        return self.engine.now()

    def advance(self, seconds: float) -> float:
        """Move sandbox time forward; jobs progress accordingly. Returns the new time."""
        return self.engine.advance(float(seconds))

    def set_faults(self, provider: str | None = None, model: str | None = None,
                   metadata: Mapping[str, Any] | None = None, **fault_fields: Any) -> str:
        """Register a fault rule (see :class:`~.faults.Fault` for the fields); returns its id."""
        return self.engine.add_fault(
            Fault.from_dict({"provider": provider, "model": model, "metadata": metadata, **fault_fields}))

    def faults(self) -> list[dict[str, Any]]:
        return self.engine.faults()

    def remove_fault(self, fault_id: str) -> bool:
        return self.engine.remove_fault(fault_id)

    def clear_faults(self) -> None:
        self.engine.clear_faults()

    def counters(self) -> dict[str, dict[str, Any]]:
        return self.engine.counters()

    def reset_counters(self) -> None:
        self.engine.reset_counters()

    def set_results_url(self, style: str) -> None:
        """Anthropic ``results_url`` form: "absolute" (default) or "relative"."""
        if style not in ("absolute", "relative"):
            raise ValueError("results_url must be 'absolute' or 'relative'")
        self.engine.results_url = style  # type: ignore[assignment]  # one of the two, checked above

    def lose_results(self, provider: str, job_id: str) -> dict[str, Any]:
        """An ended job's results go now, as the provider's retention would do it."""
        return self.engine.lose_results(provider, _local_id(provider, job_id))

    def delete_job(self, provider: str, job_id: str) -> dict[str, Any]:
        """Delete an ended job, as the provider's own DELETE endpoint does (not OpenAI: it has none)."""
        job_id = _local_id(provider, job_id)
        if provider not in ("anthropic", "mistral", "gemini"):
            raise ValueError(f"{provider} has no endpoint that deletes a batch; lose its results instead")
        state = self.engine.get_job(provider, job_id)
        if state is None:
            raise ValueError(f"no {provider} job {job_id!r}")
        if not state.snap.terminal:
            raise ValueError(f"the {provider} job {job_id} has not ended; the provider refuses to delete it")
        self.engine.delete_job(job_id)
        return {"id": job_id, "deleted": True}

    def set_queue_limits(self, **limits: int | None) -> None:
        """Account queue limits: ``max_enqueued_tokens`` and/or ``max_queued_requests`` (None: off)."""
        for name, value in limits.items():
            if name not in ("max_enqueued_tokens", "max_queued_requests"):
                raise ValueError(f"unknown queue limit {name!r}")
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive whole number or null")
            setattr(self.engine, name, value)

    def set_rate_limit(self, provider: str, model: str | None = None, *, requests_per_minute: int | None = None,
                       tokens_per_minute: int | None = None) -> None:
        """Online rate limits per API key of ``provider`` (for ``model``, or every model without its
        own); on the sandbox clock; both None removes the limit (see .online)."""
        if provider not in PROVIDER_PREFIXES:
            raise ValueError(f"unknown provider {provider!r}; expected one of {sorted(PROVIDER_PREFIXES)}")
        online_state(self.engine).set_rate_limit(provider, model, requests_per_minute=requests_per_minute,
                                                 tokens_per_minute=tokens_per_minute)

    def set_online_latency(self, seconds: float) -> None:
        """Wall seconds each online answer is held back (default 0)."""
        online_state(self.engine).set_latency(seconds)

    def online(self) -> dict[str, Any]:
        """The online rate limits and latency."""
        return online_state(self.engine).describe()

    def clear_online(self) -> None:
        """No online rate limits (their windows emptied), no latency."""
        online_state(self.engine).clear()

    def jobs(self) -> list[dict[str, Any]]:
        out = []
        for provider in PROVIDER_PREFIXES:
            for state in self.engine.list_jobs(provider):
                out.append({"provider": provider, "id": state.doc["id"], "phase": state.snap.phase,
                            "processed": state.snap.processed, "total": state.doc["total"],
                            "model": state.doc["model"], "metadata": state.doc["metadata"]})
        return out


def routes(controller: Controller) -> list[Route]:
    def handler(fn: Any) -> Any:
        async def endpoint(request: Request) -> JSONResponse:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw.strip() else {}
                result = await run_in_threadpool(fn, request, body)
            except (TypeError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(result)
        return endpoint

    engine = controller.engine

    def health(_r: Request, _b: Any) -> Any:
        return {"ok": True, "now": controller.now()}

    def clock(_r: Request, _b: Any) -> Any:
        return {"now": controller.now(), "speed": engine.clock.speed}

    def advance(_r: Request, body: Any) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("seconds"), (int, float)):
            raise ValueError('expected {"seconds": <number>}')
        return {"now": controller.advance(body["seconds"])}

    def list_faults(_r: Request, _b: Any) -> Any:
        return {"data": controller.faults()}

    def add_fault(_r: Request, body: Any) -> Any:
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object of fault fields")
        return {"id": controller.set_faults(**body)}

    def clear(_r: Request, _b: Any) -> Any:
        controller.clear_faults()
        return {"cleared": True}

    def remove(request: Request, _b: Any) -> Any:
        return {"id": request.path_params["fault_id"], "deleted": controller.remove_fault(request.path_params["fault_id"])}

    def counters(_r: Request, _b: Any) -> Any:
        return controller.counters()

    def reset(_r: Request, _b: Any) -> Any:
        controller.reset_counters()
        return controller.counters()

    def jobs(_r: Request, _b: Any) -> Any:
        return {"data": controller.jobs()}

    def lose(request: Request, _b: Any) -> Any:
        return controller.lose_results(request.path_params["provider"], request.path_params["job_id"])

    def delete_job(request: Request, _b: Any) -> Any:
        return controller.delete_job(request.path_params["provider"], request.path_params["job_id"])

    def config(_r: Request, body: Any) -> Any:
        if isinstance(body, dict) and "results_url" in body:
            controller.set_results_url(body["results_url"])
        if isinstance(body, dict):
            queue = {k: body[k] for k in ("max_enqueued_tokens", "max_queued_requests") if k in body}
            if queue:
                controller.set_queue_limits(**queue)
        return {"results_url": engine.results_url, "max_enqueued_tokens": engine.max_enqueued_tokens,
                "max_queued_requests": engine.max_queued_requests}

    def index(_r: Request, _b: Any) -> Any:
        return describe()

    def online(_r: Request, body: Any) -> Any:
        if isinstance(body, dict) and body:
            fields = dict(body)
            if "latency" in fields:
                controller.set_online_latency(fields.pop("latency"))
            if fields:
                if not isinstance(fields.get("provider"), str):
                    raise ValueError('expected {"provider": ..., "model"?: ..., "requests_per_minute"?: N, '
                                     '"tokens_per_minute"?: N} and/or {"latency": seconds}')
                controller.set_rate_limit(**fields)
        return controller.online()

    def clear_online(_r: Request, _b: Any) -> Any:
        controller.clear_online()
        return controller.online()

    return [
        Route("/", handler(index), methods=["GET"]),
        Route("/health", handler(health), methods=["GET"]),
        Route("/clock", handler(clock), methods=["GET"]),
        Route("/clock/advance", handler(advance), methods=["POST"]),
        Route("/faults", handler(list_faults), methods=["GET"]),
        Route("/faults", handler(add_fault), methods=["POST"]),
        Route("/faults", handler(clear), methods=["DELETE"]),
        Route("/faults/{fault_id}", handler(remove), methods=["DELETE"]),
        Route("/counters", handler(counters), methods=["GET"]),
        Route("/counters/reset", handler(reset), methods=["POST"]),
        Route("/jobs", handler(jobs), methods=["GET"]),
        # ``path``: a Gemini job may be named as its API names it, batches/<id>.
        Route("/jobs/{provider}/{job_id:path}/lose-results", handler(lose), methods=["POST"]),
        Route("/jobs/{provider}/{job_id:path}", handler(delete_job), methods=["DELETE"]),
        Route("/config", handler(config), methods=["GET", "POST"]),
        Route("/online", handler(online), methods=["GET", "POST"]),
        Route("/online", handler(clear_online), methods=["DELETE"]),
    ]


def _local_id(provider: str, job_id: str) -> str:
    """The sandbox's id of a job named as the provider's API names it (Gemini: ``batches/<id>``)."""
    return job_id.removeprefix("batches/") if provider == "gemini" else job_id
#: What ``GET /_sandbox`` answers: every control route, what it takes and what it does.
ROUTE_DOCS: tuple[tuple[str, str, str], ...] = (
    ("GET", "/_sandbox", "this list"),
    ("GET", "/_sandbox/health", '{"ok": true, "now": t}'),
    ("GET", "/_sandbox/clock", '{"now": t, "speed": s|null}: sandbox time, in seconds'),
    ("POST", "/_sandbox/clock/advance", '{"seconds": N} -> {"now": t}: move the clock; jobs progress with it'),
    ("GET", "/_sandbox/faults", '{"data": [rule, ...]}: the fault rules'),
    ("POST", "/_sandbox/faults", '{provider?, model?, metadata?, fault fields} -> {"id": ...}: add a fault rule'),
    ("DELETE", "/_sandbox/faults", "remove every fault rule"),
    ("DELETE", "/_sandbox/faults/{id}", "remove one fault rule"),
    ("GET", "/_sandbox/counters", "per provider: files, jobs, requests, HTTP calls"),
    ("POST", "/_sandbox/counters/reset", "zero the counters"),
    ("GET", "/_sandbox/jobs", "every job with its phase, processed and total"),
    ("POST", "/_sandbox/jobs/{provider}/{id}/lose-results", "an ended job's results go, as retention does it"),
    ("DELETE", "/_sandbox/jobs/{provider}/{id}", "delete an ended job (Anthropic, Mistral, Gemini)"),
    ("GET", "/_sandbox/config", "results_url style and account queue limits"),
    ("POST", "/_sandbox/config", '{"results_url": "absolute"|"relative", "max_enqueued_tokens": N|null, '
                                 '"max_queued_requests": N|null}'),
    ("GET", "/_sandbox/online", "the online endpoints' rate limits and latency"),
    ("POST", "/_sandbox/online", '{"provider": p, "model"?: m, "requests_per_minute"?: N, "tokens_per_minute"?: N} '
                                 '(per API key, sandbox clock; both null: no limit) and/or {"latency": seconds}'),
    ("DELETE", "/_sandbox/online", "no online rate limits, no latency"),
)


#: Each provider's online (synchronous) endpoint, under its prefix (see .online_api).
ONLINE_ENDPOINTS = {"openai": "/chat/completions", "anthropic": "/v1/messages", "mistral": "/v1/chat/completions",
                    "gemini": "/v1beta/models/{model}:generateContent", "groq": "/chat/completions",
                    "together": "/v1/chat/completions", "deepinfra": "/chat/completions",
                    "nebius": "/chat/completions"}


def describe() -> dict[str, Any]:
    """The body of ``GET /_sandbox``: the provider prefixes, their online endpoints and every control route."""
    return {
        "service": "overnight sandbox",
        "providers": dict(PROVIDER_PREFIXES),
        "online": {name: f"POST {PROVIDER_PREFIXES[name]}{path}" for name, path in ONLINE_ENDPOINTS.items()},
        "routes": [{"method": m, "path": p, "does": d} for m, p, d in ROUTE_DOCS],
    }


class SandboxControlError(RuntimeError):
    """The control API refused a call."""


class SandboxControl(ProviderUrls):
    """Drive a running sandbox (e.g. one started with ``overnight sandbox serve``) over HTTP."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.url + "/_sandbox" + path, data=data, method=method,
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (our own URL)
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise SandboxControlError(f"{method} {path}: {exc.code} {exc.read().decode('utf-8', 'replace')}") from None

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def clock(self) -> dict[str, Any]:
        return self._call("GET", "/clock")

    def describe(self) -> dict[str, Any]:
        return self._call("GET", "")

    def now(self) -> float:
        return self._call("GET", "/clock")["now"]

    def advance(self, seconds: float) -> float:
        return self._call("POST", "/clock/advance", {"seconds": seconds})["now"]

    def set_faults(self, provider: str | None = None, model: str | None = None,
                   metadata: Mapping[str, Any] | None = None, **fault_fields: Any) -> str:
        fields = {k: (sorted(v) if isinstance(v, (set, frozenset)) else v) for k, v in fault_fields.items()}
        return self._call("POST", "/faults", {"provider": provider, "model": model, "metadata": metadata, **fields})["id"]

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/faults")["data"]

    def remove_fault(self, fault_id: str) -> bool:
        return self._call("DELETE", f"/faults/{fault_id}")["deleted"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def counters(self) -> dict[str, dict[str, Any]]:
        return self._call("GET", "/counters")

    def reset_counters(self) -> None:
        self._call("POST", "/counters/reset", {})

    def set_results_url(self, style: str) -> None:
        self._call("POST", "/config", {"results_url": style})

    def set_queue_limits(self, **limits: int | None) -> None:
        self._call("POST", "/config", dict(limits))

    def set_rate_limit(self, provider: str, model: str | None = None, *, requests_per_minute: int | None = None,
                       tokens_per_minute: int | None = None) -> None:
        self._call("POST", "/online", {"provider": provider, "model": model,
                                       "requests_per_minute": requests_per_minute,
                                       "tokens_per_minute": tokens_per_minute})

    def set_online_latency(self, seconds: float) -> None:
        self._call("POST", "/online", {"latency": seconds})

    def online(self) -> dict[str, Any]:
        return self._call("GET", "/online")

    def clear_online(self) -> None:
        self._call("DELETE", "/online")

    def jobs(self) -> list[dict[str, Any]]:
        return self._call("GET", "/jobs")["data"]

    def lose_results(self, provider: str, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{provider}/{job_id}/lose-results", {})

    def delete_job(self, provider: str, job_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/jobs/{provider}/{job_id}")
