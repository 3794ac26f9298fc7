"""Together's Batch API, served under ``/together`` (the SDK adds ``/v1/...``).

The jobs are the OpenAI dialect's, run with Together's profile (:data:`.openai_api.TOGETHER`:
lines of ``custom_id`` + ``body``, custom ids of at most 64 characters, the 24h window
only, no metadata). What differs on the wire is here (docs/protocols/together.md):

* uploads go in three steps, as the ``together`` SDK makes them: ``POST /v1/files`` with
  the file's name, purpose and checksum answers ``302`` with a ``Location`` to PUT the
  bytes to and an ``X-Together-File-Id``; then ``POST /v1/files/{id}/preprocess``;
* ``POST /v1/batches`` answers ``{"job": {...}, "warning": null}``, ``GET`` answers the job
  itself, the list is a bare JSON array;
* a job has upper-case statuses (VALIDATING, IN_PROGRESS, COMPLETED, FAILED, EXPIRED,
  CANCELLED), a ``progress`` percentage instead of request counts, ISO 8601 times, an
  ``error`` string, and no metadata;
* files are listed as ``{"data": [...]}`` with ``FileType`` and ``processing_status``.
"""

from __future__ import annotations

import datetime
import secrets
from typing import Any, Mapping

import attrs
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import online_api
from .engine import Engine, JobView
from .openai_api import DAY, FLAVOR, TOGETHER, OpenAIDialect, new_file_id
from .web import Api, ApiError, Call, created, download, receive_upload

PROVIDER = TOGETHER.name
FILE_PURPOSES = {"fine-tune", "batch-api", "eval", "eval-sample", "eval-output"}
#: Our phases in Together's words (it has no "finalizing" or "cancelling" of its own).
STATUSES = {"validating": "VALIDATING", "in_progress": "IN_PROGRESS", "finalizing": "IN_PROGRESS",
            "cancelling": "IN_PROGRESS", "completed": "COMPLETED", "failed": "FAILED", "expired": "EXPIRED",
            "cancelled": "CANCELLED"}


def _iso(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.datetime.fromtimestamp(value, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def file_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": doc["id"], "object": "file", "bytes": doc["bytes"], "created_at": int(doc["created_at"]),
            "filename": doc["filename"], "purpose": doc["purpose"], "FileType": "jsonl",
            "processing_status": "COMPLETED", "Processed": True, "LineCount": doc.get("lines", 0)}


def job_view(state: JobView) -> dict[str, Any]:
    doc, snap = state.doc, state.snap
    result = state.result or {}
    succeeded, errored = state.counts()
    total = doc["total"] or 0
    phase = snap.phase
    error = None
    if phase == "failed":
        error = "; ".join(f"line {p['line']}: {p['message']}" if p.get("line") else p["message"]
                          for p in doc["problems"][:3])
    return {
        "id": doc["id"], "user_id": "user_sandbox", "input_file_id": doc["extra"]["input_file_id"],
        "file_size_bytes": doc["extra"].get("input_bytes"), "status": STATUSES.get(phase, phase.upper()),
        "job_deadline": _iso(doc["created_at"] + DAY), "created_at": _iso(doc["created_at"]),
        "endpoint": doc["endpoint"], "progress": round(100.0 * (succeeded + errored) / total, 1) if total else 0.0,
        "model_id": doc["model"], "output_file_id": result.get("output_file_id"),
        "error_file_id": result.get("error_file_id"), "error": error,
        "completed_at": _iso(snap.ended_at) if snap.terminal else None,
    }


def routes(engine: Engine) -> list[Route]:
    dialect = OpenAIDialect(engine, TOGETHER)
    engine.register(dialect)
    api = Api(engine, attrs.evolve(FLAVOR, name=PROVIDER))
    pending: dict[str, dict[str, str]] = {}  # upload id -> the fields of its POST /v1/files

    def limits() -> Any:
        return engine.config.limits[PROVIDER]

    async def start_upload(request: Request) -> Any:
        tmp = engine.store.tmp_path()
        try:
            upload = await receive_upload(request, tmp, lambda fields: limits().max_bytes)
            fields = upload.fields
            purpose = fields.get("purpose")
            if purpose not in FILE_PURPOSES:
                raise ApiError(400, f"Invalid purpose '{purpose}'.", param="purpose")
            name = fields.get("file_name") or upload.filename
            if not name:
                raise ApiError(400, "Missing required parameter: 'file_name'.", param="file_name")
            if upload.path is not None:  # a direct multipart upload (curl -F file=@...)
                if upload.too_big:
                    raise ApiError(400, f"File is too large: the limit is {limits().max_bytes} bytes.", param="file")
                doc = await run_in_threadpool(engine.add_file, PROVIDER, new_file_id(), tmp, filename=name,
                                              purpose=purpose, lines=upload.lines, kind="upload")
                engine.count(PROVIDER, "files")
                return file_view(doc)
            file_id = new_file_id()
            pending[file_id] = {"purpose": purpose, "filename": name}
            origin = f"{request.url.scheme}://{request.url.netloc}"
            location = f"{origin}{request.url.path.rsplit('/v1/files', 1)[0]}/v1/uploads/{file_id}"
            return Response(status_code=302, headers={"Location": location, "X-Together-File-Id": file_id})
        finally:
            tmp.unlink(missing_ok=True)

    async def put_upload(request: Request) -> Any:
        file_id = request.path_params["file_id"]
        fields = pending.pop(file_id, None)
        if fields is None:
            raise ApiError(404, f"No pending upload {file_id}.")
        tmp = engine.store.tmp_path()
        size = newlines = 0
        last = b""
        try:
            with open(tmp, "wb") as out:
                async for part in request.stream():
                    size += len(part)
                    if size > limits().max_bytes:
                        raise ApiError(400, f"File is too large: the limit is {limits().max_bytes} bytes.")
                    out.write(part)
                    newlines += part.count(b"\n")
                    last = part[-1:] or last
            lines = newlines + (1 if size and last != b"\n" else 0)
            await run_in_threadpool(engine.add_file, PROVIDER, file_id, tmp, filename=fields["filename"],
                                    purpose=fields["purpose"], lines=lines, kind="upload")
            engine.count(PROVIDER, "files")
            return Response(status_code=200)
        finally:
            tmp.unlink(missing_ok=True)

    def get_file_doc(file_id: str) -> dict[str, Any]:
        doc = engine.get_file(PROVIDER, file_id)
        if doc is None:
            raise ApiError(404, f"File {file_id} not found.", param="id")
        return doc

    def preprocess(call: Call) -> Any:
        return file_view(get_file_doc(call.params["file_id"]))

    def retrieve_file(call: Call) -> Any:
        return file_view(get_file_doc(call.params["file_id"]))

    def delete_file(call: Call) -> Any:
        file_id = call.params["file_id"]
        get_file_doc(file_id)
        engine.delete_file(PROVIDER, file_id)
        return {"id": file_id, "deleted": True}

    def list_files(call: Call) -> Any:
        return {"data": [file_view(d) for d in engine.list_files(PROVIDER)]}

    def file_content(call: Call) -> Any:
        doc = get_file_doc(call.params["file_id"])
        fault = engine.download_fault(PROVIDER, engine.job_file_owner(doc))
        return download(engine.file_path(doc["id"]), "application/octet-stream", fault)

    def create_batch(call: Call) -> Any:
        body = call.json_object()
        for field in ("input_file_id", "endpoint"):
            if not body.get(field):
                raise ApiError(400, f"Missing required parameter: '{field}'.", param=field)
        endpoint = body["endpoint"]
        if endpoint not in TOGETHER.endpoints:
            raise ApiError(400, f"Invalid endpoint '{endpoint}'.", param="endpoint")
        if body.get("completion_window") not in (None, "24h"):  # "defaults to 24h and cannot be changed"
            raise ApiError(400, "Invalid completion_window: only '24h' is supported.", param="completion_window")
        file_doc = engine.get_file(PROVIDER, body["input_file_id"])
        if file_doc is None:
            raise ApiError(404, f"File {body['input_file_id']} not found.", param="input_file_id")
        if file_doc["purpose"] != TOGETHER.file_purpose:
            raise ApiError(400, f"File {file_doc['id']} has purpose '{file_doc['purpose']}'; a batch needs "
                                f"'{TOGETHER.file_purpose}'.", param="input_file_id")
        job_id = "batch-" + secrets.token_hex(16)
        path = engine.link_input(job_id, [engine.file_path(file_doc["id"])])
        scan = dialect.scan(path, endpoint, limits().max_requests)
        # No metadata: Together's batch object has none, so nothing given is kept.
        state = engine.create_job(
            PROVIDER, job_id, scan, model=scan.model, metadata=None, endpoint=endpoint,
            extra={"input_file_id": file_doc["id"], "input_bytes": file_doc["bytes"]})
        return created(engine, state, {"job": job_view(state), "warning": None})

    def get_job(call: Call) -> JobView:
        state = engine.lookup_job(PROVIDER, call.params["batch_id"])
        if state is None:
            raise ApiError(404, f"Batch job {call.params['batch_id']} not found.", param="id")
        return state

    def retrieve_batch(call: Call) -> Any:
        return job_view(get_job(call))

    def cancel_batch(call: Call) -> Any:
        state = get_job(call)
        if state.snap.terminal:
            raise ApiError(400, f"Cannot cancel a batch job with status {STATUSES[state.snap.phase]}.")
        return job_view(engine.cancel_job(state))

    def list_batches(call: Call) -> Any:
        return [job_view(s) for s in engine.lookup_jobs(PROVIDER)]

    return [
        api.route("/v1/files", start_upload, ["POST"]),
        api.route("/v1/uploads/{file_id}", put_upload, ["PUT"], public=lambda request: True),
        api.route("/v1/files", list_files, ["GET"]),
        api.route("/v1/files/{file_id}", retrieve_file, ["GET"]),
        api.route("/v1/files/{file_id}", delete_file, ["DELETE"]),
        api.route("/v1/files/{file_id}/preprocess", preprocess, ["POST"]),
        api.route("/v1/files/{file_id}/content", file_content, ["GET"]),
        api.route("/v1/batches", create_batch, ["POST"]),
        api.route("/v1/batches", list_batches, ["GET"]),
        api.route("/v1/batches/{batch_id}", retrieve_batch, ["GET"]),
        api.route("/v1/batches/{batch_id}/cancel", cancel_batch, ["POST"]),
        *online_api.openai_routes(engine, api, TOGETHER, "/v1/chat/completions"),
        api.fallback(),
    ]
