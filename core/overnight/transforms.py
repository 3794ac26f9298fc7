"""Row transforms: map, filter and select columns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

from attrs import define, field

from overnight.errors import ConfigurationError, RowProblem, ValidationError
from overnight.step import RUNTIME, Step, StepContext

if TYPE_CHECKING:
    from overnight.dataset import Rows


def _note(exc: BaseException, text: str) -> None:
    if hasattr(exc, "add_note"):  # Python 3.11+
        exc.add_note(text)


@define(kw_only=True, eq=False)
class MapStep(Step):
    """Apply ``fn(row) -> dict`` to every row; the returned dict is the new row.

    The function's code (and the plain values it closes over) is part of the step's
    signature, so editing it re-runs this step and what follows.
    """

    fn: Callable[[dict[str, Any]], dict[str, Any]] = field(metadata={RUNTIME: False})

    def process(self, rows: "Rows", ctx: StepContext) -> Iterator[dict[str, Any]]:
        for i, row in enumerate(rows):
            try:
                out = self.fn(row)
            except Exception as exc:
                _note(exc, f"(in step {self.name!r}, row {i})")
                raise
            if not isinstance(out, dict):
                raise ConfigurationError(
                    f"step {self.name!r}: fn returned {type(out).__name__} for row {i}; "
                    "it must return the new row as a dict"
                )
            yield out


@define(kw_only=True, eq=False)
class FilterRows(Step):
    """Keep the rows for which ``predicate(row)`` is true."""

    predicate: Callable[[dict[str, Any]], bool] = field(metadata={RUNTIME: False})

    def process(self, rows: "Rows", ctx: StepContext) -> Iterator[dict[str, Any]]:
        for i, row in enumerate(rows):
            try:
                keep = self.predicate(row)
            except Exception as exc:
                _note(exc, f"(in step {self.name!r}, row {i})")
                raise
            if keep:
                yield row


@define(kw_only=True, eq=False)
class KeepColumns(Step):
    """Keep only ``columns``, in that order; a row missing one is an error."""

    columns: list[str] = field(converter=list)

    def process(self, rows: "Rows", ctx: StepContext) -> Iterator[dict[str, Any]]:
        for i, row in enumerate(rows):
            missing = [c for c in self.columns if c not in row]
            if missing:
                has = ", ".join(row) or "none"
                raise ValidationError([RowProblem(self.name or "", i, c, f"missing column (row has: {has})") for c in missing])
            yield {c: row[c] for c in self.columns}
