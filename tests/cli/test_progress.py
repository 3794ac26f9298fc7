"""Progress while a run waits (issue 14, section 2): live on a terminal, plain lines elsewhere."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path


from overnight import polling, progress
from overnight.progress import JobView, PlainLines, Snapshot
from overnight.sandbox import Sandbox

SCRIPT = '''
from overnight import LLM, LoadDataFromDicts, Pipeline, TextGeneration

with Pipeline(name="progress") as pipeline:
    load = LoadDataFromDicts(data=[{"instruction": f"question {i}"} for i in range(4)])
    generate = TextGeneration(llm=LLM("openai/gpt-4o-mini", offline_batch_generation_block_until_done=600,
                                      poll_interval=0.2, generation_kwargs={"max_tokens": 16}))
    load >> generate

if __name__ == "__main__":
    rows = pipeline.run()
    print("ROWS", len(rows))
'''


def snap(**changes) -> Snapshot:
    values = dict(step="generate", provider="openai", jobs=(JobView("batch_1", "in_progress", 0, 4),), total=4,
                  collected=0, failed=0, retried=0, cost_usd=None, started=0.0, eta=None, next_check=5.0)
    values.update(changes)
    return Snapshot(**values)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_at_most_one_per_change_or_minute(capsys):
    clock = Clock()
    lines = PlainLines(clock=clock)
    for seconds in (5, 12, 30, 59):
        clock.now = seconds
        lines.update(snap())
    assert capsys.readouterr().err.count("[overnight] generate: 1 openai job(s) running") == 1
    clock.now = 65
    lines.update(snap())  # a minute since the last line: say it again
    clock.now = 70
    lines.update(snap(jobs=(JobView("batch_1", "in_progress", 2, 4),)))  # a change: at once
    clock.now = 71
    lines.update(snap(jobs=(JobView("batch_1", "in_progress", 2, 4),)))
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "(2/4 processed)" in err and "\x1b[" not in err


def test_plain_line_says_everything():
    line = snap(collected=3, failed=1, retried=2, cost_usd=0.0123, eta=125.0, started=0.0).line(now=65.0)
    assert "1 openai job(s) running (0/4 processed), 3/4 results collected, 1 failed, 2 retried; " \
        "job batch_1 in_progress" in line
    assert "elapsed 1m05s, ETA 2m05s, cost so far $0.0123" in line and "Ctrl+C to stop" in line


def test_verbose_prints_every_check_and_quiet_nothing(capsys, monkeypatch):
    clock = Clock()
    every = PlainLines(every=True, clock=clock)
    every.update(snap())
    every.update(snap())
    assert capsys.readouterr().err.count("\n") == 2
    monkeypatch.setenv(progress.MODE_ENV, "quiet")
    polling.report("submitted openai job batch_1 (4 requests)")
    assert capsys.readouterr().err == ""


def test_mode_follows_the_terminal_and_the_flags(monkeypatch):
    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.delenv(progress.MODE_ENV, raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert progress.mode(Stream(True)) == "live" and progress.mode(Stream(False)) == "plain"
    monkeypatch.setenv("TERM", "dumb")
    assert progress.mode(Stream(True)) == "plain"
    for chosen in ("quiet", "verbose", "plain", "live"):
        monkeypatch.setenv(progress.MODE_ENV, chosen)
        assert progress.mode(Stream(False)) == chosen



def env_for(sandbox: Sandbox, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))
           and k != progress.MODE_ENV}
    env.update(OPENAI_BASE_URL=sandbox.openai_base_url, OPENAI_API_KEY="sk-sandbox", OVERNIGHT_HOME=str(home),
               TERM="xterm-256color", COLUMNS="100", LINES="30", PYTHONUNBUFFERED="1")
    return env


class Terminal:
    """A child process on a pseudo-terminal, as a user's shell would run it."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))

        def controlling_terminal() -> None:  # so that ^C on the terminal is a SIGINT to the run
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env,
                                        preexec_fn=controlling_terminal, close_fds=True)
        os.close(slave)
        self.screen = b""

    def read_until(self, pattern: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout  # waiting for a process, not for sandbox time
        while not re.search(pattern, self.text()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} never appeared; the terminal shows:\n{self.text()}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the child ended and closed the terminal
                    chunk = b""
                if not chunk and self.process.poll() is not None:
                    raise AssertionError(f"{pattern!r} never appeared; the run ended:\n{self.text()}")
                self.screen += chunk
        return self.text()

    def text(self) -> str:
        return self.screen.decode("utf-8", "replace")

    def press_ctrl_c(self) -> None:
        os.write(self.master, b"\x03")

    def finish(self, timeout: float = 60) -> int:
        try:
            try:
                code = self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise
            while True:
                ready, _, _ = select.select([self.master], [], [], 0.2)
                if not ready:
                    break
                chunk = os.read(self.master, 65536)
                if not chunk:
                    break
                self.screen += chunk
        except OSError:
            code = self.process.wait(timeout=timeout)
        finally:
            os.close(self.master)
        return code


def test_a_terminal_gets_a_live_display(sandbox, tmp_path):
    script = tmp_path / "progress_script.py"
    script.write_text(SCRIPT)
    term = Terminal([sys.executable, "-m", "overnight.cli", "run", str(script)], env_for(sandbox, tmp_path / "home"))
    try:
        shown = term.read_until(r"batch_\w+.*(validating|in_progress)")
        assert "\x1b[" in shown  # drawn in place, with the terminal's escape codes
        assert re.search(r"text_generation_0\S*\s+openai batch\s+·\s+elapsed \d+s\s+·\s+ETA unknown", shown), shown
        assert "requests: 0/4 processed in open jobs, 0/4 collected, 0 failed, 0 retried" in shown
        sandbox.advance(3600)
        term.read_until(r"ROWS 4")
    finally:
        code = term.finish(timeout=30)
    assert code == 0, term.text()
    assert "Traceback" not in term.text()
    (tmp_path / "screen.txt").write_bytes(term.screen)


def test_ctrl_c_on_the_terminal_stops_the_wait(sandbox, tmp_path):
    script = tmp_path / "progress_script.py"
    script.write_text(SCRIPT)
    term = Terminal([sys.executable, "-m", "overnight.cli", "run", str(script)], env_for(sandbox, tmp_path / "home"))
    try:
        term.read_until(r"batch_\w+")
        term.press_ctrl_c()
        term.read_until(r"stopping after the current check")
    finally:
        code = term.finish()
    assert code == 75, term.text()
    assert "polling stopped by the user" in term.text() and "Traceback" not in term.text()


def test_not_a_terminal_gets_plain_lines(sandbox, tmp_path):
    script = tmp_path / "progress_script.py"
    script.write_text(SCRIPT.replace("block_until_done=600", "block_until_done=3.0"))
    env = env_for(sandbox, tmp_path / "home")
    done = subprocess.run([sys.executable, "-m", "overnight.cli", "run", str(script)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 75, done.stderr
    assert "\x1b[" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "job(s) running" in line]
    # A check every 0.2-0.7 s for 3 s (long enough for a loaded machine to reach the first): a line for the first state and for the job's move to
    # "validating", none for the checks that saw nothing change.
    assert 1 <= len(lines) <= 2, done.stderr
    assert "0/4 results collected, 0 failed, 0 retried; job batch_" in lines[-1] and "validating" in lines[-1]
    verbose = subprocess.run([sys.executable, "-m", "overnight.cli", "run", "--verbose", str(script)], env=env,
                             capture_output=True, text=True, timeout=120)
    assert len([line for line in verbose.stderr.splitlines() if "job(s) running" in line]) > len(lines), verbose.stderr
    quiet = subprocess.run([sys.executable, "-m", "overnight.cli", "run", "--quiet", str(script)], env=env,
                           capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 75 and "job(s) running" not in quiet.stderr and "submitted" not in quiet.stderr
    assert "is not finished" in quiet.stderr  # what the user must know still shows


def test_a_second_ctrl_c_aborts_a_hung_check_at_once(sandbox, tmp_path):
    script = tmp_path / "progress_script.py"
    script.write_text(SCRIPT)
    term = Terminal([sys.executable, "-m", "overnight.cli", "run", str(script)], env_for(sandbox, tmp_path / "home"))
    try:
        term.read_until(r"batch_\w+")
        fault = sandbox.set_faults(provider="openai", http_method="GET", http_path=r"/batches/[^/]+$",
                                   http_delay=60.0, times=1)
        deadline = time.monotonic() + 30
        while next(f for f in sandbox.faults() if f["id"] == fault)["remaining"]:  # the next check is hanging
            assert time.monotonic() < deadline, term.text()
            select.select([], [], [], 0.05)
        term.press_ctrl_c()
        term.read_until(r"stopping after the current check")
        started = time.monotonic()
        term.press_ctrl_c()
        code = term.finish(timeout=30)
    finally:
        if term.process.poll() is None:
            term.process.kill()
    assert time.monotonic() - started < 15  # not the 60 s the provider would have taken
    assert code == 130 and "interrupted" in term.text(), term.text()
