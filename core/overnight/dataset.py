"""Materialised step outputs: JSON Lines files, read back as streams.

Every step's output is one JSONL file, written to a temporary name and renamed into
place only when complete, so a file under its final name is always a finished output.
:class:`Dataset` is what ``Pipeline.run()`` returns: a view of one such file that
streams rows from disk (memory stays flat) and exports them.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import json
import os
import shutil
import tempfile
from array import array
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence, overload

from overnight import _json
from overnight.diskerrors import raise_on_disk
from overnight.errors import ConfigurationError, RowProblem, ValidationError
from overnight.faultpoints import fault_point


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                yield _json.loads(line)


class Rows:
    """A step's input: its predecessors' outputs, concatenated in order.

    Each iteration streams the rows from disk again, so a step can read its input
    more than once (e.g. validate every row, then send them).
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(paths)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for path in self.paths:
            yield from read_jsonl(path)


def _json_default(value: Any) -> Any:
    # Values loaders commonly produce (Parquet dates, decimals) get a faithful text form.
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"a {type(value).__name__} cannot be saved as JSON")


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]], *, step: str) -> int:
    """Write ``rows`` to ``path`` through a temporary file; return the row count.

    If anything fails (including a "not finished" exception raised mid-stream), the
    temporary file is removed and ``path`` is left as it was. A full disk, a read-only
    folder or a denied permission is a :class:`~overnight.DiskError` naming ``path``.
    """
    try:
        fault_point("write_output", path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_temp_files(path.parent)
        # The writer's pid in the name tells a live writer's file from one a killed run left.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise_on_disk(path, exc)
    count = 0
    handle = os.fdopen(fd, "wb")
    try:
        for count, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                raise ConfigurationError(
                    f"step {step!r} produced a {type(row).__name__} as row {count - 1}; rows must be dicts"
                )
            try:
                handle.write(_json.dumps(row, default=_json_default) + b"\n")
            except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
                bad = _bad_column(row)
                hint = "convert it to text or a number first (e.g. with a MapStep)"
                raise ValidationError([RowProblem(step, count - 1, bad, f"{exc}; {hint}")]) from None
            except OSError as exc:  # the buffer went to a full disk
                raise_on_disk(path, exc)
        with _writing(path):
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        with _writing(path):
            os.replace(tmp, path)
    except BaseException:
        # A full disk refuses the buffer's last bytes again at close: the file goes anyway,
        # and the first error (already a DiskError) is the one to report.
        with contextlib.suppress(OSError):
            handle.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        # Stop the producing step now, while what it reads from (the store) is still open.
        close = getattr(rows, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()
        raise
    return count


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Our own writes to ``path``: a full disk (or a read-only folder) is a DiskError.

    Only around the writer's own calls: an OSError raised by the step producing the rows
    (e.g. a loader that cannot read its input) passes through as it is."""
    try:
        yield
    except OSError as exc:
        raise_on_disk(path, exc)


def _bad_column(row: dict[str, Any]) -> str | None:
    for key, value in row.items():
        try:
            json.dumps(value, ensure_ascii=False, default=_json_default).encode("utf-8")
        except (TypeError, ValueError):
            return str(key)
    return None


def _remove_abandoned_temp_files(directory: Path) -> None:
    """Delete the partial outputs of writers that died (e.g. a killed run)."""
    for tmp in directory.glob(".*.tmp"):
        pid = tmp.name.rsplit(".", 3)[-3] if tmp.name.count(".") >= 3 else ""
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


#: distilabel's name of a single-leaf pipeline's configuration in its Distiset.
DEFAULT_CONFIGURATION = "default"


class Dataset:
    """The rows of one step's output, streamed from its JSONL file (:attr:`path`).

    Supports ``len()``, iteration, ``ds[i]``, ``ds[i:j]`` (a list), ``ds["column"]``
    (a list of that column's values) and exports to JSONL, Parquet, pandas and
    Hugging Face ``datasets``. As distilabel's Distiset, ``ds["default"]["train"]`` is the
    dataset itself (unless it has a column named ``default``).
    """

    def __init__(self, path: str | os.PathLike[str], *, name: str | None = None,
                 structured: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.name = name or self.path.stem
        #: ``{column: OutputSchema}``: columns of structured output (``TextGeneration(response_format=...)``).
        #: Reading gives their values as the schema's objects (pydantic model instances for a
        #: model); Parquet stores them as JSON text, one stable type whatever the schema.
        self.structured = dict(structured or {})
        self._stat: tuple[int, int] | None = None
        self._offsets: array | None = None
        self._columns: list[str] | None = None

    def __repr__(self) -> str:
        return f"Dataset(name={self.name!r}, rows={len(self)}, path={str(self.path)!r})"

    # -- reading -------------------------------------------------------------------------

    def _fresh(self) -> None:
        """Forget cached facts if the file was replaced (e.g. a run with use_cache=False)."""
        st = self.path.stat()
        key = (st.st_size, st.st_mtime_ns)
        if key != self._stat:
            self._stat, self._offsets, self._columns = key, None, None

    def _index(self) -> array:
        self._fresh()
        if self._offsets is None:
            offsets, position = array("q"), 0
            with open(self.path, "rb") as handle:
                for line in handle:
                    if line.strip():
                        offsets.append(position)
                    position += len(line)
            self._offsets = offsets
        return self._offsets

    def __len__(self) -> int:
        return len(self._index())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.structured:
            return read_jsonl(self.path)
        return (self._decoded(row) for row in read_jsonl(self.path))

    def _decoded(self, row: dict[str, Any]) -> dict[str, Any]:
        for column, schema in self.structured.items():
            value = row.get(column)
            if value is not None:
                row[column] = [schema.from_json(v) for v in value] if isinstance(value, list) \
                    else schema.from_json(value)
        return row

    @overload
    def __getitem__(self, key: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, key: slice) -> list[dict[str, Any]]: ...
    @overload
    def __getitem__(self, key: str) -> list[Any]: ...

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            if key not in self.column_names:
                if key == DEFAULT_CONFIGURATION:  # distilabel's distiset["default"]["train"]
                    return {"train": self}
                from overnight.suggest import did_you_mean

                raise KeyError(
                    f"no column {key!r}{did_you_mean(key, self.column_names)}; columns: {', '.join(self.column_names)}"
                )
            return [row.get(key) for row in self]
        offsets = self._index()
        if isinstance(key, slice):
            start, stop, step = key.indices(len(offsets))
            if step == 1:
                return list(islice(self, start, stop)) if start < stop else []
            return [self[i] for i in range(start, stop, step)]
        if not isinstance(key, int):
            raise TypeError(f"dataset indices must be int, slice or str, not {type(key).__name__}")
        index = key + len(offsets) if key < 0 else key
        if not 0 <= index < len(offsets):
            raise IndexError(f"row {key} is out of range (the dataset has {len(offsets)} rows)")
        with open(self.path, "rb") as handle:
            handle.seek(offsets[index])
            row = json.loads(handle.readline())
        return self._decoded(row) if self.structured else row

    @property
    def column_names(self) -> list[str]:
        """Every column seen in any row, in order of first appearance."""
        self._fresh()
        if self._columns is None:
            seen: dict[str, None] = {}
            for row in read_jsonl(self.path):
                seen.update(dict.fromkeys(row))
            self._columns = list(seen)
        return list(self._columns)

    def to_list(self) -> list[dict[str, Any]]:
        return list(self)

    # -- exports -------------------------------------------------------------------------

    def to_jsonl(self, path: str | os.PathLike[str]) -> Path:
        """Copy the rows to ``path`` (JSON Lines); returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path, target)
        return target

    def to_parquet(self, path: str | os.PathLike[str], *, batch_size: int = 10_000) -> Path:
        """Write the rows to a Parquet file (needs ``pyarrow``), in batches; returns the path."""
        pa, pq = _pyarrow()
        columns = self.column_names
        # One schema for the whole file: unify what each batch infers (a column that is
        # null in one batch and text in another becomes text).
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            schemas = [pa.Table.from_pylist(b).schema for b in self._batches(batch_size, columns)]
            schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
            schema = _stable_schema(pa, schema)
            with pq.ParquetWriter(target, schema) as writer:
                for batch in self._batches(batch_size, columns):
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise ConfigurationError(
                f"the rows of {self.name!r} cannot be one Parquet table ({exc}): a column holds "
                "values of different types. Make them uniform with a MapStep, or use to_jsonl()."
            ) from None
        return target

    def _batches(self, size: int, columns: list[str]) -> Iterator[list[dict[str, Any]]]:
        rows = read_jsonl(self.path)
        # Structured output goes in as JSON text: its objects' shape varies with the schema
        # (optional and nullable fields, anyOf), and a type inferred from one run's values
        # would not be the next run's.
        as_text = [c for c in columns if c in self.structured]
        while batch := list(islice(rows, size)):
            yield [{c: _json_text(row.get(c)) if c in as_text else row.get(c) for c in columns} for row in batch]

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` of every row (needs ``pandas``)."""
        try:
            import pandas as pd
        except ImportError:
            raise ConfigurationError("to_pandas() needs pandas: `pip install 'overnight[pandas]'`") from None
        return pd.DataFrame.from_records(self.to_list(), columns=self.column_names)

    def to_hf(self) -> Any:
        """A Hugging Face ``datasets.Dataset`` (needs ``datasets``), built from the JSONL file."""
        try:
            import datasets
        except ImportError:
            raise ConfigurationError(
                "to_hf() needs Hugging Face datasets: `pip install 'overnight[hub]'` (or `pip install datasets`)"
            ) from None
        return datasets.Dataset.from_json(str(self.path))


def _json_text(value: Any) -> Any:
    """A structured value as JSON text (a list of them for ``num_generations > 1``)."""
    if isinstance(value, list):
        return [None if v is None else json.dumps(v, ensure_ascii=False) for v in value]
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _column_type(pa: Any, name: str) -> Any:
    """The type of a column whose values are all null, from its name: what TextGeneration
    writes there when a value exists (a cost, a usage record), else text."""
    if name.endswith("_cost_usd"):
        return pa.float64()
    if name.endswith("_usage"):
        return pa.struct([("input_tokens", pa.int64()), ("output_tokens", pa.int64())])
    return pa.string()


def _stable_schema(pa: Any, schema: Any) -> Any:
    """``schema`` with no ``null`` types left: a column (or list items) that held only nulls
    in this run gets the type it has when it holds values, so that files from different
    runs (one with errors, one without) have the same columns with the same types."""
    fields = []
    for field in schema:
        kind = field.type
        if pa.types.is_null(kind):
            kind = _column_type(pa, field.name)
        elif pa.types.is_list(kind) and pa.types.is_null(kind.value_type):
            kind = pa.list_(_column_type(pa, field.name))
        fields.append(field.with_type(kind))
    return pa.schema(fields, metadata=schema.metadata)


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigurationError("to_parquet() needs pyarrow: `pip install 'overnight[parquet]'`") from None
    return pa, pq
