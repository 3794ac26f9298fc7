"""The reliability suite's harness: runs of ``overnight run`` in child processes, and lanes.

A :class:`Lane` is one scenario's world: a provider, a sandbox (driven only through its
HTTP control API, :class:`~overnight.sandbox.SandboxControl`), an ``OVERNIGHT_HOME``, an
input file of rows, and the history of every run with its captured stdout and stderr.
Its assertions read the truth from outside the pipeline: the sandbox's own job list
and counters, the output file, and the SQLite store.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping

from attrs import frozen

from overnight.sandbox import SandboxControl, expected_reply

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "pipeline_script.py"
FORKSERVER = HERE / "forkserver.py"

PROVIDERS = ("openai", "anthropic", "mistral", "gemini")
#: Sandbox seconds after which every normal job has ended (they take ~40 s).
DONE = 3600.0
#: Past every provider's completion window (24 h; Gemini's 48 h): stuck jobs have expired.
PAST_WINDOW = 49 * 3600.0
#: Rows per lane: more than one fetch batch (16), small enough to stay fast.
ROWS = 34
#: Results the executor commits before the ``mid_fetch`` fault point.
FIRST_FETCH_BATCH = 16
RUN_TIMEOUT = 90.0

KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "mistral": "MISTRAL_API_KEY",
           "gemini": "GEMINI_API_KEY", "groq": "GROQ_API_KEY", "together": "TOGETHER_API_KEY",
           "deepinfra": "DEEPINFRA_TOKEN", "nebius": "NEBIUS_API_KEY"}
URL_ENV = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL", "mistral": "MISTRAL_BASE_URL",
           "gemini": "GEMINI_BASE_URL", "groq": "GROQ_BASE_URL", "together": "TOGETHER_BASE_URL",
           "deepinfra": "DEEPINFRA_BASE_URL", "nebius": "NEBIUS_BASE_URL"}
#: The OpenAI-compatible vendors: the crash matrix and the provider-fault rows run them.
VENDORS = ("groq", "together", "deepinfra", "nebius")
#: Client options that make a provider deliver results as a file to download (Gemini
#: returns a small job's results inline, in the job itself: nothing to cut short).
RESULT_FILES: dict[str, dict[str, Any]] = {"gemini": {"inline_threshold": 0}}


# --- runs ---------------------------------------------------------------------------------


@frozen
class RunResult:
    """One finished run: its exit status (minus the signal number if killed) and output."""

    status: int
    stdout: str
    stderr: str
    label: str = ""

    @property
    def killed(self) -> bool:
        return self.status == -signal.SIGKILL

    def describe(self) -> str:
        return f"run {self.label}: status {self.status}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"

    def assert_clear_error(self, *needles: str) -> None:
        """Exit 1 with overnight's own one-paragraph error, never a traceback."""
        assert self.status == 1, self.describe()
        assert "Traceback" not in self.stderr, self.describe()
        assert "overnight: error:" in self.stderr, self.describe()
        for needle in needles:
            assert needle in self.stderr, f"{needle!r} not in the error\n{self.describe()}"


class Handle:
    """A run that was started and not yet waited for."""

    def __init__(self, runner: "Runner", pid: int, stdout: Path, stderr: Path, label: str, popen: Any = None) -> None:
        self.runner, self.pid, self.stdout, self.stderr, self.label, self.popen = runner, pid, stdout, stderr, label, popen

    def wait(self, timeout: float = RUN_TIMEOUT) -> RunResult:
        status = self.runner._wait(self, timeout)
        return RunResult(status, self.stdout.read_text(errors="replace"), self.stderr.read_text(errors="replace"), self.label)


class Runner:
    """Starts ``overnight run ...`` (i.e. ``overnight.cli.main(argv)``) in a fresh child process."""

    name = "?"

    def start(self, argv: list[str], env: Mapping[str, str], cwd: Path, stdout: Path, stderr: Path,
              label: str = "") -> Handle:
        raise NotImplementedError

    def _wait(self, handle: Handle, timeout: float) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ExecRunner(Runner):
    """``python -m overnight.cli ARGV``: a new interpreter per run."""

    name = "exec"

    def start(self, argv, env, cwd, stdout, stderr, label=""):
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            popen = subprocess.Popen(
                [sys.executable, "-m", "overnight.cli", *argv], env=dict(env), cwd=cwd,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            )
        return Handle(self, popen.pid, stdout, stderr, label, popen)

    def _wait(self, handle, timeout):
        try:
            return handle.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            handle.popen.kill()
            handle.popen.wait()
            raise AssertionError(f"run {handle.label} did not end within {timeout}s") from None


class ForkRunner(Runner):
    """Children forked from a warm fork server (see forkserver.py): same code path, ~10x faster."""

    name = "fork"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, str(FORKSERVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"},
            text=True, bufsize=1,
        )
        ready = self._proc.stdout.readline()
        if not ready:
            raise RuntimeError("the reliability fork server did not start")

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            answer = json.loads(self._proc.stdout.readline())
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def start(self, argv, env, cwd, stdout, stderr, label=""):
        stdout.touch()
        stderr.touch()
        answer = self._ask({"op": "start", "argv": list(argv), "env": dict(env), "cwd": str(cwd),
                            "stdout": str(stdout), "stderr": str(stderr)})
        return Handle(self, answer["pid"], stdout, stderr, label)

    def _wait(self, handle, timeout):
        pidfd = os.pidfd_open(handle.pid)
        try:
            ready, _, _ = select.select([pidfd], [], [], timeout)
            if not ready:
                os.kill(handle.pid, signal.SIGKILL)
                self._ask({"op": "wait", "pid": handle.pid})
                raise AssertionError(f"run {handle.label} did not end within {timeout}s")
        finally:
            os.close(pidfd)
        return self._ask({"op": "wait", "pid": handle.pid})["status"]

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait(10)


def make_runner(kind: str | None = None) -> Runner:
    kind = kind or os.environ.get("RELIABILITY_RUNNER", "fork")
    if kind == "exec":
        return ExecRunner()
    if kind == "fork":
        return ForkRunner()
    raise ValueError(f"RELIABILITY_RUNNER must be 'fork' or 'exec', not {kind!r}")


# --- lanes ----------------------------------------------------------------------------------


def prompt(i: int) -> str:
    return f"reliability question {i}: what comes after {i * 7}?"


def reply_for(instruction: str, system: str | None = None, sample: int = 0) -> str:
    return expected_reply([{"role": "user", "content": instruction}], system=system, variant=sample)


class Lane:
    """One scenario: a provider, the sandbox, a store, the input rows and every run's output."""

    def __init__(
        self,
        runners: Mapping[str, Runner],
        control: SandboxControl,
        provider: str,
        root: Path,
        *,
        rows: int | list[dict[str, Any]] = ROWS,
        model: str | None = None,
        client_options: Mapping[str, Any] | None = None,
        task: Mapping[str, Any] | None = None,
        generation_kwargs: Mapping[str, Any] | None = None,
        max_requests: int | None = None,
        max_bytes: int | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.runners = runners
        self.control = control
        self.provider = provider
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.home = root / "home"
        self.model = model or f"rel-{provider}-model"
        self.key = f"sk-rel-{provider}-{uuid.uuid4().hex}"
        self.input = root / "rows.jsonl"
        self.output = root / "output.jsonl"
        if isinstance(rows, int):
            rows = [{"id": i, "instruction": prompt(i)} for i in range(rows)]
        self.rows = list(rows)
        with open(self.input, "w", encoding="utf-8") as handle:
            for row in self.rows:
                handle.write(json.dumps(row) + "\n")
        self.client_options = dict(client_options or {})
        self.task = dict(task or {})
        self.generation_kwargs = dict(generation_kwargs or {})
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.extra_env = dict(extra_env or {})
        self.history: list[RunResult] = []
        self._started = 0

    # -- running ---------------------------------------------------------------------------

    def env(self, *, fault: str | None = None, block: float | None = None, **extra: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            "OVERNIGHT_HOME": str(self.home),
            KEY_ENV.get(self.provider, "OVERNIGHT_REL_KEY"): self.key,
            "REL_PROVIDER": self.provider,
            "REL_MODEL": self.model,
            "REL_INPUT": str(self.input),
            "REL_OUTPUT": str(self.output),
            # Resubmit at once what a crash left unconfirmed (tests of the window set it).
            "OVERNIGHT_CREATE_SETTLE_SECONDS": "0",
        }
        if self.provider in URL_ENV:
            env[URL_ENV[self.provider]] = f"{self.control.url}{_PREFIX[self.provider]}"
        if self.client_options:
            env["REL_CLIENT_OPTIONS"] = json.dumps(self.client_options)
        if self.task:
            env["REL_TASK"] = json.dumps(self.task)
        if self.generation_kwargs:
            env["REL_GENERATION_KWARGS"] = json.dumps(self.generation_kwargs)
        if self.max_requests:
            env["REL_MAX_REQUESTS"] = str(self.max_requests)
        if self.max_bytes:
            env["REL_MAX_BYTES"] = str(self.max_bytes)
        if fault:
            env["OVERNIGHT_FAULT_POINT"] = fault
        if block is not None:
            env["REL_BLOCK"] = str(block)
        env.update(self.extra_env)
        env.update(extra)
        return env

    def start(self, *, runner: str | None = None, fault: str | None = None, block: float | None = None,
              run_args: tuple[str, ...] = (), **extra: str) -> Handle:
        """``overnight run [run_args] SCRIPT``; ``extra`` are environment variables."""
        self._started += 1
        number = self._started
        label = f"{self.provider}#{number}" + (f" (fault {fault})" if fault else "")
        chosen = self.runners[runner] if runner else self.runners["default"]
        return chosen.start(["run", *run_args, str(SCRIPT)], self.env(fault=fault, block=block, **extra), self.root,
                            self.root / f"run-{number}.stdout", self.root / f"run-{number}.stderr", label)

    def cli(self, *argv: str, runner: str | None = None, **extra: str) -> RunResult:
        """Another ``overnight`` command (status, jobs, ...) in this lane's environment."""
        self._started += 1
        number = self._started
        chosen = self.runners[runner] if runner else self.runners["default"]
        result = chosen.start(list(argv), self.env(**extra), self.root, self.root / f"run-{number}.stdout",
                              self.root / f"run-{number}.stderr", f"{self.provider}#{number} {' '.join(argv)}").wait()
        self.history.append(result)
        return result

    def run(self, expect: int | None = None, **kwargs: Any) -> RunResult:
        result = self.start(**kwargs).wait()
        self.history.append(result)
        if expect is not None:
            assert result.status == expect, result.describe()
            if expect == 0:
                assert "Traceback" not in result.stderr, result.describe()
            if expect == 75:
                assert "is not finished" in result.stderr and "Traceback" not in result.stderr, result.describe()
        return result

    def wait(self, handle: Handle) -> RunResult:
        result = handle.wait()
        self.history.append(result)
        return result

    def run_until_done(self, max_runs: int = 6, **kwargs: Any) -> list[RunResult]:
        """Run, advancing the clock after each pending run, until a run exits 0.

        Any run that is not done must be pending (75) or a clear error (1, no traceback).
        """
        results = []
        for _ in range(max_runs):
            result = self.run(**kwargs)
            results.append(result)
            if result.status == 0:
                assert "Traceback" not in result.stderr, result.describe()
                return results
            if result.status == 1:
                result.assert_clear_error()
            else:
                assert result.status == 75, result.describe()
            self.advance()
        raise AssertionError(f"not done after {max_runs} runs:\n" + "\n".join(r.describe() for r in results))

    # -- the sandbox -----------------------------------------------------------------------

    def advance(self, seconds: float = DONE) -> None:
        self.control.advance(seconds)

    def fault(self, **fields: Any) -> str:
        """A fault rule for this lane's provider (job faults also select its model)."""
        if not any(k.startswith(("http_", "download_")) for k in fields) and "model" not in fields:
            fields["model"] = self.model
        return self.control.set_faults(provider=self.provider, **fields)

    def remote_jobs(self) -> list[dict[str, Any]]:
        """This lane's jobs as the sandbox knows them (what the provider would bill)."""
        jobs = [j for j in self.control.jobs() if j["provider"] == self.provider and j["model"] == self.model]
        if self.provider == "gemini":  # the API names a job by its resource name, batches/<id>
            jobs = [{**j, "id": f"batches/{j['id']}"} for j in jobs]
        return jobs

    def counters(self) -> dict[str, Any]:
        return self.control.counters()[self.provider]

    def paid_requests(self) -> int:
        return sum(j["total"] for j in self.remote_jobs())

    # -- the results -----------------------------------------------------------------------

    def output_rows(self) -> list[dict[str, Any]]:
        with open(self.output, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def expected(self, row: Mapping[str, Any], sample: int = 0) -> str:
        return reply_for(row["instruction"], self.task.get("system_prompt"), sample)

    def assert_complete(self, *, allow_errors: bool = False) -> list[dict[str, Any]]:
        """Every input row exactly once, in order, each with its own answer (or an explicit error).

        Returns the error rows.
        """
        out = self.output_rows()
        assert [r["id"] for r in out] == [r["id"] for r in self.rows], "rows missing, duplicated or reordered"
        errors = []
        samples = self.task.get("num_generations", 1)
        for row, got in zip(self.rows, out):
            assert got["instruction"] == row["instruction"]
            if samples > 1:
                # Each sample has its own answer: a user sees that every request was answered.
                assert got["generation"] == [self.expected(row, s) for s in range(samples)], f"row {row['id']}: {got}"
                assert got["generation_error"] == [None] * samples
                continue
            if got["generation_error"] is None:
                assert got["generation"] == self.expected(row), f"row {row['id']} got another row's answer"
            else:
                assert got["generation"] is None, got
                errors.append(got)
        if not allow_errors:
            assert errors == [], errors[:3]
        return errors

    # -- the store -------------------------------------------------------------------------

    @property
    def store_path(self) -> Path:
        return self.home / "overnight.sqlite"

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        db = sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True)
        try:
            return db.execute(sql, tuple(params)).fetchall()
        finally:
            db.close()

    def assert_store_ok(self) -> None:
        assert self.query("PRAGMA integrity_check") == [("ok",)]
        # Every job a run recorded is known to the provider, once; none is left unconfirmed.
        remote = {j["id"] for j in self.remote_jobs()}
        local = self.query("SELECT remote_id, state FROM jobs")
        ids = [r for r, _ in local if r]
        assert len(ids) == len(set(ids)), "a remote job recorded twice"
        assert set(ids) <= remote, "the store records a job the provider does not have"
        assert all(state != "intent" for _, state in local), f"unconfirmed intents left: {local}"
        # No request is left waiting in a job: each one has its result (or its final error).
        assert set(self.request_states()) <= {"done", "failed"}, self.request_states()

    def request_states(self) -> dict[str, int]:
        return dict(self.query("SELECT state, COUNT(*) FROM requests GROUP BY state"))

    def logs(self) -> str:
        return "\n".join(r.stdout + "\n" + r.stderr for r in self.history)


_PREFIX = {"openai": "/openai/v1", "anthropic": "/anthropic", "mistral": "/mistral", "gemini": "/gemini",
           "groq": "/groq/openai/v1", "together": "/together", "deepinfra": "/deepinfra/v1/openai",
           "nebius": "/nebius/v1"}


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    """Wait for another process to reach a state (not for time to pass)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
