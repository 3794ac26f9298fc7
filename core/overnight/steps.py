"""Pipeline steps: the :class:`Step` base, loaders and simple row transforms.

A step turns a stream of rows (dicts) into another stream. Steps are attrs classes;
their fields are the step's parameters: they go into the step's signature (so a changed
parameter re-runs the step and what depends on it) and can be set per run with
``Pipeline.run(parameters={step_name: {field: value}})``.

Writing a step::

    @define(kw_only=True, eq=False)
    class Upper(Step):
        column: str = "text"

        def process(self, rows, ctx):
            for row in rows:
                yield {**row, self.column: row[self.column].upper()}
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import os
import re
import string
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator, Sequence

import attrs
from attrs import define, field, frozen

from overnight.errors import ConfigurationError, RowProblem, ValidationError
from overnight.policy import RunPolicy

if TYPE_CHECKING:
    from overnight.dataset import Rows
    from overnight.pipeline import Pipeline
    from overnight.store import Store

#: Field metadata key: ``False`` keeps a field out of the signature (it does not change outputs).
SIGNATURE = "overnight.signature"
#: Field metadata key: ``False`` keeps a field from being set through ``run(parameters=...)``.
RUNTIME = "overnight.runtime"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@frozen
class StepContext:
    """What a step may use while it runs, besides its input rows."""

    pipeline: str
    step: str
    #: The step's signature: identifies its output (also the plan id of a batch step).
    signature: str
    use_cache: bool = True
    #: The run's choices about paid, unconfirmed and pending work (see ``Pipeline.run``).
    policy: RunPolicy = field(factory=RunPolicy)
    #: The run's state store (batch steps record their jobs and results in it).
    store: "Store | None" = field(default=None, eq=False, repr=False)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


@define(kw_only=True, eq=False)
class Step:
    """Base class of every step. Subclasses implement :meth:`process`.

    ``name`` must be unique in its pipeline; by default it is the class name in
    snake case plus a counter (``text_generation_0``). A step created inside
    ``with Pipeline(...)`` joins that pipeline (or pass ``pipeline=``).
    """

    #: Loaders take no input; every other step needs at least one predecessor.
    is_loader: ClassVar[bool] = False

    name: str | None = field(default=None, metadata={RUNTIME: False})
    pipeline: "Pipeline | None" = field(
        default=None, repr=False, metadata={RUNTIME: False, SIGNATURE: False}
    )

    def __attrs_post_init__(self) -> None:
        if self.name is not None and not _NAME.match(self.name):
            raise ConfigurationError(
                f"step name {self.name!r} is not valid: use letters, digits, '_', '-' and '.' "
                "(it becomes part of a file name)"
            )
        if self.pipeline is None:
            from overnight.pipeline import current_pipeline

            self.pipeline = current_pipeline()
        if self.pipeline is not None:
            self.pipeline.add_step(self)

    def default_name(self, taken: Iterable[str]) -> str:
        base, taken = _snake(type(self).__name__), set(taken)
        n = 0
        while f"{base}_{n}" in taken:
            n += 1
        return f"{base}_{n}"

    # -- wiring ------------------------------------------------------------------------

    def __rshift__(self, other: "Step | Sequence[Step]") -> Any:
        """``a >> b`` feeds a's rows to b; ``a >> [b, c]`` feeds both. Returns the right side."""
        targets = [other] if isinstance(other, Step) else list(other) if isinstance(other, (list, tuple)) else [other]
        for target in targets:
            if not isinstance(target, Step):
                raise ConfigurationError(f"cannot connect step {self.name!r} to {target!r}: not a step")
            self._owner().connect(self, target)
        return other

    def __rrshift__(self, other: Sequence["Step"]) -> "Step":
        """``[a, b] >> c``: c reads a's rows, then b's (fan-in concatenates in this order)."""
        for source in other:
            if not isinstance(source, Step):
                raise ConfigurationError(f"cannot connect {source!r} to step {self.name!r}: not a step")
            source._owner().connect(source, self)
        return self

    def _owner(self) -> "Pipeline":
        if self.pipeline is None:
            raise ConfigurationError(
                f"step {self.name or type(self).__name__!r} is not part of a pipeline: create it "
                "inside `with Pipeline(name=...):` (or pass pipeline=...)"
            )
        return self.pipeline

    # -- parameters and signature ------------------------------------------------------

    @classmethod
    def runtime_parameter_names(cls) -> list[str]:
        """The parameters ``run(parameters={name: {...}})`` may set on this step."""
        return [
            f.name
            for f in attrs.fields(cls)
            if f.init and f.metadata.get(RUNTIME, True) and not f.name.startswith("_")
        ]

    def set_runtime_parameters(self, values: dict[str, Any]) -> None:
        """Set parameters for this run; unknown names are a ConfigurationError."""
        valid = self.runtime_parameter_names()
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ConfigurationError(
                f"step {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters are: {', '.join(valid) or 'none'}"
            )
        for key, value in values.items():
            try:
                setattr(self, key, value)
            except (TypeError, ValueError, ConfigurationError) as exc:
                raise ConfigurationError(f"step {self.name!r}, parameter {key!r}: {exc}") from None

    def signature_data(self) -> dict[str, Any]:
        """What identifies this step's output, besides its inputs. JSON-able, no secrets."""
        data = {
            f.name: canonical(getattr(self, f.name))
            for f in attrs.fields(type(self))
            if f.metadata.get(SIGNATURE, True) and f.name != "name"
        }
        # Plain (non-attrs) subclasses keep their parameters as instance attributes.
        for key, value in sorted(getattr(self, "__dict__", {}).items()):
            if not key.startswith("_") and key not in data:
                data[key] = canonical(value)
        return data

    @classmethod
    def code_identity(cls) -> str:
        """A hash of the code of this class and its bases: editing ``process`` re-runs the step."""
        parts = []
        for klass in cls.__mro__:
            if klass is object:
                continue
            for attr, value in sorted(vars(klass).items()):
                func = getattr(value, "__func__", value)  # staticmethod, classmethod
                code = getattr(func, "__code__", None)
                if code is not None:
                    parts.append(f"{klass.__qualname__}.{attr}:{_code_digest(code)}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    # -- running -----------------------------------------------------------------------

    def bad_row(self, row: int | None, field_: str | None, message: str) -> ValidationError:
        """The error for one input row this step cannot process."""
        return ValidationError([RowProblem(self.name or "", row, field_, message)])

    def check(self) -> None:
        """Cheap checks run before the pipeline starts (files exist, provider installed, ...)."""

    def process(self, rows: "Rows", ctx: StepContext) -> Iterable[dict[str, Any]]:
        """Yield this step's output rows. ``rows`` can be iterated more than once."""
        raise NotImplementedError(f"{type(self).__name__} must implement process(rows, ctx)")


def canonical(value: Any) -> Any:
    """A JSON-able, stable form of a parameter value, for signatures.

    Objects with a ``signature()`` method (e.g. :class:`~overnight.llm.LLM`) give their
    own; functions are identified by name and code; anything else unknown falls back to
    its ``repr`` (which may hold an address: the step then simply never hits the cache).
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    signature = getattr(value, "signature", None)
    if callable(signature) and not isinstance(value, type):
        return canonical(signature())
    if attrs.has(type(value)):
        return {"class": _qualname(type(value)), "fields": canonical(attrs.asdict(value, recurse=False))}
    if inspect.isfunction(value) or inspect.ismethod(value):
        return _function_identity(value)
    return {"class": _qualname(type(value)), "repr": repr(value)}


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


def _function_identity(fn: Any) -> dict[str, Any]:
    """A function's name, code and captured values: editing its body re-runs the step."""
    func = getattr(fn, "__func__", fn)
    closure = [c.cell_contents for c in (func.__closure__ or ()) if _is_plain(c.cell_contents)]
    return {
        "function": _qualname(func),
        "code": _code_digest(func.__code__),
        "defaults": canonical([d for d in (func.__defaults__ or ()) if _is_plain(d)]),
        "closure": canonical(closure),
    }


def _code_digest(code: types.CodeType) -> str:
    """A hash of what a code object does (bytecode, names, constants), not where it sits:
    moving a function or adding a comment keeps its identity."""
    h = hashlib.sha256()

    def feed(c: types.CodeType) -> None:
        h.update(c.co_code)
        h.update(repr((c.co_names, c.co_varnames, c.co_freevars)).encode())
        for const in c.co_consts:
            if isinstance(const, types.CodeType):
                feed(const)
            elif isinstance(const, frozenset):  # set iteration order varies between processes
                h.update(repr(sorted(map(repr, const))).encode())
            else:
                h.update(repr(const).encode())

    feed(code)
    return h.hexdigest()[:16]


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, list, tuple, dict))


def digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- loaders --------------------------------------------------------------------------


@define(kw_only=True, eq=False)
class Loader(Step):
    """A step that reads rows from a source; it has no predecessors.

    ``num_examples`` keeps only the first rows (handy for a trial run).
    """

    is_loader: ClassVar[bool] = True

    num_examples: int | None = field(default=None, validator=attrs.validators.optional(attrs.validators.ge(0)))

    def source_identity(self) -> Any:
        """What identifies the source's content (file size and mtime, the data itself, ...)."""
        return None

    def signature_data(self) -> dict[str, Any]:
        return {**super().signature_data(), "source": canonical(self.source_identity())}

    def process(self, rows: "Rows", ctx: StepContext) -> Iterator[dict[str, Any]]:
        for i, row in enumerate(self.load()):
            if self.num_examples is not None and i >= self.num_examples:
                return
            if not isinstance(row, dict):
                raise self.bad_row(i, None, f"is a {type(row).__name__}, not a mapping of columns")
            yield row

    def load(self) -> Iterator[dict[str, Any]]:
        raise NotImplementedError


@define(kw_only=True, eq=False)
class FileLoader(Loader):
    path: Path = field(converter=Path)

    def check(self) -> None:
        if not self.path.is_file():
            raise ConfigurationError(
                f"step {self.name!r}: input file {str(self.path)!r} does not exist "
                f"(working directory: {os.getcwd()})"
            )

    def source_identity(self) -> Any:
        try:
            stat = self.path.stat()
        except OSError:
            return {"path": str(self.path.resolve()), "missing": True}
        return {"path": str(self.path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@define(kw_only=True, eq=False)
class LoadDataFromDicts(Loader):
    """Rows given as a Python list of dicts: ``LoadDataFromDicts(data=[{"instruction": ...}])``."""

    data: list[dict[str, Any]] = field(converter=list, metadata={SIGNATURE: False})

    def source_identity(self) -> Any:
        return {"data": digest(canonical(self.data)), "rows": len(self.data)}

    def load(self) -> Iterator[dict[str, Any]]:
        return iter(self.data)


@define(kw_only=True, eq=False)
class LoadDataFromJSONL(FileLoader):
    """Rows from a JSON Lines file, one JSON object per line (blank lines are skipped)."""

    encoding: str = "utf-8"

    def load(self) -> Iterator[dict[str, Any]]:
        with open(self.path, encoding=self.encoding) as handle:
            row = 0
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise self.bad_row(row, None, f"line {lineno} of {self.path} is not valid JSON ({exc.msg})") from None
                if not isinstance(value, dict):
                    kind = type(value).__name__
                    raise self.bad_row(row, None, f"line {lineno} of {self.path} is a JSON {kind}, not an object")
                row += 1
                yield value


@define(kw_only=True, eq=False)
class LoadDataFromCSV(FileLoader):
    """Rows from a CSV file with a header line; every value is a string."""

    delimiter: str = ","
    encoding: str = "utf-8"

    def load(self) -> Iterator[dict[str, Any]]:
        with open(self.path, encoding=self.encoding, newline="") as handle:
            reader = csv.DictReader(handle, delimiter=self.delimiter)
            for i, row in enumerate(reader):
                if None in row:
                    raise self.bad_row(i, None, f"line {reader.line_num} of {self.path} has more fields than the header")
                yield row


@define(kw_only=True, eq=False)
class LoadDataFromParquet(FileLoader):
    """Rows from a Parquet file, read in batches (needs ``pyarrow``)."""

    columns: list[str] | None = None
    batch_size: int = field(default=10_000, metadata={SIGNATURE: False})

    def check(self) -> None:
        super().check()
        _import_pyarrow()

    def load(self) -> Iterator[dict[str, Any]]:
        pq = _import_pyarrow()
        parquet = pq.ParquetFile(self.path)
        for batch in parquet.iter_batches(batch_size=self.batch_size, columns=self.columns):
            yield from batch.to_pylist()


def _import_pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigurationError(
            "Parquet needs pyarrow: `pip install 'overnight[parquet]'` (or `pip install pyarrow`)"
        ) from None
    return pq


@define(kw_only=True, eq=False)
class LoadDataFromHub(Loader):
    """Rows from a Hugging Face Hub dataset (needs ``datasets`` and the network).

    The cache knows the dataset only by ``repo_id``, ``config``, ``split`` and
    ``revision``: pin ``revision`` to a commit, or run with ``use_cache=False``, to pick
    up changes to the dataset.
    """

    repo_id: str
    split: str = "train"
    config: str | None = None
    revision: str | None = None
    streaming: bool = field(default=False, metadata={SIGNATURE: False})

    def check(self) -> None:
        _import_datasets()

    def source_identity(self) -> Any:
        return {"repo_id": self.repo_id, "config": self.config, "split": self.split, "revision": self.revision}

    def load(self) -> Iterator[dict[str, Any]]:
        datasets = _import_datasets()
        data = datasets.load_dataset(
            self.repo_id, name=self.config, split=self.split, revision=self.revision, streaming=self.streaming
        )
        return iter(data)


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise ConfigurationError(
            "Hugging Face datasets are not installed: `pip install 'overnight[hub]'` "
            "(or `pip install datasets`)"
        ) from None
    return datasets


# --- row transforms -------------------------------------------------------------------


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
