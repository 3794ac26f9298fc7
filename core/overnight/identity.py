"""Identities: stable hashes of what a step is and of what a request asks.

A step's signature hashes its parameters (:func:`canonical` forms of them) and its
code; a request's key (:func:`request_key`) is the content address under which the
store keeps what was paid for.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import types
from typing import Any, Sequence

import attrs

from overnight import _json
from overnight._serialization import dumps
from overnight.models import ChatRequest, Message


def canonical(value: Any) -> Any:
    """A JSON-able, stable form of a parameter value, for signatures.

    Objects with a ``signature()`` method (e.g. :class:`~overnight.llm.LLM`) give their
    own; functions are identified by name and code; anything else unknown falls back to
    its ``repr`` (which may hold an address: the step then simply never hits the cache).
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    signature = getattr(value, "signature", None)
    if callable(signature) and not isinstance(value, type):
        return canonical(signature())
    if attrs.has(type(value)):
        return {"class": _qualname(type(value)), "fields": canonical(attrs.asdict(value, recurse=False))}
    if inspect.isfunction(value) or inspect.ismethod(value):
        return _function_identity(value)
    return {"class": _qualname(type(value)), "repr": repr(value)}


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


def _function_identity(fn: Any) -> dict[str, Any]:
    """A function's name, code and captured values: editing its body re-runs the step."""
    func = getattr(fn, "__func__", fn)
    closure = [c.cell_contents for c in (func.__closure__ or ()) if _is_plain(c.cell_contents)]
    return {
        "function": _qualname(func),
        "code": _code_digest(func.__code__),
        "defaults": canonical([d for d in (func.__defaults__ or ()) if _is_plain(d)]),
        "closure": canonical(closure),
    }


def _code_digest(code: types.CodeType) -> str:
    """A hash of what a code object does (bytecode, names, constants), not where it sits:
    moving a function or adding a comment keeps its identity."""
    h = hashlib.sha256()

    def feed(c: types.CodeType) -> None:
        h.update(c.co_code)
        h.update(repr((c.co_names, c.co_varnames, c.co_freevars)).encode())
        for const in c.co_consts:
            if isinstance(const, types.CodeType):
                feed(const)
            elif isinstance(const, frozenset):  # set iteration order varies between processes
                h.update(repr(sorted(map(repr, const))).encode())
            else:
                h.update(repr(const).encode())

    feed(code)
    return h.hexdigest()[:16]


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, list, tuple, dict))


def digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def request_key(provider: str, request: ChatRequest, sample: int, *, params_json: str | None = None) -> str:
    """The content address of a request: provider, model, body and sample index.

    40 hex characters for a row's first sample; the others add two hex digits of the
    sample index (``num_generations`` is at most 128), so the key itself says which sample
    it is: the sandbox answers each sample of a prompt differently by reading it there
    (:func:`overnight.sandbox.responder.sample_variant`). First-sample keys are unchanged.

    ``params_json`` is ``dumps(request.params)``, for callers that computed it already
    (the options are usually the same object for a whole plan).
    """
    params = params_json if params_json is not None else dumps(request.params)
    return content_key(provider, request.model, request.messages, sample, params)


def content_key(provider: str, model: str, messages: Sequence[Message], sample: int, params_json: str) -> str:
    """:func:`request_key` from the request's parts (the plan's hot path builds no request first)."""
    pairs = [[m.role, m.content] for m in messages]
    if all(type(m.role) is str and type(m.content) is str for m in messages):
        # orjson writes strings exactly as json.dumps(ensure_ascii=False) does (every code
        # point checked; lone surrogates fall back to json), 5x faster: same keys.
        text = _json.dumps(pairs).decode()
    else:
        text = json.dumps(pairs, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(f"{provider}\0{model}\0{text}\0{params_json}\0{sample}".encode())
    key = digest.hexdigest()[:40]
    return key if sample == 0 else f"{key}{sample:02x}"
