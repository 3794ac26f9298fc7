"""Fixtures for the sandbox tests: a fresh sandbox per test and an SDK client per provider."""

from __future__ import annotations

import sys
from pathlib import Path

import anthropic
import openai
import pytest
from mistralai.client import Mistral

from overnight.sandbox import Sandbox

# The test modules import ``sandbox_helpers`` from this directory, whatever the import mode.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))



@pytest.fixture
def oai(sandbox: Sandbox) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url=sandbox.openai_base_url, max_retries=0, timeout=30)


@pytest.fixture
def ant(sandbox: Sandbox) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-test", base_url=sandbox.anthropic_base_url, max_retries=0, timeout=30)


@pytest.fixture
def mis(sandbox: Sandbox) -> Mistral:
    return Mistral(api_key="mi-test", server_url=sandbox.mistral_base_url, timeout_ms=30_000)
