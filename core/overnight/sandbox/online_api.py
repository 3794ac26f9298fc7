"""The providers' online (synchronous) endpoints, answered by the batch responder.

* OpenAI ``POST /v1/chat/completions``, also under each OpenAI-compatible vendor's prefix
  (Groq, Together, DeepInfra, Nebius: their profiles' refusals apply);
* Anthropic ``POST /v1/messages``;
* Mistral ``POST /v1/chat/completions``;
* Gemini ``POST /v1beta/models/{model}:generateContent``.

Every request goes the same way: the key and the HTTP fault rules (``http_status`` with
``retry_after``, ``http_delay``; see .web), then the rate limits (see .online), then the
same per-request checks the provider's batch path makes (an invalid request answers its
400 in the provider's shape, as the real endpoint does), then the online per-request
fault rules, then the answer: the very body the batch path writes for the same request
(the n-th identical body gets the n-th variant), held back by the configured latency.
The facts, with sources, are in docs/protocols/<provider>.md ("Online API").
"""

from __future__ import annotations

import json
import math
import secrets
from typing import Any, Callable, Literal, Mapping

import attrs
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .engine import Engine, RequestError
from .faults import Fault
from .online import Throttled, Window, body_digest, go_duration, request_fault, state
from .responder import conversation, last_user_text
from .web import Api, ApiError, fault_error, linger

JsonBody = Mapping[str, Any]


@attrs.frozen
class Endpoint:
    """What one provider's online endpoint does at each step (see the module docstring)."""

    provider: str
    #: The request's model (from the body, or Gemini's path).
    model: Callable[[JsonBody, Request], str]
    #: The per-request error the real API answers with, or None.
    check: Callable[[JsonBody, str], RequestError | None]
    #: What the request weighs against a tokens-per-minute limit (prompt + max output).
    weight: Callable[[JsonBody], int]
    #: The last user message (for ``online_error_match``).
    text: Callable[[JsonBody], str]
    #: The response body, given the model, the variant and the sandbox time.
    answer: Callable[[JsonBody, str, int, float], dict[str, Any]]
    #: The 429 of a throttled request, in the provider's words and headers.
    throttled: Callable[[Throttled, str, float], ApiError]
    #: Rate headers on an answer.
    rate_headers: Callable[[Window, float], dict[str, str]]
    #: What a request heavier than the token limit on its own gets (see OnlineState.admit).
    oversize: Literal["refuse", "alone"] = "alone"
    #: A per-request error as the provider renders it (default: its ApiError as is).
    refused: Callable[[RequestError], ApiError] = attrs.field(
        default=lambda e: ApiError(e.status, e.message, type=e.type, code=e.code, param=e.param))


def handler(engine: Engine, api: Api, endpoint: Endpoint) -> Callable[[Request], Any]:
    provider = endpoint.provider
    online = state(engine)

    async def serve(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError as exc:
            raise ApiError(400, f"The request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        model = endpoint.model(body, request)
        now = engine.now()
        try:
            window = online.admit(provider, api._api_key(request) or "", model, endpoint.weight(body), now,
                                  endpoint.oversize)
        except Throttled as throttled:
            engine.count(provider, "online_throttled")
            raise endpoint.throttled(throttled, model, now) from None
        answer = await run_in_threadpool(_answer, body, model, now)
        await linger(request, online.latency)
        headers = endpoint.rate_headers(window, now) if window is not None else {}
        return JSONResponse(answer, headers=headers)

    def _answer(body: dict[str, Any], model: str, now: float) -> dict[str, Any]:
        error = endpoint.check(body, model)
        if error is not None:
            engine.count(provider, "online_refused")
            raise endpoint.refused(error)
        digest = body_digest(body)
        rule = request_fault(engine, provider, model, endpoint.text(body), digest, online.arrival(provider, digest))
        if rule is not None:
            engine.count(provider, "online_failed")
            raise injected(rule)
        engine.count(provider, "online")
        return endpoint.answer(body, model, online.variant(provider, digest), now)

    return serve


def injected(rule: Fault) -> ApiError:
    """A per-request error rule's answer: its ``error_status``, with its ``retry_after``."""
    return fault_error(attrs.evolve(rule, http_status=rule.error_status))


def last_text(messages: Any, system: Any = None) -> str:
    if not isinstance(messages, list):
        return ""
    return last_user_text(conversation([m for m in messages if isinstance(m, Mapping)], system))


def retry_headers(seconds: float) -> dict[str, str]:
    return {"retry-after": str(max(0, math.ceil(seconds))), "retry-after-ms": str(max(0, int(seconds * 1000)))}


def rid() -> str:
    return secrets.token_hex(24)


# --- OpenAI and the OpenAI-compatible vendors ----------------------------------------------

CHAT = "/v1/chat/completions"


def openai_routes(engine: Engine, api: Api, profile: Any, path: str = "/chat/completions") -> list[Route]:
    """``POST {prefix}/chat/completions`` of OpenAI or a vendor (``profile``: its VendorProfile)."""
    from .openai_api import check_body, respond
    from .quota import body_tokens, context_error, max_tokens

    def check(body: JsonBody, model: str) -> RequestError | None:
        if body.get("stream"):
            return RequestError(400, "The sandbox does not stream: send the request without 'stream'.",
                                "invalid_request_error", param="stream")
        error = check_body(CHAT, body, profile)
        if error is None:
            output = max_tokens(body, ("max_completion_tokens", "max_tokens"))
            error = context_error("openai", model, body_tokens(body), output)
        return error

    def weight(body: JsonBody) -> int:
        return body_tokens(body) + max_tokens(body, ("max_completion_tokens", "max_tokens"))

    def answer(body: JsonBody, model: str, variant: int, now: float) -> dict[str, Any]:
        return respond(engine, CHAT, body, rid(), int(now), variant)[0]

    def rate_headers(window: Window, now: float) -> dict[str, str]:
        headers = {}
        limit = window.limit
        if limit.requests_per_minute is not None:
            headers.update({"x-ratelimit-limit-requests": str(limit.requests_per_minute),
                            "x-ratelimit-remaining-requests": str(window.requests_remaining),
                            "x-ratelimit-reset-requests": go_duration(window.requests_reset)})
        if limit.tokens_per_minute is not None:
            headers.update({"x-ratelimit-limit-tokens": str(limit.tokens_per_minute),
                            "x-ratelimit-remaining-tokens": str(window.tokens_remaining),
                            "x-ratelimit-reset-tokens": go_duration(window.tokens_reset)})
        return headers

    def throttled(t: Throttled, model: str, now: float) -> ApiError:
        unit = "requests per min (RPM)" if t.kind == "requests" else "tokens per min (TPM)"
        where = f"for {model} in organization org-sandbox on {unit}"
        if t.too_large:
            message = (f"Request too large {where}: Limit {t.limit}, Requested {t.requested}. The input or "
                       "output tokens must be reduced in order to run successfully. Visit "
                       "https://platform.openai.com/account/rate-limits to learn more.")
            headers = rate_headers(t.window, now)
        else:
            assert t.retry_after is not None
            message = (f"Rate limit reached {where}: Limit {t.limit}, Used {t.used}, Requested {t.requested}. "
                       f"Please try again in {go_duration(t.retry_after)}. Visit "
                       "https://platform.openai.com/account/rate-limits to learn more.")
            headers = {**rate_headers(t.window, now), **retry_headers(t.retry_after)}
        return ApiError(429, message, type=t.kind, code="rate_limit_exceeded", headers=headers)

    endpoint = Endpoint(
        provider=api.flavor.name, model=lambda body, _request: str(body.get("model") or ""), check=check,
        weight=weight, text=lambda body: last_text(body.get("messages")), answer=answer, throttled=throttled,
        rate_headers=rate_headers, oversize="refuse")
    return [api.route(path, handler(engine, api, endpoint), ["POST"])]


# --- Anthropic ------------------------------------------------------------------------------


def anthropic_routes(engine: Engine, api: Api) -> list[Route]:
    """``POST /v1/messages``: the Messages API."""
    from .anthropic_api import PROVIDER, _rfc3339, check_params, message
    from .quota import chat_tokens, context_error, max_tokens

    def check(body: JsonBody, model: str) -> RequestError | None:
        if body.get("stream"):
            return RequestError(400, "stream: the sandbox does not stream; send the request without it",
                                "invalid_request_error")
        error = check_params(body)
        if error is None:
            error = context_error(PROVIDER, model, chat_tokens(body.get("messages"), body.get("system")),
                                  max_tokens(body, ("max_tokens",)))
        return error

    def weight(body: JsonBody) -> int:
        return chat_tokens(body.get("messages"), body.get("system")) + max_tokens(body, ("max_tokens",))

    def answer(body: JsonBody, model: str, variant: int, now: float) -> dict[str, Any]:
        reply, _ = message(engine, body, rid(), variant)
        reply["usage"]["service_tier"] = "standard"  # the batch path says "batch"
        return reply

    def rate_headers(window: Window, now: float) -> dict[str, str]:
        # Anthropic's resets are RFC 3339 times: when the bucket is full again.
        headers = {}
        limit = window.limit
        if limit.requests_per_minute is not None:
            headers.update({"anthropic-ratelimit-requests-limit": str(limit.requests_per_minute),
                            "anthropic-ratelimit-requests-remaining": str(window.requests_remaining),
                            "anthropic-ratelimit-requests-reset": str(_rfc3339(now + window.requests_reset))})
        if limit.tokens_per_minute is not None:
            headers.update({"anthropic-ratelimit-tokens-limit": str(limit.tokens_per_minute),
                            "anthropic-ratelimit-tokens-remaining": str(window.tokens_remaining),
                            "anthropic-ratelimit-tokens-reset": str(_rfc3339(now + window.tokens_reset))})
        return headers

    def throttled(t: Throttled, model: str, now: float) -> ApiError:
        unit = "requests per minute" if t.kind == "requests" else "tokens per minute"
        message_text = (f"This request would exceed the rate limit for your organization (org-sandbox) of {t.limit} "
                        f"{unit}. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see "
                        "the response headers for current usage. Please reduce the prompt length or the maximum "
                        "tokens requested, or try again later.")
        wait = t.retry_after if t.retry_after is not None else 60.0
        headers = {**rate_headers(t.window, now), "retry-after": str(max(0, math.ceil(wait)))}
        return ApiError(429, message_text, type="rate_limit_error", headers=headers)

    endpoint = Endpoint(
        provider=PROVIDER, model=lambda body, _request: str(body.get("model") or ""), check=check, weight=weight,
        text=lambda body: last_text(body.get("messages")), answer=answer, throttled=throttled,
        rate_headers=rate_headers)
    return [api.route("/v1/messages", handler(engine, api, endpoint), ["POST"])]


# --- Mistral --------------------------------------------------------------------------------

#: The chat completions request's fields (the mistralai SDK's ChatCompletionRequest); the
#: API answers any other field with a 422 ``extra_forbidden``.
MISTRAL_FIELDS = frozenset({
    "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed", "metadata",
    "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty", "min_tokens",
    "repetition_penalty", "top_k", "logprobs", "top_logprobs", "prompt_logprobs", "top_prompt_logprobs", "n",
    "prediction", "parallel_tool_calls", "reasoning_effort", "prompt_mode", "guardrails", "prompt_cache_key",
    "service_tier", "safe_prompt",
})


def mistral_unprocessable(problems: list[dict[str, Any]]) -> ApiError:
    """Mistral's 422: the validator's ``detail`` list inside its error object."""
    body = {"object": "error", "message": {"detail": problems}, "type": "invalid_request_error", "param": None,
            "code": None}
    return ApiError(422, problems[0]["msg"], type="invalid_request_error", body=body)


def mistral_routes(engine: Engine, api: Api) -> list[Route]:
    """``POST /v1/chat/completions``: the mistralai SDK's ``chat.complete``."""
    from .mistral_api import PROVIDER, respond
    from .quota import body_tokens, context_error, max_tokens

    def schema(body: JsonBody) -> list[dict[str, Any]]:
        problems = [{"type": "missing", "loc": ["body", name], "msg": "Field required", "input": dict(body)}
                    for name in ("model", "messages") if name not in body]
        if "messages" in body and not isinstance(body["messages"], list):
            problems.append({"type": "list_type", "loc": ["body", "messages"], "msg": "Input should be a valid list",
                             "input": body["messages"]})
        if "max_tokens" in body and body["max_tokens"] is not None and (
                isinstance(body["max_tokens"], bool) or not isinstance(body["max_tokens"], int)
                or body["max_tokens"] < 0):
            problems.append({"type": "greater_than_equal", "loc": ["body", "max_tokens"],
                             "msg": "Input should be greater than or equal to 0", "input": body["max_tokens"]})
        problems += [{"type": "extra_forbidden", "loc": ["body", name], "msg": "Extra inputs are not permitted",
                      "input": body[name]} for name in body if name not in MISTRAL_FIELDS]
        return problems

    def check(body: JsonBody, model: str) -> RequestError | None:
        if body.get("stream"):
            return RequestError(400, "The sandbox does not stream: send the request without 'stream'.",
                                "invalid_request_error", param="stream")
        return context_error(PROVIDER, model, body_tokens(body), max_tokens(body, ("max_tokens",)))

    def checked(body: JsonBody, model: str) -> RequestError | None:
        problems = schema(body)
        if problems:
            raise mistral_unprocessable(problems)
        return check(body, model)

    def weight(body: JsonBody) -> int:
        return body_tokens(body) + max_tokens(body, ("max_tokens",))

    def answer(body: JsonBody, model: str, variant: int, now: float) -> dict[str, Any]:
        return respond(engine, CHAT, body, model, rid(), int(now), variant)[0]

    def rate_headers(window: Window, now: float) -> dict[str, str]:
        # Mistral reports its token budget per minute (x-ratelimitbysize-*) and not its request rate.
        limit = window.limit
        if limit.tokens_per_minute is None:
            return {}
        return {"x-ratelimitbysize-limit-minute": str(limit.tokens_per_minute),
                "x-ratelimitbysize-remaining-minute": str(window.tokens_remaining),
                "ratelimitbysize-limit": str(limit.tokens_per_minute),
                "ratelimitbysize-remaining": str(window.tokens_remaining),
                "ratelimitbysize-reset": str(math.ceil(window.tokens_reset))}

    def throttled(t: Throttled, model: str, now: float) -> ApiError:
        wait = t.retry_after if t.retry_after is not None else 60.0
        headers = {**rate_headers(t.window, now), "retry-after": str(max(0, math.ceil(wait)))}
        body = {"object": "error", "message": "Rate limit exceeded", "type": "rate_limited", "param": None,
                "code": "1300"}
        return ApiError(429, "Rate limit exceeded", type="rate_limited", code="1300", headers=headers, body=body)

    endpoint = Endpoint(
        provider=PROVIDER, model=lambda body, _request: str(body.get("model") or ""), check=checked,
        weight=weight, text=lambda body: last_text(body.get("messages")), answer=answer, throttled=throttled,
        rate_headers=rate_headers)
    return [api.route("/v1/chat/completions", handler(engine, api, endpoint), ["POST"])]


# --- Gemini ---------------------------------------------------------------------------------


def gemini_routes(engine: Engine, api: Api) -> list[Route]:
    """``POST /{v1,v1beta}/models/{model}:generateContent``: google-genai's ``models.generate_content``."""
    from .gemini_api import PROVIDER, VERSIONS, _conversation, _field, check_request, input_limit_error, respond
    from .responder import prompt_tokens

    def model_of(body: JsonBody, request: Request) -> str:
        return str(request.path_params["model"]).removeprefix("models/")

    def check(body: JsonBody, model: str) -> RequestError | None:
        error = check_request(body)
        if error is None:
            error = input_limit_error(model, prompt_tokens(_conversation(body)))
        return error

    def weight(body: JsonBody) -> int:
        config = _field(body, "generationConfig", "generation_config") or {}
        output = _field(config, "maxOutputTokens", "max_output_tokens") if isinstance(config, Mapping) else None
        return prompt_tokens(_conversation(body)) + (output if isinstance(output, int) else 0)

    def text(body: JsonBody) -> str:
        return last_user_text(_conversation(body))

    def answer(body: JsonBody, model: str, variant: int, now: float) -> dict[str, Any]:
        return respond(engine, body, model, rid(), variant)[0]

    def throttled(t: Throttled, model: str, now: float) -> ApiError:
        # Gemini sends no Retry-After header and no rate headers: the wait is in the body, as a
        # google.rpc.RetryInfo, and in the message.
        wait = t.retry_after if t.retry_after is not None else 60.0
        metric, quota = (("generate_content_paid_tier_requests", "GenerateRequestsPerMinutePerProjectPerModel")
                         if t.kind == "requests" else
                         ("generate_content_paid_tier_input_token_count",
                          "GenerateContentPaidTierInputTokensPerModelPerMinute"))
        message = ("You exceeded your current quota, please check your plan and billing details. For more "
                   "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. \n"
                   f"* Quota exceeded for metric: generativelanguage.googleapis.com/{metric}, limit: {t.limit}, "
                   f"model: {model}\nPlease retry in {wait:g}s.")
        body = {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                {"quotaMetric": f"generativelanguage.googleapis.com/{metric}", "quotaId": quota,
                 "quotaDimensions": {"location": "global", "model": model}, "quotaValue": str(t.limit)}]},
            {"@type": "type.googleapis.com/google.rpc.Help", "links": [
                {"description": "Learn more about Gemini API quotas",
                 "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{wait:g}s"}]}}
        return ApiError(429, message, type="RESOURCE_EXHAUSTED", body=body)

    def refused(error: RequestError) -> ApiError:
        return ApiError(error.status, error.message, type="INVALID_ARGUMENT" if error.status == 400 else error.type)

    endpoint = Endpoint(
        provider=PROVIDER, model=model_of, check=check, weight=weight, text=text, answer=answer,
        throttled=throttled, rate_headers=lambda _window, _now: {}, refused=refused)
    serve = handler(engine, api, endpoint)
    return [api.route(f"/{v}/models/{{model}}:generateContent", serve, ["POST"]) for v in VERSIONS]
