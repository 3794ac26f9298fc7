"""Mistral: the Files and Batch Jobs APIs, served under ``/mistral`` (paths include ``/v1``).

The Mistral SDK validates every response strictly, so every required field is always
present (``errors: []``, ``input_files: []`` for inline jobs, ``deleted`` on file
retrieval, ``bytes``/``sample_type``/``source`` on files). Downloads are served as
``application/octet-stream``, the only type the SDK accepts. Unknown query parameters
on the jobs list are metadata filters. Requests a cancel or timeout left unprocessed
leave no line in either result file.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Iterator, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from .engine import Engine, Fate, JobView, RequestError, ResultLine, Scan, SinkFile, iter_jsonl, parse_line
from .responder import ForwardError, Generation, conversation, count_tokens, embedding, generate, json_spec
from .quota import body_tokens, context_error, max_tokens
from .web import Api, ApiError, Call, Flavor, created, download, receive_upload

PROVIDER = "mistral"
MB = 1024 * 1024
PURPOSES = {"fine-tune", "batch", "ocr", "agentic_safety"}
SUPPORTED_ENDPOINTS = {"/v1/chat/completions", "/v1/embeddings"}
STATUS = {"validating": "QUEUED", "in_progress": "RUNNING", "finalizing": "RUNNING",
          "cancelling": "CANCELLATION_REQUESTED", "completed": "SUCCESS", "failed": "FAILED",
          "expired": "TIMEOUT_EXCEEDED", "cancelled": "CANCELLED"}
_KNOWN_LIST_PARAMS = {"page", "page_size", "model", "agent_id", "created_after", "created_by_me", "status",
                      "order_by", "metadata"}
MAX_PROBLEMS = 100


def _error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "api_error"
    return "invalid_request_error"


def _error_body(error: ApiError, kind: str, request_id: str) -> dict[str, Any]:
    if error.status == 401:
        return {"message": "Unauthorized", "request_id": request_id}
    return {"object": "error", "message": error.message, "type": kind, "param": error.param, "code": error.code}


FLAVOR = Flavor(name=PROVIDER, error_body=_error_body, error_type=_error_type, auth_message="Unauthorized",
                request_id_header="x-request-id", request_id_prefix="")


# --- responses -----------------------------------------------------------------------------------

def check_body(endpoint: str, body: Any, job_model: str | None) -> RequestError | None:
    if not isinstance(body, Mapping):
        return RequestError(400, "body must be a JSON object", "invalid_request_error")
    if not (body.get("model") or job_model):
        return RequestError(400, "model: Field required", "invalid_request_error", param="model")
    if endpoint == "/v1/chat/completions" and not isinstance(body.get("messages"), list):
        return RequestError(400, "messages: Field required", "invalid_request_error", param="messages")
    if endpoint == "/v1/embeddings" and body.get("input") is None:
        return RequestError(400, "input: Field required", "invalid_request_error", param="input")
    return None


def respond(engine: Engine, endpoint: str, body: Mapping[str, Any], model: str, rid: str, created: int,
            variant: int | None = None) -> tuple[dict[str, Any], int, int]:
    if endpoint == "/v1/embeddings":
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        texts = [x if isinstance(x, str) else json.dumps(x) for x in inputs]
        dims = body["output_dimension"] if isinstance(body.get("output_dimension"), int) else 16
        tokens = sum(count_tokens(t) for t in texts)
        return ({"id": rid[:32], "object": "list", "model": model,
                 "data": [{"object": "embedding", "index": i, "embedding": embedding(t, dims)}
                          for i, t in enumerate(texts)],
                 "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}}, tokens, 0)
    conv = conversation(body["messages"])
    max_tokens = body.get("max_tokens") if isinstance(body.get("max_tokens"), int) else None
    spec = json_spec(body.get("response_format"))
    g: Generation
    if engine.forwarder is not None:
        g = engine.forwarder.chat(conv, model=model, max_tokens=max_tokens, stop=body.get("stop"), json_format=spec)
    else:
        g = generate(conv, max_tokens=max_tokens, stop=body.get("stop"), json_format=spec, variant=variant)
    return ({"id": rid[:32], "object": "chat.completion", "model": model, "created": created,
             "choices": [{"index": 0, "message": {"role": "assistant", "content": g.text, "tool_calls": None,
                                                  "prefix": False},
                          "finish_reason": "length" if g.finish == "length" else "stop"}],
             "usage": {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
                       "total_tokens": g.prompt_tokens + g.completion_tokens}},
            g.prompt_tokens, g.completion_tokens)


# --- the dialect -------------------------------------------------------------------------------

class MistralDialect:
    name = PROVIDER

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def iter_input(self, path: Path) -> Iterator[tuple[str, Mapping[str, Any], bool]]:
        for index, (_, line) in enumerate(iter_jsonl(path)):
            obj, exact = parse_line(line)
            custom_id = obj.get("custom_id")
            yield (str(custom_id) if custom_id not in (None, "") else str(index)), obj, exact

    def scan(self, path: Path, endpoint: str, model: str | None) -> Scan:
        problems: list[dict[str, Any]] = []
        ids: list[str] = []
        seen: set[str] = set()
        invalid: dict[int, RequestError] = {}
        first_model = model
        total_tokens = 0

        def problem(line: int, message: str) -> None:
            if len(problems) < MAX_PROBLEMS:
                problems.append({"code": "invalid_input", "line": line, "message": message})

        for number, raw in iter_jsonl(path):
            try:
                obj, _ = parse_line(raw)
            except ValueError:
                problem(number, f"Line {number}: invalid JSON")
                continue
            if not isinstance(obj, dict) or "body" not in obj:
                problem(number, f"Line {number}: each line must be an object with a 'body'")
                continue
            custom_id = obj.get("custom_id")
            custom_id = str(custom_id) if custom_id not in (None, "") else str(len(ids))
            if custom_id in seen:
                problem(number, f"Line {number}: duplicate custom_id '{custom_id}'")
                continue
            seen.add(custom_id)
            error = check_body(endpoint, obj["body"], model)
            if error is None:
                tokens = body_tokens(obj["body"])
                total_tokens += tokens
                error = context_error(PROVIDER, str(obj["body"].get("model") or model),
                                      tokens, max_tokens(obj["body"], ("max_tokens",)))
                if error is None and first_model is None:
                    first_model = obj["body"].get("model")
            if error is not None:
                invalid[len(ids)] = error
            ids.append(custom_id)
        if not ids and not problems:
            problems.append({"code": "empty_file", "line": None, "message": "The batch input is empty"})
        return Scan(ids, first_model, problems, invalid, tokens=total_tokens)

    def result(self, job: Mapping[str, Any], custom_id: str, request: Mapping[str, Any], fate: Fate,
               error: RequestError | None, prompt_tokens: int | None = None) -> ResultLine:
        if fate in ("expired", "cancelled"):
            return ResultLine(None, None)
        rid = hashlib.sha256(f"{job['id']}\x1f{custom_id}".encode()).hexdigest()
        line_id = str(uuid.UUID(rid[:32]))
        if fate == "ok":
            body = request["body"]
            model = str(body.get("model") or job["model"])
            try:
                response, tokens_in, tokens_out = respond(self.engine, job["endpoint"], body, model, rid,
                                                          int(job["ended_at"]))
            except ForwardError as exc:
                error = RequestError(500, str(exc), "api_error")
            else:
                # Of the bodies respond() builds, only embeddings hold floats.
                return ResultLine("output", {"id": line_id, "custom_id": custom_id,
                                             "response": {"status_code": 200, "body": response}, "error": None},
                                  ok=True, input_tokens=tokens_in, output_tokens=tokens_out,
                                  floats=job["endpoint"] == "/v1/embeddings")
        assert error is not None
        return ResultLine("error", {"id": line_id, "custom_id": custom_id, "response": {
            "status_code": error.status, "body": {"object": "error", "message": error.message,
                                                  "type": error.type or _error_type(error.status),
                                                  "param": error.param, "code": error.code}},
            "error": error.message})

    def publish(self, engine: Engine, job: Mapping[str, Any], sinks: Mapping[str, SinkFile]) -> dict[str, Any]:
        ids: dict[str, Any] = {"output_file": None, "error_file": None}
        for sink, key, sample_type in (("output", "output_file", "batch_result"), ("error", "error_file", "batch_error")):
            if sinks[sink].lines == 0:
                continue
            file_id = str(uuid.uuid4())
            engine.add_file(PROVIDER, file_id, sinks[sink].path, filename=f"{job['id']}_{sink}.jsonl",
                            purpose="batch", lines=sinks[sink].lines, kind=sink, job_id=job["id"],
                            created_at=job["ended_at"],
                            extra={"sample_type": sample_type, "source": "mistral", "mimetype": "application/jsonl"})
            ids[key] = file_id
        return ids


# --- views ------------------------------------------------------------------------------------

def file_view(doc: Mapping[str, Any], *, retrieved: bool = False) -> dict[str, Any]:
    view = {"id": doc["id"], "object": "file", "bytes": doc["bytes"], "created_at": int(doc["created_at"]),
            "filename": doc["filename"], "purpose": doc["purpose"], "sample_type": doc["sample_type"],
            "source": doc["source"], "num_lines": doc["lines"], "mimetype": doc.get("mimetype"),
            "signature": None, "expires_at": int(doc["expires_at"]) if doc.get("expires_at") else None,
            "visibility": doc.get("visibility", "workspace")}
    if retrieved:
        view["deleted"] = False
    return view


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


def job_view(engine: Engine, state: JobView, *, inline: bool = False) -> dict[str, Any]:
    doc, snap = state.doc, state.snap
    result = state.result or {}
    succeeded, errored = state.counts()
    view = {
        "id": doc["id"], "object": "batch", "input_files": doc["extra"]["input_files"],
        "metadata": doc["metadata"], "endpoint": doc["endpoint"],
        "model": doc["extra"]["model"] or doc["model"],
        "agent_id": doc["extra"]["agent_id"], "output_file": result.get("output_file"),
        "error_file": result.get("error_file"),
        "errors": [{"message": p["message"], "count": 1} for p in doc["problems"]] if snap.phase == "failed" else [],
        "status": STATUS[snap.phase], "created_at": int(doc["created_at"]), "total_requests": doc["total"],
        "completed_requests": succeeded + errored, "succeeded_requests": succeeded, "failed_requests": errored,
        "started_at": _ts(snap.in_progress_at), "completed_at": _ts(snap.ended_at),
    }
    if inline:
        view["outputs"] = _outputs(engine, result) if snap.terminal else None
    return view


def _outputs(engine: Engine, result: Mapping[str, Any]) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for key in ("output_file", "error_file"):
        if result.get(key):
            lines.extend(json.loads(line) for _, line in iter_jsonl(engine.file_path(result[key])))
    return lines


# --- routes ------------------------------------------------------------------------------------

def routes(engine: Engine) -> list[Route]:
    from . import online_api  # it builds on this module

    dialect = MistralDialect(engine)
    engine.register(dialect)
    api = Api(engine, FLAVOR)

    def limits() -> Any:
        return engine.config.limits[PROVIDER]

    async def upload(request: Request) -> Any:
        tmp = engine.store.tmp_path()
        try:
            received = await receive_upload(request, tmp, lambda fields: limits().max_bytes)
            purpose = received.fields.get("purpose") or "fine-tune"
            if purpose not in PURPOSES:
                raise ApiError(422, f"purpose: Input should be one of {sorted(PURPOSES)}", param="purpose")
            if received.path is None:
                raise ApiError(422, "file: Field required", param="file")
            if received.too_big:
                raise ApiError(413, f"File too large: the limit is {limits().max_bytes} bytes")
            expiry = received.fields.get("expiry")
            expires_at = engine.now() + int(expiry) * 3600 if expiry and expiry.isdigit() else None
            filename = received.filename or "upload.jsonl"
            doc = await run_in_threadpool(
                engine.add_file, PROVIDER, str(uuid.uuid4()), tmp, filename=filename, purpose=purpose,
                lines=received.lines, kind="upload",
                extra={"sample_type": "batch_request" if purpose == "batch" else "instruct", "source": "upload",
                       "mimetype": "application/jsonl" if filename.endswith(".jsonl") else received.content_type,
                       "expires_at": expires_at, "visibility": received.fields.get("visibility") or "workspace"})
            engine.count(PROVIDER, "files")
            return file_view(doc)
        finally:
            tmp.unlink(missing_ok=True)

    def file_doc(file_id: str) -> dict[str, Any]:
        doc = engine.get_file(PROVIDER, file_id)
        if doc is None:
            raise ApiError(404, f"File {file_id} not found", code="not_found")
        return doc

    def retrieve_file(call: Call) -> Any:
        return file_view(file_doc(call.params["file_id"]), retrieved=True)

    def delete_file(call: Call) -> Any:
        doc = file_doc(call.params["file_id"])
        engine.delete_file(PROVIDER, doc["id"])
        return {"id": doc["id"], "object": "file", "deleted": True}

    def list_files(call: Call) -> Any:
        docs = engine.list_files(PROVIDER)
        purpose, search = call.q("purpose"), call.q("search")
        sample_types, sources, mimetypes = call.q_all("sample_type"), call.q_all("source"), call.q_all("mimetypes")
        docs = [d for d in docs
                if purpose in (None, "", d["purpose"]) and (not search or search in d["filename"])
                and (not sample_types or d["sample_type"] in sample_types)
                and (not sources or d["source"] in sources) and (not mimetypes or d.get("mimetype") in mimetypes)]
        page, size = call.q_int("page", 0, 0, 10**9), call.q_int("page_size", 100, 1, 10_000)
        body: dict[str, Any] = {"data": [file_view(d) for d in docs[page * size:(page + 1) * size]],
                                "object": "list"}
        if call.q("include_total", "true") != "false":
            body["total"] = len(docs)
        return body

    def download_file(call: Call) -> Any:
        doc = file_doc(call.params["file_id"])
        fault = engine.download_fault(PROVIDER, engine.job_file_owner(doc))
        return download(engine.file_path(doc["id"]), "application/octet-stream", fault)

    def signed_url(call: Call) -> Any:
        doc = file_doc(call.params["file_id"])
        return {"url": f"{call.origin}/mistral/v1/files/{doc['id']}/content"}

    def create_job(call: Call) -> Any:
        body = call.json_object()
        endpoint = body.get("endpoint")
        if not endpoint:
            raise ApiError(422, "endpoint: Field required", param="endpoint")
        if endpoint not in SUPPORTED_ENDPOINTS:
            raise ApiError(400, f"The sandbox does not emulate batches for '{endpoint}'", param="endpoint")
        input_files, requests = body.get("input_files") or [], body.get("requests") or []
        if bool(input_files) == bool(requests):
            raise ApiError(422, "Exactly one of 'input_files' or 'requests' must be given")
        model, agent_id = body.get("model"), body.get("agent_id")
        timeout_hours = body.get("timeout_hours", 24)
        if not isinstance(timeout_hours, (int, float)) or timeout_hours <= 0:
            raise ApiError(422, "timeout_hours: must be a positive number", param="timeout_hours")
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ApiError(422, "metadata: must be an object", param="metadata")
        job_id = str(uuid.uuid4())
        if input_files:
            docs = [file_doc(str(file_id)) for file_id in input_files]
            if sum(d["bytes"] for d in docs) > limits().max_bytes:
                raise ApiError(400, f"The input files exceed {limits().max_bytes} bytes")
            path = engine.link_input(job_id, [engine.file_path(d["id"]) for d in docs])
        else:
            if not isinstance(requests, list):
                raise ApiError(422, "requests: must be a list", param="requests")
            path = engine.job_input_path(job_id)
            with open(path, "w", encoding="utf-8") as f:
                for item in requests:
                    f.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n")
        scan = dialect.scan(path, endpoint, model)
        if scan.total > limits().max_requests:
            engine.delete_job(job_id)
            raise ApiError(400, f"A batch may hold at most {limits().max_requests} requests; got {scan.total}")
        def queue_full(message: str) -> None:
            engine.delete_job(job_id)
            raise ApiError(429, message)

        state = engine.create_job(
            PROVIDER, job_id, scan, model=scan.model, metadata=metadata, endpoint=endpoint,
            window=float(timeout_hours) * 3600, queue_full=queue_full,
            extra={"input_files": [str(f) for f in input_files], "model": model, "agent_id": agent_id})
        return created(engine, state, job_view(engine, state))

    def get(call: Call) -> JobView:
        state = engine.lookup_job(PROVIDER, call.params["job_id"])
        if state is None:
            raise ApiError(404, f"Batch job {call.params['job_id']} not found", code="not_found")
        return state

    def get_job(call: Call) -> Any:
        return job_view(engine, get(call), inline=call.q("inline") == "true")

    def list_jobs(call: Call) -> Any:
        states = engine.lookup_jobs(PROVIDER)
        if call.q("order_by", "-created") == "created":
            states.reverse()
        model, agent_id, statuses = call.q("model"), call.q("agent_id"), call.q_all("status")
        created_after = _parse_time(call.q("created_after"))
        metadata_filter = [(k, v) for k, v in call.query if k not in _KNOWN_LIST_PARAMS]
        raw_metadata = call.q("metadata")  # tolerate a JSON-encoded ``metadata`` parameter too
        if raw_metadata:
            try:
                metadata_filter += [(str(k), str(v)) for k, v in dict(json.loads(raw_metadata)).items()]
            except (ValueError, TypeError):
                raise ApiError(422, "metadata: expected a JSON object", param="metadata") from None
        views = []
        for state in states:
            view = job_view(engine, state)
            meta = state.doc["metadata"] or {}
            if model and view["model"] != model and state.doc["model"] != model:
                continue
            if agent_id and view["agent_id"] != agent_id:
                continue
            if statuses and view["status"] not in statuses:
                continue
            if created_after is not None and state.doc["created_at"] < created_after:
                continue
            if any(k not in meta or str(meta[k]) != v for k, v in metadata_filter):
                continue
            views.append(view)
        page, size = call.q_int("page", 0, 0, 10**9), call.q_int("page_size", 100, 1, 10_000)
        return {"object": "list", "data": views[page * size:(page + 1) * size], "total": len(views)}

    def cancel(call: Call) -> Any:
        state = get(call)
        if state.snap.terminal:
            raise ApiError(400, f"Batch job {state.doc['id']} has status {STATUS[state.snap.phase]} and "
                                "cannot be cancelled")
        return job_view(engine, engine.cancel_job(state))

    def delete(call: Call) -> Any:
        state = get(call)
        if not state.snap.terminal:
            raise ApiError(400, f"Batch job {state.doc['id']} is {STATUS[state.snap.phase]}; cancel it and wait "
                                "for it to stop before deleting it")
        engine.delete_job(state.doc["id"])
        return {"id": state.doc["id"], "object": "batch", "deleted": True}

    return [
        api.route("/v1/files", upload, ["POST"]),
        api.route("/v1/files", list_files, ["GET"]),
        api.route("/v1/files/{file_id}", retrieve_file, ["GET"]),
        api.route("/v1/files/{file_id}", delete_file, ["DELETE"]),
        api.route("/v1/files/{file_id}/content", download_file, ["GET"]),
        api.route("/v1/files/{file_id}/url", signed_url, ["GET"]),
        api.route("/v1/batch/jobs", create_job, ["POST"], body_limit=lambda: limits().max_bytes),
        api.route("/v1/batch/jobs", list_jobs, ["GET"]),
        api.route("/v1/batch/jobs/{job_id}", get_job, ["GET"]),
        api.route("/v1/batch/jobs/{job_id}", delete, ["DELETE"]),
        api.route("/v1/batch/jobs/{job_id}/cancel", cancel, ["POST"]),
        *online_api.mistral_routes(engine, api),
        api.fallback(),
    ]


def _parse_time(raw: str | None) -> float | None:
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(422, "created_after: invalid datetime", param="created_after") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()
