"""The ``connect`` hook: the plugin's client is built once per run and handed to every hook.

A plugin with ``connect`` gets its return value as ``client`` in submit, check, fetch,
cancel, find_job and list_jobs; a plugin without it gets ``client=None`` (and its
``validate_options`` is asked instead). The client never reaches the store or a repr.
"""

from __future__ import annotations

import os

import pytest
from fakeprovider import FakeProvider

from overnight import (
    LLM,
    Capabilities,
    ConfigurationError,
    LoadDataFromDicts,
    MissingCredentials,
    Pipeline,
    TextGeneration,
    hookimpl,
)
from overnight.errors import NotFinished
from overnight.executor import BatchExecutor
from overnight.plugins import PluginRegistry, set_registry
from overnight.store import Store

SECRET = "fk-connect-secret-4242"


class Client:
    """What the plugin's connect returns: opaque to the core."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"Client(key={self.key})"  # a careless plugin: the core must never show it


class Connected(FakeProvider):
    """The fake provider, with its options turned into a client once, by ``connect``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.capabilities = Capabilities(cancel=True, find_by_tag=True, list_jobs=True)
        self.connects: list[dict] = []
        self.clients: list[tuple[str, object]] = []

    @hookimpl
    def connect(self, provider, options):
        key = options.get("api_key") or os.environ.get("FAKE_API_KEY")
        if not key:
            raise MissingCredentials("set FAKE_API_KEY or pass api_key= to LLM(...)")
        self.connects.append(dict(options))
        return Client(key)

    def _seen(self, hook, client):
        assert isinstance(client, Client), f"{hook} got {client!r}"
        self.clients.append((hook, client))

    @hookimpl
    def submit(self, provider, chunk, client):
        self._seen("submit", client)
        return super().submit(provider, chunk, {})

    @hookimpl
    def check(self, provider, job, client):
        self._seen("check", client)
        return super().check(provider, job, {})

    @hookimpl
    def fetch(self, provider, job, client):
        self._seen("fetch", client)
        return super().fetch(provider, job, {})

    @hookimpl
    def cancel(self, provider, job, client):
        self._seen("cancel", client)
        return super().cancel(provider, job, {})

    @hookimpl
    def find_job(self, provider, tag, client):
        self._seen("find_job", client)
        return super().find_job(provider, tag, {})

    @hookimpl
    def list_jobs(self, provider, client, horizon, limit, skip, tags):
        self._seen("list_jobs", client)
        return []


@pytest.fixture
def connected(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", SECRET)
    plugin = Connected(tmp_path / "fake-provider")
    previous = set_registry(PluginRegistry([plugin], entrypoints=False))
    yield plugin
    set_registry(previous)


def run(rows=3, **llm):
    with Pipeline(name="connect") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(rows)])
        generate = TextGeneration(llm=LLM("fake/m", **llm))
        load >> generate
    return pipeline.run()


def test_connect_runs_once_per_run_and_its_client_reaches_every_hook(connected):
    with pytest.raises(NotFinished):
        run()
    assert len(connected.connects) == 1  # the step's check connected; its run reused it
    connected.advance()
    assert len(run()) == 3
    assert len(connected.connects) == 2  # one per run
    hooks = {hook for hook, _ in connected.clients}
    assert {"submit", "check", "fetch"} <= hooks
    first_run = [c for hook, c in connected.clients if hook == "submit"]
    later = [c for hook, c in connected.clients if hook in ("check", "fetch")]
    assert len({id(c) for c in later}) == 1 and later[0] is not first_run[0]  # one client per run


def test_the_client_stays_out_of_the_store_and_reprs(connected, overnight_home):
    llm = LLM("fake/m")
    with pytest.raises(NotFinished):
        run()
    provider = llm.load()
    assert SECRET not in repr(provider) and "Client(" not in repr(provider)
    for path in overnight_home.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_connect_refusing_stops_the_run_before_any_submission(connected, monkeypatch):
    monkeypatch.delenv("FAKE_API_KEY")
    with pytest.raises(MissingCredentials, match="FAKE_API_KEY"):
        run()
    assert connected.jobs() == [] and connected.clients == []


def test_connect_returning_none_is_a_configuration_error(connected, monkeypatch):
    monkeypatch.setattr(Connected, "connect", hookimpl(lambda self, provider, options: None))
    set_registry(PluginRegistry([Connected(connected.dir)], entrypoints=False))
    with pytest.raises(ConfigurationError, match="connect returned None"):
        LLM("fake/m").load()


def test_a_plugin_without_connect_gets_none_and_is_validated_as_before(fake, monkeypatch):
    seen = []
    original = FakeProvider.check

    def check(self, provider, job, options, client):  # no default: pluggy passes only arguments without one
        seen.append(client)
        return original(self, provider, job, options)

    monkeypatch.setattr(FakeProvider, "check", hookimpl(check))
    set_registry(PluginRegistry([fake], entrypoints=False))
    with pytest.raises(NotFinished):
        run()
    fake.advance()
    assert len(run()) == 3
    assert seen and all(client is None for client in seen)
    monkeypatch.delenv("FAKE_API_KEY")
    with pytest.raises(MissingCredentials):  # validate_options, asked in connect's place
        LLM("fake/m").load()


def test_cli_paths_connect_with_the_environment(connected):
    from overnight.plugins import get_registry

    store = Store.open()
    try:
        provider = get_registry().provider("fake")
        provider.connect({})
        assert BatchExecutor.import_remote_jobs(store, provider, {}, 3600.0) == []
    finally:
        store.close()
    assert connected.connects == [{}]
    assert [hook for hook, _ in connected.clients] == ["list_jobs"]


def test_a_facade_used_without_connect_connects_on_first_call(connected):
    from overnight.plugins import get_registry

    provider = get_registry().provider("fake")
    with pytest.raises(NotFinished):
        run()
    ref = connected.jobs()[0]
    from overnight import JobRef

    job = JobRef("fake", ref["id"], ref["tag"], {"seq": ref["seq"]})
    before = len(connected.connects)
    provider.check(job, {"api_key": "k1"})
    provider.check(job, {"api_key": "k1"})
    assert len(connected.connects) == before + 1
    provider.check(job, {"api_key": "k2"})  # other options: another client
    assert len(connected.connects) == before + 2
