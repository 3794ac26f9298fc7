"""What a waiting run shows: a live display on a terminal, plain lines elsewhere.

While a batch step polls (``offline_batch_generation_block_until_done``), each check
produces a :class:`Snapshot`: the step's open jobs with their provider ids and states,
requests processed of total, results collected, failed and retried, elapsed time, an
ETA and the cost so far. How it is shown depends on ``OVERNIGHT_PROGRESS`` (set by
``overnight run --quiet`` / ``--verbose``):

* ``auto`` (default): ``live`` when stderr is a terminal, else ``plain``;
* ``live``: a display redrawn in place (``rich``), its clock ticking between checks;
* ``plain``: one line per check, at most one per change of state or per minute (cron, CI, logs);
* ``verbose``: one line per check, every check;
* ``quiet``: nothing while waiting (errors and the run's last lines are still shown).

Everything goes to stderr, so a script's own output on stdout stays clean.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, TextIO

from attrs import frozen

if TYPE_CHECKING:
    from overnight.store import JobRecord

__all__ = ["MODE_ENV", "JobView", "Snapshot", "mode", "showing", "snapshot", "event"]

MODE_ENV = "OVERNIGHT_PROGRESS"
MODES = ("auto", "live", "plain", "verbose", "quiet")
#: A plain line repeats an unchanged state at most this often (seconds).
QUIET_PERIOD = 60.0
#: The plan's counts are read again once this many times as long as reading them took has
#: passed: showing progress costs at most a tenth of the wait.
RECOUNT = 10.0
#: Jobs listed in the live display; the rest are counted.
SHOWN_JOBS = 12


@frozen
class JobView:
    remote_id: str
    state: str
    processed: int
    requests: int


@frozen
class Snapshot:
    """One check of one batch step."""

    step: str
    provider: str
    jobs: tuple[JobView, ...]
    total: int
    collected: int
    failed: int
    retried: int
    cost_usd: float | None
    started: float  # time.monotonic() when the step began waiting
    eta: float | None  # seconds, None while there is no rate to go by
    next_check: float
    #: "batch", or "online" while a step sends its requests through the online API.
    mode: str = "batch"
    #: Online requests in flight.
    in_flight: int = 0

    @property
    def processed(self) -> int:
        return sum(j.processed for j in self.jobs)

    @property
    def in_jobs(self) -> int:
        return sum(j.requests for j in self.jobs)

    def states(self) -> str:
        """The jobs' provider states: ``job batch_1 in_progress``, or ``jobs: 3 in_progress, 1 finalizing``."""
        if len(self.jobs) == 1:
            return f"job {self.jobs[0].remote_id} {self.jobs[0].state}"
        counts: dict[str, int] = {}
        for job in self.jobs:
            counts[job.state] = counts.get(job.state, 0) + 1
        return "jobs: " + (", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none")

    def key(self) -> Any:
        """What counts as a change of state for plain lines."""
        if self.mode == "online":  # answers arrive all the time: a line per 5% of the step
            return ("online", 20 * (self.collected + self.failed) // max(self.total, 1))
        return (tuple((j.remote_id, j.state, j.processed) for j in self.jobs), self.collected, self.failed)

    def line(self, now: float | None = None) -> str:
        elapsed = (time.monotonic() if now is None else now) - self.started
        if self.mode == "online":
            text = (
                f"{self.step}: online through {self.provider}, {self.in_flight} in flight, {self.collected}/"
                f"{self.total} results collected, {self.failed} failed, {self.retried} retried; elapsed "
                f"{duration(elapsed)}, ETA {duration(self.eta)}"
            )
            if self.cost_usd is not None:
                from overnight.money import usd

                text += f", cost so far {usd(self.cost_usd)}"
            return text + " (Ctrl+C to stop)"
        text = (
            f"{self.step}: {len(self.jobs)} {self.provider} job(s) running ({self.processed}/{self.in_jobs} "
            f"processed), {self.collected}/{self.total} results collected, {self.failed} failed, "
            f"{self.retried} retried; {self.states()}; elapsed {duration(elapsed)}, ETA {duration(self.eta)}"
        )
        if self.cost_usd is not None:
            from overnight.money import usd

            text += f", cost so far {usd(self.cost_usd)}"
        return text + f"; next check in {self.next_check:.3g}s (Ctrl+C to stop)"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def mode(stream: TextIO | None = None) -> str:
    """The display mode: ``OVERNIGHT_PROGRESS``, with ``auto`` resolved against ``stream`` (stderr)."""
    chosen = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    if chosen not in MODES:
        chosen = "auto"
    if chosen == "auto":
        stream = stream or sys.stderr
        tty = bool(getattr(stream, "isatty", lambda: False)()) and os.environ.get("TERM", "") != "dumb"
        chosen = "live" if tty else "plain"
    return chosen


class Tracker:
    """Builds snapshots of one step from the store; remembers what the ETA and cost need."""

    def __init__(self, store: Any, plan_id: str, step: str, provider: str, clock: Callable[[], float]) -> None:
        self.store, self.plan_id, self.step, self.provider, self.clock = store, plan_id, step, provider, clock
        self.started = clock()
        self._first: tuple[float, int] | None = None
        #: When the plan's counts were last read, how long that took, and what they were.
        self._money: tuple[float, float, dict[str, dict[str, float]]] | None = None

    def snapshot(self, open_jobs: list[JobRecord], next_check: float, *, in_flight: int | None = None) -> Snapshot:
        from overnight import store as st

        now = self.clock()
        # One pass over the plan gives the counts, the retries and the cost: a join over
        # every request of the plan, seconds of SQLite at a million. So it is read again only
        # once RECOUNT times as long as it took has passed (the open jobs' own counts, read
        # each time, show the progress in between).
        if self._money is None or now - self._money[0] >= RECOUNT * self._money[1]:
            money = self.store.plan_money(self.plan_id)
            self._money = (now, self.clock() - now, money)
        money = self._money[2]
        counts = {state: int(v["n"]) for state, v in money.items()}
        retried = sum(int(v["retried"] or 0) for state, v in money.items() if state != st.FAILED)
        priced = any(v.get("cost") for v in money.values())
        cost = sum(float(v.get("cost") or 0) for v in money.values()) if priced else None
        jobs = tuple(
            JobView(j.remote_id or j.tag, j.raw_status or str(j.state), j.completed + j.failed, j.requests)
            for j in open_jobs
        )
        total = sum(counts.values())
        collected, failed = counts.get(st.DONE, 0), counts.get(st.FAILED, 0)
        done = min(total, collected + failed + sum(j.processed for j in jobs))
        if self._first is None:
            self._first = (now, done)
        since, done_then = self._first
        rate = (done - done_then) / (now - since) if now > since and done > done_then else None
        eta = (total - done) / rate if rate else None
        return Snapshot(step=self.step, provider=self.provider, jobs=jobs, total=total, collected=collected,
                        failed=failed, retried=retried,
                        cost_usd=cost, started=self.started, eta=eta, next_check=next_check,
                        mode="batch" if in_flight is None else "online", in_flight=in_flight or 0)


class Display:
    """Where snapshots and events go; the base class shows nothing (``quiet``)."""

    def update(self, snap: Snapshot) -> None:
        pass

    def event(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass


class PlainLines(Display):
    """A line per check, unless nothing changed and the last line is less than a minute old."""

    def __init__(self, stream: TextIO | None = None, *, every: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.every, self.clock = stream, every, clock
        self._last: tuple[Any, float] | None = None

    def _write(self, text: str) -> None:
        print(f"[overnight] {text}", file=self.stream or sys.stderr, flush=True)

    def update(self, snap: Snapshot) -> None:
        now = self.clock()
        key = snap.key()
        if self.every or self._last is None or self._last[0] != key or now - self._last[1] >= QUIET_PERIOD:
            self._last = (key, now)
            self._write(snap.line(now))

    def event(self, message: str) -> None:
        self._write(message)


class LiveDisplay(Display):
    """The step's jobs and counts, redrawn in place on the terminal (rich), clock ticking."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream or sys.stderr)
        self._snap: Snapshot | None = None
        self.finished = False
        self.live = Live(_Render(self), console=self.console, refresh_per_second=2, transient=False,
                         redirect_stdout=False, redirect_stderr=False)
        self.live.start()

    def update(self, snap: Snapshot) -> None:
        self._snap = snap
        self.live.refresh()

    def event(self, message: str) -> None:
        self.console.print(f"[overnight] {message}", markup=False, highlight=False)

    def close(self) -> None:
        self.live.stop()

    def render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        snap = self._snap
        if snap is None:
            return Text("[overnight] waiting for the first check ...")
        if self.finished:  # the clock stops where the wait ended
            self._ended = getattr(self, "_ended", None) or time.monotonic()
        elapsed = (self._ended if self.finished else time.monotonic()) - snap.started
        eta = "done" if self.finished else f"ETA {duration(snap.eta)}"
        head = Text.assemble((snap.step, "bold"), f"  {snap.provider} {snap.mode}  ·  elapsed {duration(elapsed)}  ·  {eta}")
        if snap.cost_usd is not None:
            from overnight.money import usd

            head.append(f"  ·  cost so far {usd(snap.cost_usd)}")
        if snap.mode == "online":
            counts = Text(f"requests: {snap.in_flight} in flight, {snap.collected}/{snap.total} collected, "
                          f"{snap.failed} failed, {snap.retried} retried")
            if self.finished:
                return Group(head, counts)
            return Group(head, counts, Text("Ctrl+C stops sending at once; a rerun sends the rest", style="dim"))
        table = Table(box=None, pad_edge=False, show_edge=False)
        table.add_column("job")
        table.add_column("state")
        table.add_column("processed", justify="right")
        for job in snap.jobs[:SHOWN_JOBS]:
            table.add_row(job.remote_id, job.state, f"{job.processed}/{job.requests}")
        if len(snap.jobs) > SHOWN_JOBS:
            table.add_row(f"... and {len(snap.jobs) - SHOWN_JOBS} more", "", "")
        counts = Text(
            f"requests: {snap.processed}/{snap.in_jobs} processed in open jobs, {snap.collected}/{snap.total} "
            f"collected, {snap.failed} failed, {snap.retried} retried"
        )
        if self.finished:
            return Group(head, counts)
        foot = Text(f"next check in {snap.next_check:.3g}s · Ctrl+C stops after the check, twice aborts", style="dim")
        return Group(head, table, counts, foot)


class _Render:
    def __init__(self, display: LiveDisplay) -> None:
        self.display = display

    def __rich__(self) -> Any:  # re-rendered on every refresh: the elapsed time ticks
        return self.display.render()


_active: list[Display] = []


def event(message: str) -> bool:
    """Show ``message`` through the display of the step now waiting; False when none is."""
    if not _active:
        return False
    _active[-1].event(message)
    return True


@contextlib.contextmanager
def showing(store: Any, plan_id: str, step: str, provider: str,
            clock: Callable[[], float] = time.monotonic) -> Iterator["Shown"]:
    """The display of one waiting step, closed (the terminal restored) however the wait ends."""
    chosen = mode()
    display: Display
    if chosen == "live":
        try:
            display = LiveDisplay()
        except ImportError:  # rich missing: plain lines still say everything
            display = PlainLines()
    elif chosen in ("plain", "verbose"):
        display = PlainLines(every=chosen == "verbose")
    else:
        display = Display()
    _active.append(display)
    try:
        yield Shown(Tracker(store, plan_id, step, provider, clock), display)
    finally:
        _active.remove(display)
        display.close()


class Shown:
    def __init__(self, tracker: Tracker, display: Display) -> None:
        self.tracker, self.display = tracker, display

    def check(self, open_jobs: list[JobRecord], next_check: float) -> None:
        self.display.update(self.tracker.snapshot(open_jobs, next_check))

    def online(self, in_flight: int) -> None:
        """A step sending online: ``in_flight`` requests are being answered."""
        if type(self.display) is Display:  # quiet: not even the counting
            return
        self.display.update(self.tracker.snapshot([], 0.0, in_flight=in_flight))

    def done(self) -> None:
        """The step's jobs are all collected: a live display shows its last state (plain lines say nothing:
        the run's own lines follow)."""
        if isinstance(self.display, LiveDisplay):
            self.display.finished = True
            self.display.update(self.tracker.snapshot([], 0.0))


def snapshot(store: Any, plan_id: str, step: str, provider: str, open_jobs: list[JobRecord],
             next_check: float) -> Snapshot:
    """A one-off snapshot (for tests and tools)."""
    return Tracker(store, plan_id, step, provider, time.monotonic).snapshot(open_jobs, next_check)
