"""A fork server for ``overnight run``: one warm process that forks a fresh child per run.

Starting ``python -m overnight.cli run`` costs 0.5-1.5 s of imports (mostly the
providers' SDKs) for ~0.1 s of work, and the reliability suite makes ~200 runs. This
process imports overnight, the three plugins and their SDKs once, then serves requests
on stdin, one JSON object per line, answering on stdout:

* ``{"op": "start", "argv": [...], "env": {...}, "cwd": "...", "stdout": path, "stderr": path}``
  forks a child that replaces its environment by ``env`` exactly, moves to ``cwd``,
  sends its stdout/stderr to the two files and runs ``overnight.cli.main(argv)`` (what
  ``python -m overnight.cli`` runs), then ``os._exit`` with its status. Answer: ``{"pid": N}``.
* ``{"op": "wait", "pid": N}`` reaps the child; answer: ``{"status": S}`` with S the exit
  status, or minus the signal number that killed it (-9 for SIGKILL), as subprocess says it.

Each child is a real OS process with its own memory, SQLite connections and file
descriptors; SIGKILL (from a fault point) kills it like any process. The server has no
threads, so forking it is safe. ``RELIABILITY_RUNNER=exec`` makes the suite use real
``python -m overnight.cli`` subprocesses instead (same tests, slower).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback

PRELOAD = (
    "overnight",
    "overnight.cli",
    "overnight.pipeline",
    "overnight.executor",
    "overnight.store",
    "overnight.dataset",
    "overnight.sandbox.control",
    "overnight_openai",
    "overnight_anthropic",
    "overnight_mistral",
    "overnight_mistral.plugin",
    "openai",
    "anthropic",
    "mistralai.client",
    "overnight_gemini",
    "overnight_gemini.plugin",
    "google.genai",
    "together",
)


def _child(request: dict) -> None:
    code = 1
    try:
        for fd, path, flags in (
            (0, os.devnull, os.O_RDONLY),
            (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ):
            opened = os.open(path, flags, 0o644)
            os.dup2(opened, fd)
            os.close(opened)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = ["overnight", *request["argv"]]
        from overnight import cli

        code = cli.main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - report anything, like the interpreter would
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


def main() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    control = sys.stdout
    control.write(json.dumps({"ready": True}) + "\n")
    control.flush()
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "start":
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(request)
            answer = {"pid": pid}
        elif request["op"] == "wait":
            _, status = os.waitpid(request["pid"], 0)
            answer = {"status": os.waitstatus_to_exitcode(status)}
        else:
            answer = {"error": f"unknown op {request['op']!r}"}
        control.write(json.dumps(answer) + "\n")
        control.flush()


if __name__ == "__main__":
    main()
