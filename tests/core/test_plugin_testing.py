"""The contract kit for plugin authors accepts good plugins and names what is wrong in bad ones."""

from __future__ import annotations

import importlib

import pytest

from fakeprovider import FakeProvider
from overnight import Capabilities, Limits, ProviderInfo, hookimpl
from overnight.plugin_testing import check_plugin


@pytest.mark.parametrize("module", ["overnight_openai", "overnight_anthropic", "overnight_mistral"])
def test_shipped_plugins_pass(module):
    infos = check_plugin(importlib.import_module(module))
    assert [i.name for i in infos] == [module.removeprefix("overnight_")]


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
