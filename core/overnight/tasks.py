"""Tasks: steps that generate with an LLM through a provider's batch API."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Iterator

import attrs
from attrs import define, field

from overnight.errors import ConfigurationError, OvernightError, RowProblem, ValidationError
from overnight.finish import normalise_finish_reason
from overnight.models import ChatRequest, GenerationParams, Message, PlannedRequest, Result, RowResult
from overnight.step import RUNTIME, Step, StepContext
from overnight.structured import OutputSchema, output_schema
from overnight.suggest import did_you_mean
from overnight.templates import template_fields

if TYPE_CHECKING:
    from overnight.dataset import Rows
    from overnight.llm import LLM

#: Most bad rows listed in one ValidationError (its count covers them all).
MAX_PROBLEMS = 1000
#: LLM attributes ``run(parameters={step: {"llm": {...}}})`` may set.
LLM_RUNTIME_PARAMETERS = ("generation_kwargs", "offline_batch_generation_block_until_done")


#: Most generations per row: OpenAI's own ceiling for ``n``; more is almost surely a
#: typo that would pay for millions of requests.
MAX_GENERATIONS = 128


def _generations(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_GENERATIONS:
        raise ConfigurationError(
            f"{attribute.name} must be a whole number from 1 to {MAX_GENERATIONS}, got {value!r}"
        )


def _template(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise ConfigurationError(f"template must be a string, got {type(value).__name__}")
    try:
        template_fields(value)
    except ValueError as exc:
        raise ConfigurationError(f"template {value!r} is not valid: {exc}") from None


def _output_collisions(outputs: list[str], row: Any, index: int, found: dict[str, list[int]]) -> None:
    """Note which of ``outputs`` the input ``row`` already has: ``{column: [count, first rows...]}``."""
    if not isinstance(row, dict):
        return
    for column in outputs:
        if column in row:
            seen = found.setdefault(column, [0])
            seen[0] += 1
            if len(seen) <= 5:
                seen.append(index)


@define(kw_only=True, eq=False)
class TextGeneration(Step):
    """Generate one text (or ``num_generations``) per input row with ``llm``.

    The prompt is the row's ``input_column`` (default ``"instruction"``), or
    ``template`` filled with the row's columns (``"Translate to French: {text}"``;
    write ``{{`` and ``}}`` for literal braces). ``system_prompt`` is sent first.

    Each output row is the input row plus:

    * ``<output_column>``: the text (``None`` if it failed), or a list of
      ``num_generations`` texts;
    * ``<output_column>_error``: ``None``, or why the generation failed after every
      retry (a list when ``num_generations > 1``). No row is ever dropped;
    * ``<output_column>_usage``: ``{"input_tokens", "output_tokens"}`` (or a list);
    * ``<output_column>_finish_reason``: why it ended, the same words for every provider:
      ``"stop"``, ``"length"``, ``"content_filter"``, ``"tool_calls"`` (or a list; see
      :mod:`overnight.finish`); ``<output_column>_finish_reason_raw``: the provider's own word;
    * ``<output_column>_cost_usd``: what the request was billed at batch prices (``None``
      when it failed or the model's price is unknown; a list);
    * ``model_name``: the ``provider/model`` that generated it.

    With ``response_format`` (a pydantic model class or a JSON schema dict) the provider is
    asked for JSON that follows the schema, and ``<output_column>`` holds the answer parsed
    and validated: a dict (a model instance in the dataset :meth:`Pipeline.run` returns,
    for a model). ``<output_column>_raw`` keeps the text as it came. An answer that does not
    validate is an error row: ``<output_column>`` is ``None`` and ``<output_column>_error``
    says why (it was paid for: nothing is dropped, and it is not retried on its own).

    Every row is checked before anything is submitted; all problems are reported at
    once in a :class:`~overnight.ValidationError`.
    """

    llm: "LLM" = field(metadata={RUNTIME: False})
    input_column: str = "instruction"
    template: str | None = field(default=None, validator=_template)
    system_prompt: str | None = None
    num_generations: int = field(default=1, validator=_generations)
    output_column: str = "generation"
    #: A pydantic model class or a JSON schema dict the answers must follow (see above).
    response_format: OutputSchema | None = field(default=None, converter=output_schema)

    # -- parameters --------------------------------------------------------------------

    @classmethod
    def runtime_parameter_names(cls) -> list[str]:
        return [*super().runtime_parameter_names(), "llm"]

    def set_runtime_parameters(self, values: dict[str, Any]) -> None:
        """Also takes ``{"llm": {"generation_kwargs": {...}}}``: merged over the LLM's own."""
        values = dict(values)
        llm_values = values.pop("llm", None)
        if llm_values is not None:
            if not isinstance(llm_values, dict):
                raise ConfigurationError(f"step {self.name!r}: parameters 'llm' must be a dict")
            unknown = sorted(set(llm_values) - set(LLM_RUNTIME_PARAMETERS))
            if unknown:
                raise ConfigurationError(
                    f"step {self.name!r}: the LLM has no run parameter {', '.join(map(repr, unknown))}"
                    f"{did_you_mean(unknown[0], LLM_RUNTIME_PARAMETERS)}; "
                    f"its run parameters are: {', '.join(LLM_RUNTIME_PARAMETERS)}"
                )
        super().set_runtime_parameters(values)
        if llm_values:
            # A copy: the same LLM object may serve other steps that these values are not for.
            self.llm = copy.copy(self.llm)
            if "generation_kwargs" in llm_values:
                overrides = dict(llm_values["generation_kwargs"] or {})
                self.llm.generation_kwargs = {**self.llm.generation_kwargs, **overrides}
            block = "offline_batch_generation_block_until_done"
            if block in llm_values:
                setattr(self.llm, block, llm_values[block])

    # -- running -----------------------------------------------------------------------

    def check(self) -> None:
        if not callable(getattr(self.llm, "generate_offline", None)):
            raise ConfigurationError(
                f"step {self.name!r}: llm must be an LLM, e.g. LLM('openai/gpt-4o-mini'), not {self.llm!r}"
            )
        self._run_llm()  # a format given twice is a setting error, reported before any key is needed
        # Resolves the provider plugin and checks credentials: no network, nothing paid.
        self.llm.load()

    def _columns(self) -> list[str]:
        return template_fields(self.template) if self.template is not None else [self.input_column]

    def prompt(self, row: dict[str, Any], index: int, problems: list[RowProblem]) -> str | None:
        """The row's user prompt, or ``None`` after recording why it cannot be sent."""
        if self.template is None and type(row) is dict:  # the usual row, checked with no detour
            text = row.get(self.input_column)
            if type(text) is str and text.strip():
                return text

        def problem(field_: str | None, message: str) -> None:
            problems.append(RowProblem(self.name or "", index, field_, message))

        if not isinstance(row, dict):
            problem(None, f"is a {type(row).__name__}, not a row of columns")
            return None
        before = len(problems)
        for column in self._columns():
            if column not in row:
                hint = did_you_mean(column, map(str, row))
                problem(column, f"missing column{hint} (the row has: {', '.join(map(str, row)) or 'no columns'})")
                continue
            value = row[column]
            if value is None:
                problem(column, "is null")
            elif self.template is None and not isinstance(value, str):
                problem(column, f"must be a string, got {type(value).__name__}")
            elif self.template is not None and not isinstance(value, (str, int, float)):
                problem(column, f"cannot be put in a template: it is a {type(value).__name__}")
        if len(problems) > before:
            return None
        if self.template is None:
            text = row[self.input_column]
        else:
            try:
                text = self.template.format_map(row)
            except (KeyError, IndexError, AttributeError, ValueError, TypeError) as exc:
                problem(None, f"the template cannot be filled from this row ({type(exc).__name__}: {exc})")
                return None
        if not text.strip():
            problem(self.input_column if self.template is None else None, "empty prompt")
            return None
        return text

    def messages(self, prompt: str) -> tuple[Message, ...]:
        system = (Message("system", self.system_prompt),) if self.system_prompt else ()
        return (*system, Message("user", prompt))

    def output_columns(self) -> list[str]:
        """The columns this step adds to each row (what :meth:`_assemble` writes)."""
        out = self.output_column
        raw = [f"{out}_raw"] if self.response_format is not None else []
        return [out, *raw, f"{out}_error", f"{out}_usage", f"{out}_finish_reason", f"{out}_finish_reason_raw",
                "model_name"]

    def structured_columns(self) -> dict[str, OutputSchema]:
        """``{column: schema}`` for the output column whose values follow ``response_format``."""
        if self.response_format is None:
            return {}
        column = self.output_column
        return {(self.output_mappings or {}).get(column, column): self.response_format}

    def _run_llm(self) -> "LLM":
        """The LLM with the schema among its options (a copy: the LLM may serve other steps)."""
        if self.response_format is None:
            return self.llm
        if self.llm.generation_kwargs.get("response_format") is not None:
            raise ConfigurationError(
                f"step {self.name!r}: give the output format once, either as TextGeneration(response_format=...) "
                "or in the LLM's generation_kwargs['response_format'], not both"
            )
        llm = copy.copy(self.llm)
        llm.generation_kwargs = {**self.llm.generation_kwargs, "response_format": self.response_format.response_format()}
        return llm

    def validate(self, rows: "Rows") -> int:
        """Check every row; raise ValidationError listing the bad ones. Returns the row count."""
        problems: list[RowProblem] = []
        outputs = self.output_columns()
        collisions: dict[str, list[int]] = {}
        bad = count = 0
        for count, row in enumerate(rows, start=1):
            found: list[RowProblem] = []
            self.prompt(row, count - 1, found)
            if found:
                bad += 1
                if len(problems) < MAX_PROBLEMS:
                    problems.extend(found)
            _output_collisions(outputs, row, count - 1, collisions)
        if problems:
            unlisted = bad - len({p.row for p in problems})
            if unlisted > 0:
                problems.append(RowProblem(self.name or "", None, None, f"{unlisted} more bad row(s) not listed"))
        problems.extend(self._collision_problems(collisions))
        if problems:  # the true count of bad rows, not only of the ones listed
            raise ValidationError(problems, bad_rows=max(bad, len({p.row for p in problems if p.row is not None})))
        return count

    def _collision_problems(self, collisions: dict[str, list[int]]) -> list[RowProblem]:
        """One problem per input column this step would overwrite, with the rows that have it."""
        problems = []
        for column, (n, *rows) in collisions.items():
            shown = ", ".join(map(str, rows)) + (", ..." if n > len(rows) else "")
            if column == "model_name":
                way_out = "rename or drop that column before this step (e.g. with a MapStep)"
            else:
                way_out = (
                    f"pass output_column='...' (e.g. TextGeneration(..., output_column='{self.output_column}_2')) "
                    "or rename that column before this step"
                )
            problems.append(RowProblem(
                self.name or "", rows[0], column,
                f"the input already has a column {column!r}, which this step writes its output to: it would be "
                f"overwritten (rows {shown}: {n} rows). To keep it, {way_out}",
            ))
        return problems

    def plan(self, rows: "Rows") -> Iterator[PlannedRequest]:
        # What errors about a request's size name: the input column (or the template's columns).
        source = self.input_column if self.template is None else ", ".join(self._columns()) or "template"
        for index, row in enumerate(rows):
            prompt = self.prompt(row, index, [])
            if prompt is None:  # the input changed since validate(): refuse rather than guess
                raise ConfigurationError(f"step {self.name!r}: row {index} changed while the step ran; run again")
            # The messages only: the LLM sets each request's model and options (generate_offline).
            request = ChatRequest("", "", self.messages(prompt), _LLM_SETS)
            for sample in range(self.num_generations):
                yield PlannedRequest(index, sample, request, source)  # positional: a third cheaper, once per row

    def process(self, rows: "Rows", ctx: StepContext) -> Iterator[dict[str, Any]]:
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            raise ConfigurationError(f"step {self.name!r}: system_prompt must be a string")
        if self.validate(rows) == 0:
            return
        llm = self._run_llm()
        try:
            results = llm.generate_offline(
                self.plan(rows),
                store=ctx.store,  # type: ignore[arg-type]  # a pipeline run always opens its store
                step=self.name or "",
                plan_id=ctx.signature,
                policy=ctx.policy,
                raw=False,  # no column of the output holds the provider's raw answer
            )
        finally:
            self.llm.jobs_ids = llm.jobs_ids  # the user's LLM says what is pending, as without a schema
        yield from self._assemble(rows, iter(results))

    def _assemble(self, rows: "Rows", results: Iterator[RowResult]) -> Iterator[dict[str, Any]]:
        """Match results (in plan order) to input rows; a gap is an error, never a dropped row."""
        out = self.output_column
        model = self.llm.model
        raw_column, error_column, usage_column, reason_column, raw_reason_column, cost_column = (
            f"{out}_{suffix}" for suffix in ("raw", "error", "usage", "finish_reason", "finish_reason_raw", "cost_usd")
        )
        n, plain = self.num_generations, self.response_format is None
        for index, row in enumerate(rows):
            samples: list[Result] = []
            for sample in range(n):
                got = next(results, None)
                if got is None or got.row != index or got.sample != sample:
                    raise OvernightError(
                        f"step {self.name!r}: expected the result of row {index}, sample {sample}, got "
                        f"{'nothing' if got is None else f'row {got.row}, sample {got.sample}'}. "
                        "The store does not match this step's plan; run again with use_cache=False "
                        "and paid_results='reuse'."
                    )
                samples.append(got.result)
            # Six columns (text, error, usage, finish reason, raw reason, cost): one sample's
            # values, or each a list by sample.
            columns = _sample_columns(samples[0]) if n == 1 else tuple(map(list, zip(*map(_sample_columns, samples))))
            raws, errors, usages, reasons, raw_reasons, costs = columns
            if plain:
                generated = {out: raws, error_column: errors}
            else:
                parsed, problems = self._structured(raws, errors, samples)
                generated = {out: parsed, raw_column: raws, error_column: problems}
            yield {
                **row,
                **generated,
                usage_column: usages,
                reason_column: reasons,
                raw_reason_column: raw_reasons,
                cost_column: costs,
                "model_name": model,
            }
        if next(results, None) is not None:
            raise OvernightError(
                f"step {self.name!r}: the store holds more results than this step has rows. "
                "Run again with use_cache=False and paid_results='reuse'."
            )

    def _structured(self, raws: Any, errors: Any, samples: list[Result]) -> tuple[Any, Any]:
        """The output and error values of a step with ``response_format``, each answer parsed
        (:meth:`_parsed`): one sample's values, or lists by sample, as ``raws`` and ``errors`` are."""
        if self.num_generations > 1:
            return self._parsed(raws, errors, [r.error for r in samples])
        (parsed,), (problem,) = self._parsed([raws], [errors], [samples[0].error])
        return parsed, problem

    def _parsed(self, texts: list[Any], errors: list[Any], notes: list[Any]) -> tuple[list[Any], list[Any]]:
        """Each answered sample parsed and validated against ``response_format``: its JSON form,
        or ``None`` and why it does not validate (the raw text stays in ``<output>_raw``).
        ``notes`` are the results' own remarks (a refusal), the reason when there is no text."""
        schema = self.response_format
        assert schema is not None
        values: list[Any] = []
        problems: list[Any] = []
        for text, error, note in zip(texts, errors, notes):
            if error is not None or (text is None and note):
                values.append(None)
                problems.append(error if error is not None else note)
                continue
            value, problem = schema.parse(text)
            values.append(schema.to_json(value) if problem is None else None)
            problems.append(problem)
        return values, problems


#: The options of a planned request before the LLM sets its own (one value, not one per row).
_LLM_SETS = GenerationParams()


def _sample_columns(result: Result) -> tuple[Any, Any, Any, Any, Any, Any]:
    """One sample's text, error, usage, normalised and raw finish reason, and cost."""
    usage = result.usage
    ok = result.ok
    return (
        result.text if ok else None,
        None if ok else (result.error or f"request {result.status.value}"),
        None if usage is None else {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
        normalise_finish_reason(result.finish_reason),
        result.finish_reason,
        result.cost_usd,
    )
