"""Compatibility: the names this module held before it was split by concern.

:mod:`overnight.step` (the Step base), :mod:`overnight.identity` (signatures and
request keys), :mod:`overnight.loaders`, :mod:`overnight.transforms` and
:mod:`overnight.templates`. Import from those (or from :mod:`overnight`).
"""

from overnight.identity import canonical, digest
from overnight.loaders import (
    FileLoader,
    LoadDataFromCSV,
    LoadDataFromDicts,
    LoadDataFromHub,
    LoadDataFromJSONL,
    LoadDataFromParquet,
    Loader,
)
from overnight.step import _NAME, RUNTIME, SIGNATURE, Step, StepContext
from overnight.templates import template_fields
from overnight.transforms import FilterRows, KeepColumns, MapStep

__all__ = [
    "FileLoader", "FilterRows", "KeepColumns", "LoadDataFromCSV", "LoadDataFromDicts", "LoadDataFromHub",
    "LoadDataFromJSONL", "LoadDataFromParquet", "Loader", "MapStep", "RUNTIME", "SIGNATURE", "Step",
    "StepContext", "_NAME", "canonical", "digest", "template_fields",
]
