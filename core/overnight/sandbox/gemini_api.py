"""Gemini (Developer API): the Files and Batch Mode APIs, served under ``/gemini``.

The ``google-genai`` SDK joins its base URL with ``/{api_version}/``; both ``v1`` (the
SDK's default) and ``v1beta`` (the documented REST version) are served. The key comes
in ``x-goog-api-key`` (or ``?key=``). See ``docs/protocols/gemini.md`` for the sources.

* Files: the resumable upload protocol (``POST /upload/{v}/files`` with
  ``X-Goog-Upload-Command: start`` answers an ``x-goog-upload-url``; chunks go there with
  ``upload`` / ``upload, finalize`` and the offset), get, list (page tokens), delete,
  and ``GET files/{id}:download?alt=media`` for generated files only (uploads cannot be
  downloaded). Files expire 48 hours after creation.
* Batches: ``POST models/{model}:batchGenerateContent`` with ``inputConfig.requests``
  (inline, body under 20 MB) or ``inputConfig.fileName`` (an uploaded JSONL of
  ``{"key", "request"}`` lines). A batch is an Operation: ``{name, metadata{state,
  batchStats, output, ...}, done, response|error}``. Inline results come back in the job
  (``output.inlinedResponses.inlinedResponses``, each echoing its request's
  ``metadata``), file results as a generated file (``output.responsesFile``) of
  ``{"key", "response"|"error"}`` lines. Requests an expiry or a cancel stopped leave
  no result. Jobs not done 48 hours after creation expire.
* Limits: a request whose input passes the model's input limit is a per-request 400
  ``INVALID_ARGUMENT`` ("The input token count exceeds the maximum number of tokens
  allowed 1048576."); a create past the account's queue limits is refused with 429
  ``RESOURCE_EXHAUSTED`` ("You exceeded your current quota ..."), as the real API does.
* A missing file (deleted, or past its 48 hours) answers 403 ``PERMISSION_DENIED`` "You
  do not have permission to access the File X or it may not exist"; a missing batch 404
  ``NOT_FOUND``. A create that lands late (faults ``create_response_lost``,
  ``visible_after``, ``invisible_lookups``) hides the batch from get, list and cancel.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import string
import threading
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .engine import Engine, Fate, JobView, RequestError, ResultLine, Scan, SinkFile, iter_jsonl, parse_line
from .gemini_openai_lines import is_openai_line, is_openai_output, native_request, openai_error, openai_output
from .lifecycle import Schedule, snapshot
from .quota import context_error
from .responder import ForwardError, Generation, content_text, generate, prompt_tokens
from .web import Api, ApiError, Call, Flavor, created, download

PROVIDER = "gemini"
HOUR = 3600
MB = 1024 * 1024
#: Batches not done this long after creation expire; files are deleted this long after upload.
WINDOW = 48 * HOUR
FILE_TTL = 48 * HOUR
INLINE_MAX_BYTES = 20 * MB
VERSIONS = ("v1", "v1beta")
MAX_PROBLEMS = 100
_ID_CHARS = string.ascii_lowercase + string.digits
OPERATION_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
STATE = {"validating": "BATCH_STATE_PENDING", "in_progress": "BATCH_STATE_RUNNING",
         "finalizing": "BATCH_STATE_RUNNING", "cancelling": "BATCH_STATE_RUNNING",
         "completed": "BATCH_STATE_SUCCEEDED", "failed": "BATCH_STATE_FAILED",
         "expired": "BATCH_STATE_EXPIRED", "cancelled": "BATCH_STATE_CANCELLED"}
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 409: "ALREADY_EXISTS", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
#: google.rpc.Code numbers, used inside Operation.error and per-request errors.
#: The real API's answer to a create past the account's batch quota (python-genai#1901,
#: the Gemini forum's "Hitting rate limit on Gemini Batch API" thread).
QUOTA_MESSAGE = ("You exceeded your current quota, please check your plan and billing details. For more information "
                 "on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.")
_RPC_CODES = {"INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5, "RESOURCE_EXHAUSTED": 8,
              "FAILED_PRECONDITION": 9, "INTERNAL": 13, "UNAVAILABLE": 14, "UNAUTHENTICATED": 16}


def _new_id(n: int = 16) -> str:
    return "".join(secrets.choice(_ID_CHARS) for _ in range(n))


def _status_name(status: int) -> str:
    if status >= 500 and status not in _STATUS_NAMES:
        return "INTERNAL"
    return _STATUS_NAMES.get(status, "FAILED_PRECONDITION" if status == 400 else "INVALID_ARGUMENT")


def _error_body(error: ApiError, kind: str, request_id: str) -> dict[str, Any]:
    return {"error": {"code": error.status, "message": error.message, "status": kind}}


FLAVOR = Flavor(name=PROVIDER, error_body=_error_body, error_type=_status_name,
                auth_message=("Method doesn't allow unregistered callers (callers without established "
                              "identity). Please use API Key or other form of API consumer identity to call this API."),
                request_id_header="x-goog-request-id", request_id_prefix="", key_headers=("x-goog-api-key",),
                key_query="key")


def _time(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _field(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    """Proto JSON accepts the lowerCamel and the original snake_case name of a field."""
    return obj[camel] if camel in obj else obj.get(snake)


# --- requests -> responses --------------------------------------------------------------------------

def _conversation(request: Mapping[str, Any]) -> list[tuple[str, str]]:
    conv: list[tuple[str, str]] = []
    system = _field(request, "systemInstruction", "system_instruction")
    if isinstance(system, Mapping):
        conv.append(("system", content_text(system.get("parts"))))
    for content in request.get("contents") or ():
        role = "assistant" if content.get("role") == "model" else "user"
        conv.append((role, content_text(content.get("parts"))))
    return conv


def _json_spec(config: Mapping[str, Any]) -> Any:
    if _field(config, "responseMimeType", "response_mime_type") != "application/json":
        return None
    schema = _field(config, "responseJsonSchema", "response_json_schema") or _field(
        config, "responseSchema", "response_schema")
    return _lower_types(schema) if isinstance(schema, Mapping) else True


def _lower_types(schema: Any) -> Any:
    """Gemini's OpenAPI-style ``responseSchema`` spells types in capitals (``OBJECT``)."""
    if isinstance(schema, Mapping):
        return {k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_lower_types(v) for v in schema]
    return schema


def check_request(request: Any) -> RequestError | None:
    """What generateContent would refuse with a 400, found while validating."""
    if not isinstance(request, Mapping):
        return RequestError(400, "Invalid JSON payload: the request must be an object.", "INVALID_ARGUMENT")
    contents = request.get("contents")
    if not isinstance(contents, list) or not contents:
        return RequestError(400, "* GenerateContentRequest.contents: contents is not specified", "INVALID_ARGUMENT",
                            param="contents")
    for content in contents:
        if not isinstance(content, Mapping) or not isinstance(content.get("parts"), list) or not content["parts"]:
            return RequestError(400, "* GenerateContentRequest.contents.parts: contents.parts must not be empty.",
                                "INVALID_ARGUMENT", param="contents")
        if content.get("role") not in (None, "user", "model"):
            return RequestError(400, f"Please use a valid role: user, model. Got {content.get('role')!r}.",
                                "INVALID_ARGUMENT", param="contents")
    config = _field(request, "generationConfig", "generation_config") or {}
    if not isinstance(config, Mapping):
        return RequestError(400, "generationConfig must be an object", "INVALID_ARGUMENT", param="generationConfig")
    stops = _field(config, "stopSequences", "stop_sequences")
    if stops is not None and (not isinstance(stops, list) or len(stops) > 5):
        return RequestError(400, "* GenerationConfig.stop_sequences: at most 5 stop sequences are allowed",
                            "INVALID_ARGUMENT", param="stopSequences")
    return None


def input_limit_error(model: str | None, tokens: int) -> RequestError | None:
    """Gemini bounds a request's input alone (the output has its own ceiling)."""
    if context_error(PROVIDER, model, tokens, 0) is None:
        return None
    from .quota import window

    return RequestError(400, f"The input token count exceeds the maximum number of tokens allowed "
                             f"{window(PROVIDER, model)}.", "INVALID_ARGUMENT")


def respond(engine: Engine, request: Mapping[str, Any], model: str, rid: str, variant: int | None = None
            ) -> tuple[dict[str, Any], Generation]:
    conv = _conversation(request)
    config = _field(request, "generationConfig", "generation_config") or {}
    max_tokens = _field(config, "maxOutputTokens", "max_output_tokens")
    max_tokens = max_tokens if isinstance(max_tokens, int) else None
    stop = _field(config, "stopSequences", "stop_sequences")
    spec = _json_spec(config)
    if engine.forwarder is not None:
        g = engine.forwarder.chat(conv, model=model, max_tokens=max_tokens, stop=stop, json_format=spec)
    else:
        g = generate(conv, max_tokens=max_tokens, stop=stop, json_format=spec, variant=variant)
    body = {
        "candidates": [{"content": {"parts": [{"text": g.text}], "role": "model"},
                        "finishReason": "MAX_TOKENS" if g.finish == "length" else "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": g.prompt_tokens, "candidatesTokenCount": g.completion_tokens,
                          "totalTokenCount": g.prompt_tokens + g.completion_tokens},
        "modelVersion": model.removeprefix("models/"),
        "responseId": rid[:22],
    }
    return body, g


# --- the dialect ----------------------------------------------------------------------------------

class GeminiDialect:
    name = PROVIDER

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def iter_input(self, path: Path) -> Iterator[tuple[str, Mapping[str, Any], bool]]:
        for index, (_, line) in enumerate(iter_jsonl(path)):
            obj, exact = parse_line(line)
            yield _line_key(obj, index), obj, exact

    def scan(self, path: Path, model: str | None = None) -> Scan:
        problems: list[dict[str, Any]] = []
        ids: list[str] = []
        seen: set[str] = set()
        invalid: dict[int, RequestError] = {}
        total_tokens = 0

        def problem(line: int, message: str) -> None:
            if len(problems) < MAX_PROBLEMS:
                problems.append({"code": "INVALID_ARGUMENT", "line": line, "message": message})

        for number, raw in iter_jsonl(path):
            try:
                obj, _ = parse_line(raw)
            except ValueError:
                problem(number, f"Line {number}: invalid JSON")
                continue
            openai_shaped = is_openai_line(obj)  # judged by content, as the real API does
            if not openai_shaped and (not isinstance(obj, dict) or not isinstance(obj.get("request"), dict)):
                problem(number, f"Line {number}: each line must be an object with a 'request' object")
                continue
            key = _line_key(obj, len(ids))
            if key in seen:
                problem(number, f"Line {number}: duplicate key '{key}'")
                continue
            seen.add(key)
            native = native_request(obj["body"]) if openai_shaped else obj["request"]
            error = check_request(native)
            if error is None:
                tokens = prompt_tokens(_conversation(native))
                total_tokens += tokens
                error = input_limit_error(model, tokens)
            if error is not None:
                invalid[len(ids)] = error
            ids.append(key)
        if not ids and not problems:
            problems.append({"code": "INVALID_ARGUMENT", "line": None, "message": "The batch has no requests."})
        return Scan(ids, None, problems, invalid, tokens=total_tokens)

    def result(self, job: Mapping[str, Any], custom_id: str, request: Mapping[str, Any], fate: Fate,
               error: RequestError | None, prompt_tokens: int | None = None) -> ResultLine:
        if fate in ("expired", "cancelled"):
            return ResultLine(None, None)  # never run: no line, and nothing billed
        inline = job["extra"]["inline"]
        head: dict[str, Any] = {"metadata": request.get("metadata") or {}} if inline else {"key": custom_id}
        rid = hashlib.sha256(f"{job['id']}\x1f{custom_id}".encode()).hexdigest()
        if not inline and is_openai_line(request):
            return self._openai_result(job, custom_id, request, fate, error, rid)
        if fate == "ok":
            try:
                body, g = respond(self.engine, request["request"], job["model"], rid)
            except ForwardError as exc:
                error = RequestError(500, str(exc), "INTERNAL")
            else:
                return ResultLine("output", {**head, "response": body}, ok=True,
                                  input_tokens=g.prompt_tokens, output_tokens=g.completion_tokens)
        assert error is not None
        status = error.type if error.type in _RPC_CODES else _status_name(error.status)
        # One results file holds successes and errors alike, in input order.
        return ResultLine("output", {**head, "error": {"code": _RPC_CODES.get(status, 13), "message": error.message,
                                                       "status": status}})

    def _openai_result(self, job: Mapping[str, Any], custom_id: str, request: Mapping[str, Any], fate: Fate,
                       error: RequestError | None, rid: str) -> ResultLine:
        """The OpenAI-shaped result of an OpenAI-shaped input line (see .gemini_openai_lines)."""
        if fate == "ok":
            try:
                _, g = respond(self.engine, native_request(request["body"]), job["model"], rid)
            except ForwardError as exc:
                error = RequestError(500, str(exc), "INTERNAL")
            else:
                line = openai_output(custom_id, g, job["model"], rid, int(job["created_at"]))
                return ResultLine("output", line, ok=True, input_tokens=g.prompt_tokens,
                                  output_tokens=g.completion_tokens)
        assert error is not None
        status = error.type if error.type in _RPC_CODES else _status_name(error.status)
        return ResultLine("output", openai_error(custom_id, error.status, status, error.message))

    def publish(self, engine: Engine, job: Mapping[str, Any], sinks: Mapping[str, SinkFile]) -> dict[str, Any]:
        inline = job["extra"]["inline"]
        sink = sinks["output"]
        if snapshot(Schedule.from_dict(job["schedule"]), job["ended_at"]).phase == "expired":
            # "The job will not have any results to retrieve" (the batch guide): an expired
            # job gives back nothing, not even what it had finished.
            return {"inline": inline, "lines": 0, "withheld": True}
        if inline:
            target = engine.store.job_dir(job["id"]) / "inlined_responses.jsonl"
        else:
            target = engine.store.tmp_path()
        count = 0
        with open(target, "wb") as out:
            for _, raw in iter_jsonl(sink.path):
                line = json.loads(raw)
                if "custom_id" in line and not is_openai_output(line):  # the engine's unknown-id corruption
                    key = str(line.pop("custom_id"))
                    if inline:
                        line["metadata"] = {**(line.get("metadata") or {}), "key": key}
                    else:
                        line["key"] = key
                out.write((json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8"))
                count += 1
        if inline:
            return {"inline": True, "lines": count}
        file_id = _new_id()
        engine.add_file(PROVIDER, file_id, target, filename=f"batch-{job['id']}-results.jsonl", purpose="batch",
                        lines=count, kind="output", job_id=job["id"], created_at=job["ended_at"],
                        extra={"mime_type": "application/jsonl", "source": "GENERATED",
                               "display_name": f"{job['id']}-results", "expires_at": job["ended_at"] + FILE_TTL})
        return {"inline": False, "responses_file": file_id, "lines": count}


def _line_key(obj: Any, index: int) -> str:
    if is_openai_line(obj):
        return str(obj["custom_id"])
    if isinstance(obj, Mapping):
        key = obj.get("key")
        if key in (None, "") and isinstance(obj.get("metadata"), Mapping):
            key = obj["metadata"].get("key")
        if key not in (None, ""):
            return str(key)
    return str(index)


# --- views -------------------------------------------------------------------------------------------

def file_view(doc: Mapping[str, Any], origin: str) -> dict[str, Any]:
    name = f"files/{doc['id']}"
    view = {
        "name": name, "displayName": doc.get("display_name") or doc["filename"],
        "mimeType": doc.get("mime_type") or "application/octet-stream", "sizeBytes": str(doc["bytes"]),
        "createTime": _time(doc["created_at"]), "updateTime": _time(doc["created_at"]),
        "expirationTime": _time(doc.get("expires_at")), "sha256Hash": doc.get("sha256", ""),
        "uri": f"{origin}/gemini/v1beta/{name}", "state": "ACTIVE", "source": doc.get("source", "UPLOADED"),
    }
    if doc.get("source") == "GENERATED":
        view["downloadUri"] = f"{origin}/gemini/v1beta/{name}:download?alt=media"
    return view


def operation_view(engine: Engine, state: JobView) -> dict[str, Any]:
    doc, snap = state.doc, state.snap
    result = state.result or {}
    succeeded, errored = state.counts()
    name = f"batches/{doc['id']}"
    metadata: dict[str, Any] = {
        "@type": OPERATION_TYPE, "model": f"models/{doc['model']}", "displayName": doc["extra"]["display_name"],
        "createTime": _time(doc["created_at"]), "updateTime": _time(snap.ended_at or snap.cancelling_at
                                                                    or snap.in_progress_at or doc["created_at"]),
        "batchStats": {"requestCount": str(doc["total"]), "successfulRequestCount": str(succeeded),
                       "failedRequestCount": str(errored),
                       "pendingRequestCount": str(0 if snap.terminal else doc["total"] - succeeded - errored)},
        "state": STATE[snap.phase], "name": name,
    }
    view: dict[str, Any] = {"name": name, "metadata": metadata}
    if snap.terminal:
        metadata["endTime"] = _time(snap.ended_at)
        view["done"] = True
        if snap.phase == "failed":
            messages = "; ".join(p["message"] for p in doc["problems"])
            view["error"] = {"code": _RPC_CODES["INVALID_ARGUMENT"], "message": messages}
        elif result.get("withheld"):
            pass  # expired: no output at all
        else:
            output: dict[str, Any]
            if result.get("inline"):
                path = engine.store.job_dir(doc["id"]) / "inlined_responses.jsonl"
                lines = [json.loads(raw) for _, raw in iter_jsonl(path)] if path.exists() else []
                output = {"inlinedResponses": {"inlinedResponses": lines}}
            else:
                output = {"responsesFile": f"files/{result['responses_file']}"}
            metadata["output"] = output
            view["response"] = {"@type": OUTPUT_TYPE, **output}
    return view


# --- page tokens -------------------------------------------------------------------------------------

def _page(call: Call, items: list[Any], default: int, maximum: int) -> tuple[list[Any], str | None]:
    size = call.q_int("pageSize", default, 0, 10**6) or default
    size = min(size, maximum)
    token = call.q("pageToken") or ""
    try:
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "Invalid page token.") from None
    page = items[start:start + size]
    more = start + size < len(items)
    return page, (base64.urlsafe_b64encode(str(start + size).encode()).decode() if more else None)


# --- routes ------------------------------------------------------------------------------------------

class _Uploads:
    """Resumable upload sessions in progress (in memory: a session is one process's upload)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: dict[str, dict[str, Any]] = {}


def routes(engine: Engine) -> list[Route]:
    from . import online_api  # it builds on this module

    dialect = GeminiDialect(engine)
    engine.register(dialect)
    api = Api(engine, FLAVOR)
    uploads = _Uploads()

    def limits() -> Any:
        return engine.config.limits[PROVIDER]

    def file_doc(file_id: str) -> dict[str, Any]:
        doc = engine.get_file(PROVIDER, file_id)
        if doc is None or (doc.get("expires_at") and engine.now() >= doc["expires_at"]):
            # A file past its 48 hours is deleted: it answers like any missing file.
            raise ApiError(403, f"You do not have permission to access the File {file_id} or it may not exist.")
        return doc

    # -- files: the resumable upload protocol --
    def is_chunk(request: Request) -> bool:
        return "upload_id" in request.query_params

    async def upload(request: Request) -> Response:
        upload_id = request.query_params.get("upload_id")
        command = request.headers.get("x-goog-upload-command", "").replace(" ", "").lower()
        if upload_id is None:
            return await start_upload(request, command)
        with uploads.lock:
            session = uploads.sessions.get(upload_id)
        if session is None:
            raise ApiError(404, "The upload session does not exist or has ended.")
        offset = request.headers.get("x-goog-upload-offset", "")
        if not offset.isdigit() or int(offset) != session["received"]:
            raise ApiError(400, f"Upload offset {offset!r} does not match the {session['received']} bytes received.")
        with open(session["path"], "ab") as out:
            async for chunk in request.stream():
                session["received"] += len(chunk)
                if session["received"] > limits().max_bytes:
                    raise ApiError(413, f"File too large: the limit is {limits().max_bytes} bytes.")
                session["sha"].update(chunk)
                out.write(chunk)
        if "finalize" not in command.split(","):
            return Response(status_code=200, headers={"x-goog-upload-status": "active"})
        with uploads.lock:
            uploads.sessions.pop(upload_id, None)
        if session["received"] != session["size"]:
            Path(session["path"]).unlink(missing_ok=True)
            raise ApiError(400, f"Received {session['received']} bytes, {session['size']} were announced.")
        lines = sum(1 for _ in iter_jsonl(Path(session["path"])))
        now = engine.now()
        doc = await run_in_threadpool(
            engine.add_file, PROVIDER, session["id"], Path(session["path"]), filename=session["display_name"],
            purpose="batch", lines=lines, kind="upload",
            extra={"mime_type": session["mime_type"], "display_name": session["display_name"], "source": "UPLOADED",
                   "sha256": base64.b64encode(session["sha"].digest()).decode(), "expires_at": now + FILE_TTL})
        engine.count(PROVIDER, "files")
        return JSONResponse({"file": file_view(doc, _origin(request))},
                            headers={"x-goog-upload-status": "final"})

    async def start_upload(request: Request, command: str) -> Response:
        if request.headers.get("x-goog-upload-protocol", "").lower() != "resumable" or command != "start":
            raise ApiError(400, "Only the resumable upload protocol (X-Goog-Upload-Command: start) is supported.")
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise ApiError(400, "Invalid JSON payload received.") from None
        file = body.get("file") or {}
        size = request.headers.get("x-goog-upload-header-content-length") or str(_field(file, "sizeBytes", "size_bytes") or "")
        if not size.isdigit():
            raise ApiError(400, "X-Goog-Upload-Header-Content-Length is required.")
        if int(size) > limits().max_bytes:
            raise ApiError(400, f"File too large: {size} bytes; the limit is {limits().max_bytes} bytes.")
        name = str(file.get("name") or "").removeprefix("files/") or _new_id()
        if engine.get_file(PROVIDER, name) is not None:
            raise ApiError(409, f"File files/{name} already exists.")
        upload_id = secrets.token_urlsafe(24)
        path = engine.store.tmp_path()
        path.touch()
        with uploads.lock:
            uploads.sessions[upload_id] = {
                "id": name, "size": int(size), "received": 0, "path": str(path), "sha": hashlib.sha256(),
                "mime_type": request.headers.get("x-goog-upload-header-content-type") or _field(file, "mimeType", "mime_type")
                or "application/octet-stream",
                "display_name": _field(file, "displayName", "display_name") or name,
            }
        version = request.path_params.get("version", "v1beta")
        url = f"{_origin(request)}/gemini/upload/{version}/files?upload_id={upload_id}&upload_protocol=resumable"
        return Response(status_code=200, headers={"x-goog-upload-url": url, "x-goog-upload-status": "active",
                                                  "content-type": "application/json"})

    def get_file(call: Call) -> Any:
        name = call.params["name"]
        if name.endswith(":download"):
            doc = file_doc(name[: -len(":download")])
            if doc.get("source") != "GENERATED":
                raise ApiError(400, "Only generated files can be downloaded; uploaded files cannot.")
            fault = engine.download_fault(PROVIDER, engine.job_file_owner(doc))
            return download(engine.file_path(doc["id"]), "application/octet-stream", fault)
        return file_view(file_doc(name), call.origin)

    def delete_file(call: Call) -> Any:
        doc = file_doc(call.params["name"])
        engine.delete_file(PROVIDER, doc["id"])
        return {}

    def list_files(call: Call) -> Any:
        now = engine.now()
        docs = [d for d in engine.list_files(PROVIDER) if not (d.get("expires_at") and now >= d["expires_at"])]
        page, token = _page(call, docs, 10, 100)
        body: dict[str, Any] = {"files": [file_view(d, call.origin) for d in page]}
        if token:
            body["nextPageToken"] = token
        return body

    # -- batches --
    def create(call: Call) -> Any:
        model_path = call.params["model"]
        if not model_path.endswith(":batchGenerateContent"):
            raise ApiError(404, f"Unknown request URL: {call.method} {call.path}.")
        # Stored as the user wrote it (fault rules select on it); shown as models/<name>.
        model = model_path[: -len(":batchGenerateContent")].removeprefix("models/")
        body = call.json_object()
        batch = body.get("batch")
        if not isinstance(batch, Mapping):
            raise ApiError(400, "* BatchGenerateContentRequest.batch: batch is required")
        config = batch.get("inputConfig") or batch.get("input_config") or {}
        requests = (config.get("requests") or {}).get("requests") if isinstance(config.get("requests"), Mapping) \
            else None
        file_name = config.get("fileName") or config.get("file_name")
        if (requests is None) == (file_name is None):
            raise ApiError(400, "* inputConfig: exactly one of requests or fileName must be set")
        job_id = _new_id()
        if file_name is not None:
            doc = file_doc(str(file_name).removeprefix("files/"))
            if doc.get("source") != "UPLOADED":
                raise ApiError(400, f"File {file_name} is not an uploaded file.")
            path = engine.link_input(job_id, [engine.file_path(doc["id"])])
        else:
            if not isinstance(requests, list):
                raise ApiError(400, "* inputConfig.requests.requests: must be a list")
            path = engine.job_input_path(job_id)
            with open(path, "w", encoding="utf-8") as f:
                for index, item in enumerate(requests):
                    item = item if isinstance(item, Mapping) else {}
                    line = {"key": _line_key(item, index), "request": item.get("request"),
                            "metadata": item.get("metadata") or {}}
                    f.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
        scan = dialect.scan(path, model)
        if scan.total > limits().max_requests:
            engine.delete_job(job_id)
            raise ApiError(400, f"A batch may hold at most {limits().max_requests} requests; got {scan.total}.")
        display_name = batch.get("displayName") or batch.get("display_name") or ""

        def queue_full(_message: str) -> None:
            engine.delete_job(job_id)
            raise ApiError(429, QUOTA_MESSAGE)

        state = engine.create_job(
            PROVIDER, job_id, scan, model=model, metadata={"display_name": display_name} if display_name else None,
            endpoint="generateContent", window=WINDOW, queue_full=queue_full,
            extra={"inline": file_name is None, "display_name": display_name,
                   "input_file": str(file_name) if file_name else None})
        return created(engine, state, operation_view(engine, state))

    def get_state(job_id: str) -> JobView:
        state = engine.lookup_job(PROVIDER, job_id)
        if state is None:
            raise ApiError(404, f"Batch batches/{job_id} not found.")
        return state

    def get_batch(call: Call) -> Any:
        return operation_view(engine, get_state(call.params["name"]))

    def cancel_batch(call: Call) -> Any:
        name = call.params["name"]
        if name.endswith(":delete"):  # the guide's REST form of delete
            return delete_batch(attrs.evolve(call, params={"name": name[: -len(":delete")]}))
        if not name.endswith(":cancel"):
            raise ApiError(404, f"Unknown request URL: {call.method} {call.path}.")
        state = get_state(name[: -len(":cancel")])
        if state.snap.terminal:
            raise ApiError(400, f"Batch batches/{state.doc['id']} is {STATE[state.snap.phase]} and cannot be "
                                "cancelled.", type="FAILED_PRECONDITION")
        engine.cancel_job(state)
        return {}

    def delete_batch(call: Call) -> Any:
        state = get_state(call.params["name"])
        if not state.snap.terminal:
            raise ApiError(400, f"Batch batches/{state.doc['id']} is {STATE[state.snap.phase]}; cancel it and wait "
                                "for it to end before deleting it.", type="FAILED_PRECONDITION")
        engine.delete_job(state.doc["id"])
        return {}

    def list_batches(call: Call) -> Any:
        page, token = _page(call, engine.lookup_jobs(PROVIDER), 50, 1000)
        body: dict[str, Any] = {"operations": [operation_view(engine, s) for s in page]}
        if token:
            body["nextPageToken"] = token
        return body

    out: list[Route] = []
    inline_limit = lambda: min(INLINE_MAX_BYTES, limits().max_bytes)  # noqa: E731
    out.append(api.route("/upload/{version}/files", upload, ["POST"], public=is_chunk))
    # The guide's REST download goes through /download/{v}/files/{id}:download?alt=media.
    out.append(api.route("/download/{version}/files/{name}", get_file, ["GET"]))
    out += online_api.gemini_routes(engine, api)  # before models/{model}, which would take the path
    for v in VERSIONS:
        out += [
            api.route(f"/{v}/files", list_files, ["GET"]),
            api.route(f"/{v}/files/{{name}}", get_file, ["GET"]),
            api.route(f"/{v}/files/{{name}}", delete_file, ["DELETE"]),
            api.route(f"/{v}/models/{{model}}", create, ["POST"], body_limit=inline_limit),
            api.route(f"/{v}/batches", list_batches, ["GET"]),
            api.route(f"/{v}/batches/{{name}}", get_batch, ["GET"]),
            api.route(f"/{v}/batches/{{name}}", cancel_batch, ["POST"]),
            api.route(f"/{v}/batches/{{name}}", delete_batch, ["DELETE"]),
        ]
    out.append(api.fallback())
    return out


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


