"""Every hook is documented where it is declared: its arguments, what it returns, what it raises.

Plugin authors read ``hookspecs.py`` and nothing else (DESIGN: "Plugin authors should need
nothing else"), so a hook added without saying what each argument is, what to return and
which errors to raise fails here. (datasette keeps its hook docs honest the same way.)
"""

from __future__ import annotations

import inspect
import re

import pytest

from overnight import hookspecs

SPECS = sorted(
    name for name, value in vars(hookspecs).items()
    if callable(value) and hasattr(value, f"{hookspecs.PROJECT}_spec")
)


def test_the_contract_has_its_hooks():
    assert {"register_providers", "build_request", "submit", "check", "fetch", "cancel", "find_job"} <= set(SPECS)


@pytest.mark.parametrize("name", SPECS)
def test_each_hook_documents_its_arguments_return_and_errors(name):
    spec = getattr(hookspecs, name)
    doc = inspect.getdoc(spec) or ""
    assert len(doc.split()) >= 30, f"{name}: the docstring is missing or too short to be a contract"
    missing = [arg for arg in inspect.signature(spec).parameters if f"``{arg}``" not in doc]
    assert not missing, f"{name}: the docstring does not describe the argument(s) {missing} (write ``arg``)"
    assert re.search(r"\breturns?\b", doc, re.IGNORECASE), f"{name}: the docstring does not say what it returns"
    assert re.search(r"\braises?\b", doc, re.IGNORECASE), f"{name}: the docstring does not say what it raises"


@pytest.mark.parametrize("name", SPECS)
def test_each_hook_is_typed(name):
    spec = getattr(hookspecs, name)
    signature = inspect.signature(spec)
    untyped = [arg for arg, p in signature.parameters.items() if p.annotation is inspect.Parameter.empty]
    assert not untyped and signature.return_annotation is not inspect.Signature.empty, f"{name}: annotate {untyped or 'the return'}"
