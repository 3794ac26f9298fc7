"""distilabel's ``input_mappings`` and ``output_mappings``, on every step.

``input_mappings={"instruction": "question"}`` lets a step that reads ``instruction``
read the input column ``question``; the column gets its own name back in the step's
output rows. ``output_mappings={"generation": "answer"}`` renames a column of the
step's output (for a loader: a column of the loaded rows, e.g. ``{"prompt":
"instruction"}``). The pipeline applies them around :meth:`Step.process`, so a step's
own code never sees them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

if TYPE_CHECKING:
    from overnight.dataset import Rows

__all__ = ["MappedRows", "rename", "unmap_outputs"]


def rename(row: Any, names: Mapping[str, str]) -> Any:
    """``row`` with each column ``old`` of ``names`` called ``names[old]`` (order kept)."""
    if not names or not isinstance(row, dict):
        return row
    return {names.get(key, key): value for key, value in row.items()}


class MappedRows:
    """A step's input rows with ``input_mappings`` applied; iterable more than once, like Rows."""

    def __init__(self, rows: "Rows | Iterable[dict[str, Any]]", input_mappings: Mapping[str, str]) -> None:
        self.rows = rows
        # {step input: column} read as {column: step input}
        self.names = {column: name for name, column in input_mappings.items()}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in self.rows:
            yield rename(row, self.names)


def unmap_outputs(
    rows: Iterable[dict[str, Any]], input_mappings: Mapping[str, str], output_mappings: Mapping[str, str]
) -> Iterator[dict[str, Any]]:
    """The step's output rows: mapped inputs get their columns' names back, then outputs are renamed."""
    back = dict(input_mappings)
    try:
        for row in rows:
            yield rename(rename(row, back), output_mappings)
    finally:  # closed early (an error downstream): stop the step too, while its store is open
        close = getattr(rows, "close", None)
        if callable(close):
            close()
