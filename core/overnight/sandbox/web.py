"""HTTP plumbing shared by the provider modules.

* :class:`ApiError` -> the provider's own JSON error shape (each provider supplies a
  :class:`Flavor`).
* :class:`Api` wraps every endpoint the same way: count the call, check the key
  (never logging it), apply HTTP fault rules, then run the handler (plain handlers run
  in a worker thread, receiving a parsed :class:`Call`).
* :func:`receive_upload` streams a multipart upload straight to disk.
* :func:`download` streams a file from disk, with download faults applied.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import os
import secrets
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence, Union

import attrs
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .engine import Engine
from .faults import Fault

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class ApiError(Exception):
    """An error answered in the provider's JSON shape."""

    def __init__(self, status: int, message: str, *, type: str | None = None, code: str | None = None,
                 param: str | None = None, headers: Mapping[str, str] | None = None,
                 body: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        #: The whole JSON body, when the provider's shape for this error is not the flavor's usual one.
        self.body = body


@attrs.frozen
class Flavor:
    """How one provider names things on the wire."""

    name: str
    error_body: Callable[[ApiError, str, str], dict[str, Any]]   # (error, resolved type, request id)
    error_type: Callable[[int], str]                            # default error type for a status
    auth_message: str
    request_id_header: str
    request_id_prefix: str
    accepts_x_api_key: bool = False
    #: Other headers that carry the key as is (Gemini: ``x-goog-api-key``), and a query
    #: parameter that may carry it instead (Gemini: ``?key=``).
    key_headers: tuple[str, ...] = ()
    key_query: str | None = None

    def request_id(self) -> str:
        return self.request_id_prefix + secrets.token_hex(12)

    def error_response(self, error: ApiError, request_id: str) -> JSONResponse:
        body = error.body if error.body is not None else self.error_body(
            error, error.type or self.error_type(error.status), request_id)
        headers = {self.request_id_header: request_id, **error.headers}
        return JSONResponse(body, status_code=error.status, headers=headers)


@attrs.frozen
class Call:
    """A parsed request handed to a plain (threaded) handler."""

    method: str
    path: str
    params: Mapping[str, str]
    query: Sequence[tuple[str, str]]
    headers: Mapping[str, str]
    body: bytes
    origin: str                       # scheme://host:port the client used

    def json(self) -> Any:
        if not self.body.strip():
            return {}  # the SDKs send empty bodies on cancel
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, f"The request body is not valid JSON: {exc}") from None

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        return data

    def q(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return default

    def q_all(self, name: str) -> list[str]:
        return [value for key, value in self.query if key == name]

    def q_int(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.q(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, f"Invalid '{name}': expected an integer.", param=name) from None
        if not low <= value <= high:
            raise ApiError(400, f"Invalid '{name}': must be between {low} and {high}.", param=name)
        return value


Handler = Union[Callable[[Call], Any], Callable[[Request], Awaitable[Any]]]


class Api:
    """Builds a provider's routes, each wrapped with counting, auth and HTTP faults."""

    def __init__(self, engine: Engine, flavor: Flavor) -> None:
        self.engine = engine
        self.flavor = flavor

    def route(self, template: str, handler: Handler, methods: Sequence[str], *,
              body_limit: Callable[[], int] | None = None, counted: bool = True,
              public: Callable[[Request], bool] | None = None) -> Route:
        """``public``: requests for which it is true need no key (e.g. a resumable
        upload's chunks, which the session id in the URL authorises)."""
        flavor, engine = self.flavor, self.engine
        is_async = inspect.iscoroutinefunction(handler)

        async def endpoint(request: Request) -> Response:
            request_id = flavor.request_id()
            if counted:
                engine.count_http(flavor.name, f"{request.method} {template}")
            try:
                if not (public is not None and public(request)) and not self._api_key(request):
                    raise ApiError(401, flavor.auth_message, type=flavor.error_type(401))
                fault = engine.http_fault(flavor.name, request.method, request.url.path)
                if fault is not None and fault.http_status is not None:
                    await linger(request, fault.http_delay)
                    raise fault_error(fault)
                if is_async:
                    result = await handler(request)  # type: ignore[arg-type]  # is_async: takes the Request
                else:
                    body = await read_body(request, body_limit() if body_limit else None)
                    call = Call(request.method, request.url.path, dict(request.path_params),
                                request.query_params.multi_items(),
                                {k.lower(): v for k, v in request.headers.items()}, body, origin(request))
                    result = await run_in_threadpool(handler, call)  # type: ignore[arg-type]  # takes a Call
                if fault is not None:  # a delay alone: the real answer, late (body already read)
                    await linger(request, fault.http_delay)
            except ApiError as error:
                return flavor.error_response(error, request_id)
            response = result if isinstance(result, Response) else JSONResponse(result)
            response.headers[flavor.request_id_header] = request_id
            return response

        return Route(template, endpoint, methods=list(methods))

    def fallback(self) -> Route:
        """Unknown paths under the provider's prefix get a provider-shaped 404."""

        def not_found(call: Call) -> Any:
            raise ApiError(404, f"Unknown request URL: {call.method} {call.path}.", code="unknown_url")

        return self.route("/{path:path}", not_found, ALL_METHODS, counted=False)

    def _api_key(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        if self.flavor.accepts_x_api_key:
            return request.headers.get("x-api-key", "").strip() or None
        for header in self.flavor.key_headers:
            if request.headers.get(header, "").strip():
                return request.headers[header].strip()
        if self.flavor.key_query:
            return request.query_params.get(self.flavor.key_query, "").strip() or None
        return None


async def linger(request: Request, seconds: float) -> None:
    """Hold the answer back ``seconds`` (a hung provider), or until the client gives up."""
    if seconds <= 0:
        return

    async def until_disconnect() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    try:
        await asyncio.wait_for(until_disconnect(), seconds)
    except asyncio.TimeoutError:
        pass


def origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


async def read_body(request: Request, limit: int | None) -> bytes:
    declared = request.headers.get("content-length")
    if limit is not None and declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"Request exceeds the maximum allowed size of {limit} bytes.", type="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if limit is not None and size > limit:
            raise ApiError(413, f"Request exceeds the maximum allowed size of {limit} bytes.",
                           type="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def fault_error(fault: Fault) -> ApiError:
    status = fault.http_status or 500
    headers = {}
    if fault.retry_after is not None:
        headers["retry-after"] = str(max(0, math.ceil(fault.retry_after)))
        headers["retry-after-ms"] = str(max(0, int(fault.retry_after * 1000)))
    if status == 429:
        message = "Rate limit exceeded (sandbox fault injection)."
    elif status == 529:  # Anthropic's overloaded_error
        message = "Overloaded (sandbox fault injection)."
    elif status >= 500:
        message = "The server had an error while processing your request (sandbox fault injection)."
    elif status == 404:
        message = "Not found (sandbox fault injection)."
    else:
        message = "The request was rejected (sandbox fault injection)."
    return ApiError(status, message, headers=headers,
                    code="rate_limit_exceeded" if status == 429 else None)


# --- uploads -------------------------------------------------------------------------------

@attrs.frozen
class Upload:
    """A received multipart form: small fields in memory, the file part on disk."""

    fields: Mapping[str, str]
    filename: str | None
    content_type: str | None
    path: Path | None
    size: int
    lines: int
    too_big: bool


async def receive_upload(request: Request, target: Path,
                         max_file_bytes: Callable[[Mapping[str, str]], int]) -> Upload:
    """Stream a ``multipart/form-data`` body; the part named ``file`` goes to ``target``.

    ``max_file_bytes`` gets the fields sent before the file (the SDKs send ``purpose``
    first). Past that size the file part is drained but no longer written, so the client
    can read our 400 instead of a reset connection.
    """
    ctype, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise ApiError(400, "Expected a multipart/form-data body.")
    fields: dict[str, str] = {}
    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "name": None, "file": None,
                             "filename": None, "ctype": None, "size": 0, "lines": 0, "last": b"",
                             "too_big": False, "buffer": bytearray(), "has_file": False, "limit": 0}
    out = None

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].decode("latin-1").lower()] = state["value"].decode("utf-8", "replace")
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        nonlocal out
        _, disp = parse_options_header(state["headers"].get("content-disposition", ""))
        state["name"] = disp.get(b"name", b"").decode("utf-8", "replace")
        filename = disp.get(b"filename")
        state["buffer"] = bytearray()
        if state["name"] == "file" and filename is not None:
            state["has_file"] = True
            state["filename"] = filename.decode("utf-8", "replace")
            state["ctype"] = state["headers"].get("content-type")
            state["limit"] = max_file_bytes(fields)
            out = open(target, "wb")  # noqa: SIM115 (closed in on_part_end / finally)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if out is not None:
            state["size"] += len(chunk)
            if state["size"] > state["limit"]:
                state["too_big"] = True
                return
            state["lines"] += chunk.count(b"\n")
            if chunk:
                state["last"] = chunk[-1:]
            out.write(chunk)
        elif len(state["buffer"]) < 65536:
            state["buffer"] += chunk

    def on_part_end() -> None:
        nonlocal out
        if out is not None:
            out.close()
            out = None
        elif state["name"]:
            fields[state["name"]] = state["buffer"].decode("utf-8", "replace")
        state["headers"] = {}

    parser = MultipartParser(boundary, {
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_part_end": on_part_end,
    })
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except ApiError:
        raise
    except Exception as exc:  # python-multipart raises several error types
        raise ApiError(400, f"Malformed multipart body: {exc}") from None
    finally:
        if out is not None:
            out.close()
    lines = state["lines"] + (1 if state["size"] and state["last"] not in (b"\n", b"") else 0)
    return Upload(fields, state["filename"], state["ctype"], target if state["has_file"] else None,
                  state["size"],
                  lines, state["too_big"])


# --- downloads -----------------------------------------------------------------------------

class DeliberateDisconnect(Exception):
    """Raised to drop a connection mid-body (a truncated-download fault)."""


class _QuietDisconnects(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DeliberateDisconnect)


logging.getLogger("uvicorn.error").addFilter(_QuietDisconnects())


class FaultyDownload(Response):
    """Streams a file slowly and/or cut short, as a download fault says."""

    def __init__(self, path: Path, media_type: str, fault: Fault) -> None:
        super().__init__(media_type=media_type)
        self.path = path
        self.fault = fault

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        size = os.path.getsize(self.path)
        keep = size if self.fault.download_truncate is None else int(size * self.fault.download_truncate)
        announced = size if self.fault.download_truncate_mode == "abort" else keep
        if self.fault.download_delay > 0:
            await asyncio.sleep(self.fault.download_delay)
        headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        headers.append((b"content-length", str(announced).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        sent = 0
        with open(self.path, "rb") as f:
            while sent < keep:
                chunk = f.read(min(1 << 16, keep - sent))
                if not chunk:
                    break
                sent += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if announced > sent:
            raise DeliberateDisconnect()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class LostResponse(Response):
    """The answer to a create whose response is lost: headers, then the connection drops.

    The job was created; the client sees a connection error (httpx ``RemoteProtocolError``,
    an ``APIConnectionError`` in the OpenAI and Anthropic SDKs) and cannot tell.
    """

    def __init__(self) -> None:
        super().__init__(media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        headers.append((b"content-length", b"1024"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise DeliberateDisconnect()


def created(engine: Engine, state: Any, view: Any) -> Any:
    """A create's answer: its view, or a lost response when a fault says so."""
    return LostResponse() if engine.create_lost(state) else view


def download(path: Path, media_type: str, fault: Fault | None) -> Response:
    if fault is None:
        response = FileResponse(path, media_type=media_type)
        # Each chunk is a read in a worker thread and a send: 1 MB ones, not Starlette's 64 KB,
        # for result files of tens of MB.
        response.chunk_size = 1 << 20
        return response
    return FaultyDownload(path, media_type, fault)
