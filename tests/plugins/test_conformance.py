"""The conformance suite of ``overnight.plugin_testing`` over the shipped plugins and the
README's plugin guide, each through its SDK against a fresh sandbox (the published
``sandbox_fixture``), as a plugin author would run it."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import attrs
import pytest

import overnight_anthropic
import overnight_gemini
import overnight_mistral
import overnight_openai
from overnight.plugin_testing import PluginConformance, sandbox_backend
from overnight.sandbox.testing import sandbox_fixture  # noqa: F401  (the fixture the backends use)

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """No key or URL from the developer's shell reaches the plugins."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
                "ANTHROPIC_AUTH_TOKEN", "MISTRAL_API_KEY", "MISTRAL_BASE_URL", "ACME_API_KEY",
                "GOOGLE_API_KEY", "GEMINI_API_KEY", "GEMINI_BASE_URL", "GOOGLE_GEMINI_BASE_URL",
                "GROQ_API_KEY", "GROQ_BASE_URL", "TOGETHER_API_KEY", "TOGETHER_BASE_URL", "DEEPINFRA_TOKEN",
                "DEEPINFRA_BASE_URL", "NEBIUS_API_KEY", "NEBIUS_BASE_URL",
                "OVERNIGHT_OPENAI_MAX_REQUESTS", "OVERNIGHT_OPENAI_MAX_BYTES", "OVERNIGHT_FAULT_POINT"):
        monkeypatch.delenv(var, raising=False)


class TestOpenAI(PluginConformance):
    @pytest.fixture
    def plugin(self):
        return overnight_openai

    @pytest.fixture
    def backend(self, sandbox_fixture):  # noqa: F811
        # The plugin serves the OpenAI-compatible vendors too: name the provider under test.
        return attrs.evolve(sandbox_backend(sandbox_fixture, "openai", model="gpt-conformance"), provider="openai")


class TestGroq(PluginConformance):
    """Groq, a named provider of overnight-openai, on the sandbox's Groq prefix."""

    @pytest.fixture
    def plugin(self):
        return overnight_openai

    @pytest.fixture
    def backend(self, sandbox_fixture):  # noqa: F811
        return attrs.evolve(sandbox_backend(sandbox_fixture, "groq", model="llama-conformance"), provider="groq")


class TestAnthropic(PluginConformance):
    @pytest.fixture
    def plugin(self):
        return overnight_anthropic

    @pytest.fixture
    def backend(self, sandbox_fixture):  # noqa: F811
        return sandbox_backend(sandbox_fixture, "anthropic", model="claude-conformance")


class TestMistral(PluginConformance):
    @pytest.fixture
    def plugin(self):
        return overnight_mistral

    @pytest.fixture
    def backend(self, sandbox_fixture):  # noqa: F811
        return sandbox_backend(sandbox_fixture, "mistral", model="mistral-conformance")


class TestGemini(PluginConformance):
    @pytest.fixture
    def plugin(self):
        return overnight_gemini

    @pytest.fixture
    def backend(self, sandbox_fixture):  # noqa: F811
        return sandbox_backend(sandbox_fixture, "gemini", model="gemini-conformance")


class TestTogether(PluginConformance):
    """Together, a named provider of overnight-openai through the together SDK, on /together."""

    @pytest.fixture
    def plugin(self):
        return overnight_openai

    @pytest.fixture
    def backend(self, sandbox_fixture):  # noqa: F811
        return attrs.evolve(sandbox_backend(sandbox_fixture, "together", model="meta-llama/conformance"),
                            provider="together")


class TestOpenAICompatibleVendor(PluginConformance):
    """The vendors whose batch API is OpenAI's as it is, each on its own sandbox prefix."""

    @pytest.fixture(params=["deepinfra", "nebius"])
    def vendor(self, request):
        return request.param

    @pytest.fixture
    def plugin(self):
        return overnight_openai

    @pytest.fixture
    def backend(self, sandbox_fixture, vendor):  # noqa: F811
        return attrs.evolve(sandbox_backend(sandbox_fixture, vendor, model=f"{vendor}-conformance"), provider=vendor)


def readme_plugin_snippet() -> str:
    """The plugin: the first Python block of README's "Writing a provider plugin" section."""
    section = README.read_text().split("## Writing a provider plugin", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.+?)\n```", section, re.DOTALL)[0]


def test_the_readme_plugin_guide_stays_short():
    assert len(readme_plugin_snippet().splitlines()) <= 60


class TestReadmeSnippet(PluginConformance):
    """The guide's plugin, for a gateway that speaks OpenAI's Batch API: the sandbox's."""

    @pytest.fixture
    def plugin(self, tmp_path):
        path = tmp_path / "overnight_acme.py"
        path.write_text(readme_plugin_snippet())
        spec = importlib.util.spec_from_file_location("overnight_acme", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
        sys.modules.pop("overnight_acme", None)

    @pytest.fixture
    def backend(self, sandbox_fixture):  # noqa: F811
        return sandbox_backend(sandbox_fixture, "openai", model="acme-conformance")
