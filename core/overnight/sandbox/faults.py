"""Fault injection: one frozen rule class, plus how rules combine on a job.

A rule has a *selector* (provider, model, metadata subset; unset parts match anything)
and *effects* of three kinds:

* job effects, fixed when a matching job is created (the job keeps a snapshot, so
  clearing rules later never changes a job already submitted): per-request errors,
  failed validation, slow validation, expiry or provider cancel part-way, stuck jobs,
  and corruption of the result file;
* HTTP effects, checked on every provider request: answer ``http_status`` (429, 5xx,
  404, ...) with an optional retry-after instead of serving it, and/or hold the answer
  back for ``http_delay`` wall seconds (a hung provider; the wait ends early when the
  client gives up); they select on provider, method and path only;
* online effects, checked on every request to an online (synchronous) endpoint that
  passed the HTTP effects: the request fails with ``error_status`` when its last user
  message matches ``online_error_match`` or a hash of its body and repeat number falls
  under ``online_error_rate`` (select on provider and the request's model);
* download effects, checked on every file / results download: a delay before the
  body, or a body cut part-way;
* create effects (fixed at create, like job effects): the job is created but the
  create call's response is dropped (``create_response_lost``: headers sent, then the
  connection is closed, so the SDK sees a connection error), and the job stays
  invisible to get / list / cancel / results for ``visible_after`` sandbox seconds and
  for the next ``invisible_lookups`` lookups that would have shown it. That is a
  create that lands late: the caller cannot tell whether it was created.

``times`` bounds how often a rule fires: HTTP responses replaced, downloads altered or
jobs affected; ``None`` means forever.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal, Mapping

import attrs

TruncateMode = Literal["abort", "short"]
ViolationMode = Literal["missing_field", "malformed"]

_JOB_FIELDS = (
    "error_rate", "error_ids", "fail_validation", "validation_delay", "expire_after_fraction",
    "cancel_after_fraction", "stuck", "result_unknown_id", "result_duplicate",
    "result_missing_ids", "result_missing_count", "create_response_lost", "visible_after",
    "invisible_lookups", "schema_violation_rate", "schema_violation_ids",
)


def _fraction(_inst: Any, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be within [0, 1], got {value!r}")


def _frozenset(value: Any) -> frozenset[str]:
    if isinstance(value, str):  # a lone id, not its characters
        return frozenset({value})
    return frozenset(str(v) for v in value or ())


def _metadata(value: Any) -> Mapping[str, str] | None:
    return None if value is None else {str(k): str(v) for k, v in dict(value).items()}


@attrs.frozen(kw_only=True)
class Fault:
    """A fault rule. Field groups: selector, job effects, result corruption, HTTP, downloads."""

    # --- selector ---------------------------------------------------------------
    provider: str | None = None                  # "openai" | "anthropic" | "mistral" | "gemini"
    model: str | None = None                     # the job's model (first request's)
    metadata: Mapping[str, str] | None = attrs.field(default=None, converter=_metadata)
    times: int | None = None                     # firings left; None = unlimited

    # --- per-request errors (job effect) -------------------------------------------
    error_rate: float = attrs.field(default=0.0, validator=_fraction)  # share of requests, chosen by a hash of custom_id
    error_ids: frozenset[str] = attrs.field(factory=frozenset, converter=_frozenset)  # these custom ids fail
    error_status: int = 500                      # HTTP status the failed requests report

    # --- job course (job effect) ---------------------------------------------------
    fail_validation: bool = False                # job fails validation (Anthropic: create answers 400)
    validation_delay: float = 0.0                # extra sandbox seconds spent validating
    expire_after_fraction: float | None = attrs.field(default=None, validator=_fraction)
    cancel_after_fraction: float | None = attrs.field(default=None, validator=_fraction)  # cancelled by the provider
    stuck: bool = False                          # never progresses; expires at the window's end

    # --- result corruption (job effect; the job still reports normal counts) ---------
    result_unknown_id: bool = False              # add a result line whose custom_id was never sent
    result_duplicate: bool = False               # repeat the first successful line
    result_missing_ids: frozenset[str] = attrs.field(factory=frozenset, converter=_frozenset)
    result_missing_count: int = 0                # drop the first N successful lines

    # --- answers that break their JSON schema (job effect; the requests still succeed) -----
    schema_violation_rate: float = attrs.field(default=0.0, validator=_fraction)  # share, by a hash of custom_id
    schema_violation_ids: frozenset[str] = attrs.field(factory=frozenset, converter=_frozenset)
    schema_violation_mode: ViolationMode = "missing_field"  # or "malformed": the JSON is cut short

    # --- a create that lands late (job effect; see the module docstring) ---------------
    create_response_lost: bool = False           # the job is created, the response never arrives
    visible_after: float = 0.0                   # sandbox seconds the job is invisible after its create
    invisible_lookups: int = 0                   # lookups (get / list) that do not show it yet

    # --- online requests (the synchronous endpoints; see .online) ---------------------
    # share of online requests failed, chosen by a hash of the body and its repeat number
    online_error_rate: float = attrs.field(default=0.0, validator=_fraction)
    online_error_match: str | None = None        # regex searched in the last user message: those online requests fail
    # (both answer ``error_status``: 400/422 refuse the request, 429/5xx/529 fail it)

    # --- HTTP bursts ---------------------------------------------------------------
    http_status: int | None = None               # e.g. 429, 500, 503, 529
    http_method: str | None = None               # e.g. "POST"; None = any
    http_path: str | None = None                 # regex searched in the full request path
    retry_after: float | None = None             # seconds; sent as retry-after(-ms)
    http_delay: float = 0.0                      # wall seconds before answering (then http_status, if set)

    # --- downloads (OpenAI file content, Anthropic results, Mistral and Gemini file downloads) -----
    download_delay: float = 0.0                  # wall seconds before the response starts
    download_truncate: float | None = attrs.field(default=None, validator=_fraction)  # share of the body sent
    download_truncate_mode: TruncateMode = "abort"  # abort: full length announced, connection dropped; short: a short, well-formed body

    def to_dict(self) -> dict[str, Any]:
        return _to_json(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        known = {f.name for f in attrs.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise TypeError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**dict(data))

    # --- kinds -------------------------------------------------------------------------
    @property
    def affects_jobs(self) -> bool:
        return any(getattr(self, name) != getattr(_NO_FAULT, name) for name in _JOB_FIELDS)

    @property
    def affects_online(self) -> bool:
        return self.online_error_rate > 0 or self.online_error_match is not None

    @property
    def affects_http(self) -> bool:
        return self.http_status is not None or self.http_delay > 0

    @property
    def affects_downloads(self) -> bool:
        return self.download_delay > 0 or self.download_truncate is not None

    # --- selection -----------------------------------------------------------------------
    def selects_job(self, provider: str, model: str | None, metadata: Mapping[str, Any] | None) -> bool:
        if self.provider is not None and self.provider != provider:
            return False
        if self.model is not None and self.model != model:
            return False
        if self.metadata:
            have = metadata or {}
            return all(k in have and str(have[k]) == v for k, v in self.metadata.items())
        return True

    def selects_http(self, provider: str, method: str, path: str) -> bool:
        if self.provider is not None and self.provider != provider:
            return False
        if self.model is not None or self.metadata:
            return False  # an HTTP request carries no job context to match on
        if self.http_method is not None and self.http_method.upper() != method.upper():
            return False
        return self.http_path is None or re.search(self.http_path, path) is not None


_NO_FAULT = Fault()


def hash_fraction(custom_id: str) -> float:
    """A stable pseudo-random number in [0, 1) for a custom id."""
    digest = hashlib.sha256(custom_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@attrs.frozen
class JobFaults:
    """The job effects of every rule that matched a job, merged."""

    error_rate: float = 0.0
    error_ids: frozenset[str] = frozenset()
    error_status: int = 500
    fail_validation: bool = False
    validation_delay: float = 0.0
    expire_after_fraction: float | None = None
    cancel_after_fraction: float | None = None
    stuck: bool = False
    result_unknown_id: bool = False
    result_duplicate: bool = False
    result_missing_ids: frozenset[str] = frozenset()
    result_missing_count: int = 0
    create_response_lost: bool = False
    visible_after: float = 0.0
    invisible_lookups: int = 0
    schema_violation_rate: float = 0.0
    schema_violation_ids: frozenset[str] = frozenset()
    schema_violation_mode: str = "missing_field"

    @classmethod
    def merge(cls, rules: list[Fault]) -> JobFaults:
        merged = cls()
        for r in rules:
            merged = cls(
                error_rate=max(merged.error_rate, r.error_rate),
                error_ids=merged.error_ids | r.error_ids,
                error_status=r.error_status if (r.error_rate or r.error_ids) else merged.error_status,
                fail_validation=merged.fail_validation or r.fail_validation,
                validation_delay=merged.validation_delay + r.validation_delay,
                expire_after_fraction=_min(merged.expire_after_fraction, r.expire_after_fraction),
                cancel_after_fraction=_min(merged.cancel_after_fraction, r.cancel_after_fraction),
                stuck=merged.stuck or r.stuck,
                result_unknown_id=merged.result_unknown_id or r.result_unknown_id,
                result_duplicate=merged.result_duplicate or r.result_duplicate,
                result_missing_ids=merged.result_missing_ids | r.result_missing_ids,
                result_missing_count=max(merged.result_missing_count, r.result_missing_count),
                create_response_lost=merged.create_response_lost or r.create_response_lost,
                visible_after=max(merged.visible_after, r.visible_after),
                invisible_lookups=max(merged.invisible_lookups, r.invisible_lookups),
                schema_violation_rate=max(merged.schema_violation_rate, r.schema_violation_rate),
                schema_violation_ids=merged.schema_violation_ids | r.schema_violation_ids,
                schema_violation_mode=r.schema_violation_mode if (r.schema_violation_rate or r.schema_violation_ids)
                else merged.schema_violation_mode,
            )
        return merged

    def request_fails(self, custom_id: str) -> bool:
        if custom_id in self.error_ids:
            return True
        return self.error_rate > 0 and hash_fraction(custom_id) < self.error_rate

    def schema_violation(self, custom_id: str) -> str | None:
        """How the answer to ``custom_id`` breaks its JSON schema, if a rule says it should."""
        if custom_id in self.schema_violation_ids or (
                self.schema_violation_rate > 0 and hash_fraction("schema:" + custom_id) < self.schema_violation_rate):
            return self.schema_violation_mode
        return None

    def to_dict(self) -> dict[str, Any]:
        return _to_json(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobFaults:
        data = dict(data)
        for key in _ID_SETS:
            data[key] = frozenset(data.get(key, ()))
        return cls(**data)


#: Fields holding sets of custom ids: persisted as sorted lists.
_ID_SETS = ("error_ids", "result_missing_ids", "schema_violation_ids")


def _to_json(record: Fault | JobFaults) -> dict[str, Any]:
    data = attrs.asdict(record)
    for key in _ID_SETS:
        data[key] = sorted(data[key])
    return data


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
