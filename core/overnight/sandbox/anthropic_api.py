"""Anthropic: the Message Batches API, served under ``/anthropic`` (paths include ``/v1``).

Requests arrive inline (``{"requests": [{custom_id, params}]}``) and are validated at
once (a bad batch gets a 400, as the real API does); the batch is ``in_progress`` until
it ``ended`` (through ``canceling`` when cancelled). Per-type counts stay 0 and
``results_url`` null until the end; results are JSONL, one line per request
(succeeded / errored with the full error envelope / canceled / expired), no blank lines.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import string
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from starlette.routing import Route

from .engine import Engine, Fate, JobView, RequestError, ResultLine, Scan, SinkFile, iter_by_custom_id
from .responder import ForwardError, Generation, conversation, generate, json_spec
from .quota import chat_tokens, context_error, max_tokens
from .web import Api, ApiError, Call, Flavor, created, download

PROVIDER = "anthropic"
DAY = 24 * 3600
#: Results are downloadable for 29 days after a batch's creation; then it is archived.
RETENTION = 29 * DAY
_CUSTOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ALNUM = string.ascii_letters + string.digits
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
          403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
          500: "api_error", 504: "timeout_error", 529: "overloaded_error"}


def _error_type(status: int) -> str:
    return _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def _error_body(error: ApiError, kind: str, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": error.message}, "request_id": request_id}


FLAVOR = Flavor(
    name=PROVIDER, error_body=_error_body, error_type=_error_type, auth_message="x-api-key header is required",
    request_id_header="request-id", request_id_prefix="req_011", accepts_x_api_key=True,
)


def _rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _token(n: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


def check_params(params: Mapping[str, Any]) -> RequestError | None:
    if not params.get("model"):
        return RequestError(400, "model: Field required", "invalid_request_error")
    if not isinstance(params.get("messages"), list) or not params["messages"]:
        return RequestError(400, "messages: Field required", "invalid_request_error")
    max_tokens = params.get("max_tokens")
    if not isinstance(max_tokens, int):
        return RequestError(400, "max_tokens: Field required", "invalid_request_error")
    if max_tokens < 1:
        return RequestError(400, "max_tokens: must be greater than or equal to 1", "invalid_request_error")
    return output_format_error(params)


#: Models without structured outputs (they came with Claude Sonnet/Haiku/Opus 4.5; Opus 4.1 in beta).
NO_SCHEMA_MODELS = re.compile(r"^claude-(2|3|instant)|^claude-(sonnet|opus)-4-(0|2025)")
#: JSON Schema keywords structured outputs do not take (the SDK's transform_schema moves them
#: into the description; docs/protocols/anthropic.md).
UNSUPPORTED_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
                        "minLength", "maxLength", "maxItems", "uniqueItems", "minProperties", "maxProperties")


def output_format_error(params: Mapping[str, Any]) -> RequestError | None:
    """What the Messages API answers an ``output_config.format`` it cannot enforce with."""
    config = params.get("output_config")
    fmt = config.get("format") if isinstance(config, Mapping) else None
    if fmt is None:
        return None
    if not isinstance(fmt, Mapping) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), Mapping):
        return RequestError(400, "output_config.format: Input tag does not match the expected tag 'json_schema' "
                                 "with a 'schema' object", "invalid_request_error")
    if NO_SCHEMA_MODELS.match(str(params.get("model"))):
        return RequestError(400, f"'{params.get('model')}' does not support output_config.format (structured "
                                 "outputs).", "invalid_request_error")
    problem = _schema_problem(fmt["schema"], "output_config.format.schema")
    return RequestError(400, problem, "invalid_request_error") if problem else None


def _schema_problem(node: Any, where: str) -> str | None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            found = _schema_problem(item, f"{where}.{i}")
            if found:
                return found
        return None
    if not isinstance(node, Mapping):
        return None
    for key in UNSUPPORTED_KEYWORDS:
        if key in node and not isinstance(node[key], Mapping):
            return f"{where}: the schema keyword '{key}' is not supported by structured outputs"
    if isinstance(node.get("minItems"), int) and node["minItems"] > 1:
        return f"{where}: 'minItems' values other than 0 and 1 are not supported by structured outputs"
    if node.get("type") == "object" and node.get("additionalProperties") is not False:
        return f"{where}: For 'object' type, 'additionalProperties' must be explicitly set to false"
    for key in ("properties", "$defs", "definitions"):
        for name, sub in (node.get(key) or {}).items() if isinstance(node.get(key), Mapping) else ():
            found = _schema_problem(sub, f"{where}.{key}.{name}")
            if found:
                return found
    for key in ("items", "anyOf", "allOf", "oneOf"):
        if key in node:
            found = _schema_problem(node[key], f"{where}.{key}")
            if found:
                return found
    return None


def _json_format(params: Mapping[str, Any]) -> Any:
    config = params.get("output_config")
    if isinstance(config, Mapping) and isinstance(config.get("format"), Mapping):
        return json_spec(config["format"])
    return json_spec(params.get("output_format"))


def message(engine: Engine, params: Mapping[str, Any], rid: str, variant: int | None = None
            ) -> tuple[dict[str, Any], Generation]:
    conv = conversation(params["messages"], params.get("system"))
    stop = params.get("stop_sequences")
    spec = _json_format(params)
    if engine.forwarder is not None:
        g = engine.forwarder.chat(conv, model=params["model"], max_tokens=params["max_tokens"], stop=stop,
                                  json_format=spec)
    else:
        g = generate(conv, max_tokens=params["max_tokens"], stop=stop, json_format=spec, variant=variant)
    reason = {"stop": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence"}[g.finish]
    return {"id": "msg_01" + rid[:24], "type": "message", "role": "assistant", "model": params["model"],
            "content": [{"type": "text", "text": g.text}], "stop_reason": reason,
            "stop_sequence": g.stop_sequence,
            "usage": {"input_tokens": g.prompt_tokens, "output_tokens": g.completion_tokens,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                      "service_tier": "batch"}}, g


class AnthropicDialect:
    name = PROVIDER

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def iter_input(self, path: Path) -> Iterator[tuple[str, Mapping[str, Any], bool]]:
        return iter_by_custom_id(path)

    def result(self, job: Mapping[str, Any], custom_id: str, request: Mapping[str, Any], fate: Fate,
               error: RequestError | None, prompt_tokens: int | None = None) -> ResultLine:
        if fate == "expired":
            return ResultLine("output", {"custom_id": custom_id, "result": {"type": "expired"}})
        if fate == "cancelled":
            return ResultLine("output", {"custom_id": custom_id, "result": {"type": "canceled"}})
        rid = hashlib.sha256(f"{job['id']}\x1f{custom_id}".encode()).hexdigest()
        if fate == "ok":
            try:
                body, g = message(self.engine, request["params"], rid)
            except ForwardError as exc:
                error = RequestError(500, str(exc), "api_error")
            else:
                return ResultLine("output", {"custom_id": custom_id, "result": {"type": "succeeded", "message": body}},
                                  ok=True, input_tokens=g.prompt_tokens, output_tokens=g.completion_tokens)
        assert error is not None
        envelope = {"type": "error", "error": {"type": error.type or _error_type(error.status),
                                               "message": error.message}, "request_id": "req_011" + rid[:24]}
        return ResultLine("output", {"custom_id": custom_id, "result": {"type": "errored", "error": envelope}})

    def publish(self, engine: Engine, job: Mapping[str, Any], sinks: Mapping[str, SinkFile]) -> dict[str, Any]:
        target = engine.store.job_dir(job["id"]) / "results.jsonl"
        shutil.move(str(sinks["output"].path), target)
        return {"results_path": str(target.relative_to(engine.store.root))}


def archived_at(doc: Mapping[str, Any], now: float) -> float | None:
    """When the batch's results went away: its retention's end, or an earlier archive (control API)."""
    forced = (doc.get("extra") or {}).get("archived_at")
    if forced is not None:
        return forced
    end = doc["created_at"] + RETENTION
    return end if now >= end else None


def batch_view(state: JobView, origin: str, style: str, now: float | None = None) -> dict[str, Any]:
    doc, snap = state.doc, state.snap
    archived = archived_at(doc, now) if now is not None else None
    ended = snap.terminal
    counts = {"processing": 0 if ended else doc["total"], "succeeded": 0, "errored": 0, "canceled": 0,
              "expired": 0}
    if ended:
        result = state.result or {}
        counts["succeeded"], counts["errored"] = result.get("succeeded", 0), result.get("errored", 0)
        counts["canceled" if snap.phase == "cancelled" else "expired"] = result.get("dropped", 0)
    results_url = None
    if ended:
        path = f"/v1/messages/batches/{doc['id']}/results"
        results_url = path if style == "relative" else f"{origin}/anthropic{path}"
    return {
        "id": doc["id"], "type": "message_batch",
        "processing_status": "ended" if ended else ("canceling" if snap.phase == "cancelling" else "in_progress"),
        "request_counts": counts, "ended_at": _rfc3339(snap.ended_at), "created_at": _rfc3339(doc["created_at"]),
        "expires_at": _rfc3339(doc["created_at"] + DAY), "archived_at": _rfc3339(archived),
        "cancel_initiated_at": _rfc3339(snap.cancelling_at), "results_url": results_url,
    }


def _page(items: list[dict[str, Any]], after_id: str | None, before_id: str | None, limit: int) -> dict[str, Any]:
    ids = [item["id"] for item in items]
    if after_id:
        start = ids.index(after_id) + 1 if after_id in ids else len(items)
        data, has_more = items[start:start + limit], len(items) > start + limit
    elif before_id:
        end = ids.index(before_id) if before_id in ids else 0
        start = max(0, end - limit)
        data, has_more = items[start:end], start > 0
    else:
        data, has_more = items[:limit], len(items) > limit
    return {"data": data, "has_more": has_more, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


def routes(engine: Engine) -> list[Route]:
    from . import online_api  # it builds on this module

    dialect = AnthropicDialect(engine)
    engine.register(dialect)
    api = Api(engine, FLAVOR)

    def limits() -> Any:
        return engine.config.limits[PROVIDER]

    def view(state: JobView, call: Call) -> dict[str, Any]:
        return batch_view(state, call.origin, engine.results_url, engine.now())

    def create(call: Call) -> Any:
        body = call.json_object()
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise ApiError(400, "requests: List should have at least 1 item")
        if len(requests) > limits().max_requests:
            raise ApiError(400, f"requests: a batch may hold at most {limits().max_requests} requests; "
                                f"got {len(requests)}")
        ids: list[str] = []
        seen: set[str] = set()
        invalid: dict[int, RequestError] = {}
        total_tokens = 0
        for i, item in enumerate(requests):
            if not isinstance(item, Mapping) or not isinstance(item.get("params"), Mapping):
                raise ApiError(400, f"requests.{i}.params: Field required")
            custom_id = item.get("custom_id")
            if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
                raise ApiError(400, f"requests.{i}.custom_id: must be 1-64 characters of letters, digits, "
                                    "underscores and hyphens")
            if custom_id in seen:
                raise ApiError(400, f"requests: duplicate custom_id '{custom_id}'")
            seen.add(custom_id)
            error = check_params(item["params"])
            if error is None:
                params = item["params"]
                tokens = chat_tokens(params.get("messages"), params.get("system"))
                total_tokens += tokens
                error = context_error(PROVIDER, str(params.get("model")), tokens, max_tokens(params, ("max_tokens",)))
            if error is not None:
                invalid[i] = error
            ids.append(custom_id)
        job_id = "msgbatch_01" + _token(24)
        path = engine.job_input_path(job_id)
        with open(path, "w", encoding="utf-8") as f:
            for item in requests:
                f.write(json.dumps({"custom_id": item["custom_id"], "params": item["params"]},
                                   ensure_ascii=False, separators=(",", ":")) + "\n")

        def reject(problems: Sequence[Mapping[str, Any]]) -> None:
            raise ApiError(400, "; ".join(str(p["message"]) for p in problems))

        def queue_full(message: str) -> None:
            raise ApiError(429, message)

        model = requests[0]["params"].get("model")
        try:
            state = engine.create_job(PROVIDER, job_id, Scan(ids, model, (), invalid, tokens=total_tokens),
                                      model=model, metadata=None, endpoint="/v1/messages", reject=reject,
                                      queue_full=queue_full)
        except ApiError:
            shutil.rmtree(path.parent, ignore_errors=True)
            raise
        return created(engine, state, view(state, call))

    def get(call: Call) -> JobView:
        state = engine.lookup_job(PROVIDER, call.params["batch_id"])
        if state is None:
            raise ApiError(404, f"message_batch '{call.params['batch_id']}' not found")
        return state

    def retrieve(call: Call) -> Any:
        return view(get(call), call)

    def list_batches(call: Call) -> Any:
        limit = call.q_int("limit", 20, 1, 1000)
        items = [view(state, call) for state in engine.lookup_jobs(PROVIDER)]
        return _page(items, call.q("after_id"), call.q("before_id"), limit)

    def cancel(call: Call) -> Any:
        state = get(call)
        if state.snap.terminal:
            raise ApiError(400, f"message_batch '{state.doc['id']}' has already ended and cannot be canceled")
        return view(engine.cancel_job(state), call)

    def delete(call: Call) -> Any:
        state = get(call)
        if not state.snap.terminal:
            raise ApiError(400, f"message_batch '{state.doc['id']}' is still being processed; "
                                "cancel it and wait for it to end before deleting it")
        engine.delete_job(state.doc["id"])
        return {"id": state.doc["id"], "type": "message_batch_deleted"}

    def results(call: Call) -> Any:
        state = get(call)
        if not state.snap.terminal or not state.result:
            raise ApiError(404, f"results for message_batch '{state.doc['id']}' are not available yet: "
                                "the batch has not ended")
        if archived_at(state.doc, engine.now()) is not None:
            raise ApiError(404, f"results for message_batch '{state.doc['id']}' are no longer available: "
                                "the batch was archived")
        fault = engine.download_fault(PROVIDER, state.doc)
        return download(engine.store.root / state.result["results_path"], "application/binary", fault)

    return [
        api.route("/v1/messages/batches", create, ["POST"], body_limit=lambda: limits().max_bytes),
        api.route("/v1/messages/batches", list_batches, ["GET"]),
        api.route("/v1/messages/batches/{batch_id}", retrieve, ["GET"]),
        api.route("/v1/messages/batches/{batch_id}", delete, ["DELETE"]),
        api.route("/v1/messages/batches/{batch_id}/cancel", cancel, ["POST"]),
        api.route("/v1/messages/batches/{batch_id}/results", results, ["GET"]),
        *online_api.anthropic_routes(engine, api),
        api.fallback(),
    ]
