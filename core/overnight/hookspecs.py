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
    def connect(provider, options):
        return acme_sdk.Client(api_key=options.get("api_key") or os.environ["ACME_API_KEY"])

    @hookimpl
    def submit(provider, chunk, client): ...

Routing is explicit. The core asks every plugin which providers it serves
(``register_providers``) and then calls the other hooks *only on the plugin that
declared the provider*, so an implementation never sees requests for providers it did
not declare. ``provider`` is still passed, for plugins that serve several.

Clients. ``connect`` is the one place where a plugin turns an LLM's client options (e.g.
``api_key``, ``base_url``, ``timeout``, as the user gave them to ``LLM(...)``; when
absent, the provider's usual environment variables) into its client: it checks them and
builds the SDK client, with anything else the other hooks need from the options. The
core calls it once per run for each LLM, before any work, and hands what it returned,
unopened, to ``submit``, ``check``, ``fetch``, ``cancel``, ``find_job``, ``list_jobs``
and ``generate`` as ``client``. The core keeps that value in memory for the run only:
never in the store, a log, a repr or an exception. Those hooks still receive
``options`` too (pluggy passes a hookimpl only the arguments it names, so plugins
written before ``connect`` keep working); a plugin with ``connect`` names ``client``
and leaves ``options`` out. A plugin without ``connect`` gets ``client=None``. A
plugin must not write secrets to job metadata, ``JobRef.data``, logs or exception
messages.

Errors: raise :class:`overnight.InvalidRequest` (with ``field``) from
``build_request`` for a request the provider cannot express, and
:class:`overnight.MissingCredentials` from ``connect``. Let the SDK's own
exceptions propagate from the other hooks: after retries inside the SDK have failed, the
core records nothing as done and the next run simply tries again. The one exception:
when the provider says for certain that a job or its results no longer exist, raise
:class:`overnight.ResultsGone` (see ``check``, ``fetch`` and ``cancel``).

Deadlines: ``check``, ``fetch`` and ``find_job`` also receive ``timeout``, the seconds
the call may take, or ``None``. The core passes a number while it polls under
``block_until_done``: the time left before the user's deadline, so a hung provider
cannot keep the run past it. Declare the argument to receive it (pluggy passes only
the arguments an implementation names; older plugins keep working). A plugin honours
it through its SDK's per-request timeout, retries included: when ``timeout`` is
shorter than the client's own per-attempt timeout, make one attempt bounded by it
(the core's polling retries at its next check). A call cut by it raises like any
network error. ``submit`` gets no deadline: a create cut short is ambiguous and costs
a lookup by tag, so the core never cuts one on purpose.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import pluggy

from overnight.models import ChatRequest, Chunk, JobRef, JobStatus, ProviderInfo, RemoteJob, Result

PROJECT = "overnight"

hookspec = pluggy.HookspecMarker(PROJECT)
#: The marker plugin authors decorate their hook implementations with.
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_providers() -> list[ProviderInfo]:
    """Declare the providers this plugin serves.

    Return a list of :class:`~overnight.ProviderInfo`: the provider's name (the prefix
    users write in ``LLM("name/model")``), its per-job :class:`~overnight.Limits` (the
    core chunks requests to them; no plugin chunks), its models' context windows and
    output ceilings (``models``: :class:`~overnight.ModelSpec` by name prefix; the core
    refuses a request whose estimated input plus ``max_tokens`` cannot fit, before any
    spend), the ``max_tokens`` it sends when the user gives none (``default_max_tokens``),
    the account queue limits it knows (``queue``: :class:`~overnight.QueueLimits`; the
    core keeps what is in flight under them), its ``batch_discount`` off the online price
    (for costs when the price library has no batch price), its
    :class:`~overnight.Capabilities` (cancel, find-by-tag), the provider-specific
    generation options it accepts and the standard ones it cannot honour.

    Called once per plugin when plugins load. Must be cheap and must not touch the
    network. Two plugins declaring the same name is a configuration error.
    Raise only when the plugin cannot serve at all (e.g. its SDK is missing): the plugin
    is then reported as failed to load and skipped, and the other plugins keep working.
    """


@hookspec(firstresult=True)
def connect(provider: str, options: Mapping[str, Any]) -> Any:
    """Turn the LLM's client options into the plugin's client, checking them on the way.

    ``provider``: the provider name the LLM uses; ``options``: its client options (see
    the module docstring), as the user gave them. Return anything but ``None``: usually
    the provider's SDK client, or a small frozen value holding it with the settings the
    other hooks need (a job window, an inline threshold, labels). The core hands it back
    unopened as ``client`` to every hook that calls the provider, for the whole run.

    Called once per run for each LLM, when its batch step starts and before any work;
    once per command for the CLI's provider commands (``overnight cancel``, ``overnight
    adopt``: with empty options, so the environment's credentials). Raise
    :class:`~overnight.MissingCredentials` when no API key can be found (name the
    environment variable to set, never a key's value) or
    :class:`~overnight.ConfigurationError` for an unknown or malformed option: this is
    where options are validated, once. Must not touch the network (building an SDK
    client does not): a run whose results are all stored connects and calls nothing.
    The client may be used from several threads at once (``generate``): SDK clients are.

    Optional. A plugin without it gets ``client=None`` and resolves ``options`` itself
    (then the core calls ``validate_options`` instead, if implemented).
    """


@hookspec(firstresult=True)
def validate_options(provider: str, options: Mapping[str, Any]) -> None:
    """Check that the LLM's client options (and the environment) allow calling the provider.

    Superseded by ``connect``, which checks the options as it builds the client; the core
    calls this only for a plugin without ``connect``. ``provider``: the provider name
    the LLM uses; ``options``: its client options. Returns nothing: raising is how it
    refuses.

    Called once when a batch step starts, before any work. Raise
    :class:`~overnight.MissingCredentials` when no API key can be found (name the
    environment variable to set, never a key's value) or
    :class:`~overnight.ConfigurationError` for an unknown or malformed option. Must not
    touch the network. Optional: a plugin without it accepts any options.
    """


@hookspec(firstresult=True)
def build_request(provider: str, request: ChatRequest) -> dict[str, Any]:
    """Translate one neutral request into the provider's per-request JSON object.

    ``provider``: the provider name; ``request``: one :class:`~overnight.ChatRequest`
    (its ``custom_id`` is the request's key, its standard options already checked by the
    core, its ``params.extra`` holding only the options the provider declared).

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
def submit(provider: str, chunk: Chunk, options: Mapping[str, Any], client: Any) -> JobRef:
    """Create one provider job holding every request of ``chunk``.

    ``provider``: the provider name; ``chunk``: the :class:`~overnight.Chunk` to submit;
    ``client``: what ``connect`` returned (``options``: the LLM's client options, for
    plugins without ``connect``).

    ``chunk.lines()`` streams the request objects built by ``build_request`` (call it
    again to stream them again); ``chunk.jsonl()`` streams the same requests already
    encoded, as the bytes of a JSONL file (one line each, newline included): a plugin
    that uploads a file should write those, with no decoding and re-encoding per
    request (``overnight.jsonl.spool_jsonl(chunk.jsonl())``). ``chunk.count`` and
    ``chunk.bytes`` (the size of that file) are within the provider's declared limits.
    Attach ``chunk.tag`` to the job wherever the API allows (metadata, file name, ...) so that ``find_job`` can find it after a crash.

    Return a :class:`~overnight.JobRef` with the provider's job id and any state the
    plugin needs later in ``data`` (JSON-serialisable, no secrets).

    The core commits an intent (the tag and the chunk's membership) *before* calling
    this and the returned id right after. If this raises, the core cannot know whether
    the job was created: it will call ``find_job`` on the next pass (or stop and ask
    the user when the provider cannot find by tag), so raise only after cleaning up
    what you can (e.g. an uploaded file). Never create twice inside one call: no
    provider honours an idempotency key for batch creates, so retry only what certainly
    created nothing (a 429) and let an ambiguous failure (no response, a timeout, a
    5xx) propagate; the same chunk may come back later under the same tag. When the provider certainly created nothing
    (a definitive 4xx refusal of the create call), raise
    :class:`~overnight.SubmissionRejected` instead: the core counts a failed attempt
    for each request and moves on.

    Quotas are not failures. When the provider refused the create for the account's
    queue or rate limits (a queue-full or rate-limit 429: nothing was created, nothing is
    wrong with the requests), raise :class:`~overnight.QuotaExceeded`: the core counts no
    attempt, puts the requests back in the queue, lowers the in-flight figure it keeps to
    for this provider and model (persisted in the store), and submits them again as
    earlier jobs finish. Retry a passing rate limit inside the plugin first if you like;
    hand a full queue over at once (it empties only as jobs end).
    """


@hookspec(firstresult=True)
def check(provider: str, job: JobRef, options: Mapping[str, Any], client: Any, timeout: float | None) -> JobStatus:
    """Report a job's state in the core's vocabulary, with request counts.

    ``provider``: the provider name; ``job``: the :class:`~overnight.JobRef` that
    ``submit`` (or ``find_job``) returned, as stored; ``client``: what ``connect``
    returned (``options``: the LLM's client options, for plugins without ``connect``).
    Return a :class:`~overnight.JobStatus`.

    Map the provider's status to :class:`~overnight.JobState`: anything still moving
    (queued, validating, in progress, finalizing, cancelling) is ``RUNNING``; a job
    rejected as a whole is ``FAILED`` (put the provider's reason in ``message``); a job
    past its window is ``EXPIRED``; a cancelled one ``CANCELLED``; done is ``FINISHED``.
    A job that FAILED for the account's queue limits rather than its content (OpenAI's
    ``token_limit_exceeded``: "Enqueued token limit reached for <model> ...") sets
    ``quota=True``: like :class:`~overnight.QuotaExceeded` at submit, it costs the
    requests no attempt and they go again once earlier jobs finish.

    Must be idempotent and cheap: the core calls it at every poll. Raise (let the SDK's
    error propagate) when the provider cannot be asked: the core keeps the job running
    and asks again later; a failure to *ask* must never be reported as ``FAILED``.

    Raise :class:`~overnight.ResultsGone` when the provider answers that the job does not
    exist (HTTP 404 on the job, e.g. a deleted batch), confirmed by the same API answering
    another call (so a wrong base URL is not taken for a lost job); the core ends the job,
    keeps what it stored and asks the user before paying for its requests again.
    ``timeout``: see the module's "Deadlines".
    """


@hookspec(firstresult=True)
def fetch(
    provider: str, job: JobRef, options: Mapping[str, Any], client: Any, timeout: float | None,
) -> Iterable[Result]:
    """Stream the per-request results of a job that ``check`` reported as terminal.

    ``provider``: the provider name; ``job``: the job's :class:`~overnight.JobRef`;
    ``client``: what ``connect`` returned (``options``: the LLM's client options, for
    plugins without ``connect``).

    Return an iterable (a generator is best: results are streamed into the store and
    never all held in memory) of :class:`~overnight.Result`, one per request the
    provider reports on, matched by ``custom_id``: ``SUCCEEDED`` with the output text,
    ``ERRORED`` with the provider's error message (the core retries these up to a
    bound), ``UNFINISHED`` for requests an expired or cancelled job never ran (the core
    resubmits them). Fill ``usage`` and ``finish_reason`` whenever the provider gives
    them, and ``raw`` with the provider's per-request body. Leave ``cost_usd`` unset: the
    core prices each result from its ``usage`` at the provider's batch prices.

    Partial results of expired and cancelled jobs are paid for: yield them all. Results
    the provider omits are treated as unfinished; unknown or duplicate custom ids are
    ignored by the core. If a download fails mid-way, raise: the core keeps what it
    stored and fetches the job again on the next attempt.

    When the provider no longer has the results (HTTP 404 on the job or on a result file:
    deleted by a user, expired, archived), raise :class:`~overnight.ResultsGone` naming
    what is gone, possibly after yielding what is still there (e.g. the output file when
    only the error file expired). Never for a 5xx, a timeout or a network error. The core
    keeps every result yielded, ends the job, and resubmits the requests without a result
    only with the user's consent (``run(resubmit_lost=True)`` / ``overnight resubmit-lost``).
    ``timeout``: see the module's "Deadlines".
    """


@hookspec(firstresult=True)
def cancel(provider: str, job: JobRef, options: Mapping[str, Any], client: Any) -> None:
    """Ask the provider to cancel a job (optional; declare ``Capabilities.cancel``).

    ``provider``: the provider name; ``job``: the job's :class:`~overnight.JobRef`;
    ``client``: what ``connect`` returned (``options``: the LLM's client options, for
    plugins without ``connect``).

    Return once the request is accepted; the job then goes on being checked until it
    is terminal, and its finished requests are still fetched and kept. Return quietly
    for a job that already ended. Raise :class:`~overnight.ResultsGone` when the provider
    answers that the job does not exist (HTTP 404); let other failures propagate, e.g.
    when the provider refuses or cannot be reached (the ``overnight cancel`` command
    reports them).
    """


@hookspec(firstresult=True)
def find_job(
    provider: str, tag: str, options: Mapping[str, Any], client: Any, timeout: float | None,
) -> JobRef | None:
    """Find the job created with ``tag`` by an earlier ``submit`` (crash recovery).

    ``provider``: the provider name; ``tag``: the :attr:`Chunk.tag` of the interrupted
    submit; ``client``: what ``connect`` returned (``options``: the LLM's client options, for
    plugins without ``connect``).

    Optional; declare ``Capabilities.find_by_tag`` when implemented. Return its
    :class:`~overnight.JobRef`, or ``None`` when the provider shows no job with that tag
    (before returning ``None`` a plugin may delete what the interrupted submit left, such
    as an uploaded input file). ``None`` right after an ambiguous create is not proof:
    the core submits the chunk again, under the same tag, only once
    ``RunPolicy.create_settle_seconds`` have passed since. Raise when the provider cannot
    tell right now: the core retries on the next run rather than risk paying twice.
    ``timeout``: see the module's "Deadlines".
    """


@hookspec(firstresult=True)
def list_jobs(
    provider: str, options: Mapping[str, Any], client: Any, horizon: float, limit: int, skip: frozenset[str],
    tags: frozenset[str],
) -> list[RemoteJob]:
    """List the provider's recent overnight jobs and the request keys they hold.

    ``provider``: the provider name; ``client``: what ``connect`` returned (for ``overnight
    adopt``: from the environment's credentials; ``options``: the LLM's client options, for
    plugins without ``connect``).

    The provider is the second source of truth: the core calls this when a plan holds
    requests that no job of its store holds (a lost or deleted cache directory, another
    machine, a power loss that took a commit) and adopts the jobs holding them instead
    of paying again; and after a create whose answer was lost, to spot a second job
    holding the same requests (it cancels the extra one).

    Optional; declare ``Capabilities.list_jobs`` when implemented. Return a
    :class:`~overnight.RemoteJob` for each job that overnight submitted (recognised by
    its tag: metadata, file name, wire ids), newest first, created at most ``horizon``
    seconds before the newest one listed (the provider's clock), and at most ``limit``
    of them: the listing must stay cheap when there is nothing to adopt. ``custom_ids``
    are the core's keys (decode wire ids), read from the job's input or results; leave
    them ``None`` for jobs whose remote id is in ``skip`` (the store knows them; do not
    download anything for them) and for jobs whose ids cannot be read yet (say so in
    your plugin's documentation). Include failed jobs with their state: the core skips
    them. Raise when the listing itself fails: the core then submits nothing this pass.

    ``ref.tag`` is the tag the job carries. ``tags``, when not empty, are the only tags
    the core looks for (those of its jobs whose create was ambiguous): read ids only for
    jobs carrying one of them (leave the others ``None``); a plugin whose API does not
    show a job's tag but can recognise a given one (Anthropic: a digest inside the wire
    ids) sets ``ref.tag`` to the one in ``tags`` the job carries, else ``""``. The core takes a job
    with one of its tags and another remote id for a duplicate; a job that only holds
    the same requests (another store's, another machine's) is never cancelled, only
    adopted when the store has no job for them.
    """


@hookspec(firstresult=True)
def generate(
    provider: str, request: dict[str, Any], options: Mapping[str, Any], client: Any, timeout: float | None,
    model: str,
) -> Result:
    """Answer one request now, through the provider's online (synchronous) API.

    Optional; declare ``Capabilities.online`` (and the API's rate limits in
    ``ProviderInfo.online_limits``) when implemented. ``provider``: the provider name;
    ``request``: one request exactly as ``build_request`` returned it (the batch line,
    custom id included: send its body, e.g. OpenAI's ``request["body"]``, Anthropic's
    ``request["params"]``); ``client``: what ``connect`` returned (``options``: the LLM's
    client options, for plugins without ``connect``); ``timeout``: seconds the call may
    take (``None``: the client's own); ``model``: the request's model, which some batch
    lines leave to the job (Mistral's body, Gemini's line: the model is given once per
    batch), so the online call needs it apart. The core calls this from several threads
    at once, within the declared rate limits: keep it thread-safe (the client is shared
    by them).

    Return a :class:`~overnight.Result` for ``request["custom_id"]``, exactly as ``fetch``
    would for the same request in a batch: ``SUCCEEDED`` with the text, ``usage`` and
    ``finish_reason``, and ``raw`` with the response body; ``ERRORED`` with the
    provider's message when the provider refused this request for what it holds (a 400
    or 422: too long, an invalid parameter), which counts one attempt. Leave
    ``cost_usd`` unset: the core prices the result at the provider's online prices.

    Raise :class:`~overnight.RateLimited` for a 429 (with the Retry-After the provider
    gave) and :class:`~overnight.ProviderUnavailable` for a 5xx, a 529, a timeout or a
    lost connection: the core waits and sends the request again. Turn the SDK's own
    retries off for these calls (``max_retries=0`` or the like) so that the core, which
    sees every thread, paces the retries. Let anything else (a 401, a wrong base URL)
    propagate: the run stops with it. Never raise with a key in the message.

    What the core does around it (overnight.online): the request is claimed in the store
    first and its answer committed as it arrives, under the same key as a batch result,
    so a request answered either way is never sent again. A 429 costs no attempt and
    holds every thread for its Retry-After; a ``ProviderUnavailable`` is sent again a few
    times with backoff, then counts one attempt like an ``ERRORED`` result. The core
    passes a ``timeout`` (the LLM's ``timeout`` client option, else 600 s) and keys the
    result by the request's custom id whatever ``custom_id`` the plugin returns.
    """

