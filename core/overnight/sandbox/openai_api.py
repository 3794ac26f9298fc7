"""OpenAI: the Files and Batches APIs, served under ``/openai/v1`` (and ``/openai``).

Input is an uploaded JSONL file of ``{custom_id, method, url, body}`` lines; results
are an output file (successes) and an error file (request errors with
``response.status_code >= 400`` and ``error: null``; requests dropped by an expiry or
a cancel with ``response: null`` and ``error.code`` ``batch_expired`` /
``batch_cancelled``). A file that would be empty is not created (its id stays null).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
from pathlib import Path
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from overnight.structured import strict_mode_problem

from .engine import Engine, Fate, JobView, RequestError, ResultLine, Scan, SinkFile, iter_by_custom_id, iter_jsonl, parse_line
from .responder import (ForwardError, Generation, content_text, conversation, current_variant, embedding,
                        generate, json_spec, count_tokens)
from .quota import body_tokens, context_error, max_tokens
from .web import Api, ApiError, Call, Flavor, created, download, receive_upload

PROVIDER = "openai"
DAY = 24 * 3600
MB = 1024 * 1024
#: Output and error files expire this long after they are created unless the batch sets
#: ``output_expires_after`` (batch files keep 30 days by default).
OUTPUT_RETENTION = 30 * DAY
FILE_PURPOSES = {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}
SUPPORTED_ENDPOINTS = {"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings"}
KNOWN_ENDPOINTS = SUPPORTED_ENDPOINTS | {"/v1/moderations", "/v1/images/generations", "/v1/images/edits",
                                         "/v1/videos"}
MAX_PROBLEMS = 100
_ALNUM = string.ascii_letters + string.digits


@attrs.frozen
class VendorProfile:
    """What sets an OpenAI-compatible vendor's Batch API apart from OpenAI's own.

    One dialect serves them all; each vendor mounts it under its own prefix with its
    profile, so a difference is a value here, never a copy of the dialect. The facts and
    their sources are in docs/protocols/<vendor>.md.
    """

    #: The provider name: the sandbox's namespace for its files, jobs, limits, faults, counters.
    name: str
    #: The shortest and longest completion window accepted, in seconds (OpenAI: only "24h").
    min_window: int = DAY
    max_window: int = DAY
    #: Chat body fields the vendor answers with a 400 (each such line lands in the error file).
    refused_fields: tuple[str, ...] = ()
    #: Whether ``n`` above 1 is refused (Groq: "n must be 1").
    single_choice: bool = False
    #: Endpoints the vendor runs batches for.
    endpoints: frozenset[str] = frozenset(SUPPORTED_ENDPOINTS)
    #: Fields every input line must have (Together: ``custom_id`` and ``body`` only).
    line_fields: tuple[str, ...] = ("custom_id", "method", "url", "body")
    #: The longest ``custom_id`` accepted (Together: 64), None: no limit.
    max_custom_id: int | None = None
    #: The purpose an input file is uploaded with (Together: ``batch-api``).
    file_purpose: str = "batch"
    #: Whether a batch keeps the ``metadata`` it is created with (Together's keeps none).
    metadata: bool = True
    #: Models that take a strict json_schema response format (Groq: the gpt-oss ones); None: any.
    strict_schema_models: tuple[str, ...] | None = None

    def window_seconds(self, value: Any) -> int | None:
        """The window a ``completion_window`` value asks for, or None if the vendor refuses it."""
        match = re.fullmatch(r"([1-9][0-9]*)([hd])", value) if isinstance(value, str) else None
        if match is None:
            return None
        seconds = int(match.group(1)) * (3600 if match.group(2) == "h" else DAY)
        return seconds if self.min_window <= seconds <= self.max_window else None

    def window_text(self) -> str:
        if self.min_window == self.max_window:
            return f"only '{self.min_window // 3600}h' is supported"
        return f"between '{self.min_window // 3600}h' and '{self.max_window // DAY}d'"


OPENAI = VendorProfile(PROVIDER)
#: Groq (console.groq.com/docs/batch, /docs/openai): windows 24h to 7d, chat completions
#: only, and logprobs / logit_bias / top_logprobs / messages[].name refused, n must be 1.
GROQ = VendorProfile("groq", min_window=DAY, max_window=7 * DAY,
                     refused_fields=("logprobs", "logit_bias", "top_logprobs"), single_choice=True,
                     endpoints=frozenset({"/v1/chat/completions"}),
                     strict_schema_models=("openai/gpt-oss-20b", "openai/gpt-oss-120b"))
#: Together (docs.together.ai/docs/inference/batch/*): lines of custom_id (at most 64
#: characters) and body; files uploaded with purpose "batch-api"; only the 24h window; no
#: metadata. Its HTTP shapes (job envelopes, upper-case statuses) are in .together_api.
TOGETHER = VendorProfile("together", refused_fields=(), endpoints=frozenset({"/v1/chat/completions",
                                                                              "/v1/completions"}),
                         line_fields=("custom_id", "body"), max_custom_id=64, file_purpose="batch-api",
                         metadata=False)
#: DeepInfra (docs.deepinfra.com/batch/batch-endpoints) and Nebius (docs.studio.nebius.com
#: ai-models-inference/batch-inference): OpenAI's Batch API as it is, "24h" only, metadata
#: kept; DeepInfra runs chat, completions and embeddings, Nebius chat and embeddings.
DEEPINFRA = VendorProfile("deepinfra", endpoints=frozenset({"/v1/chat/completions", "/v1/completions",
                                                            "/v1/embeddings"}))
NEBIUS = VendorProfile("nebius", endpoints=frozenset({"/v1/chat/completions", "/v1/embeddings"}))
PROFILES = {profile.name: profile for profile in (OPENAI, GROQ, TOGETHER, DEEPINFRA, NEBIUS)}


def new_file_id() -> str:
    return "file-" + "".join(secrets.choice(_ALNUM) for _ in range(22))


def _hid(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def _error_type(status: int) -> str:
    if status == 401:
        return "invalid_request_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _error_body(error: ApiError, kind: str, request_id: str) -> dict[str, Any]:
    return {"error": {"message": error.message, "type": kind, "param": error.param, "code": error.code}}


FLAVOR = Flavor(
    name=PROVIDER, error_body=_error_body, error_type=_error_type,
    auth_message=("You didn't provide an API key. You need to provide your API key in an Authorization "
                  "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."),
    request_id_header="x-request-id", request_id_prefix="req_",
)


# --- request bodies -> responses --------------------------------------------------------------

_REQUIRED_FIELD = {"/v1/chat/completions": "messages", "/v1/completions": "prompt", "/v1/responses": "input",
                   "/v1/embeddings": "input"}


def check_body(endpoint: str, body: Any, profile: VendorProfile = OPENAI) -> RequestError | None:
    """Errors the real endpoint would answer with a 400, found while validating."""
    if not isinstance(body, Mapping):
        return RequestError(400, "The request body must be a JSON object.", "invalid_request_error")
    if not body.get("model"):
        return RequestError(400, "You must provide a model parameter.", "invalid_request_error", param="model")
    required = _REQUIRED_FIELD[endpoint]
    value = body.get(required)
    if value is None or (required == "messages" and not isinstance(value, list)):
        return RequestError(400, f"Missing required parameter: '{required}'.", "invalid_request_error",
                            param=required)
    for name in profile.refused_fields:
        if name in body:
            return RequestError(400, f"'{name}' : property '{name}' is unsupported", "invalid_request_error",
                                param=name)
    if profile.single_choice and body.get("n") not in (None, 1):
        return RequestError(400, "'n' : number must be at most 1", "invalid_request_error", param="n")
    if endpoint == "/v1/chat/completions" and profile.refused_fields and any(
            isinstance(m, Mapping) and "name" in m for m in value):
        return RequestError(400, "'messages.name' : property 'name' is unsupported", "invalid_request_error",
                            param="messages")
    if endpoint == "/v1/chat/completions" and (profile is OPENAI or profile.strict_schema_models is not None):
        return schema_error(body, profile)
    return None


#: Models OpenAI answers a json_schema response format with a 400 (Structured Outputs came
#: with gpt-4o-2024-08-06; docs/protocols/openai.md).
NO_SCHEMA_MODELS = re.compile(r"^(gpt-3\.5|gpt-4$|gpt-4-|gpt-4o-2024-05-13$|chatgpt-4o)")


def schema_error(body: Mapping[str, Any], profile: VendorProfile = OPENAI) -> RequestError | None:
    """What OpenAI answers a json_schema ``response_format`` it refuses with: a model without
    Structured Outputs, a spec without a schema, or a strict schema that breaks strict mode.
    Groq's strict mode has the same rules, on its gpt-oss models only."""
    fmt = body.get("response_format")
    if not isinstance(fmt, Mapping) or fmt.get("type") != "json_schema":
        return None
    spec = fmt.get("json_schema")
    strict = isinstance(spec, Mapping) and spec.get("strict") is True
    if strict and profile.strict_schema_models is not None and body.get("model") not in profile.strict_schema_models:
        return RequestError(400, "This model does not support strict mode for response format `json_schema`.",
                            "invalid_request_error", param="response_format")
    if profile is OPENAI and NO_SCHEMA_MODELS.match(str(body.get("model"))):
        return RequestError(400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported "
                                 "with this model.", "invalid_request_error", param="response_format")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        return RequestError(400, "Missing required parameter: 'response_format.json_schema.name'.",
                            "invalid_request_error", param="response_format.json_schema.name")
    if spec.get("strict") is True:
        problem = strict_mode_problem(spec.get("schema"))
        if problem is not None:
            where, rule = problem
            return RequestError(400, f"Invalid schema for response_format '{spec['name']}': In context={where!r}, "
                                     f"{rule}", "invalid_request_error", param="response_format")
    return None


def _limit(body: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        if isinstance(body.get(name), int):
            return body[name]
    return None


def _finish(generation: Generation) -> str:
    return "length" if generation.finish == "length" else "stop"


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def respond(engine: Engine, endpoint: str, body: Mapping[str, Any], rid: str, created: int,
            variant: int | None = None, counted: int | None = None) -> tuple[dict[str, Any], int, int]:
    """The synchronous endpoint's response body, with (input, output) tokens (``variant``: see
    responder.base_reply; ``counted``: the prompt's tokens, counted already; chat completions only)."""
    model = str(body["model"])
    if endpoint == "/v1/embeddings":
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dims = body["dimensions"] if isinstance(body.get("dimensions"), int) else 16
        texts = [x if isinstance(x, str) else json.dumps(x) for x in inputs]
        tokens = sum(count_tokens(t) for t in texts)
        return ({"object": "list", "model": model,
                 "data": [{"object": "embedding", "index": i, "embedding": embedding(t, dims)}
                          for i, t in enumerate(texts)],
                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, tokens, 0)
    if endpoint == "/v1/chat/completions":
        conv = conversation(body["messages"])
        limit, stop, spec = _limit(body, "max_completion_tokens", "max_tokens"), body.get("stop"), \
            json_spec(body.get("response_format"))
        g = _generate(engine, conv, model, limit, stop, spec, variant, counted)
        n = body["n"] if isinstance(body.get("n"), int) and body["n"] > 0 else 1
        # n choices are n samples: each its own answer (as a model's would differ), billed each.
        gens = [g]
        if n > 1:
            first = current_variant() if variant is None else variant
            gens += [_generate(engine, conv, model, limit, stop, spec, first + i, counted) for i in range(1, n)]
        choices: list[dict[str, Any]] = [{"index": i, "message": {"role": "assistant", "content": c.text, "refusal": None,
                                            "annotations": []},
                    "logprobs": None, "finish_reason": _finish(c)} for i, c in enumerate(gens)]
        output = sum(c.completion_tokens for c in gens) if n > 1 else g.completion_tokens
        usage = _usage(g.prompt_tokens, output)
        return ({"id": "chatcmpl-" + rid[:29], "object": "chat.completion", "created": created, "model": model,
                 "choices": choices, "usage": usage, "service_tier": "default",
                 "system_fingerprint": "fp_sandbox"}, g.prompt_tokens, output)
    if endpoint == "/v1/completions":
        prompt = body["prompt"] if isinstance(body["prompt"], str) else content_text(body["prompt"])
        g = _generate(engine, conversation(prompt), model, _limit(body, "max_tokens"), body.get("stop"), None)
        return ({"id": "cmpl-" + rid[:29], "object": "text_completion", "created": created, "model": model,
                 "choices": [{"text": g.text, "index": 0, "logprobs": None, "finish_reason": _finish(g)}],
                 "usage": _usage(g.prompt_tokens, g.completion_tokens)}, g.prompt_tokens, g.completion_tokens)
    # /v1/responses
    raw = body["input"]
    conv = conversation(raw if isinstance(raw, str) else [m for m in raw if isinstance(m, Mapping)],
                        body.get("instructions"))
    text_format = (body.get("text") or {}).get("format") if isinstance(body.get("text"), Mapping) else None
    g = _generate(engine, conv, model, _limit(body, "max_output_tokens"), None, json_spec(text_format))
    incomplete = g.finish == "length"
    return ({"id": "resp_" + rid[:48], "object": "response", "created_at": created,
             "status": "incomplete" if incomplete else "completed", "model": model,
             "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None, "error": None,
             "output": [{"type": "message", "id": "msg_" + rid[-48:], "status": "completed", "role": "assistant",
                         "content": [{"type": "output_text", "text": g.text, "annotations": []}]}],
             "usage": {"input_tokens": g.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
                       "output_tokens": g.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                       "total_tokens": g.prompt_tokens + g.completion_tokens}},
            g.prompt_tokens, g.completion_tokens)


def _generate(engine: Engine, conv: Any, model: str, max_tokens: int | None, stop: Any, spec: Any,
              variant: int | None = None, counted: int | None = None) -> Generation:
    if engine.forwarder is not None:
        return engine.forwarder.chat(conv, model=model, max_tokens=max_tokens, stop=stop, json_format=spec)
    return generate(conv, max_tokens=max_tokens, stop=stop, json_format=spec, variant=variant, counted=counted)


# --- the dialect -------------------------------------------------------------------------------

class OpenAIDialect:
    """The OpenAI Batch API, with a vendor's differences switched on by its profile."""

    def __init__(self, engine: Engine, profile: VendorProfile = OPENAI) -> None:
        self.engine = engine
        self.profile = profile
        self.name = profile.name

    def iter_input(self, path: Path) -> Iterator[tuple[str, Mapping[str, Any], bool]]:
        return iter_by_custom_id(path)

    def scan(self, path: Path, endpoint: str, max_requests: int) -> Scan:
        """Validate an input file the way the Batch API does before it starts."""
        problems: list[dict[str, Any]] = []
        ids: list[str] = []
        seen: set[str] = set()
        invalid: dict[int, RequestError] = {}
        model = None
        total_tokens = 0
        # Per request, its prompt tokens: for chat, what the responder bills (both count the
        # conversation of its messages); the other endpoints' answers count their own way.
        counted: list[int] | None = [] if endpoint == "/v1/chat/completions" else None
        line_fields = frozenset(self.profile.line_fields)

        def problem(code: str, line: int | None, message: str, param: str | None = None) -> None:
            if len(problems) < MAX_PROBLEMS:
                problems.append({"code": code, "line": line, "message": message, "param": param})

        for number, raw in iter_jsonl(path):
            try:
                obj, _ = parse_line(raw)
            except ValueError:
                problem("invalid_json_line", number, f"Line {number} is not valid JSON.")
                continue
            if not isinstance(obj, dict):
                problem("invalid_json_line", number, f"Line {number} is not a JSON object.")
                continue
            missing = [] if obj.keys() >= line_fields else [k for k in self.profile.line_fields if k not in obj]
            if missing:
                problem("missing_required_parameter", number,
                        f"Missing required parameter '{missing[0]}' on line {number}.", missing[0])
                continue
            custom_id = obj["custom_id"]
            if not isinstance(custom_id, str) or not custom_id:
                problem("invalid_custom_id", number, f"Invalid custom_id on line {number}.", "custom_id")
                continue
            if self.profile.max_custom_id is not None and len(custom_id) > self.profile.max_custom_id:
                problem("invalid_custom_id", number,
                        f"The custom_id on line {number} is longer than {self.profile.max_custom_id} characters.",
                        "custom_id")
                continue
            if custom_id in seen:
                problem("duplicate_custom_id", number,
                        f"The custom_id '{custom_id}' on line {number} is not unique in this batch.", "custom_id")
                continue
            if str(obj.get("method", "POST")).upper() != "POST":
                problem("invalid_method", number, f"Method must be POST on line {number}.", "method")
                continue
            if obj.get("url", endpoint) != endpoint:
                problem("url_mismatch", number,
                        f"The url '{obj['url']}' on line {number} does not match the batch endpoint '{endpoint}'.",
                        "url")
                continue
            body = obj["body"]
            line_model = body.get("model") if isinstance(body, Mapping) else None
            if model is None:
                model = line_model
            elif line_model is not None and line_model != model:
                problem("model_mismatch", number,
                        f"The model '{line_model}' on line {number} differs from '{model}': a batch uses one model.",
                        "body.model")
                continue
            seen.add(custom_id)
            error = check_body(endpoint, body, self.profile)
            tokens = 0
            if error is None:
                tokens = body_tokens(body)
                total_tokens += tokens
                output = max_tokens(body, ("max_completion_tokens", "max_tokens", "max_output_tokens"))
                error = context_error(PROVIDER, str(body.get("model")), tokens, output)
            if error is not None:
                invalid[len(ids)] = error
            ids.append(custom_id)
            if counted is not None:
                counted.append(tokens)
        if not ids and not problems:
            problem("empty_file", None, "The batch input file is empty.")
        if len(ids) > max_requests:
            problem("too_many_tasks", None,
                    f"The batch has {len(ids)} requests; the maximum is {max_requests}.")
        return Scan(ids, model, problems, invalid, tokens=total_tokens, prompt_tokens=counted)

    def result(self, job: Mapping[str, Any], custom_id: str, request: Mapping[str, Any], fate: Fate,
               error: RequestError | None, prompt_tokens: int | None = None) -> ResultLine:
        rid = _hid(job["id"], custom_id)
        line_id, request_id = "batch_req_" + rid[:32], "req_" + rid[32:64]
        if fate == "expired":
            return ResultLine("error", {"id": line_id, "custom_id": custom_id, "response": None, "error": {
                "code": "batch_expired",
                "message": "This request could not be executed before the completion window expired."}},
                floats=False)
        if fate == "cancelled":
            return ResultLine("error", {"id": line_id, "custom_id": custom_id, "response": None, "error": {
                "code": "batch_cancelled", "message": "This request was not executed because the batch was cancelled."}},
                floats=False)
        if fate == "ok":
            try:
                body, tokens_in, tokens_out = respond(self.engine, job["endpoint"], request["body"], rid,
                                                      int(job["ended_at"]), counted=prompt_tokens)
            except ForwardError as exc:
                error = RequestError(502, str(exc), "server_error")
            else:
                # Of the bodies respond() builds, only embeddings hold floats (the rest: strings,
                # integers, booleans, None; the request's own values are not echoed).
                return ResultLine("output", {"id": line_id, "custom_id": custom_id, "response": {
                    "status_code": 200, "request_id": request_id, "body": body}, "error": None},
                    ok=True, input_tokens=tokens_in, output_tokens=tokens_out,
                    floats=job["endpoint"] == "/v1/embeddings")
        assert error is not None
        return ResultLine("error", {"id": line_id, "custom_id": custom_id, "response": {
            "status_code": error.status, "request_id": request_id, "body": {"error": {
                "message": error.message, "type": error.type or _error_type(error.status),
                "param": error.param, "code": error.code}}}, "error": None},
            floats=not isinstance(error.status, int))  # a fault's error_status is whatever its rule says

    def publish(self, engine: Engine, job: Mapping[str, Any], sinks: Mapping[str, SinkFile]) -> dict[str, Any]:
        ids: dict[str, Any] = {"output_file_id": None, "error_file_id": None}
        expires = job["extra"].get("output_expires_after") or OUTPUT_RETENTION
        for sink, key, suffix in (("output", "output_file_id", "output"), ("error", "error_file_id", "error")):
            if sinks[sink].lines == 0:
                continue
            file_id = new_file_id()
            created = job["ended_at"]
            engine.add_file(self.name, file_id, sinks[sink].path, filename=f"{job['id']}_{suffix}.jsonl",
                            purpose="batch_output", lines=sinks[sink].lines, kind=sink, job_id=job["id"],
                            created_at=created,
                            extra={"expires_at": created + expires if expires else None})
            ids[key] = file_id
        return ids


# --- views ---------------------------------------------------------------------------------------

def file_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    expires = doc.get("expires_at")
    return {"id": doc["id"], "object": "file", "bytes": doc["bytes"], "created_at": int(doc["created_at"]),
            "filename": doc["filename"], "purpose": doc["purpose"], "status": "processed",
            "status_details": None, "expires_at": int(expires) if expires else None}


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


def batch_view(state: JobView) -> dict[str, Any]:
    doc, snap = state.doc, state.snap
    phase = snap.phase
    result = state.result or {}
    succeeded, errored = state.counts()
    validated = phase not in ("validating", "failed") and not (
        phase in ("cancelling", "cancelled") and snap.in_progress_at is None)
    ended = snap.ended_at
    usage_in, usage_out = result.get("input_tokens", 0), result.get("output_tokens", 0)
    return {
        "id": doc["id"], "object": "batch", "endpoint": doc["endpoint"], "model": doc["model"],
        "errors": {"object": "list", "data": doc["problems"]} if phase == "failed" else None,
        "input_file_id": doc["extra"]["input_file_id"], "completion_window": doc["extra"].get("completion_window", "24h"), "status": phase,
        "output_file_id": result.get("output_file_id"), "error_file_id": result.get("error_file_id"),
        "created_at": int(doc["created_at"]), "in_progress_at": _ts(snap.in_progress_at),
        "expires_at": int(doc["created_at"] + doc["extra"].get("window_seconds", DAY)), "finalizing_at": _ts(snap.finalizing_at),
        "completed_at": _ts(ended) if phase == "completed" else None,
        "failed_at": _ts(ended) if phase == "failed" else None,
        "expired_at": _ts(ended) if phase == "expired" else None,
        "cancelling_at": _ts(snap.cancelling_at),
        "cancelled_at": _ts(ended) if phase == "cancelled" else None,
        "request_counts": {"total": doc["total"] if validated else 0, "completed": succeeded, "failed": errored},
        "usage": {"input_tokens": usage_in, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": usage_out, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": usage_in + usage_out},
        "metadata": doc["metadata"],
    }


def _page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    if after:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    data = items[:limit]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(items) > limit}


def batch_upload_acceptable(filename: str | None, path: Any) -> bool:
    """Is this upload a batch input file? By its name when it has an extension, else by its content.

    OpenAI refuses a batch upload named ``*.txt`` ("Invalid file format for Batch API.
    Must be .jsonl") but takes one sent as raw bytes, which the SDK names ``upload``
    with no extension: such a file passes when it is UTF-8 JSON Lines (its first line a
    JSON object). See docs/protocols/openai.md.
    """
    name = (filename or "").rsplit("/", 1)[-1]
    if "." in name.lstrip("."):
        return name.endswith(".jsonl")
    try:
        with open(path, "rb") as handle:
            for raw in handle:
                if raw.strip():
                    return isinstance(json.loads(raw.decode("utf-8")), dict)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return True  # an empty file: the batch fails validation later (empty_file), as OpenAI does it


# --- routes ----------------------------------------------------------------------------------------

def routes(engine: Engine, profile: VendorProfile = OPENAI) -> list[Route]:
    from . import online_api  # it builds on this module

    provider = profile.name
    dialect = OpenAIDialect(engine, profile)
    engine.register(dialect)
    api = Api(engine, FLAVOR if profile is OPENAI else attrs.evolve(FLAVOR, name=provider))

    def limits() -> Any:
        return engine.config.limits[provider]

    async def create_file(request: Request) -> Any:
        tmp = engine.store.tmp_path()
        try:
            upload = await receive_upload(
                request, tmp, lambda fields: limits().max_bytes if fields.get("purpose") == "batch" else 512 * MB)
            purpose = upload.fields.get("purpose")
            if not purpose:
                raise ApiError(400, "Missing required parameter: 'purpose'.", param="purpose")
            if purpose not in FILE_PURPOSES:
                raise ApiError(400, f"Invalid value for 'purpose': '{purpose}'.", param="purpose")
            if upload.path is None:
                raise ApiError(400, "Missing required parameter: 'file'.", param="file")
            if purpose == "batch" and not batch_upload_acceptable(upload.filename, upload.path):
                raise ApiError(400, "Invalid file format for Batch API. Must be .jsonl", param="file")
            if upload.too_big:
                limit = limits().max_bytes if purpose == "batch" else 512 * MB
                raise ApiError(400, f"File is too large: the limit is {limit} bytes for purpose '{purpose}'.",
                               param="file")
            expires_at = None
            seconds = upload.fields.get("expires_after[seconds]")
            if seconds:
                if not seconds.isdigit() or not 3600 <= int(seconds) <= 2_592_000:
                    raise ApiError(400, "expires_after.seconds must be between 3600 and 2592000.",
                                   param="expires_after.seconds")
                expires_at = engine.now() + int(seconds)
            doc = await run_in_threadpool(
                engine.add_file, provider, new_file_id(), tmp, filename=upload.filename or "upload",
                purpose=purpose, lines=upload.lines, kind="upload", extra={"expires_at": expires_at})
            engine.count(provider, "files")
            return file_view(doc)
        finally:
            tmp.unlink(missing_ok=True)

    def get_file_doc(file_id: str) -> dict[str, Any]:
        doc = engine.get_file(provider, file_id)
        if doc is None:
            raise ApiError(404, f"No such File object: {file_id}", param="id")
        return doc

    def retrieve_file(call: Call) -> Any:
        return file_view(get_file_doc(call.params["file_id"]))

    def delete_file(call: Call) -> Any:
        file_id = call.params["file_id"]
        get_file_doc(file_id)
        engine.delete_file(provider, file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    def list_files(call: Call) -> Any:
        docs = engine.list_files(provider)
        if call.q("order", "desc") == "asc":
            docs.reverse()
        purpose = call.q("purpose")
        items = [file_view(d) for d in docs if purpose in (None, "", d["purpose"])]
        return _page(items, call.q("after"), call.q_int("limit", 10_000, 1, 10_000))

    def file_content(call: Call) -> Any:
        doc = get_file_doc(call.params["file_id"])
        fault = engine.download_fault(provider, engine.job_file_owner(doc))
        return download(engine.file_path(doc["id"]), "application/octet-stream", fault)

    def create_batch(call: Call) -> Any:
        body = call.json_object()
        for field in ("input_file_id", "endpoint", "completion_window"):
            if not body.get(field):
                raise ApiError(400, f"Missing required parameter: '{field}'.", param=field)
        endpoint = body["endpoint"]
        if endpoint not in (KNOWN_ENDPOINTS if profile is OPENAI else profile.endpoints):
            raise ApiError(400, f"Invalid value for 'endpoint': '{endpoint}'.", param="endpoint")
        if endpoint not in profile.endpoints:
            raise ApiError(400, f"The sandbox does not emulate batches for '{endpoint}'.", param="endpoint")
        window = profile.window_seconds(body["completion_window"])
        if window is None:
            raise ApiError(400, f"Invalid value for 'completion_window': {profile.window_text()}.",
                           param="completion_window")
        metadata = _check_metadata(body.get("metadata"))
        expires_after = body.get("output_expires_after")
        seconds = None
        if expires_after is not None:
            seconds = expires_after.get("seconds") if isinstance(expires_after, Mapping) else None
            if not isinstance(seconds, int) or not 3600 <= seconds <= 2_592_000:
                raise ApiError(400, "output_expires_after.seconds must be between 3600 and 2592000.",
                               param="output_expires_after.seconds")
        file_doc = engine.get_file(provider, body["input_file_id"])
        if file_doc is None:
            raise ApiError(404, f"No such File object: {body['input_file_id']}", param="input_file_id")
        if file_doc["purpose"] != "batch":
            raise ApiError(400, f"The file {file_doc['id']} has purpose '{file_doc['purpose']}'; expected 'batch'.",
                           param="input_file_id")
        job_id = "batch_" + secrets.token_hex(12)
        path = engine.link_input(job_id, [engine.file_path(file_doc["id"])])
        scan = dialect.scan(path, endpoint, limits().max_requests)
        # The sandbox's configured window stands for "24h"; longer windows scale with it.
        scaled = None if window == DAY else engine.config.durations.window * window / DAY
        state = engine.create_job(
            provider, job_id, scan, model=scan.model, metadata=metadata, endpoint=endpoint, window=scaled,
            extra={"input_file_id": file_doc["id"], "output_expires_after": seconds,
                   "completion_window": body["completion_window"], "window_seconds": window})
        return created(engine, state, batch_view(state))

    def get_batch(call: Call) -> JobView:
        state = engine.lookup_job(provider, call.params["batch_id"])
        if state is None:
            raise ApiError(404, f"No batch found with id '{call.params['batch_id']}'.", param="batch_id")
        return state

    def retrieve_batch(call: Call) -> Any:
        return batch_view(get_batch(call))

    def cancel_batch(call: Call) -> Any:
        state = get_batch(call)
        if state.snap.terminal:
            raise ApiError(400, f"Cannot cancel a batch with status '{state.snap.phase}'.")
        return batch_view(engine.cancel_job(state))

    def list_batches(call: Call) -> Any:
        limit = call.q_int("limit", 20, 1, 100)
        return _page([batch_view(s) for s in engine.lookup_jobs(provider)], call.q("after"), limit)

    return [
        api.route("/files", create_file, ["POST"]),
        api.route("/files", list_files, ["GET"]),
        api.route("/files/{file_id}", retrieve_file, ["GET"]),
        api.route("/files/{file_id}", delete_file, ["DELETE"]),
        api.route("/files/{file_id}/content", file_content, ["GET"]),
        api.route("/batches", create_batch, ["POST"]),
        api.route("/batches", list_batches, ["GET"]),
        api.route("/batches/{batch_id}", retrieve_batch, ["GET"]),
        api.route("/batches/{batch_id}/cancel", cancel_batch, ["POST"]),
        *online_api.openai_routes(engine, api, profile),
        api.fallback(),
    ]


def _check_metadata(metadata: Any) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise ApiError(400, "Invalid type for 'metadata': expected an object.", param="metadata")
    if len(metadata) > 16:
        raise ApiError(400, "Invalid 'metadata': at most 16 key-value pairs.", param="metadata")
    for key, value in metadata.items():
        if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
            raise ApiError(400, "Invalid 'metadata': keys up to 64 characters, string values up to 512.",
                           param="metadata")
    return dict(metadata)
