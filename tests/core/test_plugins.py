"""Plugin discovery, routing by provider name and the facade's guarantees."""

from __future__ import annotations

import sys
import textwrap

import pytest

from overnight import (
    ChatRequest,
    JobRef,
    Limits,
    ProviderError,
    ProviderInfo,
    ProviderNotFound,
    hookimpl,
)
from overnight.plugins import PluginRegistry


class Serving:
    def __init__(self, name):
        self.name = name
        self.calls = []

    @hookimpl
    def register_providers(self):
        return [ProviderInfo(name=self.name, limits=Limits(10, 1000), secret_env=("ACME_KEY",))]

    @hookimpl
    def build_request(self, provider, request):
        self.calls.append(provider)
        return {"served_by": self.name}

    @hookimpl
    def check(self, provider, job, options):
        raise RuntimeError(f"401 Unauthorized for key {options['api_key']}")


def test_hooks_are_routed_only_to_the_declaring_plugin():
    a, b = Serving("a"), Serving("b")
    registry = PluginRegistry([a, b], entrypoints=False)
    assert registry.provider("b").build_request(ChatRequest("x", "m", [])) == {"served_by": "b"}
    assert registry.provider("a").build_request(ChatRequest("x", "m", [])) == {"served_by": "a"}
    assert a.calls == ["a"] and b.calls == ["b"]


def test_unknown_provider_names_installed_ones_and_the_package():
    registry = PluginRegistry([Serving("a"), Serving("b")], entrypoints=False)
    with pytest.raises(ProviderNotFound) as exc:
        registry.provider("gemini")
    assert "installed providers: a, b" in str(exc.value)
    assert "pip install overnight-gemini" in str(exc.value)


def test_duplicate_provider_is_reported_and_the_first_kept():
    first, second = Serving("a"), Serving("a")
    registry = PluginRegistry([first, second], entrypoints=False)
    assert registry.provider_names == ["a"]
    assert len(registry.failures) == 1 and "already served" in registry.failures[0].error
    registry.provider("a").build_request(ChatRequest("x", "m", []))
    assert first.calls == ["a"] and second.calls == []


def test_secrets_are_redacted_from_plugin_errors(monkeypatch):
    registry = PluginRegistry([Serving("a")], entrypoints=False)
    with pytest.raises(ProviderError) as exc:
        registry.provider("a").check(JobRef("a", "j", "t"), {"api_key": "sk-live-abcdef123"})
    assert "sk-live-abcdef123" not in str(exc.value) and "***" in str(exc.value)
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


def test_a_broken_installed_plugin_is_reported_and_skipped(tmp_path, monkeypatch):
    # A distribution on sys.path whose entry point fails to import, beside a working one.
    site = tmp_path / "site"
    (site / "broken_dist-1.0.dist-info").mkdir(parents=True)
    (site / "broken_dist-1.0.dist-info" / "METADATA").write_text("Name: broken-dist\nVersion: 1.0\n")
    (site / "broken_dist-1.0.dist-info" / "entry_points.txt").write_text(
        "[overnight]\nbroken = broken_plugin_mod\nworking = working_plugin_mod\n"
    )
    (site / "broken_plugin_mod.py").write_text("raise ImportError('needs libfoo')\n")
    (site / "working_plugin_mod.py").write_text(
        textwrap.dedent(
            """
            from overnight import hookimpl, ProviderInfo, Limits

            @hookimpl
            def register_providers():
                return [ProviderInfo(name="working", limits=Limits(1, 1))]
            """
        )
    )
    monkeypatch.syspath_prepend(str(site))
    registry = PluginRegistry()
    failures = {f.name: f for f in registry.failures}
    assert "needs libfoo" in failures["broken"].error and failures["broken"].package == "broken-dist"
    assert "working" in registry.provider_names
    sys.modules.pop("working_plugin_mod", None)


def test_jsonl_parse_refuses_a_stream_cut_between_or_inside_lines():
    from overnight.jsonl import parse

    whole = b'{"a":1}\n{"b":2}\n'
    assert list(parse([whole[:5], whole[5:]], expected_bytes=len(whole))) == [{"a": 1}, {"b": 2}]
    got = []
    with pytest.raises(ProviderError, match="stopped after 8 of 16 bytes"):
        got.extend(parse([whole[:8]], expected_bytes=len(whole)))
    assert got == [{"a": 1}]  # what was read is kept
    with pytest.raises(ProviderError, match="middle of a line"):
        list(parse([whole[:12]]))


class Misspelt(Serving):
    @hookimpl
    def chek(self, provider, job, options):  # meant to be ``check``
        return None


def test_a_misspelt_hook_is_an_error_naming_the_plugin_and_the_hook():
    registry = PluginRegistry([Misspelt("typo"), Serving("fine")], entrypoints=False)
    assert registry.provider_names == ["fine"]  # the broken plugin is skipped, the rest work
    [failure] = registry.failures
    assert failure.name == "Misspelt"  # plugin objects register under their class name
    assert "'chek' (did you mean 'check'?)" in failure.error and "not an overnight hook" in failure.error
    registry.provider("fine").build_request(ChatRequest("x", "m", []))


def test_an_optional_hook_of_a_newer_core_is_not_an_error():
    class Newer(Serving):
        @hookimpl(optionalhook=True)
        def estimate_cost(self, provider, chunk):
            return 0

    registry = PluginRegistry([Newer("newer")], entrypoints=False)
    assert registry.failures == [] and registry.provider_names == ["newer"]


def test_an_installed_plugin_with_a_misspelt_hook_shows_in_overnight_plugins(tmp_path, monkeypatch, capsys):
    from overnight import plugins
    from overnight.cli import main

    site = tmp_path / "site"
    (site / "typo_dist-1.0.dist-info").mkdir(parents=True)
    (site / "typo_dist-1.0.dist-info" / "METADATA").write_text("Name: typo-dist\nVersion: 1.0\n")
    (site / "typo_dist-1.0.dist-info" / "entry_points.txt").write_text("[overnight]\ntypo = typo_plugin_mod\n")
    (site / "typo_plugin_mod.py").write_text(
        textwrap.dedent(
            """
            from overnight import hookimpl, ProviderInfo, Limits

            @hookimpl
            def register_providers():
                return [ProviderInfo(name="typo", limits=Limits(1, 1))]

            @hookimpl
            def fetsh(provider, job, options):
                return []
            """
        )
    )
    monkeypatch.syspath_prepend(str(site))
    previous = plugins.set_registry(None)  # the CLI loads the installed plugins afresh
    try:
        assert main(["plugins"]) == 1
    finally:
        plugins.set_registry(previous)
        sys.modules.pop("typo_plugin_mod", None)
    out = capsys.readouterr().out
    assert "typo (typo-dist): ConfigurationError: plugin 'typo' implements 'fetsh' (did you mean 'fetch'?)" in out
    assert "provider typo" not in out
def test_the_process_registry_imports_only_the_plugin_of_the_provider_asked_for():
    import subprocess

    code = textwrap.dedent(
        """
        import sys
        from overnight.plugins import get_registry
        registry = get_registry()
        provider = registry.provider("openai")
        provider.validate_options({"api_key": "sk-test"})
        assert "overnight_openai" in sys.modules
        assert "openai" not in sys.modules  # the SDK loads with the first API call, not the plugin
        assert "overnight_anthropic" not in sys.modules and "anthropic" not in sys.modules
        assert "overnight_mistral" not in sys.modules and "mistralai" not in sys.modules
        assert {"openai", "anthropic", "mistral"} <= set(registry.provider_names)  # listing loads them all
        assert "anthropic" in sys.modules
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
