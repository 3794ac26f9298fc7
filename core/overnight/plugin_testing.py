"""The conformance suite for provider plugins: subclass it in your plugin's tests, run pytest.

::

    # tests/test_conformance.py of overnight-acme
    import pytest
    import overnight_acme
    from overnight.plugin_testing import Backend, PluginConformance

    class TestAcme(PluginConformance):
        @pytest.fixture
        def plugin(self):
            return overnight_acme

        @pytest.fixture
        def backend(self, acme_fake):          # a fake of your provider's API, or the sandbox
            return Backend(options={"api_key": "test", "base_url": acme_fake.url},
                           model="acme-small", advance=acme_fake.advance)

A plugin whose provider speaks an API the sandbox emulates can use it:
``return sandbox_backend(sandbox_fixture, "openai")`` (with
``from overnight.sandbox.testing import sandbox_fixture`` in the test module).

What it checks, each as its own test:

* the plugin loads: hook names exist (a misspelt ``chek`` fails), arguments match the
  hookspecs, ``register_providers`` declares sane providers;
* the declarations hold: ``unsupported_params`` lists only standard options, no extra
  option shadows one, every declared capability has its hook (``cancel``,
  ``find_by_tag`` → ``find_job``, ``online`` → ``generate``) and no hook goes unused for
  want of a declaration;
* ``connect`` is there or consistently absent: with it, every hook that calls the
  provider takes ``client`` (none resolves ``options`` again); without it, none names
  ``client`` (it would always get ``None``);
* every standard option (:data:`~overnight.models.STANDARD_PARAMS`) is either honoured
  by ``build_request`` (two different values of the option build two different lines)
  or declared in ``unsupported_params``;
* ``build_request`` gives a deterministic JSON object carrying the custom id, or refuses
  with :class:`~overnight.InvalidRequest` naming the field;
* against the backend: submit → check → fetch (every request exactly once, fetched
  again the same), cancel (the job ends ``CANCELLED``, nothing it never ran comes back
  as an error, cancelling an ended job is no error), and find_job (never ``None`` for a
  job that exists, the job once it has ended, ``None`` for a tag never submitted).

The backend must hold jobs ``RUNNING`` until ``advance`` moves its clock (the cancel
check cancels a job before any time passes), and must not fail requests on its own.

Without pytest in the loop, :func:`check_plugin` runs the checks that need no backend
and :func:`check_round_trips` the others; both raise :class:`AssertionError` listing
every problem.
"""

from __future__ import annotations

import collections
import hashlib
import json
import uuid
from typing import Any, Callable, Iterator, Mapping

import attrs
import pytest
from attrs import field, frozen

from overnight.errors import InvalidRequest, OfflineBatchGenerationNotFinished
from overnight.models import (
    STANDARD_PARAMS,
    ChatRequest,
    Chunk,
    GenerationParams,
    JobRef,
    JobState,
    JobStatus,
    Message,
    PlannedRequest,
    ProviderInfo,
    Result,
    ResultStatus,
    RowResult,
    evolve,
)
from overnight.plugins import PluginRegistry
from overnight.providers import _CLIENT_HOOKS, _SECRET_WORDS, Provider

#: Requests every provider should either express or refuse with a named field.
SAMPLE_REQUESTS = (
    ChatRequest("0123456789abcdef0123456789abcdef01234567", "model-x", [Message("user", "Hello?")]),
    ChatRequest(
        "89abcdef0123456789abcdef0123456789abcdef",
        "model-x",
        [
            Message("system", "Answer in French."),
            Message("user", "What is 2 + 2?"),
            Message("assistant", "Quatre."),
            Message("user", "And 3 + 3? Reply in JSON."),
        ],
        GenerationParams(max_tokens=64, stop=["\n\n"], response_format={"type": "json_object"}),
    ),
)

#: The request each standard option is tried on (it mentions JSON: some providers refuse
#: JSON mode otherwise).
OPTION_BASE = ChatRequest(
    "fedcba9876543210fedcba9876543210fedcba98",
    "model-x",
    [Message("system", "Answer briefly."), Message("user", "What is 2 + 2? Reply in JSON.")],
)


def _schema(name: str, prop: str) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": {
        "type": "object", "properties": {prop: {"type": "string"}}, "required": [prop]}}}


#: Values of each standard option that no provider uses as its default. A plugin that
#: honours the option builds a different line for each; one that drops it builds the same
#: line every time. Three values each, so that a provider refusing one (with
#: InvalidRequest naming the option) still leaves two to compare.
OPTION_SAMPLES: Mapping[str, tuple[Any, ...]] = {
    "max_tokens": (37, 211, 1999),
    "temperature": (0.25, 0.75, 0.5),
    "top_p": (0.25, 0.75, 0.5),
    "seed": (7, 1234, 99991),
    "stop": (("\n\n###",), ("END", "STOP"), ("</answer>",)),
    "response_format": (_schema("answer", "answer"), _schema("verdict", "verdict"), {"type": "json_object"}),
}

_REQUIRED = ("build_request", "submit", "check", "fetch")
_CAPABILITY_HOOKS = {"cancel": "cancel", "find_by_tag": "find_job", "list_jobs": "list_jobs", "online": "generate"}


# --- loading and the checks that need no backend -------------------------------------------


def load(plugin: Any) -> tuple[PluginRegistry, list[ProviderInfo]]:
    """``plugin`` in an isolated registry, with the providers it declares.

    Raises AssertionError when it does not load (a misspelt hook, arguments that do not
    match the hookspecs, a broken ``register_providers``) or declares no provider.
    """
    registry = PluginRegistry([plugin], entrypoints=False)
    problems = [f"the plugin does not load: {f.error}" for f in registry.failures]
    _raise(problems)
    infos = [registry.info(name) for name in registry.provider_names]
    if not infos:
        raise AssertionError("plugin contract problems:\n  - register_providers declares no provider")
    return registry, infos


def declaration_problems(info: ProviderInfo) -> list[str]:
    """What is wrong with a provider's declaration (name, limits, option sets)."""
    problems = []
    if not info.name or "/" in info.name or info.name != info.name.lower():
        problems.append(f"provider name {info.name!r} must be lower case, without '/'")
    limits = info.limits
    if limits.max_requests < 1 or limits.max_bytes < 1 or limits.completion_window < 1:
        problems.append(f"{info.name}: limits must be positive: {limits!r}")
    if limits.max_line_bytes is not None and limits.max_line_bytes > limits.max_bytes:
        problems.append(f"{info.name}: max_line_bytes is larger than max_bytes")
    if info.unsupported_params - STANDARD_PARAMS:
        problems.append(
            f"{info.name}: unsupported_params lists {sorted(info.unsupported_params - STANDARD_PARAMS)}, "
            f"which are not standard options ({', '.join(sorted(STANDARD_PARAMS))})"
        )
    if info.extra_params & STANDARD_PARAMS:
        problems.append(
            f"{info.name}: extra_params lists the standard option(s) {sorted(info.extra_params & STANDARD_PARAMS)}; "
            "standard options arrive in GenerationParams, never in extra"
        )
    return problems


def capability_problems(registry: PluginRegistry, infos: list[ProviderInfo]) -> list[str]:
    """Hooks missing for what is declared, and hooks no declaration lets the core call."""
    problems = []
    for info in infos:
        implemented = registry.implemented_hooks(info.name)
        for hook in _REQUIRED:
            if hook not in implemented:
                problems.append(f"{info.name}: the {hook} hook is not implemented")
        for capability, hook in _CAPABILITY_HOOKS.items():
            if getattr(info.capabilities, capability) and hook not in implemented:
                problems.append(f"{info.name}: declares {capability} but implements no {hook} hook")
    for capability, hook in _CAPABILITY_HOOKS.items():
        if hook in registry.implemented_hooks(infos[0].name) and not any(
            getattr(i.capabilities, capability) for i in infos
        ):
            problems.append(
                f"the {hook} hook is implemented but no provider declares Capabilities({capability}=True), "
                "so the core never calls it"
            )
    return problems


def connect_problems(registry: PluginRegistry, infos: list[ProviderInfo]) -> list[str]:
    """``connect`` present with every provider-calling hook taking ``client``, or absent with none."""
    arguments = registry.hook_arguments(infos[0].name)
    calling = {hook: args for hook, args in arguments.items() if hook in _CLIENT_HOOKS}
    if "connect" in arguments:
        return [
            f"the {hook} hook takes no `client` argument although the plugin implements connect: it would "
            "resolve the options on every call; take `client` (what connect returned) instead of `options`"
            for hook, args in sorted(calling.items()) if "client" not in args
        ]
    return [
        f"the {hook} hook takes a `client` argument but the plugin implements no connect hook, so it "
        "would always get None; implement connect (options in, your client out) or take `options`"
        for hook, args in sorted(calling.items()) if "client" in args
    ]


def _line(provider: Provider, request: ChatRequest) -> str:
    return json.dumps(provider.build_request(request), sort_keys=True)


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 5] + " ...}"


def option_problems(provider: Provider) -> list[str]:
    """Standard options ``build_request`` neither honours nor declares unsupported."""
    info = provider.info
    problems = []
    for option in sorted(STANDARD_PARAMS - info.unsupported_params):
        lines: dict[str, str] = {}
        refused: list[str] = []
        for value in OPTION_SAMPLES[option]:
            shown = f"{option}={_short(value)}"
            request = evolve(OPTION_BASE, params=GenerationParams(**{option: value}))
            try:
                lines[shown] = _line(provider, request)
                if _line(provider, request) != lines[shown]:  # differing lines would prove nothing
                    problems.append(f"{info.name}: build_request is not deterministic for {shown}")
                    break
            except InvalidRequest as exc:
                if exc.field != option:
                    problems.append(f"{info.name}: {shown} is refused with field={exc.field!r}, not {option!r}: {exc}")
                refused.append(f"{shown}: {exc}")
            except Exception as exc:
                problems.append(f"{info.name}: build_request raised {type(exc).__name__} for {shown}: {exc}")
        else:
            _compare(info.name, option, lines, refused, problems)
    return problems


def _compare(name: str, option: str, lines: dict[str, str], refused: list[str], problems: list[str]) -> None:
    """Add a problem unless the accepted values of ``option`` built pairwise different lines."""
    if len(lines) < 2:
        problems.append(
            f"{name}: build_request refuses {option} for nearly every value ({'; '.join(refused)}); "
            f"if the provider cannot honour it, declare it in ProviderInfo.unsupported_params"
        )
        return
    by_line: dict[str, list[str]] = collections.defaultdict(list)
    for shown, line in lines.items():
        by_line[line].append(shown)
    same = [values for values in by_line.values() if len(values) > 1]
    if same:
        problems.append(
            f"{name}: build_request drops {option}: {' and '.join(same[0][:2])} build the same line; "
            f"send it to the provider, or declare it in ProviderInfo.unsupported_params so the core "
            "refuses it before anything is paid for"
        )


def request_problems(provider: Provider) -> list[str]:
    """What is wrong with the lines ``build_request`` gives for :data:`SAMPLE_REQUESTS`."""
    name = provider.name
    problems = []
    for request in SAMPLE_REQUESTS:
        try:
            text = _line(provider, request)
        except InvalidRequest as exc:
            if not exc.field:
                problems.append(f"{name}: InvalidRequest without field= for {request!r}")
            continue
        except TypeError as exc:
            problems.append(f"{name}: build_request returned what JSON cannot hold: {exc}")
            continue
        if request.custom_id not in text:
            problems.append(f"{name}: build_request dropped the custom id: {text[:200]}")
        if _line(provider, request) != text:
            problems.append(f"{name}: build_request is not deterministic")
    return problems


def check_plugin(plugin: Any) -> list[ProviderInfo]:
    """Run every check that needs no backend; raise AssertionError listing every problem.

    Returns the providers the plugin declares.
    """
    registry, infos = load(plugin)
    problems = capability_problems(registry, infos) + connect_problems(registry, infos)
    for info in infos:
        provider = registry.provider(info.name)
        problems += declaration_problems(info) + option_problems(provider) + request_problems(provider)
    _raise(problems)
    return infos


def _raise(problems: list[str]) -> None:
    if problems:
        raise AssertionError("plugin contract problems:\n  - " + "\n  - ".join(problems))


# --- round trips against a backend ---------------------------------------------------------


@frozen
class Backend:
    """Where the round trips run: a fake of the provider's API, or the sandbox.

    ``options`` are the client options the hooks receive (as a user gives them to
    ``LLM(...)``); ``advance(seconds)`` moves the backend's clock (tests never sleep);
    ``provider`` is needed only when the plugin declares several.
    """

    options: Mapping[str, Any] = field(factory=dict, converter=dict)
    model: str = "conformance-model"
    advance: Callable[[float], None] = lambda seconds: None
    step: float = 60.0
    #: Checks (each after one ``advance(step)``) before a job that never ends fails the suite.
    max_checks: int = 500
    provider: str | None = None
    requests: int = 3


def sandbox_backend(sandbox: Any, dialect: str, *, model: str = "conformance-model", **options: Any) -> Backend:
    """A backend on a running :class:`~overnight.sandbox.Sandbox` for a plugin whose
    provider speaks one of its dialects (``openai``, ``anthropic``, ``mistral``, ``gemini``).

    The plugin gets ``api_key`` and ``base_url`` (the dialect's URL prefix); ``options``
    adds or overrides client options.
    """
    base_url = getattr(sandbox, f"{dialect}_base_url")
    return Backend(options={"api_key": "sk-conformance-0123456789", "base_url": base_url, **options},
                   model=model, advance=sandbox.advance)


@frozen
class _Trip:
    """One round trip's provider, backend and requests."""

    provider: Provider
    backend: Backend

    @property
    def name(self) -> str:
        return self.provider.name

    def fail(self, message: str) -> AssertionError:
        return AssertionError(f"plugin contract problem: {self.name}: {message}")

    def call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args, self.backend.options)
        except Exception as exc:
            raise self.fail(f"{what} raised {type(exc).__name__}: {exc}") from exc

    def chunk(self) -> tuple[Chunk, list[str]]:
        tag = f"ovn-conformance-{uuid.uuid4().hex[:16]}"
        requests = [
            ChatRequest(hashlib.sha1(f"{tag}:{i}".encode()).hexdigest(), self.backend.model,
                        [Message("user", f"Conformance question {i}: what is {i} + {i}?")])
            for i in range(self.backend.requests)
        ]
        # As the store does: serialised once, streamed again on every call of lines().
        stored = [json.dumps(self.provider.build_request(r), ensure_ascii=False, separators=(",", ":"))
                  for r in requests]

        def lines() -> Iterator[dict[str, Any]]:
            return (json.loads(s) for s in stored)

        nbytes = sum(len(s.encode()) + 1 for s in stored)
        chunk = Chunk(tag=tag, model=self.backend.model, count=len(stored), bytes=nbytes, lines=lines)
        return chunk, [r.custom_id for r in requests]

    def submit(self) -> tuple[JobRef, list[str]]:
        chunk, ids = self.chunk()
        ref: JobRef = self.call("submit", self.provider.submit, chunk)
        if ref.provider != self.name or ref.tag != chunk.tag:
            raise self.fail(f"submit returned {ref!r}: a JobRef carries the provider name and chunk.tag")
        try:
            stored = json.dumps(attrs.asdict(ref))
        except TypeError as exc:
            raise self.fail(f"submit returned a JobRef whose data JSON cannot hold: {exc}") from exc
        for name, value in self.backend.options.items():
            if any(w in name.lower() for w in _SECRET_WORDS) and isinstance(value, str) and value in stored:
                raise self.fail(f"the JobRef submit returned holds the {name} option; secrets stay out of the store")
        return ref, ids

    def wait(self, ref: JobRef) -> JobStatus:
        for _ in range(self.backend.max_checks):
            status: JobStatus = self.call("check", self.provider.check, ref)
            if status.total and status.completed + status.failed > status.total:
                raise self.fail(f"check counts more done than total: {status!r}")
            if status.state.terminal:
                return status
            self.backend.advance(self.backend.step)
        raise self.fail(
            f"job {ref.remote_id} is still RUNNING after {self.backend.max_checks} checks "
            f"{self.backend.step:g} s apart; check must map the provider's end states"
        )

    def fetch(self, ref: JobRef, ids: list[str]) -> dict[str, Result]:
        try:
            results = list(self.provider.fetch(ref, self.backend.options))
        except Exception as exc:
            raise self.fail(f"fetch raised {type(exc).__name__}: {exc}") from exc
        wrong = [r for r in results if not isinstance(r, Result)]
        if wrong:
            raise self.fail(f"fetch yielded {wrong[0]!r}, not a Result")
        counts = collections.Counter(r.custom_id for r in results)
        twice = sorted(cid for cid, n in counts.items() if n > 1)
        unknown = sorted(set(counts) - set(ids))
        if twice or unknown:
            raise self.fail(f"fetch yielded custom ids twice {twice} or not in the job {unknown}; "
                            "results are matched by the custom id build_request was given")
        return {r.custom_id: r for r in results}


def check_submit_check_fetch(provider: Provider, backend: Backend) -> None:
    """Submit a chunk, check it until it ends, fetch every result (twice)."""
    trip = _Trip(provider, backend)
    trip.call("connect", provider.connect)
    ref, ids = trip.submit()
    status = trip.wait(ref)
    if status.state is not JobState.FINISHED:
        raise trip.fail(f"a job of {len(ids)} plain requests ended {status.state.value}, not finished: {status!r}")
    if status.total and status.total != len(ids):
        raise trip.fail(f"check reports {status.total} requests for a job of {len(ids)}")
    results = trip.fetch(ref, ids)
    missing = sorted(set(ids) - set(results))
    if missing:
        raise trip.fail(f"fetch omitted {missing} of a finished job (the core would resubmit and pay twice)")
    bad = [r for r in results.values() if r.status is not ResultStatus.SUCCEEDED or not isinstance(r.text, str)]
    if bad:
        raise trip.fail(f"a finished job's request came back as {bad[0]!r}, not succeeded with its text")
    again = trip.fetch(ref, ids)
    if {k: (r.status, r.text) for k, r in again.items()} != {k: (r.status, r.text) for k, r in results.items()}:
        raise trip.fail("fetching the job again gave other results; the core fetches again after a cut download")


def check_cancel(provider: Provider, backend: Backend) -> None:
    """Cancel a job before it runs: it ends CANCELLED, what it never ran is not an error."""
    trip = _Trip(provider, backend)
    ref, ids = trip.submit()
    trip.call("cancel", provider.cancel, ref)
    status = trip.wait(ref)
    if status.state is not JobState.CANCELLED:
        raise trip.fail(f"a job cancelled before any time passed ended {status.state.value}, not cancelled")
    results = trip.fetch(ref, ids)
    errored = [r for r in results.values() if r.status is ResultStatus.ERRORED]
    if errored:
        raise trip.fail(f"a cancelled job's request came back as {errored[0]!r}; requests a cancelled job "
                        "never ran are UNFINISHED (or omitted), so the core resubmits them without counting an attempt")
    trip.call("cancel of an ended job", provider.cancel, ref)


def check_find_job(provider: Provider, backend: Backend) -> None:
    """find_job never says None for a job that exists, finds it once it has ended, and says
    None for a tag never submitted."""
    trip = _Trip(provider, backend)
    ref, _ids = trip.submit()
    try:  # right after the create: the crash this hook recovers from
        early = provider.find_job(ref.tag, backend.options)
    except Exception:  # "cannot tell yet" is allowed: the core asks again on the next run
        early = ref
    if early is None or early.remote_id != ref.remote_id:
        raise trip.fail(f"find_job({ref.tag!r}) right after submit returned {early!r}, not job {ref.remote_id}: "
                        "the core would submit the chunk again and pay twice")
    trip.wait(ref)
    found = trip.call("find_job", provider.find_job, ref.tag)
    if found is None or found.remote_id != ref.remote_id or found.tag != ref.tag:
        raise trip.fail(f"find_job({ref.tag!r}) returned {found!r} for the ended job {ref.remote_id}")
    fresh = f"ovn-conformance-never-{uuid.uuid4().hex[:12]}"
    nothing = trip.call("find_job of a tag never submitted", provider.find_job, fresh)
    if nothing is not None:
        raise trip.fail(f"find_job({fresh!r}) returned {nothing!r} for a tag never submitted")


def round_trip_provider(plugin: Any, backend: Backend) -> Provider:
    """The facade of the provider ``backend`` serves (the plugin's only one by default)."""
    registry, infos = load(plugin)
    name = backend.provider or (infos[0].name if len(infos) == 1 else None)
    if name is None:
        raise AssertionError(f"the plugin declares {[i.name for i in infos]}: set Backend(provider=...)")
    return registry.provider(name)


def check_round_trips(plugin: Any, backend: Backend) -> None:
    """Submit → check → fetch, then cancel and find_job where declared."""
    provider = round_trip_provider(plugin, backend)
    check_submit_check_fetch(provider, backend)
    if provider.info.capabilities.cancel:
        check_cancel(provider, backend)
    if provider.info.capabilities.find_by_tag:
        check_find_job(provider, backend)


# --- the suite -----------------------------------------------------------------------------


# --- fixtures for a plugin's own tests ---------------------------------------------------


@pytest.fixture
def registry() -> Iterator[PluginRegistry]:
    """An empty plugin registry, installed as the process-wide one for this test: the test
    registers the plugin it is about, and no installed plugin leaks in. Use it from your
    ``conftest.py``: ``from overnight.plugin_testing import registry, overnight_home``."""
    from overnight import plugins

    reg = PluginRegistry(entrypoints=False)
    previous = plugins.set_registry(reg)
    yield reg
    plugins.set_registry(previous)


@pytest.fixture(autouse=True)
def overnight_home(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every test gets its own store and cache directory (``OVERNIGHT_HOME``). A crash or a
    failed create is resubmitted at once (the 300 s settle window is for real providers:
    tests drive no wall clock) unless the test sets ``OVERNIGHT_CREATE_SETTLE_SECONDS``."""
    home = tmp_path / "overnight-home"
    monkeypatch.setenv("OVERNIGHT_HOME", str(home))
    monkeypatch.delenv("OVERNIGHT_STORE", raising=False)  # never a shared store from the environment
    monkeypatch.setenv("OVERNIGHT_CREATE_SETTLE_SECONDS", "0")
    return home


# --- running a batch step from a plugin's own tests ----------------------------------------


def planned(prompts: list[str], samples: int = 1, system: str | None = None) -> list[PlannedRequest]:
    """One planned request per prompt and sample (a system message first, when given), as a
    TextGeneration plans them: the LLM sets the model and the options."""
    head = [Message("system", system)] if system else []
    return [
        PlannedRequest(row=i, sample=s, request=ChatRequest("", "m", [*head, Message("user", p)]))
        for i, p in enumerate(prompts)
        for s in range(samples)
    ]


def generate(llm: Any, plan: list[PlannedRequest], *, plan_id: str = "plan-1") -> list[RowResult]:
    """Run ``plan`` through ``llm``'s batch step once, on the store of ``OVERNIGHT_HOME``;
    its results in plan order (or OfflineBatchGenerationNotFinished while jobs run)."""
    from overnight.store import Store

    store = Store.open()
    try:
        return list(llm.generate_offline(plan, store=store, step="gen", plan_id=plan_id))
    finally:
        store.close()


def pending(llm: Any, plan: list[PlannedRequest], *, plan_id: str = "plan-1") -> OfflineBatchGenerationNotFinished:
    """:func:`generate`, which must stop because jobs are still running: what it raised."""
    with pytest.raises(OfflineBatchGenerationNotFinished) as exc:
        generate(llm, plan, plan_id=plan_id)
    return exc.value


class PluginConformance:
    """The conformance suite: subclass it as ``Test<Plugin>`` and define fixtures.

    ``plugin`` (required): the plugin module or object, as its entry point names it.
    ``backend`` (optional): a :class:`Backend`; without it the round trips are skipped.
    """

    @pytest.fixture
    def plugin(self) -> Any:
        pytest.fail("define a `plugin` fixture returning your plugin module or object")

    @pytest.fixture
    def backend(self) -> Backend | None:
        return None

    @pytest.fixture
    def loaded(self, plugin: Any) -> tuple[PluginRegistry, list[ProviderInfo]]:
        return load(plugin)

    @pytest.fixture
    def round_trip(self, plugin: Any, backend: Backend | None) -> tuple[Provider, Backend]:
        if backend is None:
            pytest.skip("no backend: define a `backend` fixture returning overnight.plugin_testing.Backend")
        return round_trip_provider(plugin, backend), backend

    def test_the_plugin_loads(self, plugin: Any) -> None:
        load(plugin)

    def test_declarations(self, loaded: tuple[PluginRegistry, list[ProviderInfo]]) -> None:
        _raise([p for info in loaded[1] for p in declaration_problems(info)])

    def test_declared_capabilities_are_implemented(self, loaded: tuple[PluginRegistry, list[ProviderInfo]]) -> None:
        _raise(capability_problems(*loaded))

    def test_connect_is_there_or_consistently_absent(self, loaded: tuple[PluginRegistry, list[ProviderInfo]]) -> None:
        _raise(connect_problems(*loaded))

    def test_standard_options_are_honoured_or_declared_unsupported(
        self, loaded: tuple[PluginRegistry, list[ProviderInfo]]
    ) -> None:
        registry, infos = loaded
        _raise([p for info in infos for p in option_problems(registry.provider(info.name))])

    def test_build_request(self, loaded: tuple[PluginRegistry, list[ProviderInfo]]) -> None:
        registry, infos = loaded
        _raise([p for info in infos for p in request_problems(registry.provider(info.name))])

    def test_submit_check_fetch(self, round_trip: tuple[Provider, Backend]) -> None:
        check_submit_check_fetch(*round_trip)

    def test_cancel(self, round_trip: tuple[Provider, Backend]) -> None:
        provider, backend = round_trip
        if not provider.info.capabilities.cancel:
            pytest.skip(f"{provider.name} does not declare Capabilities(cancel=True)")
        check_cancel(provider, backend)

    def test_find_job(self, round_trip: tuple[Provider, Backend]) -> None:
        provider, backend = round_trip
        if not provider.info.capabilities.find_by_tag:
            pytest.skip(f"{provider.name} does not declare Capabilities(find_by_tag=True)")
        check_find_job(provider, backend)
