"""The conformance suite's ``connect`` check: the hook is there with every provider-calling
hook taking ``client``, or absent with none of them naming it."""

from __future__ import annotations

import pytest
from fakeprovider import FakeProvider
from test_connect import Connected

from overnight import hookimpl
from overnight.plugin_testing import check_plugin, check_round_trips, Backend


class ConnectsButResolvesAgain(Connected):
    """Implements connect, yet its check still takes the options (and ignores the client)."""

    @hookimpl
    def check(self, provider, job, options):
        return FakeProvider.check(self, provider, job, options)


class ClientWithoutConnect(FakeProvider):
    """Names ``client`` in submit with no connect hook: the client is always None."""

    @hookimpl
    def submit(self, provider, chunk, options, client):
        return super().submit(provider, chunk, options)


def test_a_plugin_with_connect_and_client_everywhere_passes(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", "fk-test")
    plugin = Connected(tmp_path)
    check_plugin(plugin)
    check_round_trips(plugin, Backend(options={"api_key": "fk-test"}, model="m", advance=plugin.advance, step=3600))
    assert plugin.connects
    assert {"submit", "check", "fetch", "cancel", "find_job"} <= {hook for hook, _ in plugin.clients}


def test_a_plugin_with_connect_whose_hook_resolves_options_again_fails(tmp_path):
    plugin = ConnectsButResolvesAgain(tmp_path)
    with pytest.raises(AssertionError, match="the check hook takes no `client` argument although the plugin "
                                             "implements connect"):
        check_plugin(plugin)


def test_a_plugin_naming_client_without_connect_fails(tmp_path):
    with pytest.raises(AssertionError, match="the submit hook takes a `client` argument but the plugin "
                                             "implements no connect hook"):
        check_plugin(ClientWithoutConnect(tmp_path))


def test_the_plugin_without_connect_at_all_passes(tmp_path):
    check_plugin(FakeProvider(tmp_path))  # options everywhere, client nowhere: consistent
