"""Assembling the app, and the two ways to run it: :class:`Sandbox` and :func:`serve`.

``Sandbox`` runs uvicorn in a background thread (an ephemeral port by default) and
offers the control operations in-process; ``serve`` blocks, for the CLI.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from . import anthropic_api, control, gemini_api, mistral_api, openai_api, together_api
from .config import Durations, JobLimits, ResultsUrlStyle, SandboxConfig, resolve_limits
from .control import PROVIDER_PREFIXES, Controller, ProviderUrls
from .engine import Engine


class _QuickServer(uvicorn.Server):
    """uvicorn with a 10 ms stop latency instead of ~150 ms: test suites start and stop
    a sandbox per test."""

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            await asyncio.sleep(0.01)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.config.timeout_graceful_shutdown or 2)
        while (self.server_state.connections or self.server_state.tasks) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for task in self.server_state.tasks:
            task.cancel()


def build_app(engine: Engine) -> Starlette:
    """The ASGI app: each provider under its own prefix, control under ``/_sandbox``."""
    openai_routes = openai_api.routes(engine)

    async def index(_request: Request) -> JSONResponse:
        return JSONResponse({"service": "overnight sandbox", "prefixes": PROVIDER_PREFIXES, "control": "/_sandbox"})

    async def not_found(request: Request) -> JSONResponse:
        return JSONResponse({"error": f"no such path: {request.url.path}; providers live under "
                                      f"{sorted(PROVIDER_PREFIXES.values())}"}, status_code=404)

    async def control_index(_request: Request) -> JSONResponse:
        return JSONResponse(control.describe())

    return Starlette(routes=[
        Route("/", index),
        Route("/_sandbox", control_index),  # without the slash, which the Mount below does not match
        Mount("/openai/v1", routes=openai_routes),
        Mount("/openai", routes=openai_routes),  # an SDK base_url without /v1 drops the prefix
        Mount("/anthropic", routes=anthropic_api.routes(engine)),
        Mount("/mistral", routes=mistral_api.routes(engine)),
        Mount("/gemini", routes=gemini_api.routes(engine)),
        Mount("/groq/openai/v1", routes=openai_api.routes(engine, openai_api.GROQ)),
        Mount("/together", routes=together_api.routes(engine)),
        Mount("/deepinfra/v1/openai", routes=openai_api.routes(engine, openai_api.DEEPINFRA)),
        Mount("/nebius/v1", routes=openai_api.routes(engine, openai_api.NEBIUS)),
        Mount("/_sandbox", routes=control.routes(Controller(engine))),
        Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ])


def make_config(*, durations: Durations | Mapping[str, float] | None = None,
                limits: Mapping[str, JobLimits | Mapping[str, Any]] | None = None,
                results_url: ResultsUrlStyle = "absolute", forward_url: str | None = None,
                forward_model: str | None = None, max_enqueued_tokens: int | None = None,
                max_queued_requests: int | None = None) -> SandboxConfig:
    if durations is None:
        durations = Durations()
    elif not isinstance(durations, Durations):
        durations = Durations(**dict(durations))
    return SandboxConfig(durations=durations, limits=resolve_limits(limits),
                         results_url=results_url, forward_url=forward_url, forward_model=forward_model,
                         max_enqueued_tokens=max_enqueued_tokens, max_queued_requests=max_queued_requests)


class Sandbox(Controller, ProviderUrls):
    """A sandbox server in a background thread; a context manager.

    ``speed``: None or 0 = manual clock (moves only with :meth:`advance`); otherwise the
    number of sandbox seconds per wall second. ``state_dir`` None = a temporary
    directory removed on stop. ``limits`` overrides per provider, e.g.
    ``{"openai": {"max_requests": 10}}``. ``results_url``: form of Anthropic's
    ``results_url`` ("absolute" or "relative"). ``forward_url``: an OpenAI-compatible
    server to get real generations from (``forward_model`` overrides the model name).
    """

    def __init__(self, state_dir: str | os.PathLike[str] | None = None, host: str = "127.0.0.1", port: int = 0,
                 speed: float | None = None, *, durations: Durations | Mapping[str, float] | None = None,
                 limits: Mapping[str, JobLimits | Mapping[str, Any]] | None = None,
                 results_url: ResultsUrlStyle = "absolute", forward_url: str | None = None,
                 forward_model: str | None = None, log_level: str = "warning",
                 max_enqueued_tokens: int | None = None, max_queued_requests: int | None = None) -> None:
        self._tmp = None if state_dir is not None else tempfile.mkdtemp(prefix="overnight-sandbox-")
        self.state_dir = Path(state_dir if state_dir is not None else self._tmp)  # type: ignore[arg-type]
        self.host = host
        self.port = port
        self.speed = speed
        self.config = make_config(durations=durations, limits=limits, results_url=results_url,
                                  forward_url=forward_url, forward_model=forward_model,
                                  max_enqueued_tokens=max_enqueued_tokens, max_queued_requests=max_queued_requests)
        self.log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        super().__init__(Engine(self.state_dir, self.config, speed))

    # --- URLs ----------------------------------------------------------------------------
    @property
    def url(self) -> str:  # type: ignore[override]  # ProviderUrls only reads it
        if self._server is None:
            raise RuntimeError("the sandbox is not running; call start() or use it as a context manager")
        return f"http://{self.host}:{self.port}"

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> Sandbox:
        if self._server is not None:
            return self
        if self.engine.store.closed:
            self.engine = Engine(self.state_dir, self.config, self.speed)
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on sockets that say so (else ~40 ms per call).
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM,
                             socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(build_app(self.engine), log_level=self.log_level, access_log=False,
                                lifespan="off", timeout_graceful_shutdown=2)
        server = _QuickServer(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="overnight-sandbox",
                                  daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("the sandbox server did not start")
            time.sleep(0.005)
        self._server, self._thread, self._socket = server, thread, sock
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            assert self._thread is not None
            self._thread.join(timeout=10)
            self._socket.close()
            self._server = self._thread = None
        if not self.engine.store.closed:
            self.engine.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _stderr_log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with every handler on stderr (its access log uses stdout)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    for handler in config.get("handlers", {}).values():
        if "stream" in handler:
            handler["stream"] = "ext://sys.stderr"
    return config


def default_state_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("overnight")) / "sandbox"


def serve(host: str = "127.0.0.1", port: int = 8080, state_dir: str | os.PathLike[str] | None = None,
          speed: float | None = 1.0, *, durations: Durations | Mapping[str, float] | None = None,
          limits: Mapping[str, JobLimits | Mapping[str, Any]] | None = None,
          results_url: ResultsUrlStyle = "absolute", forward_url: str | None = None,
          forward_model: str | None = None, log_level: str = "info", max_enqueued_tokens: int | None = None,
          max_queued_requests: int | None = None, access_log: bool = False) -> None:
    """Run a sandbox in the foreground until interrupted (``overnight sandbox serve``).

    ``speed`` defaults to real time (1.0); None or 0 freezes the clock so that only
    ``POST /_sandbox/clock/advance`` moves it. ``access_log=True`` logs each HTTP request,
    to stderr (off by default: such lines would interleave with a run in the same terminal).
    """
    directory = Path(state_dir) if state_dir is not None else default_state_dir()
    config = make_config(durations=durations, limits=limits, results_url=results_url, forward_url=forward_url,
                         forward_model=forward_model, max_enqueued_tokens=max_enqueued_tokens,
                         max_queued_requests=max_queued_requests)
    engine = Engine(directory, config, speed)
    base = f"http://{host}:{port}"
    print(f"overnight sandbox on {base}  (state: {directory}, clock: "
          f"{'manual' if not speed else f'x{speed:g}'})")
    for name, prefix in PROVIDER_PREFIXES.items():
        print(f"  {name:<9} {base}{prefix}")
    print(f"  control   {base}/_sandbox", flush=True)  # a pipe buffers; a terminate would lose it
    try:
        uvicorn.run(build_app(engine), host=host, port=port, log_level=log_level, lifespan="off",
                    access_log=access_log, log_config=_stderr_log_config())
    finally:
        engine.close()
