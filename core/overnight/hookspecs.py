"""The provider contract: the hooks a provider plugin implements.

A plugin is a module (or object) with functions marked ``@hookimpl``, registered under
the entry-point group ``overnight``::

    # pyproject.toml of overnight-acme
    [project.entry-points.overnight]
    acme = "overnight_acme"

    # overnight_acme.py
    from overnight import hookimpl, ProviderInfo, Limits

    @hookimpl
    def register_providers():
        return [ProviderInfo(name="acme", limits=Limits(max_requests=10_000, max_bytes=100_000_000))]

    @hookimpl
    def submit(provider, chunk, options): ...

Routing is explicit. The core asks every plugin which providers it serves
(``register_providers``) and then calls the other hooks *only on the plugin that
declared the provider*, so an implementation never sees requests for providers it did
not declare. ``provider`` is still passed, for plugins that serve several.

Every hook but ``register_providers`` receives ``options``: the client options of the
LLM that needs the call (e.g. ``api_key``, ``base_url``, ``timeout``), as the user gave
them to ``LLM(...)``. Options are never stored by the core; when absent, a plugin
reads its provider's usual environment variables. A plugin must not write secrets to
job metadata, ``JobRef.data``, logs or exception messages.

Errors: raise :class:`overnight.InvalidRequest` (with ``field``) from
``build_request`` for a request the provider cannot express, and
:class:`overnight.MissingCredentials` from ``validate_options``. Let the SDK's own
exceptions propagate from the other hooks: after retries inside the SDK have failed, the
core records nothing as done and the next run simply tries again.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import pluggy

from overnight.models import ChatRequest, Chunk, JobRef, JobStatus, ProviderInfo, Result

PROJECT = "overnight"

hookspec = pluggy.HookspecMarker(PROJECT)
#: The marker plugin authors decorate their hook implementations with.
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_providers() -> list[ProviderInfo]:
    """Declare the providers this plugin serves.

    Return a list of :class:`~overnight.ProviderInfo`: the provider's name (the prefix
    users write in ``LLM("name/model")``), its per-job :class:`~overnight.Limits` (the
    core chunks requests to them; no plugin chunks), its
    :class:`~overnight.Capabilities` (cancel, find-by-tag), the provider-specific
    generation options it accepts and the standard ones it cannot honour.

    Called once per plugin when plugins load. Must be cheap and must not touch the
    network. Two plugins declaring the same name is a configuration error.
    """


@hookspec(firstresult=True)
def validate_options(provider: str, options: Mapping[str, Any]) -> None:
    """Check that the LLM's client options (and the environment) allow calling the provider.

    Called once when a batch step starts, before any work. Raise
    :class:`~overnight.MissingCredentials` when no API key can be found (name the
    environment variable to set, never a key's value) or
    :class:`~overnight.ConfigurationError` for an unknown or malformed option. Must not
    touch the network. Optional: a plugin without it accepts any options.
    """


@hookspec(firstresult=True)
def build_request(provider: str, request: ChatRequest) -> dict[str, Any]:
    """Translate one neutral request into the provider's per-request JSON object.

    Return exactly what one line of the provider's batch input holds, custom id
    included (OpenAI: ``{"custom_id", "method", "url", "body"}``; Anthropic:
    ``{"custom_id", "params"}``; ...). The core calls this for every request before the
    first submission, to validate the whole input and to measure each line's size
    against :attr:`Limits.max_line_bytes` and :attr:`Limits.max_bytes`; it then stores the
    line and hands it back through :attr:`Chunk.lines` at submit.

    Raise :class:`~overnight.InvalidRequest` with ``field=`` naming the option when the
    provider cannot express the request (an unsupported stop sequence count, a schema
    it cannot enforce, ...). Pure: no network, no clock, no randomness.
    """


@hookspec(firstresult=True)
def submit(provider: str, chunk: Chunk, options: Mapping[str, Any]) -> JobRef:
    """Create one provider job holding every request of ``chunk``.

    ``chunk.lines()`` streams the request objects built by ``build_request`` (call it
    again to stream them again); ``chunk.jsonl()`` streams the same requests already
    encoded, as the bytes of a JSONL file (one line each, newline included): a plugin
    that uploads a file should write those, with no decoding and re-encoding per
    request (``overnight.jsonl.spool_jsonl(chunk.jsonl())``). ``chunk.count`` and
    ``chunk.bytes`` (the size of that file) are within the provider's declared limits. Attach ``chunk.tag`` to the job wherever the API allows
    (metadata, file name, ...) so that ``find_job`` can find it after a crash.

    Return a :class:`~overnight.JobRef` with the provider's job id and any state the
    plugin needs later in ``data`` (JSON-serialisable, no secrets).

    The core commits an intent (the tag and the chunk's membership) *before* calling
    this and the returned id right after. If this raises, the core cannot know whether
    the job was created: it will call ``find_job`` on the next pass (or stop and ask
    the user when the provider cannot find by tag), so raise only after cleaning up
    what you can (e.g. an uploaded file). When the provider certainly created nothing
    (a definitive 4xx refusal of the create call), raise
    :class:`~overnight.SubmissionRejected` instead: the core counts a failed attempt
    for each request and moves on.
    """


@hookspec(firstresult=True)
def check(provider: str, job: JobRef, options: Mapping[str, Any]) -> JobStatus:
    """Report a job's state in the core's vocabulary, with request counts.

    Map the provider's status to :class:`~overnight.JobState`: anything still moving
    (queued, validating, in progress, finalizing, cancelling) is ``RUNNING``; a job
    rejected as a whole is ``FAILED`` (put the provider's reason in ``message``); a job
    past its window is ``EXPIRED``; a cancelled one ``CANCELLED``; done is ``FINISHED``.
    Must be idempotent and cheap: the core calls it at every poll.
    """


@hookspec(firstresult=True)
def fetch(provider: str, job: JobRef, options: Mapping[str, Any]) -> Iterable[Result]:
    """Stream the per-request results of a job that ``check`` reported as terminal.

    Return an iterable (a generator is best: results are streamed into the store and
    never all held in memory) of :class:`~overnight.Result`, one per request the
    provider reports on, matched by ``custom_id``: ``SUCCEEDED`` with the output text,
    ``ERRORED`` with the provider's error message (the core retries these up to a
    bound), ``UNFINISHED`` for requests an expired or cancelled job never ran (the core
    resubmits them). Fill ``usage`` and ``finish_reason`` whenever the provider gives
    them, and ``raw`` with the provider's per-request body.

    Partial results of expired and cancelled jobs are paid for: yield them all. Results
    the provider omits are treated as unfinished; unknown or duplicate custom ids are
    ignored by the core. If a download fails mid-way, raise: the core keeps what it
    stored and fetches the job again on the next attempt.
    """


@hookspec(firstresult=True)
def cancel(provider: str, job: JobRef, options: Mapping[str, Any]) -> None:
    """Ask the provider to cancel a job (optional; declare ``Capabilities.cancel``).

    Return once the request is accepted; the job then goes on being checked until it
    is terminal, and its finished requests are still fetched and kept.
    """


@hookspec(firstresult=True)
def find_job(provider: str, tag: str, options: Mapping[str, Any]) -> JobRef | None:
    """Find the job created with ``tag`` by an earlier ``submit`` (crash recovery).

    Optional; declare ``Capabilities.find_by_tag`` when implemented. Return its
    :class:`~overnight.JobRef`, or ``None`` when the provider certainly holds no job
    with that tag (the core then submits the chunk again, under a new tag; before
    returning ``None`` a plugin may delete what the interrupted submit left, such as an
    uploaded input file). Raise when the provider cannot tell right now: the core
    retries on the next run rather than risk paying twice.
    """
