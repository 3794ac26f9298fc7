"""The :class:`Step` base and :class:`StepContext`: what every pipeline step is.

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

import contextvars
import hashlib
import re
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Sequence

import attrs
from attrs import define, field, frozen

from overnight.errors import ConfigurationError, RowProblem, ValidationError
from overnight.identity import _code_digest, canonical
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

# The pipelines whose ``with`` block is running (innermost last): a step created there joins it.
_active: contextvars.ContextVar[tuple["Pipeline", ...]] = contextvars.ContextVar("overnight_pipelines", default=())


def current_pipeline() -> "Pipeline | None":
    """The innermost pipeline whose ``with`` block is running, if any."""
    stack = _active.get()
    return stack[-1] if stack else None


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


def _mapping(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigurationError(f"{attribute.name} must be a dict of column names, {{name: column}}, got {value!r}")


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
    #: distilabel's column renames (see :mod:`overnight.mappings`): ``{step input: input
    #: column}`` read before the step runs, ``{step output: column}`` written after it.
    #: In the signature only when set, so steps without mappings keep their caches.
    input_mappings: dict[str, str] = field(
        factory=dict, validator=_mapping, metadata={RUNTIME: False, SIGNATURE: False}
    )
    output_mappings: dict[str, str] = field(
        factory=dict, validator=_mapping, metadata={RUNTIME: False, SIGNATURE: False}
    )

    def __attrs_post_init__(self) -> None:
        if self.name is not None and not _NAME.match(self.name):
            raise ConfigurationError(
                f"step name {self.name!r} is not valid: use letters, digits, '_', '-' and '.' "
                "(it becomes part of a file name)"
            )
        if self.pipeline is None:
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
        for key in ("input_mappings", "output_mappings"):
            if getattr(self, key, None):
                data[key] = canonical(getattr(self, key))
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

    def structured_columns(self) -> dict[str, Any]:
        """``{output column: OutputSchema}`` for columns whose values follow a JSON schema
        (see :mod:`overnight.structured`): the dataset gives them back as objects and
        writes them to Parquet as JSON text. Most steps have none."""
        return {}

    def process_mapped(self, rows: "Rows", ctx: StepContext) -> Iterable[dict[str, Any]]:
        """:meth:`process` with this step's ``input_mappings`` and ``output_mappings`` applied."""
        if not self.input_mappings and not self.output_mappings:
            return self.process(rows, ctx)
        from overnight.mappings import MappedRows, unmap_outputs

        mapped = MappedRows(rows, self.input_mappings) if self.input_mappings else rows
        return unmap_outputs(self.process(mapped, ctx), self.input_mappings, self.output_mappings)  # type: ignore[arg-type]

    def process(self, rows: "Rows", ctx: StepContext) -> Iterable[dict[str, Any]]:
        """Yield this step's output rows. ``rows`` can be iterated more than once."""
        raise NotImplementedError(f"{type(self).__name__} must implement process(rows, ctx)")
