"""The data model shared by the core and the provider plugins.

Values are frozen attrs classes. They are provider-neutral: a plugin translates them
to and from its provider's wire format. What a plugin needs to remember about a job
that the core does not understand travels in :attr:`JobRef.data`, an opaque JSON dict.
"""

from __future__ import annotations

import builtins  # ``Chunk.bytes`` shadows the type inside the class
import enum
from typing import Any, Callable, Iterable, Iterator, Mapping

import attrs
from attrs import field, frozen


def _tuple(value: Any) -> tuple:
    return tuple(value) if value is not None else ()


def _mapping(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


def _names(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


# --- what the core sends --------------------------------------------------------------


@frozen
class Message:
    """One chat message. ``role`` is ``system``, ``user`` or ``assistant``."""

    role: str
    content: str


#: The generation options every provider plugin must understand (or refuse clearly).
STANDARD_PARAMS = frozenset(
    {"max_tokens", "temperature", "top_p", "stop", "response_format", "seed"}
)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def standard_param_problems(kwargs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(field, message)`` for each standard option of the wrong type or range.

    The checks every provider shares; plugins refuse what only their provider refuses.
    """
    problems = []

    def check(name: str, ok: bool, expected: str) -> None:
        if name in kwargs and kwargs[name] is not None and not ok:
            problems.append((name, f"must be {expected}, got {kwargs[name]!r}"))

    value: Callable[[str], Any] = kwargs.get
    check("max_tokens", isinstance(value("max_tokens"), int) and not isinstance(value("max_tokens"), bool)
          and value("max_tokens") >= 1, "a whole number >= 1")
    check("temperature", _is_number(value("temperature")) and value("temperature") >= 0, "a number >= 0")
    check("top_p", _is_number(value("top_p")) and 0 <= value("top_p") <= 1, "a number from 0 to 1")
    check("seed", isinstance(value("seed"), int) and not isinstance(value("seed"), bool), "a whole number")
    stop = value("stop")
    check("stop", isinstance(stop, str) and bool(stop) or isinstance(stop, (list, tuple))
          and all(isinstance(s, str) and s for s in stop), "a non-empty string or a list of them")
    fmt = value("response_format")
    check("response_format", isinstance(fmt, dict) and isinstance(fmt.get("type"), str),
          'a dict with a "type", e.g. {"type": "json_object"}')
    return problems


@frozen
class GenerationParams:
    """Generation options in the core's vocabulary.

    ``response_format`` follows OpenAI's shape: ``{"type": "json_object"}`` or
    ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}``.
    ``extra`` carries provider-specific options the provider declared in
    :attr:`ProviderInfo.extra_params`; plugins pass them through.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = field(
        default=None, converter=lambda v: None if v is None else ((v,) if isinstance(v, str) else tuple(v))
    )
    response_format: dict[str, Any] | None = None
    seed: int | None = None
    extra: dict[str, Any] = field(factory=dict, converter=_mapping)


@frozen
class ChatRequest:
    """One provider-neutral chat request: a single generation for a single input row.

    ``custom_id`` is the request's content-addressed key, unique within a job; results
    are matched back to requests by it, never by position.
    """

    custom_id: str
    model: str
    messages: tuple[Message, ...] = field(converter=_tuple)
    params: GenerationParams = field(factory=GenerationParams)


@frozen
class Chunk:
    """One chunk of requests to submit as one provider job.

    ``lines()`` yields, in order, the provider-specific request dicts that the plugin's
    ``build_request`` returned; it can be called more than once (each call streams
    them again from the store), so a plugin can retry an upload.

    ``jsonl()`` yields the same requests as the bytes of a JSONL file, one compact JSON
    line each (newline included), exactly as the core measured them against the
    provider's limits. A plugin that uploads a JSONL file should use it: the lines come
    straight from the store, never decoded and encoded again. It can be called more
    than once too.
    """

    tag: str
    model: str
    count: int
    bytes: int
    lines: Callable[[], Iterator[dict[str, Any]]] = field(eq=False, repr=False)
    #: The encoded lines (each ending in ``b"\n"``), when the core has them; see :meth:`jsonl`.
    encoded: Callable[[], Iterator[builtins.bytes]] | None = field(default=None, eq=False, repr=False)

    def jsonl(self) -> Iterator[builtins.bytes]:
        """The requests as JSONL bytes, one line per request, in the order of ``lines()``."""
        if self.encoded is not None:
            return self.encoded()
        from overnight import _json

        return (_json.dumps(line) + b"\n" for line in self.lines())


# --- what a provider declares ---------------------------------------------------------


@frozen
class Limits:
    """A provider's per-job limits; the core chunks requests to fit them.

    ``max_bytes`` bounds the serialised JSONL of one job (one line per request, as
    ``build_request`` returns it); ``max_line_bytes`` bounds a single request and is
    checked before anything is submitted. ``completion_window`` is in seconds.
    """

    max_requests: int
    max_bytes: int
    max_line_bytes: int | None = None
    completion_window: int = 24 * 3600


@frozen
class ModelSpec:
    """What one family of a provider's models can take, matched by model-name prefix.

    ``prefix`` matches the start of the model name (the longest matching prefix wins, so
    ``"gpt-4o-mini"`` can differ from ``"gpt-4o"``); ``context_window`` bounds input plus
    output tokens of one request; ``max_output_tokens`` is the most the model generates.
    """

    prefix: str
    context_window: int
    max_output_tokens: int


@frozen
class QueueLimits:
    """What an account may have waiting at the provider at once (per model), as far as
    the plugin knows; ``None`` is "unknown, no limit assumed". Users set their account's
    figure with ``LLM(max_enqueued_tokens=..., max_queued_requests=...)``."""

    #: Input tokens of the requests in unfinished jobs of one model (OpenAI's "enqueued tokens").
    max_enqueued_tokens: int | None = None
    #: Requests in unfinished jobs (Anthropic's processing queue).
    max_queued_requests: int | None = None


@frozen
class Capabilities:
    """What a provider can do beyond submit, check and fetch."""

    cancel: bool = False
    #: The plugin can find a job by the tag it attached at submit (crash recovery).
    find_by_tag: bool = False
    #: The plugin implements ``list_jobs``: it can list the provider's recent overnight
    #: jobs and the custom ids they hold, so the core adopts paid work its store does not
    #: know (a lost store, another machine) and spots a duplicate of a late create.
    list_jobs: bool = False
    #: The plugin implements ``generate``: one request at a time through the provider's
    #: online API (``use_offline_batch_generation=False`` and the deadline fallback).
    online: bool = False
    #: ``check`` may run in a second thread while ``fetch`` streams another job's results
    #: (the client is thread-safe, as the official SDKs' are): with several jobs ending
    #: together the core asks for the next job's state while it stores this one's results,
    #: so a provider slow to answer a check (or to ready the results then) costs no wall time.
    check_while_fetching: bool = False


@frozen
class OnlineLimits:
    """How hard the core may drive a provider's online API, per model, as the plugin
    declares it (users override each figure on the LLM); ``None`` is "no limit known"."""

    #: Requests per minute.
    requests_per_minute: int | None = None
    #: Input plus output tokens per minute.
    tokens_per_minute: int | None = None
    #: Requests in flight at once.
    max_concurrency: int = 16


@frozen
class ProviderInfo:
    """How a plugin declares one provider it serves (see ``register_providers``)."""

    name: str
    limits: Limits
    capabilities: Capabilities = field(factory=Capabilities)
    #: Provider-specific generation options accepted in ``GenerationParams.extra``.
    extra_params: frozenset[str] = field(factory=frozenset, converter=_names)
    #: Standard options the provider cannot honour; using one is a validation error.
    unsupported_params: frozenset[str] = field(factory=frozenset, converter=_names)
    #: Environment variables that hold secrets; their values are redacted from errors.
    secret_env: tuple[str, ...] = field(default=(), converter=_tuple)
    description: str = ""
    #: The models' context windows and output ceilings, matched by name prefix (see ModelSpec).
    models: tuple[ModelSpec, ...] = field(default=(), converter=_tuple)
    #: ``max_tokens`` the plugin sends when the user gives none (``None``: the provider's own default,
    #: which may fill the rest of the context window).
    default_max_tokens: int | None = None
    #: The queue limits the plugin knows (lowered by the user's figure or by what overnight learns).
    queue: QueueLimits = field(factory=QueueLimits)
    #: Share of the online price the batch API takes off (0.5: half price).
    batch_discount: float = 0.5
    #: The provider's id in the price library (genai-prices); default: ``name``.
    prices_provider: str | None = None
    #: The online API's rate limits (see OnlineLimits); used only with ``Capabilities.online``.
    online_limits: OnlineLimits = field(factory=OnlineLimits)


# --- what a provider reports ----------------------------------------------------------


@frozen
class JobRef:
    """A reference to one provider job.

    ``tag`` is the idempotency tag the core gave at submit; ``data`` is the plugin's
    own JSON-serialisable state (e.g. an input file id), stored and handed back as is.
    """

    provider: str
    remote_id: str
    tag: str
    data: dict[str, Any] = field(factory=dict, converter=_mapping)


class JobState(str, enum.Enum):
    """A job's state in the core's vocabulary."""

    RUNNING = "running"  # queued, validating, in progress, finalizing, cancelling
    FINISHED = "finished"  # done; results can be fetched
    FAILED = "failed"  # rejected as a whole (e.g. input validation); nothing was run
    EXPIRED = "expired"  # window passed; finished requests can be fetched
    CANCELLED = "cancelled"  # cancelled; finished requests can be fetched

    @property
    def terminal(self) -> bool:
        return self is not JobState.RUNNING


@frozen
class JobStatus:
    """The state of a job with its request counts (0 when the provider does not say)."""

    state: JobState = field(converter=lambda v: v if type(v) is JobState else JobState(v))
    total: int = 0
    completed: int = 0
    failed: int = 0
    #: The provider's own status word, for display.
    raw_status: str = ""
    #: Why a job failed, in the provider's words.
    message: str | None = None
    #: A FAILED job that failed for the account's queue or rate limits (e.g. OpenAI's
    #: ``token_limit_exceeded``), not for its content: the core counts no attempt, puts its
    #: requests back in the queue and submits less at once.
    quota: bool = False


@frozen
class RemoteJob:
    """One overnight job as the provider lists it (see the ``list_jobs`` hook).

    ``ref`` is what ``check`` / ``fetch`` / ``cancel`` need (``ref.tag`` is the tag the
    job carries, or ``""`` when the provider does not show it); ``created_at`` is Unix
    seconds on the provider's clock. ``custom_ids`` are the core's request keys the job
    holds (decoded from the wire ids), or ``None`` when they cannot be read (not yet, as
    for a running Anthropic batch, or not asked for, see ``skip``).
    """

    ref: JobRef
    created_at: float
    state: JobState = field(converter=JobState)
    custom_ids: frozenset[str] | None = field(
        default=None, converter=lambda v: None if v is None else frozenset(v)
    )


class ResultStatus(str, enum.Enum):
    SUCCEEDED = "succeeded"
    #: The provider rejected or failed this request; the core retries it up to a bound.
    ERRORED = "errored"
    #: Not run because the job expired or was cancelled; the core resubmits it.
    UNFINISHED = "unfinished"


@frozen
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@frozen
class Result:
    """The outcome of one request, matched to it by ``custom_id``."""

    custom_id: str
    # Enum lookup is slow and a Result is built several times per request: skip it for members.
    status: ResultStatus = field(converter=lambda v: v if type(v) is ResultStatus else ResultStatus(v))
    text: str | None = None
    error: str | None = None
    usage: Usage | None = None
    finish_reason: str | None = None
    #: The provider's raw per-request body, kept for debugging and for extra fields.
    raw: dict[str, Any] | None = None
    #: What the request was billed, in US dollars at batch prices (online prices for a request
    #: answered online) (from ``usage``; set by the core when the model's price is known,
    #: ``None`` otherwise).
    cost_usd: float | None = None
    #: What the same request costs through the provider's online API, for "saved" figures.
    online_cost_usd: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is ResultStatus.SUCCEEDED


@frozen
class PlannedRequest:
    """One generation to make: ``sample`` of input ``row``."""

    row: int
    sample: int
    request: ChatRequest
    #: The input column the request's text came from, named in errors about its size.
    source: str | None = None


@frozen
class RowResult:
    """The outcome of one planned request, in plan order."""

    row: int
    sample: int
    result: Result


def evolve(instance: Any, **changes: Any) -> Any:
    """Return a copy of a frozen value with some fields changed."""
    return attrs.evolve(instance, **changes)
