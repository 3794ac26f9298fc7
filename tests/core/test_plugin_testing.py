"""The conformance suite for plugin authors accepts good plugins and names what is wrong in bad ones.

The suite runs here over the fake provider (as a plugin author would run it, by
subclassing it), and its checks over plugins broken in one way each: one that drops a
standard option, one that declares a capability it lacks, one with a misspelt hook, and
round trips that lose a row, ignore a cancel, cannot find their own job or leak a key.
The shipped plugins and the README's plugin run it in tests/plugins/test_conformance.py.
"""

from __future__ import annotations

import importlib

import pytest

from fakeprovider import FakeProvider
from overnight import Capabilities, JobRef, Limits, ProviderInfo, hookimpl
from overnight.models import evolve
from overnight.plugin_testing import Backend, PluginConformance, check_plugin, check_round_trips, load

KEY = "fk-conformance-secret-0000"


@pytest.mark.parametrize("module", ["overnight_openai", "overnight_anthropic", "overnight_mistral"])
def test_shipped_plugins_pass(module):
    infos = check_plugin(importlib.import_module(module))
    # overnight-openai also serves the OpenAI-compatible vendors under their own names.
    vendors = ["deepinfra", "groq", "nebius", "together"] if module == "overnight_openai" else []
    assert sorted(i.name for i in infos) == sorted([module.removeprefix("overnight_"), *vendors])


def test_the_fake_provider_passes(tmp_path):
    assert [i.name for i in check_plugin(FakeProvider(tmp_path))] == ["fake"]


class Careless:
    @hookimpl
    def register_providers(self):
        return [ProviderInfo(name="Careless", limits=Limits(0, 10), capabilities=Capabilities(cancel=True))]

    @hookimpl
    def build_request(self, provider, request):
        return {"messages": len(request.messages)}


def test_problems_are_all_listed():
    with pytest.raises(AssertionError) as exc:
        check_plugin(Careless())
    text = str(exc.value)
    for words in ("must be lower case", "limits must be positive", "the submit hook is not implemented",
                  "declares cancel but implements no cancel hook", "dropped the custom id"):
        assert words in text


class WrongArguments:
    @hookimpl
    def register_providers(self):
        return [ProviderInfo(name="x", limits=Limits(1, 1))]

    @hookimpl
    def check(self, provider, job, options, verbose):
        return None


def test_hook_arguments_must_match_the_spec():
    with pytest.raises(AssertionError, match="does not load"):
        check_plugin(WrongArguments())


def test_every_standard_option_has_sample_values():
    from overnight.models import STANDARD_PARAMS
    from overnight.plugin_testing import OPTION_SAMPLES

    assert set(OPTION_SAMPLES) == STANDARD_PARAMS
    for option, values in OPTION_SAMPLES.items():
        assert len({repr(v) for v in values}) == 3, option


# --- the suite, run as a plugin author runs it --------------------------------------------


class TestFakeProvider(PluginConformance):
    @pytest.fixture
    def plugin(self, tmp_path):
        return FakeProvider(tmp_path / "fake")

    @pytest.fixture
    def backend(self, plugin):
        return Backend(options={"api_key": KEY}, model="fake-model", advance=plugin.advance)


class TestWithoutBackend(PluginConformance):
    """No backend fixture: the checks that need none still run, the round trips skip."""

    @pytest.fixture
    def plugin(self, tmp_path):
        return FakeProvider(tmp_path / "fake")

    # The round trips would only skip; what they skip on is checked below.
    test_submit_check_fetch = test_cancel = test_find_job = None

    def test_the_round_trips_skip(self, request):
        with pytest.raises(pytest.skip.Exception, match="no backend"):
            request.getfixturevalue("round_trip")


# --- plugins broken in one way each --------------------------------------------------------


class DropsTemperature(FakeProvider):
    @hookimpl
    def build_request(self, provider, request):
        return super().build_request(provider, evolve(request, params=evolve(request.params, temperature=None)))


class DeclaresWhatItLacks(FakeProvider):
    find_job = None  # declares find_by_tag (the default), implements no find_job hook


class MisspeltHook(FakeProvider):
    @hookimpl
    def chek(self, provider, job, options):
        return super().check(provider, job, options)


def test_a_plugin_that_drops_an_option_fails(tmp_path):
    with pytest.raises(AssertionError) as exc:
        check_plugin(DropsTemperature(tmp_path))
    text = str(exc.value)
    assert "fake: build_request drops temperature: temperature=0.25 and temperature=0.75 build the same line" in text
    assert "unsupported_params" in text
    assert "top_p" not in text and "max_tokens" not in text  # only what is dropped
    # The suite's own test of it fails the same way.
    with pytest.raises(AssertionError, match="drops temperature"):
        PluginConformance().test_standard_options_are_honoured_or_declared_unsupported(load(DropsTemperature(tmp_path)))


def test_an_option_declared_unsupported_is_not_required(tmp_path):
    class Declared(DropsTemperature):
        @hookimpl
        def register_providers(self):
            [info] = super().register_providers()
            return [evolve(info, unsupported_params={"seed", "temperature"})]

    assert [i.name for i in check_plugin(Declared(tmp_path))] == ["fake"]


def test_a_plugin_that_declares_a_capability_it_lacks_fails(tmp_path):
    with pytest.raises(AssertionError, match="fake: declares find_by_tag but implements no find_job hook"):
        check_plugin(DeclaresWhatItLacks(tmp_path))
    with pytest.raises(AssertionError, match="declares find_by_tag"):
        PluginConformance().test_declared_capabilities_are_implemented(load(DeclaresWhatItLacks(tmp_path)))


def test_a_hook_no_declaration_lets_the_core_call_fails(tmp_path):
    with pytest.raises(AssertionError, match="the cancel hook is implemented but no provider declares"):
        check_plugin(FakeProvider(tmp_path, cancel=False))


def test_a_plugin_with_a_misspelt_hook_fails(tmp_path):
    with pytest.raises(AssertionError) as exc:
        check_plugin(MisspeltHook(tmp_path))
    assert "does not load" in str(exc.value) and "'chek' (did you mean 'check'?)" in str(exc.value)
    with pytest.raises(AssertionError, match="did you mean 'check'"):
        PluginConformance().test_the_plugin_loads(MisspeltHook(tmp_path))


def test_unsupported_params_must_name_standard_options(tmp_path):
    class Typo(FakeProvider):
        @hookimpl
        def register_providers(self):
            [info] = super().register_providers()
            return [evolve(info, unsupported_params={"max_token"}, extra_params={"seed", "fake_option"})]

    with pytest.raises(AssertionError) as exc:
        check_plugin(Typo(tmp_path))
    assert "unsupported_params lists ['max_token'], which are not standard options" in str(exc.value)
    assert "extra_params lists the standard option(s) ['seed']" in str(exc.value)


# --- round trips that go wrong -------------------------------------------------------------


def backend_for(plugin: FakeProvider) -> Backend:
    return Backend(options={"api_key": KEY}, model="fake-model", advance=plugin.advance)


def test_the_round_trips_pass_for_the_fake(tmp_path):
    fake = FakeProvider(tmp_path)
    check_round_trips(fake, backend_for(fake))
    assert len(fake.jobs()) == 3  # one job each: submit/check/fetch, cancel, find_job


class LosesARow(FakeProvider):
    @hookimpl
    def fetch(self, provider, job, options):
        return list(super().fetch(provider, job, options))[1:]


class IgnoresCancel(FakeProvider):
    @hookimpl
    def cancel(self, provider, job, options):
        return None


class CannotFindItsJob(FakeProvider):
    @hookimpl
    def find_job(self, provider, tag, options):
        return None


class NeverEnds(FakeProvider):
    def __init__(self, path):
        super().__init__(path, duration=10**9)


class KeepsTheKey(FakeProvider):
    @hookimpl
    def submit(self, provider, chunk, options):
        ref = super().submit(provider, chunk, options)
        return JobRef(ref.provider, ref.remote_id, ref.tag, data={**ref.data, "auth": options["api_key"]})


@pytest.mark.parametrize(
    "plugin, words",
    [
        (LosesARow, "fetch omitted"),
        (IgnoresCancel, "a job cancelled before any time passed ended finished, not cancelled"),
        (CannotFindItsJob, "right after submit returned None"),
        (NeverEnds, "is still RUNNING after 500 checks"),
        (KeepsTheKey, "holds the api_key option"),
    ],
)
def test_round_trips_name_what_goes_wrong(tmp_path, plugin, words):
    broken = plugin(tmp_path)
    with pytest.raises(AssertionError, match=words):
        check_round_trips(broken, backend_for(broken))


def test_a_random_line_does_not_pass_for_an_honoured_option(tmp_path):
    import uuid

    class Random(DropsTemperature):
        @hookimpl
        def build_request(self, provider, request):
            return {**super().build_request(provider, request), "nonce": uuid.uuid4().hex}

    with pytest.raises(AssertionError, match="build_request is not deterministic for max_tokens=37"):
        check_plugin(Random(tmp_path))
