"""The ``overnight`` command.

Exit status: 0 done; 1 error (message on stderr, no traceback; for ``plugins``: a
plugin failed to load); 75 (EX_TEMPFAIL) when batch jobs are still running; 2 for a
bad command line; 130 when interrupted.
Tracebacks are printed only for unexpected exceptions (bugs), never for overnight's
own errors.

``overnight quickstart [ARGS...]`` calls ``overnight.quickstart.quickstart(argv)``
(``argv``: the remaining arguments, a list of str; it returns an exit status or None).
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import attrs

from overnight.policy import RETRY_FAILED_ENV
from overnight.errors import NotFinished, OvernightError, ResultsGone

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
#: EX_TEMPFAIL (sysexits.h): try again later.
EXIT_PENDING = 75
EXIT_INTERRUPTED = 130

#: Job states after which there is nothing left to cancel.
_TERMINAL = {"finished", "failed", "expired", "cancelled", "abandoned", "rejected", "lost"}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``overnight`` command; returns the exit status."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # `quickstart` passes everything after it on, verbatim, options included.
    passed: list[str] = []
    if "quickstart" in argv:
        at = argv.index("quickstart")
        argv, passed = argv[: at + 1], argv[at + 1 :]
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is cmd_quickstart:
        args.quickstart_args = passed
    if args.cache_dir is not None:
        # Through the environment, so a script run by `overnight run` uses it too.
        os.environ["OVERNIGHT_HOME"] = str(Path(args.cache_dir).expanduser().resolve())
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.handler(args) or EXIT_OK)
    except NotFinished as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_PENDING
    except OvernightError as exc:
        print(f"overnight: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("overnight: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="overnight",
        description="Offline batch generation with LLM batch APIs: submit, walk away, collect later.",
    )
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where the state store and step outputs live (default: $OVERNIGHT_HOME, else the user cache directory)",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = sub.add_parser("run", help="run a pipeline script (exit 75 while batch jobs are pending)")
    run.add_argument(
        "--retry-failed", action="store_true",
        help="give requests that ended as error rows one more round of attempts (pays only for those)",
    )
    run.add_argument("--budget-usd", type=float, metavar="X",
                     help="hold the run's batch steps to X US dollars (exit 1 with BudgetExceeded rather than pass it)")
    shown = run.add_mutually_exclusive_group()
    shown.add_argument("--quiet", "-q", action="store_true",
                       help="show nothing while waiting for batch jobs (errors and the last lines still show)")
    shown.add_argument("--verbose", "-v", action="store_true",
                       help="a progress line at every check, and overnight's debug messages")
    run.add_argument("script", help="the Python script that builds and runs the pipeline")
    run.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    run.set_defaults(handler=cmd_run)

    estimate = sub.add_parser(
        "estimate",
        help="plan a script's batch steps and print what they will cost, submitting nothing",
        description="Run SCRIPT with every batch step planned but not submitted, and print per step and in "
        "total: requests, input tokens, expected and maximum output tokens, the expected cost at batch "
        "prices (cost_usd), the cost if every request used max_tokens (max_cost_usd) and the online price "
        "of the same work. SCRIPT 'quickstart' estimates the quickstart's pipeline.",
    )
    estimate.add_argument("--json", action="store_true", help="print JSON")
    estimate.add_argument("script", help="the pipeline script (or 'quickstart')")
    estimate.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    estimate.set_defaults(handler=cmd_estimate)

    status = sub.add_parser("status", help="recent runs and the batch jobs still open")
    status.add_argument("--limit", type=int, default=10, help="how many runs to show (default: 10)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=cmd_status)

    jobs = sub.add_parser("jobs", help="list batch jobs (open ones unless --all)")
    jobs.add_argument("--all", action="store_true", help="include finished, failed and cancelled jobs")
    jobs.add_argument("--json", action="store_true", help="print JSON")
    jobs.set_defaults(handler=cmd_jobs)

    cancel = sub.add_parser(
        "cancel",
        help="ask the provider to cancel a batch job",
        description="Ask the provider to cancel a batch job. The plugin's credentials and base URL "
        "come from the environment (e.g. OPENAI_API_KEY, OPENAI_BASE_URL), not from the script.",
    )
    cancel.add_argument("job", help="the job's id, tag or remote id (see `overnight jobs`)")
    cancel.set_defaults(handler=cmd_cancel)

    forget = sub.add_parser(
        "forget-unconfirmed",
        help="resubmit what a crashed run submitted but could not confirm",
        description="A run that died between submitting a job and recording its id leaves an "
        "unconfirmed submission. When the provider cannot look jobs up by tag, overnight stops "
        "rather than risk paying twice. After checking the provider's console, forget those "
        "submissions (all, or the given tags/ids) and the next run submits their requests again.",
    )
    forget.add_argument("tags", nargs="*", help="tags or local ids (default: every unconfirmed submission)")
    forget.set_defaults(handler=cmd_forget_unconfirmed)

    lost = sub.add_parser(
        "resubmit-lost",
        help="pay again for requests whose results the provider lost",
        description="When the provider no longer has a finished job's results (its result files "
        "were deleted or expired, or the batch was deleted), overnight keeps the results it had "
        "collected and leaves the other requests pending, since they were paid for once. This "
        "command gives them back to the pipeline (every lost job, or the given ones): the next run "
        "of its script submits them again.",
    )
    lost.add_argument("jobs", nargs="*", help="local ids, tags or remote ids (default: every lost job)")
    lost.set_defaults(handler=cmd_resubmit_lost)
    adopt = sub.add_parser(
        "adopt",
        help="find paid work at the provider that this store does not know (lost cache, other machine)",
        description="List the provider's recent overnight jobs and the request ids they hold into the "
        "store, so the next run of a pipeline adopts the jobs that hold its requests instead of paying "
        "again. Runs do this by themselves when a step has requests no job holds; use this after a "
        "lost or deleted cache directory, a move to another machine, or once running jobs that could "
        "not be read have ended. Credentials and base URL come from the environment (e.g. "
        "OPENAI_API_KEY, OPENAI_BASE_URL).",
    )
    adopt.add_argument("provider", help="the provider name, e.g. openai, anthropic, mistral")
    adopt.add_argument("--hours", type=float, default=7 * 24.0,
                       help="how far back to look, in hours (default 168: seven days)")
    adopt.set_defaults(handler=cmd_adopt)

    plugins = sub.add_parser("plugins", help="installed provider plugins, their limits, and load failures")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(handler=cmd_plugins)

    sandbox = sub.add_parser("sandbox", help="the local emulator of the providers' batch APIs")
    sandbox_sub = sandbox.add_subparsers(title="sandbox commands", metavar="COMMAND")
    serve = sandbox_sub.add_parser("serve", help="serve the emulator over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--state-dir", help="where the emulator keeps its state (default: <cache dir>/sandbox)")
    serve.add_argument("--speed", type=float, default=1.0, help="how much faster than real time jobs progress")
    serve.add_argument("--max-enqueued-tokens", type=int, metavar="N",
                       help="an account's queue limit: prompt tokens of unfinished jobs (per model for OpenAI)")
    serve.add_argument("--max-queued-requests", type=int, metavar="N",
                       help="an account's queue limit: requests of unfinished jobs")
    serve.add_argument("--access-log", action="store_true", help="log each HTTP request (to stderr)")
    serve.set_defaults(handler=cmd_sandbox_serve)
    sandbox_url = argparse.ArgumentParser(add_help=False)
    sandbox_url.add_argument("--url", default=os.environ.get("OVERNIGHT_SANDBOX_URL", "http://127.0.0.1:8080"),
                             help="the running sandbox (default: $OVERNIGHT_SANDBOX_URL, else http://127.0.0.1:8080)")
    advance = sandbox_sub.add_parser("advance", parents=[sandbox_url],
                                     help="move a running sandbox's clock forward; its jobs progress with it")
    advance.add_argument("seconds", type=float, metavar="SECONDS")
    advance.set_defaults(handler=cmd_sandbox_advance)
    sb_status = sandbox_sub.add_parser("status", parents=[sandbox_url],
                                       help="a running sandbox's clock, jobs and counters")
    sb_status.add_argument("--json", action="store_true", help="print JSON")
    sb_status.set_defaults(handler=cmd_sandbox_status)
    sandbox.set_defaults(handler=lambda args: _usage(sandbox))

    quickstart = sub.add_parser("quickstart", help="try overnight end to end with no API key", add_help=False)
    quickstart.add_argument("quickstart_args", nargs=argparse.REMAINDER)
    quickstart.set_defaults(handler=cmd_quickstart)
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


# --- run --------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    budget = getattr(args, "budget_usd", None)
    if budget is None:
        return _run_script(args)
    if not budget >= 0:
        print(f"overnight: error: --budget-usd must be >= 0, got {budget}", file=sys.stderr)
        return EXIT_USAGE
    saved = os.environ.get("OVERNIGHT_BUDGET_USD")
    os.environ["OVERNIGHT_BUDGET_USD"] = repr(budget)  # read by Pipeline.run in the script
    try:
        return _run_script(args)
    finally:
        if saved is None:
            os.environ.pop("OVERNIGHT_BUDGET_USD", None)
        else:
            os.environ["OVERNIGHT_BUDGET_USD"] = saved


def cmd_estimate(args: argparse.Namespace) -> int:
    from overnight.money import estimating

    started = time.monotonic()
    with estimating() as estimates:
        try:
            if args.script == "quickstart" and not Path(args.script).exists():
                from overnight.quickstart import quickstart

                status = _call(quickstart, list(args.script_args))
            else:
                status = _run_script(args)
        except NotFinished:
            status = EXIT_OK  # planned, not submitted: what an estimate expects
    if status not in (EXIT_OK, EXIT_PENDING):
        return status
    if not estimates.steps:
        print("overnight: error: the script ran no batch step (nothing to estimate)", file=sys.stderr)
        return EXIT_ERROR
    data = {"steps": [s.to_dict() for s in estimates.steps], "total": estimates.total(),
            "seconds": round(time.monotonic() - started, 3)}
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    from overnight.money import usd

    rows = [
        [s.step, f"{s.provider}/{s.model}", f"{s.requests:,}", f"{s.input_tokens:,}",
         f"{s.expected_output_tokens:,}", f"{s.max_output_tokens:,}", usd(s.cost_usd) if s.cost_usd is not None
         else "-", usd(s.max_cost_usd) if s.max_cost_usd is not None else "-",
         usd(s.online_cost_usd) if s.online_cost_usd is not None else "-", usd(s.billed_usd)]
        for s in estimates.steps
    ]
    t = estimates.total()
    rows.append(["total", "", f"{t['requests']:,}", f"{t['input_tokens']:,}", f"{t['expected_output_tokens']:,}",
                 f"{t['max_output_tokens']:,}", usd(t["cost_usd"]) if t["cost_usd"] is not None else "-",
                 usd(t["max_cost_usd"]) if t["max_cost_usd"] is not None else "-",
                 usd(t["online_cost_usd"]) if t["online_cost_usd"] is not None else "-", usd(t["billed_usd"])])
    print(_table(rows, ["STEP", "MODEL", "REQUESTS", "INPUT TOKENS", "EXPECTED OUTPUT", "MAX OUTPUT",
                        "COST_USD", "MAX_COST_USD", "ONLINE", "BILLED"]))
    for s in estimates.steps:
        print(f"  {s.step}: expected output from {s.expected_output_from}; prices from {s.prices_from}"
              + (f"; {s.collected:,} request(s) already collected" if s.collected else ""))
    print("Nothing was submitted. Input tokens are estimated (see overnight.tokens: within ~15% of "
          "OpenAI's tokenizer on common text; at most the UTF-8 bytes).")
    return EXIT_OK


def _run_script(args: argparse.Namespace) -> int:
    script = Path(args.script)
    if not script.is_file():
        print(f"overnight: error: no such script: {script}", file=sys.stderr)
        return EXIT_ERROR
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    saved_retry = os.environ.get(RETRY_FAILED_ENV)
    if getattr(args, "retry_failed", False):  # through the environment, like --cache-dir: Pipeline.run reads it
        os.environ[RETRY_FAILED_ENV] = "1"
    restore_display = _set_display(args)
    sys.argv = [str(script), *args.script_args]
    sys.path.insert(0, str(script.resolve().parent))  # as `python script.py` would
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        return _exit_status(exc.code)
    except (NotFinished, OvernightError, KeyboardInterrupt):
        raise  # main() reports these without a traceback
    except Exception:
        traceback.print_exc()
        return EXIT_ERROR
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
        if saved_retry is None:
            os.environ.pop(RETRY_FAILED_ENV, None)
        else:
            os.environ[RETRY_FAILED_ENV] = saved_retry
        restore_display()
    return EXIT_OK


def _set_display(args: argparse.Namespace) -> Callable[[], None]:
    """``--quiet`` / ``--verbose``: the progress display (overnight/progress.py) and log level."""
    import logging

    from overnight.progress import MODE_ENV

    chosen = "quiet" if getattr(args, "quiet", False) else "verbose" if getattr(args, "verbose", False) else None
    if chosen is None:
        return lambda: None
    saved, logger = os.environ.get(MODE_ENV), logging.getLogger("overnight")
    level = logger.level
    os.environ[MODE_ENV] = chosen
    if chosen == "verbose":
        logger.setLevel(logging.DEBUG)

    def restore() -> None:
        logger.setLevel(level)
        if saved is None:
            os.environ.pop(MODE_ENV, None)
        else:
            os.environ[MODE_ENV] = saved

    return restore


def _exit_status(code: Any) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_ERROR


# --- status and jobs --------------------------------------------------------------------


def _open_store(*, readonly: bool = False) -> Any:
    from overnight.store import Store

    return Store.open_readonly() if readonly else Store.open()


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _age(timestamp: Any) -> str:
    return _span(time.time() - timestamp) if isinstance(timestamp, (int, float)) else "-"


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells)


def _job_json(job: Any) -> dict[str, Any]:
    out = attrs.asdict(job, recurse=False)
    out["state"] = job.state.value
    out["ref"] = attrs.asdict(job.ref) if job.ref is not None else None
    return out


def _job_rows(jobs: list[Any]) -> list[list[Any]]:
    return [
        [j.id, j.run_id or "-", j.host, j.provider, j.remote_id or "(unconfirmed)", j.step, j.state,
         j.requests, j.completed, j.failed, _age(j.created_at)]
        for j in jobs
    ]


_JOB_HEADER = ["ID", "RUN", "HOST", "PROVIDER", "REMOTE ID", "STEP", "STATE", "REQUESTS", "COMPLETED", "FAILED", "AGE"]


def cmd_status(args: argparse.Namespace) -> int:
    store = _open_store(readonly=True)  # only reads: works on a read-only or full home
    try:
        runs = store.list_runs(limit=args.limit)
        jobs = store.list_jobs(active_only=True)
        lost = store.lost_jobs()
        money = store.money_totals()
    finally:
        store.close()
    if args.json:
        data = {"cache_dir": str(store.cache_dir), "store": store.location, "runs": runs, "open_jobs": [_job_json(j) for j in jobs],
                "lost_jobs": [_job_json(j) for j in lost],
                "money": money}
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(f"State store: {store.location}")
    if not runs:
        print("No runs yet. Start one with `overnight run SCRIPT`.")
    else:
        print(f"\nRuns (latest {len(runs)}):")
        rows = [
            [
                r.get("id"),
                r.get("pipeline"),
                r.get("host"),
                r.get("state"),
                _age(r.get("started_at")) + " ago",
                _duration(r.get("started_at"), r.get("finished_at")),
                f"{r.get('jobs_submitted', 0)} job(s), {r.get('requests_submitted', 0)} requests",
            ]
            for r in runs
        ]
        print(_table(rows, ["RUN", "PIPELINE", "HOST", "STATE", "STARTED", "TOOK", "SUBMITTED"]))
    if jobs:
        print(f"\nBatch jobs still open ({len(jobs)}):")
        print(_table(_job_rows(jobs), _JOB_HEADER))
        print("\nRun the pipeline's script again to check these jobs and collect their results.")
    elif runs:
        print("\nNo batch job is open.")
    if lost:
        print(f"\nJobs whose results the provider lost ({len(lost)}):")
        rows = [[j.id, j.provider, j.remote_id, j.step, j.lost, j.message or "-"] for j in lost]
        print(_table(rows, ["ID", "PROVIDER", "REMOTE ID", "STEP", "WITHOUT RESULT", "WHY"]))
        print("\nTheir other results are kept. The requests without a result were paid for once: "
              "`overnight resubmit-lost` (or Pipeline.run(resubmit_lost=True)) submits them again.")
    if money["requests"]:
        from overnight.money import usd

        unpriced = f" ({money['unpriced']:,} without a known price)" if money["unpriced"] else ""
        print(f"\nBilled: {money['requests']:,} requests collected, cost {usd(money['cost_usd'])} at batch prices, "
              f"{usd(money['saved_usd'])} saved against online{unpriced}.")
    return EXIT_OK


def _duration(start: Any, end: Any) -> str:
    if not isinstance(start, (int, float)) or not isinstance(end, (int, float)):
        return "-"
    seconds = max(0.0, end - start)
    return f"{seconds:.1f}s" if seconds < 60 else _span(seconds)


def cmd_jobs(args: argparse.Namespace) -> int:
    store = _open_store(readonly=True)
    try:
        jobs = store.list_jobs(active_only=not args.all)
    finally:
        store.close()
    if args.json:
        print(json.dumps([_job_json(j) for j in jobs], indent=2))
        return EXIT_OK
    if not jobs:
        print("No batch jobs." if args.all else "No open batch jobs (use --all to list every job).")
        return EXIT_OK
    print(_table(_job_rows(jobs), _JOB_HEADER))
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    from overnight.plugins import get_registry

    store = _open_store()
    try:
        job = store.get_job(args.job)
    finally:
        store.close()
    if job is None:
        print(
            f"overnight: error: no job {args.job!r} in the state store {store.location}; "
            "list them with `overnight jobs --all`",
            file=sys.stderr,
        )
        return EXIT_ERROR
    ref = job.ref
    label = f"{job.provider} job {job.remote_id or job.tag}"
    if ref is None:
        print(
            f"overnight: error: {label} was never confirmed by the provider, so there is no remote job "
            "to cancel. Check the provider's console.",
            file=sys.stderr,
        )
        return EXIT_ERROR
    if job.state in _TERMINAL:
        print(f"{label} is already {job.state}; nothing to cancel.")
        return EXIT_OK
    provider = get_registry().provider(ref.provider)
    provider.connect({})  # the environment's credentials, as the hooks get them in a run
    try:
        provider_call(f"cancelling the {label}", lambda: provider.cancel(ref, options={}),
                      env=provider.info.secret_env,
                      then=f"The job may still be running; run `overnight cancel {args.job}` again.")
    except ResultsGone as exc:
        print(
            f"overnight: error: the {label} is gone at the provider ({exc}); there is nothing left to "
            "cancel. Run the pipeline's script again: results already collected are kept, and the "
            "requests without a result are listed by `overnight status`.",
            file=sys.stderr,
        )
        return EXIT_ERROR
    print(
        f"Cancellation requested for {label} (step {job.step!r}, {job.requests} requests).\n"
        "Results it finished are still collected the next time the pipeline runs; "
        "requests it did not finish are resubmitted then."
    )
    return EXIT_OK


def provider_call(action: str, call: Callable[[], Any], *, env: Sequence[str] = (), then: str = "") -> Any:
    """Run one provider call for a command; a failure is an OvernightError saying what failed.

    The command then prints ``overnight: error: ...`` (exit 1) instead of the SDK's
    traceback. :class:`ResultsGone` and overnight's own errors pass through unchanged.
    Credentials and base URLs come from the environment, so the message says so.
    """
    from overnight.errors import ProviderError

    try:
        return call()
    except OvernightError:
        raise
    except Exception as exc:
        where = f" ({', '.join(env)} and the base URL variable)" if env else ""
        raise ProviderError(
            f"{action} failed ({type(exc).__name__}: {exc}). Check that the provider is reachable and "
            f"that the environment holds the credentials and base URL the pipeline used{where}. {then}".rstrip()
        ) from None


def cmd_resubmit_lost(args: argparse.Namespace) -> int:
    """Consent to pay again for the requests of jobs whose results the provider lost."""
    store = _open_store()
    try:
        lost = store.lost_jobs()
        if args.jobs:
            wanted = set(args.jobs)
            lost = [j for j in lost if wanted & {str(j.id), j.tag, j.remote_id}]
        if not lost:
            print("No job with lost results" + (f" matching {' '.join(args.jobs)}" if args.jobs else "") + ".")
            return EXIT_ERROR if args.jobs else EXIT_OK
        released = store.release_lost([j.id for j in lost])
        for job in lost:
            print(f"{job.provider} job {job.remote_id} (step {job.step!r}): "
                  f"{job.lost} request(s) without a result will be submitted again.")
    finally:
        store.close()
    print(f"The next run of the pipeline's script submits these {released} request(s) (paid for again); "
          "the results already collected are kept.")
    return EXIT_OK


def cmd_forget_unconfirmed(args: argparse.Namespace) -> int:
    """Give up on submissions a crashed run could not confirm, so the next run resubmits them."""
    from overnight.store import JobPhase

    store = _open_store()
    try:
        intents = [j for j in store.list_jobs(active_only=True, limit=100_000) if j.state is JobPhase.INTENT]
        if args.tags:
            intents = [j for j in intents if j.tag in args.tags or str(j.id) in args.tags]
        if not intents:
            print("No unconfirmed submissions" + (f" matching {' '.join(args.tags)}" if args.tags else "") + ".")
            return EXIT_OK if not args.tags else EXIT_ERROR
        for job in intents:
            store.abandon_intent(job.id)
            print(f"Forgot the unconfirmed {job.provider} submission {job.tag} "
                  f"(step {job.step!r}, {job.requests} requests).")
    finally:
        store.close()
    print("The next run submits these requests again. If the provider did create such a job, "
          "cancel it in its console, or it is paid twice.")
    return EXIT_OK


def cmd_adopt(args: argparse.Namespace) -> int:
    """List the provider's overnight jobs into the store; the next run adopts those it needs."""
    from overnight.errors import ConfigurationError, ProviderError
    from overnight.executor import BatchExecutor
    from overnight.plugins import get_registry

    provider = get_registry().provider(args.provider)
    if not provider.info.capabilities.list_jobs:
        raise ConfigurationError(
            f"the {provider.name} plugin cannot list its jobs (no list_jobs capability), so paid work "
            "cannot be recovered from the provider; check the provider's console."
        )
    provider.connect({})  # the environment's credentials, as the hooks get them in a run
    store = _open_store()
    try:
        try:
            listed = BatchExecutor.import_remote_jobs(store, provider, {}, args.hours * 3600.0)
        except OvernightError:
            raise
        except Exception as exc:
            raise ProviderError(
                f"listing the {provider.name} jobs failed ({type(exc).__name__}: {exc}). Nothing was "
                "changed; run `overnight adopt` again."
            ) from exc
    finally:
        store.close()
    readable = [j for j in listed if j.custom_ids is not None]
    print(
        f"Found {len(listed)} overnight {provider.name} job(s) of the last {args.hours:g} h; "
        f"{len(readable)} with readable request ids "
        f"({sum(len(j.custom_ids or ()) for j in readable)} requests) are recorded in {store.location}.\n"
        "The next run of a pipeline adopts the jobs that hold its requests instead of paying again."
    )
    return EXIT_OK


# --- plugins ----------------------------------------------------------------------------


def _plugins_data() -> dict[str, Any]:
    from overnight.plugins import get_registry

    registry = get_registry()

    def provider(info: Any) -> dict[str, Any]:
        return {
            "name": info.name,
            "description": info.description,
            "limits": attrs.asdict(info.limits),
            "capabilities": attrs.asdict(info.capabilities),
            "extra_params": sorted(info.extra_params),
            "unsupported_params": sorted(info.unsupported_params),
            "models": [attrs.asdict(m) for m in info.models],
            "queue": attrs.asdict(info.queue),
            "batch_discount": info.batch_discount,
        }

    return {
        "plugins": [
            {
                "name": e.name,
                "package": e.package,
                "version": e.version,
                "providers": [provider(p) for p in e.providers],
            }
            for e in registry.entries
        ],
        "failures": [{"name": f.name, "package": f.package, "error": f.error} for f in registry.failures],
    }


def _size(n: int | None) -> str:
    """Bytes in the unit that reads exactly (providers declare 512 MiB or 200 MB alike)."""
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} B"


def cmd_plugins(args: argparse.Namespace) -> int:
    data = _plugins_data()
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_ERROR if data["failures"] else EXIT_OK
    if not data["plugins"]:
        print("No provider plugin is installed. Install one, e.g. `pip install overnight-openai`.")
    for plugin in data["plugins"]:
        origin = f"{plugin['package']} {plugin['version']}" if plugin["package"] else "registered in-process"
        print(f"{plugin['name']} ({origin})")
        for p in plugin["providers"]:
            limits, caps = p["limits"], p["capabilities"]
            can = [name.replace("_", " ") for name, on in caps.items() if on]
            per_request = f", {_size(limits['max_line_bytes'])} per request" if limits.get("max_line_bytes") else ""
            print(
                f"  provider {p['name']}: up to {limits['max_requests']:,} requests and "
                f"{_size(limits['max_bytes'])} per job{per_request}, "
                f"completion window {_span(limits['completion_window'])}; "
                f"can: {', '.join(can) or 'submit, check and fetch only'}"
            )
            if p.get("models"):
                windows = sorted({m["context_window"] for m in p["models"]})
                print(f"    context windows of {len(p['models'])} model families: {windows[0]:,} to {windows[-1]:,} tokens")
            queue = {k: v for k, v in (p.get("queue") or {}).items() if v is not None}
            if queue:
                print("    queue limits: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in queue.items()))
            if p["extra_params"]:
                print(f"    extra generation options: {', '.join(p['extra_params'])}")
            if p["unsupported_params"]:
                print(f"    unsupported options: {', '.join(p['unsupported_params'])}")
    if data["failures"]:
        print("\nPlugins that failed to load (skipped):")
        for f in data["failures"]:
            print(f"  {f['name']} ({f['package'] or 'unknown package'}): {f['error']}")
        print("Reinstall or upgrade them; the other plugins work meanwhile.")
    return EXIT_ERROR if data["failures"] else EXIT_OK


# --- sandbox and quickstart -------------------------------------------------------------

#: Modules whose absence means "the sandbox extra is not installed" rather than a bug.
_SANDBOX_DEPS = {"starlette", "uvicorn", "multipart", "python_multipart"}


def cmd_sandbox_serve(args: argparse.Namespace) -> int:
    try:
        from overnight.sandbox import serve
    except ImportError as exc:
        missing = exc.name or ""
        if missing == "overnight.sandbox" or missing.split(".")[0] in _SANDBOX_DEPS:
            print(
                f"overnight: error: the sandbox is not installed ({exc}). "
                "Install it with `pip install 'overnight[sandbox]'`.",
                file=sys.stderr,
            )
            return EXIT_ERROR
        raise
    state_dir = args.state_dir
    if state_dir is None:
        from overnight.store import default_cache_dir

        state_dir = default_cache_dir() / "sandbox"
    queue = {name: getattr(args, name) for name in ("max_enqueued_tokens", "max_queued_requests")
             if getattr(args, name) is not None}
    if args.access_log:
        queue["access_log"] = True
    return _call(serve, host=args.host, port=args.port, state_dir=Path(state_dir), speed=args.speed, **queue)


def _sandbox_control(url: str) -> Any:
    from overnight.sandbox.control import SandboxControl

    return SandboxControl(url, timeout=10)


def _unreachable(url: str, exc: Exception) -> int:
    print(f"overnight: error: no sandbox answers at {url} ({exc}). Start one with `overnight sandbox serve`, "
          "or pass --url (or set OVERNIGHT_SANDBOX_URL).", file=sys.stderr)
    return EXIT_ERROR


def cmd_sandbox_advance(args: argparse.Namespace) -> int:
    from overnight.sandbox.control import SandboxControlError

    if not args.seconds >= 0:
        print("overnight: error: SECONDS must be a number >= 0", file=sys.stderr)
        return EXIT_ERROR
    try:
        now = _sandbox_control(args.url).advance(args.seconds)
    except SandboxControlError as exc:
        print(f"overnight: error: the sandbox refused: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        return _unreachable(args.url, exc)
    print(f"sandbox clock advanced {args.seconds:g}s; now t={now:g}s")
    return EXIT_OK


def cmd_sandbox_status(args: argparse.Namespace) -> int:
    control = _sandbox_control(args.url)
    try:
        clock, jobs, counters = control.clock(), control.jobs(), control.counters()
    except RuntimeError as exc:  # SandboxControlError: it answered, but refused
        print(f"overnight: error: the sandbox refused: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        return _unreachable(args.url, exc)
    if args.json:
        print(json.dumps({"url": args.url, "clock": clock, "jobs": jobs, "counters": counters}, indent=2))
        return EXIT_OK
    speed = clock.get("speed")
    print(f"sandbox at {args.url}: t={clock['now']:g}s, clock {'manual' if not speed else f'x{speed:g}'}")
    for provider in sorted(counters):
        mine = [j for j in jobs if j["provider"] == provider]
        phases: dict[str, int] = {}
        for job in mine:
            phases[job["phase"]] = phases.get(job["phase"], 0) + 1
        made = counters[provider]
        detail = ", ".join(f"{n} {phase}" for phase, n in sorted(phases.items())) or "no jobs"
        print(f"  {provider:<9} {detail}; {made.get('jobs', 0)} job(s), {made.get('requests', 0)} request(s) received")
    return EXIT_OK


def cmd_quickstart(args: argparse.Namespace) -> int:
    try:
        from overnight.quickstart import quickstart
    except ImportError as exc:
        if exc.name not in ("overnight.quickstart",):
            raise
        print("overnight: error: this version of overnight has no quickstart.", file=sys.stderr)
        return EXIT_ERROR
    return _call(quickstart, list(args.quickstart_args))


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    result = fn(*args, **kwargs)
    return result if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":  # python -m overnight.cli
    sys.exit(main())
