"""The overnight side of bench_vs_sdk.py: the same job as baseline_sdk.py, as a pipeline.

    OPENAI_BASE_URL=... OPENAI_API_KEY=... OVERNIGHT_HOME=... \\
        python overnight_pipeline.py prompts.jsonl out.jsonl [poll] [phases.json]

(or ``overnight run overnight_pipeline.py ...``). ``LoadDataFromJSONL >> TextGeneration``
with the installed OpenAI plugin, polling until done, then the rows are written to
``out.jsonl``. With a fourth argument the script times its phases (by wrapping a few
methods, never per row) and writes them there as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable

STARTED = time.perf_counter()

from overnight import LLM, LoadDataFromJSONL, Pipeline, TextGeneration  # noqa: E402


class Phases:
    """Seconds spent inside a few methods, summed over calls (outermost call only)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.seconds: dict[str, float] = {}
        self.clock = clock

    def wrap(self, owner: Any, name: str, phase: str, pick: Callable[..., bool] = lambda *a, **k: True) -> None:
        original = getattr(owner, name)
        phases = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if not pick(*args, **kwargs):
                return original(*args, **kwargs)
            start = phases.clock()
            try:
                return original(*args, **kwargs)
            finally:
                phases.seconds[phase] = phases.seconds.get(phase, 0.0) + phases.clock() - start

        setattr(owner, name, timed)

    def install(self, also: "Phases | None" = None) -> None:
        from overnight import executor, pipeline, polling

        if also is not None:  # a second set of timers around the same methods (CPU time)
            also.install()

        self.wrap(pipeline, "write_jsonl_atomic", "load", lambda path, rows, *, step: step == "load")
        self.wrap(pipeline, "write_jsonl_atomic", "generate", lambda path, rows, *, step: step == "generate")
        self.wrap(TextGeneration, "validate", "validate")
        self.wrap(executor.BatchExecutor, "run", "executor")
        self.wrap(executor.BatchExecutor, "plan", "plan")
        self.wrap(executor.BatchExecutor, "_submit_pending", "submit")
        self.wrap(polling, "wait", "wait")

    def split(self, total: float, imports: float) -> dict[str, float]:
        s = self.seconds.get
        executor = s("executor", 0.0)
        return {
            "startup": imports,
            "load": s("load", 0.0),
            "validate/plan": s("validate", 0.0) + s("plan", 0.0),
            "submit": s("submit", 0.0),
            "check+fetch": executor - s("plan", 0.0) - s("submit", 0.0) - s("wait", 0.0),
            "poll wait": s("wait", 0.0),
            "assemble+write": s("generate", 0.0) - s("validate", 0.0) - executor + s("copy", 0.0),
            "other": 0.0,  # filled below
            "total": total,
        }


def main(source: str, target: str, poll: float = 0.1, phases_path: str | None = None) -> None:
    imports = time.perf_counter() - STARTED
    cpu_imports = time.process_time()
    phases, cpu = Phases(), Phases(time.process_time)
    if phases_path:
        phases.install(also=cpu)
    with Pipeline(name="bench") as pipeline:
        load = LoadDataFromJSONL(name="load", path=source)
        generate = TextGeneration(
            name="generate",
            llm=LLM("openai/gpt-4o-mini", offline_batch_generation_block_until_done=24 * 3600, poll_interval=poll),
        )
        load >> generate
    dataset = pipeline.run()
    start, start_cpu = time.perf_counter(), time.process_time()
    dataset.to_jsonl(target)
    phases.seconds["copy"] = time.perf_counter() - start
    cpu.seconds["copy"] = time.process_time() - start_cpu
    if phases_path:
        report = {}
        for name, timers, total, before in (("wall", phases, time.perf_counter() - STARTED, imports),
                                            ("cpu", cpu, time.process_time(), cpu_imports)):
            split = timers.split(total, before)
            split["other"] = total - sum(v for k, v in split.items() if k not in ("other", "total"))
            report[name] = split
        with open(phases_path, "w") as out:
            json.dump(report, out)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], args[1], float(args[2]) if len(args) > 2 else 0.1, args[3] if len(args) > 3 else None)
