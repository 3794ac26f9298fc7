""""Did you mean ...?" for names a user typed: providers, options, steps, parameters, columns."""

from __future__ import annotations

import difflib
from typing import Iterable

__all__ = ["closest", "did_you_mean"]


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice ``name`` was most likely meant to be (``difflib``), or ``None``."""
    options = [str(c) for c in choices if str(c) != name]
    by_case = {c.lower(): c for c in options}
    if name.lower() in by_case:
        return by_case[name.lower()]
    found = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"``, or ``""`` when nothing is close: append it to a message."""
    match = closest(str(name), choices)
    return f" (did you mean {match!r}?)" if match else ""
