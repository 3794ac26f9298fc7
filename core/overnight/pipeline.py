"""The pipeline: a graph of steps, run with per-step output caching.

::

    with Pipeline(name="answers") as pipeline:
        load = LoadDataFromJSONL(path="prompts.jsonl")
        generate = TextGeneration(llm=LLM("openai/gpt-4o-mini"))
        load >> generate
    dataset = pipeline.run()

Each step's output is written to ``<cache dir>/pipelines/<pipeline>/<step>-<signature>.jsonl``.
The signature hashes the step (class, parameters, LLM signature) and its inputs'
signatures, so a run reuses every output whose signature is unchanged: a resumed run
redoes nothing, a changed step re-runs with what depends on it, a new step runs alone
on cached inputs. A batch step still waiting on its jobs blocks only its descendants;
the rest of the pipeline runs, and ``run()`` then raises
:class:`~overnight.PipelineNotFinished`.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, cast

from overnight import _json
from overnight.dataset import Dataset, Rows, write_jsonl_atomic
from overnight.errors import ConfigurationError, DiskError, OfflineBatchGenerationNotFinished, PipelineNotFinished
from overnight.filedigests import FileDigests
from overnight.identity import digest
from overnight.loaders import FileLoader
from overnight.policy import RETRY_FAILED_ENV, RunPolicy
from overnight.step import _NAME, Step, StepContext, _active, current_pipeline
from overnight.suggest import did_you_mean

log = logging.getLogger("overnight.pipeline")

#: Bump when the format of step outputs changes, so old cached outputs are not reused.
OUTPUT_FORMAT = 3  # 2: TextGeneration rows gain <output>_cost_usd; 3: finish reasons normalised, raw kept

__all__ = ["Pipeline", "current_pipeline"]


class Pipeline:
    """A named graph of steps. Steps created inside ``with Pipeline(...)`` join it.

    ``cache_dir`` holds the state store and the step outputs (default:
    ``$OVERNIGHT_HOME``, else the user cache directory). ``store`` (default:
    ``$OVERNIGHT_STORE``) puts the state store in a PostgreSQL database a team shares,
    ``"postgresql://user:password@host:port/database"``; step outputs stay in ``cache_dir``.
    """

    def __init__(
        self, name: str | None = None, *, description: str = "", cache_dir: str | os.PathLike[str] | None = None,
        store: str | None = None,
    ) -> None:
        if name is not None and (not isinstance(name, str) or not _NAME.match(name)):
            raise ConfigurationError(
                f"pipeline name {name!r} is not valid: use letters, digits, '_', '-' and '.' "
                "(it becomes a directory name)"
            )
        self._name = name
        # Without a name (distilabel's `Pipeline()`), the name comes from the script that
        # builds the pipeline and its steps: see the `name` property.
        self._script = _calling_script()
        self.description = description
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if store is not None and not isinstance(store, str):
            raise ConfigurationError(f"store must be a postgresql:// URL (a str), got {type(store).__name__}")
        #: The shared store's URL (None: $OVERNIGHT_STORE, else SQLite in cache_dir); never printed whole.
        self._store_url = store
        self._steps: dict[str, Step] = {}
        self._inputs: dict[str, list[str]] = {}
        #: Every step output available after the last run, by step name.
        self.outputs: dict[str, Dataset] = {}

    def __repr__(self) -> str:
        return f"Pipeline(name={self.name!r}, steps={list(self._steps)})"

    @property
    def name(self) -> str:
        """The name given, else ``<script>-<hash of the steps' names and classes>``.

        The same script with the same steps gets the same name on every run (so it finds
        its cached outputs); another step set is another pipeline. Paid requests are
        reused either way: they are identified by content, not by pipeline.
        """
        if self._name is not None:
            return self._name
        steps = [(name, f"{type(step).__module__}.{type(step).__qualname__}") for name, step in self._steps.items()]
        return f"{self._script}-{digest(steps)[:8]}"

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def __enter__(self) -> "Pipeline":
        self._token = _active.set(_active.get() + (self,))
        return self

    def __exit__(self, *exc: Any) -> None:
        _active.reset(self._token)

    # -- the graph -------------------------------------------------------------------------

    @property
    def steps(self) -> dict[str, Step]:
        return dict(self._steps)

    def add_step(self, step: Step) -> None:
        """Attach a step (done by the step itself when created in the ``with`` block)."""
        if step.name is None:
            step.name = step.default_name(self._steps)
        if step.name in self._steps and self._steps[step.name] is not step:
            raise ConfigurationError(
                f"pipeline {self.name!r} already has a step named {step.name!r}; give each step a unique name="
            )
        self._steps[step.name] = step
        self._inputs.setdefault(step.name, [])

    def connect(self, source: Step, target: Step) -> None:
        """Feed ``source``'s rows to ``target`` (what ``source >> target`` does)."""
        for step in (source, target):
            if step.pipeline is not self or self._steps.get(step.name or "") is not step:
                raise ConfigurationError(
                    f"cannot connect {source.name!r} >> {target.name!r}: "
                    f"both steps must belong to pipeline {self.name!r}"
                )
        if target.is_loader:
            raise ConfigurationError(f"step {target.name!r} is a loader: it reads its own source and takes no input")
        source_name, target_name = cast(str, source.name), cast(str, target.name)  # both joined: named
        if source is target or source_name in self._descendants(target_name):
            raise ConfigurationError(f"connecting {source.name!r} >> {target.name!r} would make a cycle")
        inputs = self._inputs[target_name]
        if source_name not in inputs:
            inputs.append(source_name)

    def predecessors(self, name: str) -> list[str]:
        return list(self._inputs[name])

    def successors(self, name: str) -> list[str]:
        return [s for s, inputs in self._inputs.items() if name in inputs]

    def _descendants(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = [name]
        while todo:
            for child in self.successors(todo.pop()):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        return seen

    @property
    def leaves(self) -> list[str]:
        """Steps nobody reads from: their outputs are what ``run()`` returns."""
        return [s for s in self._steps if not self.successors(s)]

    def _order(self) -> list[Step]:
        """Topological order; ties broken by creation order, so runs are deterministic."""
        if not self._steps:
            raise ConfigurationError(f"pipeline {self.name!r} has no steps; create them inside `with Pipeline(...)`")
        for name, step in self._steps.items():
            if not step.is_loader and not self._inputs[name]:
                raise ConfigurationError(
                    f"step {name!r} has no input: connect a loader to it, e.g. `load >> {name}`"
                )
        done: list[str] = []
        remaining = list(self._steps)
        while remaining:
            ready = next(s for s in remaining if all(p in done for p in self._inputs[s]))
            done.append(ready)
            remaining.remove(ready)
        return [self._steps[s] for s in done]

    def signatures(self) -> dict[str, str]:
        """Each step's signature, from its class (and code), parameters and inputs' signatures."""
        with FileDigests(None).active():  # no shortcut: every input file is hashed
            return self._signatures()

    def _signatures(self) -> dict[str, str]:
        sigs: dict[str, str] = {}
        for step in self._order():
            cls = type(step)
            name = cast(str, step.name)  # every step is named when it joins the pipeline
            sigs[name] = digest(
                {
                    "format": OUTPUT_FORMAT,
                    "pipeline": self.name,
                    "step": step.name,
                    "class": f"{cls.__module__}.{cls.__qualname__}",
                    "code": step.code_identity(),
                    "parameters": step.signature_data(),
                    "inputs": [sigs[p] for p in self._inputs[name]],
                }
            )
        return sigs

    # -- running ---------------------------------------------------------------------------

    def run(
        self,
        parameters: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        use_cache: bool = True,
        paid_results: Literal["reuse"] | None = None,
        resubmit_unconfirmed: bool = False,
        resubmit_lost: bool = False,
        retry_failed: bool | None = None,
        budget_usd: float | None = None,
    ) -> "Dataset | dict[str, Dataset]":
        """Run every step whose output is not cached yet; return the leaf step's Dataset.

        With several leaf steps, returns ``{leaf name: Dataset}``.

        ``parameters`` sets step parameters for this run, ``{step name: {name: value}}``
        (a TextGeneration also takes ``{"llm": {"generation_kwargs": {...}}}``); unknown
        names are an error before anything runs.

        ``use_cache=False`` recomputes every step. Requests a previous run already paid
        for are never resubmitted silently: such a run stops with
        :class:`~overnight.StaleCache` unless ``paid_results="reuse"`` says to use them.

        ``budget_usd`` holds the run's batch steps to a budget in US dollars (default: the
        ``OVERNIGHT_BUDGET_USD`` environment variable, which ``overnight run --budget-usd``
        sets): before each submission, what is billed plus the estimate of what is in flight
        and about to go must fit; the run stops with :class:`~overnight.BudgetExceeded`
        rather than pass it (what was submitted is still collected; a higher budget goes on).

        ``resubmit_unconfirmed=True`` resubmits chunks whose submission a crashed run
        could not confirm and the provider cannot look up (see UnconfirmedSubmission).

        ``resubmit_lost=True`` pays again for requests whose results the provider lost
        (result files deleted or expired, a deleted batch; see LostResults). Without it
        they stay pending and the run stops with :class:`~overnight.LostResults`.

        ``retry_failed=True`` gives every request that ended as an error row (attempts
        exhausted, jobs refused) one more round of attempts, paying only for those;
        steps whose cached output holds such rows run again. ``None`` reads
        ``$OVERNIGHT_RETRY_FAILED`` (set by ``overnight run --retry-failed``).

        Raises :class:`~overnight.PipelineNotFinished` while batch jobs are running (all
        finished work is saved; run again later), :class:`~overnight.ValidationError`
        for bad rows (nothing submitted).
        """
        if paid_results not in (None, "reuse"):
            raise ConfigurationError(
                f"paid_results={paid_results!r} is not an option: pass paid_results='reuse' to use "
                "the results previous runs paid for, or change the requests (e.g. a generation seed) "
                "to pay for new ones"
            )
        self._apply_parameters(parameters or {})
        order = self._order()
        for step in order:
            step.check()
        signatures = self._verified_signatures(use_cache)
        if retry_failed is None:
            retry_failed = os.environ.get(RETRY_FAILED_ENV, "") not in ("", "0")
        from overnight.money import Budget, active_estimates

        ledger = Budget(_budget(budget_usd))
        cost_line: str | None = None
        policy = RunPolicy(reuse_paid=use_cache or paid_results == "reuse", resubmit_unconfirmed=resubmit_unconfirmed,
                           resubmit_lost=resubmit_lost, retry_failed=retry_failed,
                           budget=ledger, estimates=active_estimates())

        from overnight.store import Store  # imported here: only a run needs the store

        _ensure_log_handler()
        store = Store.open(self.cache_dir, url=self._store_url)
        try:
            run_id = store.start_run(self.name)
            state = "failed"
            try:
                pending, waiting = self._execute(
                    order, signatures, store,
                    use_cache=use_cache, policy=policy,
                )
                state = "pending" if pending else "done"
            except DiskError as exc:
                # Raised where the run's history is unknown (an output, a temporary file): say it.
                raise exc.with_done(store.activity()) from exc.__cause__
            finally:
                try:
                    store.finish_run(run_id, state)
                except DiskError:
                    if state != "failed":  # else the disk that failed the run fails this too: keep the first error
                        raise
                if policy.estimates is None:
                    cost_line = _cost_line(store, ledger)
        finally:
            store.close()

        if pending:
            hint = ""
            # Every step downstream of a pending one, also those a Ctrl+C kept the run from reaching.
            blocked = set(waiting).union(*(self._descendants(p.step) for p in pending if p.step))
            waiting = [s.name for s in order if s.name in blocked]
            if waiting:
                wait = "" if any(p.interrupted or p.waited for p in pending) else \
                    " (or pass offline_batch_generation_block_until_done=<seconds> to wait)"
                hint = (
                    f"Steps waiting for these results: {', '.join(waiting)}. Everything else is saved. "
                    f"Run the same script again to check and collect{wait}."
                )
            if cost_line:
                log.info("%s", cost_line)
            raise PipelineNotFinished(self.name, pending, hint=hint)
        leaves = {name: self.outputs[name] for name in self.leaves}
        failed = 0
        for name, dataset in leaves.items():
            errors = _error_rows(dataset)
            failed += errors
            log.info("pipeline %r is done: step %r wrote %d rows to %s (%d with errors)",
                     self.name, name, len(dataset), dataset.path, errors)
        if cost_line:
            # The last line says what went wrong too (its figures stay where scripts look for them).
            log.info("%s", cost_line + (f"; {failed} row(s) ended as errors" if failed else ""))
        return next(iter(leaves.values())) if len(leaves) == 1 else leaves

    def _verified_signatures(self, use_cache: bool) -> dict[str, str]:
        """The signatures, input files identified by content: remembered digests (see
        :mod:`overnight.filedigests`) are re-verified before a finished step that depends
        on them would be reused."""
        from overnight.store import default_cache_dir

        cache_dir = self.cache_dir if self.cache_dir is not None else default_cache_dir()
        digests = FileDigests(cache_dir)
        with digests.active():
            signatures = self._signatures()
            if use_cache and digests.trusted:
                directory = cache_dir / "pipelines" / self.name
                changed = False
                for name, step in self._steps.items():
                    if not isinstance(step, FileLoader) or step.path is None \
                            or str(step.path.resolve()) not in digests.trusted:
                        continue
                    affected = {name} | self._descendants(name)
                    if any((directory / f"{s}-{signatures[s]}.jsonl").is_file() for s in affected):
                        if not digests.verify(step.path):
                            log.info("step %r: %s changed (its timestamps did not); its steps run again", name, step.path)
                            changed = True
                if changed:
                    signatures = self._signatures()
        digests.save()
        return signatures

    def _apply_parameters(self, parameters: Mapping[str, Mapping[str, Any]]) -> None:
        if not isinstance(parameters, Mapping):
            raise ConfigurationError("parameters must be a dict: {step name: {parameter: value}}")
        unknown = [name for name in parameters if name not in self._steps]
        if unknown:
            raise ConfigurationError(
                f"parameters name unknown step(s) {', '.join(map(repr, unknown))}"
                f"{did_you_mean(unknown[0], self._steps)}; the steps of "
                f"pipeline {self.name!r} are: {', '.join(self._steps)}"
            )
        for name, values in parameters.items():
            if not isinstance(values, Mapping):
                raise ConfigurationError(f"parameters[{name!r}] must be a dict of parameter values")
            step = self._steps[name]
            bad = sorted(set(values) - set(step.runtime_parameter_names()))
            if bad:
                raise ConfigurationError(
                    f"step {name!r} has no parameter {', '.join(map(repr, bad))}"
                    f"{did_you_mean(bad[0], step.runtime_parameter_names())}; its parameters are: "
                    f"{', '.join(step.runtime_parameter_names()) or 'none'}"
                )
        for name, values in parameters.items():
            self._steps[name].set_runtime_parameters(dict(values))

    def _execute(
        self,
        order: Sequence[Step],
        signatures: Mapping[str, str],
        store: Any,
        *,
        use_cache: bool,
        policy: RunPolicy,
    ) -> tuple[list[OfflineBatchGenerationNotFinished], list[str]]:
        """Run the steps in order; return the pending batch steps and the steps waiting on them."""
        directory = Path(store.cache_dir) / "pipelines" / self.name
        self.outputs = {}
        pending: list[OfflineBatchGenerationNotFinished] = []
        blocked: set[str] = set()
        waiting: list[str] = []
        fresh: set[str] = set()  # steps computed (not read from the cache) in this run
        for step in order:
            name = cast(str, step.name)  # every step is named when it joins the pipeline
            inputs = self._inputs[name]
            if any(p in blocked for p in inputs):
                blocked.add(name)
                waiting.append(name)
                continue
            path = directory / f"{name}-{signatures[name]}.jsonl"
            # An estimate re-plans batch steps whose output is cached, to report what they cost.
            if use_cache and path.is_file() and policy.estimates is None and not fresh.intersection(inputs) \
                    and not _store_moved_on(store, signatures[name], policy):
                log.debug("step %r: output cached in %s", name, path)
                self.outputs[name] = Dataset(path, name=name, structured=step.structured_columns())
                continue
            ctx = StepContext(
                pipeline=self.name,
                step=name,
                signature=signatures[name],
                use_cache=use_cache,
                policy=policy,
                store=store,
            )
            rows = Rows([self.outputs[p].path for p in inputs])
            try:
                count = write_jsonl_atomic(path, step.process_mapped(rows, ctx), step=name)
            except OfflineBatchGenerationNotFinished as exc:
                if exc.step is None:
                    exc.step = name
                pending.append(exc)
                blocked.add(name)
                if exc.interrupted:  # the user pressed Ctrl+C: stop here, not at the next step
                    break
                continue
            log.debug("step %r: wrote %d rows to %s", name, count, path)
            self.outputs[name] = Dataset(path, name=name, structured=step.structured_columns())
            fresh.add(name)
        return pending, waiting


def _store_moved_on(store: Any, plan_id: str, policy: RunPolicy) -> bool:
    """Has the store changed the batch step's results since its output was cached?

    True when this run retries the step's failed requests, or when some of its requests
    are no longer settled (a retry or a resubmission asked for by an earlier run or by
    ``overnight resubmit-lost``): the cached output no longer tells the whole story.
    A step that is not a batch step has no plan, hence no counts.
    """
    from overnight import store as st

    if policy.retry_failed and store.plan_counts(plan_id).get(st.FAILED):
        return True
    # From the few unsettled requests (new ones by their index, queued and lost ones by their
    # jobs), not by counting the plan's: the re-run of a finished 1M-request step reads little.
    return store.has_new(plan_id) or bool(store.open_jobs(plan_id)) or bool(store.lost_jobs(plan_id))


def _error_rows(dataset: Dataset) -> int:
    """Rows holding an error: a generation step's ``<output>_error`` column set (any sample)."""
    count = 0
    with open(dataset.path, "rb") as lines:
        for line in lines:
            # Outside a string a quote is never escaped, so ``_error"`` only ends a key: a row
            # without one, or whose every such key is null as written, has no error and is
            # not parsed (the whole output is read at the end of every run, cached ones too).
            keys = line.count(b'_error"')
            if keys == 0 or keys == line.count(b'_error":null') or not line.strip():
                continue
            for key, value in _json.loads(line).items():
                if key.endswith("_error") and (any(v is not None for v in value) if isinstance(value, list)
                                               else value is not None):
                    count += 1
                    break
    return count


def _calling_script() -> str:
    """The stem of the file that called ``Pipeline()`` (sanitised), ``pipeline`` if unknown."""
    import re

    frame = sys._getframe(2)  # 0: here, 1: Pipeline.__init__, 2: its caller
    filename = frame.f_code.co_filename if frame is not None else ""
    stem = Path(filename).stem if filename and not filename.startswith("<") else "pipeline"
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).lstrip("._-")
    return stem or "pipeline"


def _budget(value: float | None) -> float | None:
    raw: object = value
    if value is None:
        raw = os.environ.get("OVERNIGHT_BUDGET_USD") or None
        if raw is None:
            return None
    try:
        budget = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        budget = -1.0
    if not budget >= 0:
        raise ConfigurationError(f"budget_usd must be a number of US dollars >= 0, got {raw!r}")
    return budget


def _cost_line(store: Any, ledger: Any) -> str | None:
    """The run's last line: what its batch steps cost at batch prices and saved against online."""
    if not ledger.plans:
        return None
    from overnight.money import usd

    cost = online = 0.0
    for plan_id in ledger.plans:
        if plan_id in ledger.totals:  # summed while its results were handed back
            plan_cost, plan_online = ledger.totals[plan_id]
        else:
            money = store.plan_money(plan_id).values()
            plan_cost, plan_online = sum(v["cost"] for v in money), sum(v["online"] for v in money)
        cost += plan_cost
        online += plan_online
    from overnight.online import cost_parts

    sent = cost_parts(store, ledger.plans)  # requests answered online (online mode, the deadline fallback)
    if sent is not None:
        return (f"cost {usd(cost)} ({usd(cost - sent[1])} at batch prices, {usd(sent[1])} for {sent[0]} "
                f"request(s) answered online), {usd(online - cost)} saved against online")
    return f"cost {usd(cost)} at batch prices, {usd(online - cost)} saved against online"


def _ensure_log_handler() -> None:
    """Show overnight's info messages on stderr unless the application configured logging."""
    logger = logging.getLogger("overnight")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[overnight] %(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
