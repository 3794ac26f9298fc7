"""Prompt templates: which columns a ``str.format`` template reads."""

from __future__ import annotations

import re
import string


def template_fields(template: str) -> list[str]:
    """The column names a ``str.format`` template refers to (``{a}``, ``{a[0]}``, ``{a.b}``)."""
    names: list[str] = []
    for _text, name, _spec, _conv in string.Formatter().parse(template):
        if name is None:
            continue
        root = re.split(r"[.\[]", name, maxsplit=1)[0]
        if not root or root.isdigit():
            raise ValueError(f"placeholder {{{name}}} must name a column, e.g. {{instruction}}")
        if root not in names:
            names.append(root)
    return names
