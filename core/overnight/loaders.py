"""Loader steps: rows from JSONL, CSV and Parquet files, a Python list, or the Hugging Face Hub."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, cast

import attrs
from attrs import define, field

from overnight import _json
from overnight.errors import ConfigurationError
from overnight.filedigests import content_digest
from overnight.identity import canonical, digest
from overnight.step import SIGNATURE, Step, StepContext

if TYPE_CHECKING:
    from overnight.dataset import Rows


@define(kw_only=True, eq=False)
class Loader(Step):
    """A step that reads rows from a source; it has no predecessors.

    ``num_examples`` keeps only the first rows (handy for a trial run). ``batch_size``
    (distilabel's) is how many rows a loader reads at a time where its source reads in
    batches (Parquet; the others ignore it); overnight streams rows from step to step and sends a
    batch step's rows in as few provider jobs as their limits allow, so it changes memory
    use only, never the rows or the jobs. Every argument can come from the run's
    parameters instead: ``run(parameters={load.name: {"path": ...}})``.
    """

    is_loader: ClassVar[bool] = True

    num_examples: int | None = field(default=None, validator=attrs.validators.optional(attrs.validators.ge(0)))
    batch_size: int = field(default=50, validator=attrs.validators.ge(1), metadata={SIGNATURE: False})

    def source_identity(self) -> Any:
        """What identifies the source's content (a hash of the file's bytes, the data itself, ...)."""
        return None

    def signature_data(self) -> dict[str, Any]:
        return {**super().signature_data(), "source": canonical(self.source_identity())}

    def require(self, *names: str) -> None:
        """A clear error for each needed argument given neither to the loader nor as a run parameter."""
        for name in names:
            if getattr(self, name) is None:
                raise ConfigurationError(
                    f"step {self.name!r}: no {name} given: pass {type(self).__name__}({name}=...) or set it for "
                    f"the run, pipeline.run(parameters={{{self.name!r}: {{{name!r}: ...}}}})"
                )

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
    path: Path = field(default=None, converter=attrs.converters.optional(Path))

    def check(self) -> None:
        self.require("path")
        if not self.path.is_file():
            raise ConfigurationError(
                f"step {self.name!r}: input file {str(self.path)!r} does not exist "
                f"(working directory: {os.getcwd()})"
            )

    def source_identity(self) -> Any:
        if self.path is None:  # set by the run's parameters, which check() insists on
            return None
        # The bytes, not size + mtime: an edit that puts the timestamps back is still an edit.
        try:
            content = content_digest(self.path)
        except OSError:
            return {"path": str(self.path.resolve()), "missing": True}
        return {"path": str(self.path.resolve()), "content": content}


@define(kw_only=True, eq=False)
class LoadDataFromDicts(Loader):
    """Rows given as a Python list of dicts: ``LoadDataFromDicts(data=[{"instruction": ...}])``."""

    data: list[dict[str, Any]] = field(
        default=None, converter=attrs.converters.optional(list), metadata={SIGNATURE: False}
    )

    def check(self) -> None:
        self.require("data")

    def source_identity(self) -> Any:
        if self.data is None:
            return None
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
                    value = _json.loads(line)
                except _json.JSONDecodeError as exc:
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

    repo_id: str | None = None
    split: str = "train"
    config: str | None = None
    revision: str | None = None
    streaming: bool = field(default=False, metadata={SIGNATURE: False})

    def check(self) -> None:
        self.require("repo_id")
        _import_datasets()

    def source_identity(self) -> Any:
        return {"repo_id": self.repo_id, "config": self.config, "split": self.split, "revision": self.revision}

    def load(self) -> Iterator[dict[str, Any]]:
        datasets = _import_datasets()
        from overnight.hub import hub_errors

        with hub_errors(self.name, cast(str, self.repo_id)):
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
