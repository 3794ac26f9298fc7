"""OpenAI-compatible batch vendors served by this plugin under their own provider names.

A vendor whose Batch API is OpenAI's (``/files`` plus ``/batches``, the same JSONL lines,
output and error files, batch statuses and metadata) needs no code of its own: only
the facts that set it apart, in one frozen :class:`Vendor` value that the hooks consult.
``LLM("groq/llama-3.1-8b-instant")`` then works with ``GROQ_API_KEY`` set.

Sources for every figure are in ``docs/protocols/<vendor>.md``. A vendor whose batch
API is shaped differently (Together: ``{"job": ...}`` envelopes, upper-case statuses, no
metadata; Fireworks: datasets) is not one of these: see those notes.
"""

from __future__ import annotations

from typing import Mapping

from attrs import frozen

from overnight.errors import InvalidRequest
from overnight.models import Capabilities, ChatRequest, Limits, ModelSpec, OnlineLimits, ProviderInfo, QueueLimits

from overnight_openai.online import VENDOR_LIMITS
from overnight_openai.translate import EXTRA_PARAMS

MB = 1_000_000
DAY = 24 * 3600


@frozen
class Vendor:
    """One OpenAI-compatible batch vendor: where it is, its key, its limits, its differences."""

    name: str
    #: How messages name it ("Groq").
    label: str
    key_env: str
    base_url_env: str
    #: The SDK base URL, including the path the OpenAI SDK appends ``/files``, ``/batches`` to.
    base_url: str
    limits: Limits
    #: What the plugin sends as ``completion_window`` (the vendor may accept others).
    completion_window: str
    #: OpenAI chat options the vendor passes through (its refused ones left out, so the core
    #: names the row and the option before anything is spent).
    extra_params: frozenset[str]
    batch_discount: float
    description: str
    models: tuple[ModelSpec, ...] = ()
    #: Every completion window the vendor accepts, in seconds (a documented fact, shown by
    #: ``overnight plugins``; the plugin sends :attr:`completion_window`).
    windows: tuple[int, int] = (DAY, DAY)
    #: Whether overnight can list the vendor's batches with the keys they hold (``overnight adopt``).
    list_jobs: bool = True
    #: The API path the vendor's own SDK appends to its base URL (Groq's: ``/openai/v1``), so
    #: a base URL set for that SDK (``GROQ_BASE_URL=https://api.groq.com``) works here too.
    sdk_path: str = ""
    #: The models that enforce a strict ``json_schema`` response format (constrained decoding);
    #: ``None`` when the vendor publishes no list, and the format is sent as given.
    strict_schema_models: tuple[str, ...] | None = None

    def schema_refusal(self, request: ChatRequest) -> InvalidRequest | None:
        """The refusal, before spend, of a strict JSON schema on a model that cannot enforce one."""
        fmt = request.params.response_format
        spec = fmt.get("json_schema") if isinstance(fmt, dict) and fmt.get("type") == "json_schema" else None
        if self.strict_schema_models is None or not isinstance(spec, dict) or spec.get("strict") is not True:
            return None
        if request.model in self.strict_schema_models:
            return None
        return InvalidRequest(
            f"{self.label} enforces a JSON schema (strict mode) only on {', '.join(self.strict_schema_models)}; "
            f"{request.model} would only try to follow it. Use one of those models, or pass "
            "generation_kwargs={'response_format': {... 'strict': False}} to accept best effort",
            field="response_format",
        )

    def api_url(self, base_url: str) -> str:
        """``base_url`` with the vendor's API path, added when it lacks it."""
        if not self.sdk_path or base_url.rstrip("/").endswith(self.sdk_path):
            return base_url
        return base_url.rstrip("/") + self.sdk_path

    def provider_info(self, limits: Limits | None = None) -> ProviderInfo:
        return ProviderInfo(
            name=self.name,
            limits=limits or self.limits,
            capabilities=Capabilities(
                cancel=True, find_by_tag=True, list_jobs=self.list_jobs, online=True, check_while_fetching=True,
            ),
            online_limits=VENDOR_LIMITS.get(self.name, OnlineLimits()),
            extra_params=self.extra_params,
            unsupported_params=frozenset(),
            secret_env=(self.key_env,),
            description=self.description,
            models=self.models,
            queue=QueueLimits(),
            batch_discount=self.batch_discount,
        )


#: Groq (console.groq.com/docs/batch, /docs/openai, /docs/models): OpenAI's Batch API under
#: https://api.groq.com/openai/v1, chat completions only; windows from 24h to 7d;
#: ``logprobs``, ``logit_bias``, ``top_logprobs`` and ``messages[].name`` answered with a 400,
#: ``n`` must be 1; metadata and cancel as OpenAI's. 25% off the on-demand price.
GROQ = Vendor(
    name="groq",
    label="Groq",
    key_env="GROQ_API_KEY",
    base_url_env="GROQ_BASE_URL",
    base_url="https://api.groq.com/openai/v1",
    # 50,000 lines per batch; the file limit is given as 200 MB and as 100 MB: the lower one.
    limits=Limits(max_requests=50_000, max_bytes=100 * MB, completion_window=DAY),
    completion_window="24h",
    extra_params=EXTRA_PARAMS - {"logprobs", "top_logprobs", "logit_bias", "verbosity", "safety_identifier",
                                 "prompt_cache_key"},
    batch_discount=0.25,
    description="Groq Batch API (OpenAI-compatible, /openai/v1/batches), 25% off, windows 24h-7d",
    models=(
        ModelSpec("llama-3.1-8b-instant", 131_072, 131_072),
        ModelSpec("llama-3.3-70b-versatile", 131_072, 32_768),
    ),
    windows=(DAY, 7 * DAY),
    sdk_path="/openai/v1",
    # console.groq.com/docs/structured-outputs: strict mode on these two; others best effort.
    strict_schema_models=("openai/gpt-oss-20b", "openai/gpt-oss-120b"),
)

#: Together (docs.together.ai/docs/inference/batch/overview, /manage, /tutorial; the
#: ``together`` SDK): 50,000 requests and 100 MB per file, the 24h window only (it "cannot be
#: changed"), no metadata (the tag travels as the input file's name), cancel while
#: VALIDATING or IN_PROGRESS, "up to 50%" off (half price on the models it lists, full
#: price on others: 0.5 is the best case). Served by :mod:`overnight_openai.together`.
TOGETHER = Vendor(
    name="together",
    label="Together",
    key_env="TOGETHER_API_KEY",
    base_url_env="TOGETHER_BASE_URL",
    base_url="https://api.together.ai",
    limits=Limits(max_requests=50_000, max_bytes=100 * MB, completion_window=DAY),
    completion_window="24h",
    # Together's chat completions options beyond the standard ones.
    extra_params=frozenset({"frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_k",
                            "repetition_penalty", "min_p", "reasoning_effort"}),
    batch_discount=0.5,
    description="Together Batch API (together SDK, /v1/batches), up to 50% off, 24h window",
    list_jobs=False,
)

#: DeepInfra (docs.deepinfra.com/batch/batch-endpoints, deepinfra.com/blog/batch-api): OpenAI's
#: Batch API under https://api.deepinfra.com/v1/openai, "24h" only, metadata (16 pairs) and
#: cancel as OpenAI's; 20% off. No per-batch figures published in the pages found: OpenAI's
#: request count and the lower file size are assumed.
DEEPINFRA = Vendor(
    name="deepinfra",
    label="DeepInfra",
    key_env="DEEPINFRA_TOKEN",
    base_url_env="DEEPINFRA_BASE_URL",
    base_url="https://api.deepinfra.com/v1/openai",
    limits=Limits(max_requests=50_000, max_bytes=100 * MB, completion_window=DAY),
    completion_window="24h",
    extra_params=frozenset({"frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs",
                            "user", "reasoning_effort"}),
    batch_discount=0.2,
    description="DeepInfra Batch API (OpenAI-compatible, /v1/openai/batches), 20% off, 24h window",
)

#: Nebius AI Studio (docs.studio.nebius.com/ai-models-inference/batch-inference and
#: /api-reference/examples/batches): OpenAI's Batch API under https://api.studio.nebius.com/v1,
#: up to 5,000,000 requests and 10 GB per file, "24h" only, up to 500 batches, metadata kept;
#: 50% off.
NEBIUS = Vendor(
    name="nebius",
    label="Nebius",
    key_env="NEBIUS_API_KEY",
    base_url_env="NEBIUS_BASE_URL",
    base_url="https://api.studio.nebius.com/v1",
    limits=Limits(max_requests=5_000_000, max_bytes=10_000 * MB, completion_window=DAY),
    completion_window="24h",
    extra_params=frozenset({"frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs",
                            "user"}),
    batch_discount=0.5,
    description="Nebius AI Studio batch API (OpenAI-compatible, /v1/batches), 50% off, 24h window",
)

VENDORS: Mapping[str, Vendor] = {vendor.name: vendor for vendor in (GROQ, TOGETHER, DEEPINFRA, NEBIUS)}
