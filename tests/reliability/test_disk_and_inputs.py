"""An input edited behind the cache's back, and full or read-only disks.

Stale input: the input file is edited in place with its size and mtime put back (as
``touch -r`` or an archive with fixed timestamps leaves it); the next run must see the
new content, pay only for the changed row, and give every row its own answer.

Disks: each run is a real ``overnight run`` whose ``OVERNIGHT_HOME`` is a small tmpfs
the test mounts (skipped where mounting is not allowed). The errors come from the real
system calls, SQLite's own writes included: the fault point ``name:N:fill`` makes the
run fill that file system at an exact moment, and the test remounts it read-only
between runs. Where a real errno cannot be had deterministically (EACCES as root, a
full temporary folder), ``name:N:ENOSPC|EROFS|EACCES`` raises that OSError at the real
write site, right before the write. Each time: exit 1 with overnight's own error (no
traceback) naming the path and saying truly what the run had done; then, the space
freed, the next runs finish with exactly one job and every row once, nothing paid twice.
"""

from __future__ import annotations

import os
import subprocess
from types import SimpleNamespace

import pytest

from harness import PROVIDERS, ROWS
from overnight.faultpoints import FILL_NAME


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_input_edited_with_its_size_and_mtime_kept_is_seen_and_only_the_edit_is_paid(make_lane, provider):
    lane = make_lane(provider)
    lane.run_until_done()
    lane.assert_complete()
    assert lane.paid_requests() == ROWS

    before = os.stat(lane.input)
    text = lane.input.read_text(encoding="utf-8")
    old = lane.rows[7]["instruction"]
    new = old.replace("reliability question", "RELIABILITY QUESTION")
    assert len(new) == len(old) and text.count(old) == 1
    lane.input.write_text(text.replace(old, new), encoding="utf-8")
    os.utime(lane.input, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (os.stat(lane.input).st_size, os.stat(lane.input).st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    lane.rows[7] = {**lane.rows[7], "instruction": new}

    lane.output.unlink()
    lane.run_until_done()
    lane.assert_complete()  # row 7 has the answer to its new prompt
    assert lane.paid_requests() == ROWS + 1 and len(lane.remote_jobs()) == 2
    lane.assert_store_ok()


# --- full and read-only disks -------------------------------------------------------------------


@pytest.fixture
def disk():
    """Mount small tmpfs file systems (``disk.mount(path)``), unmounted after the test."""
    mounted = []

    def mount(path, size="4m"):
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "overnight-test", str(path)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()}): needs CAP_SYS_ADMIN")
        mounted.append(path)

    def remount(path, mode):
        subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True, capture_output=True)

    yield SimpleNamespace(mount=mount, remount=remount)
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def free_space(lane):
    (lane.home / FILL_NAME).unlink()


def assert_finishes_paid_once(lane, jobs=1):
    lane.run_until_done()
    lane.assert_complete()
    assert len(lane.remote_jobs()) == jobs and lane.paid_requests() == ROWS
    lane.assert_store_ok()


def assert_true_about_the_run(result, submitted):
    err = result.stderr
    if submitted:
        assert "Nothing was submitted" not in err, result.describe()
        assert f"This run submitted {submitted} job(s)" in err and "nothing paid for is lost" in err, result.describe()
    else:
        assert "Nothing was submitted by this run" in err, result.describe()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_disk_filling_up_while_polling_after_a_submit_is_a_true_clear_error(make_lane, disk, provider):
    lane = make_lane(provider)
    disk.mount(lane.home)
    result = lane.run(block=30, fault="during_poll:1:fill")
    result.assert_clear_error("overnight.sqlite", "the disk is full", "Free some space")
    assert "submitted" in result.stderr.split("overnight: error")[0]  # the run logged its submission ...
    assert_true_about_the_run(result, submitted=1)  # ... and the error says so
    assert len(lane.remote_jobs()) == 1

    for argv in (("status",), ("jobs",)):  # reading works on a full disk
        shown = lane.cli(*argv)
        assert shown.status == 0 and lane.remote_jobs()[0]["id"] in shown.stdout, shown.describe()
    lane.run().assert_clear_error("the disk is full")  # still full: still clear, still nothing sent
    assert len(lane.remote_jobs()) == 1
    free_space(lane)
    lane.advance()
    assert_finishes_paid_once(lane)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_disk_filling_up_right_after_a_create_keeps_the_intent_and_the_job_is_found(make_lane, disk, provider):
    lane = make_lane(provider)
    disk.mount(lane.home)
    result = lane.run(fault="after_create:1:fill")  # the job exists; its id cannot be committed
    result.assert_clear_error("overnight.sqlite", "the disk is full", "could not record its id",
                              "looks the job up by its tag")
    assert "Nothing was submitted" not in result.stderr and len(lane.remote_jobs()) == 1
    free_space(lane)
    assert_finishes_paid_once(lane)  # found by its tag, not submitted again


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_disk_filling_up_mid_download_keeps_what_was_saved(make_lane, disk, provider):
    lane = make_lane(provider)
    disk.mount(lane.home)
    lane.run(expect=75)
    lane.advance()
    result = lane.run(fault="mid_fetch:1:fill")  # 16 results committed, the next batch cannot be
    result.assert_clear_error("overnight.sqlite", "the disk is full", "downloaded again")
    assert_true_about_the_run(result, submitted=0)
    assert lane.request_states().get("done") == 16
    free_space(lane)
    assert_finishes_paid_once(lane)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_disk_filling_up_while_writing_the_output_is_a_clear_error(make_lane, disk, provider):
    lane = make_lane(provider)
    disk.mount(lane.home)
    lane.run(expect=75)
    lane.advance()
    result = lane.run(fault="during_assembly:1:fill")  # every result is stored; the output cannot be
    result.assert_clear_error("pipelines", ".jsonl", "the disk is full")
    assert_true_about_the_run(result, submitted=0)
    assert lane.request_states() == {"done": ROWS}  # the results are safe in the store
    free_space(lane)
    assert_finishes_paid_once(lane)
    assert not [p for p in lane.home.rglob("*.tmp")]  # no partial output left behind


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_read_only_home_status_and_jobs_work_and_run_is_a_clear_error(make_lane, disk, provider):
    lane = make_lane(provider)
    disk.mount(lane.home)
    lane.run(expect=75)
    assert not (lane.home / "overnight.sqlite-wal").exists()  # closed cleanly: opened read-only as immutable
    disk.remount(lane.home, "ro")
    job = lane.remote_jobs()[0]["id"]
    for argv in (("status",), ("jobs",), ("status", "--json"), ("jobs", "--all", "--json")):
        shown = lane.cli(*argv)
        assert shown.status == 0 and job in shown.stdout and "Traceback" not in shown.stderr, shown.describe()
    result = lane.run()
    result.assert_clear_error("overnight.sqlite", "read-only", "overnight status")
    assert_true_about_the_run(result, submitted=0)
    disk.remount(lane.home, "rw")
    lane.advance()
    assert_finishes_paid_once(lane)


def test_status_on_a_read_only_home_reads_what_a_killed_run_left_in_the_wal(make_lane, disk):
    lane = make_lane("openai")
    disk.mount(lane.home)
    assert lane.run(fault="after_create").killed
    assert (lane.home / "overnight.sqlite-wal").exists()  # the intent lives in the WAL
    disk.remount(lane.home, "ro")
    shown = lane.cli("jobs", "--all", "--json")
    assert shown.status == 0 and '"intent"' in shown.stdout, shown.describe()
    disk.remount(lane.home, "rw")
    assert_finishes_paid_once(lane)


#: (fault, what the error names, providers, when): simulated errnos at real write sites;
#: "collect" = in the run that collects the finished job (after a pending run).
SIMULATED = [
    ("open_lock:1:EACCES", ("overnight.lock", "permission denied"), PROVIDERS, "first"),
    ("open_lock:1:EROFS", ("overnight.lock", "read-only"), PROVIDERS, "first"),
    ("write_output:1:ENOSPC", ("pipelines", "the disk is full"), PROVIDERS, "first"),  # the loader's output
    ("write_output:1:EACCES", ("pipelines", "permission denied"), PROVIDERS, "collect"),  # the generation's
    ("spool:1:ENOSPC", ("temporary file in", "the disk is full", "TMPDIR"), ("openai", "mistral", "gemini"), "first"),
]


def simulated_cases():
    for fault, needles, providers, when in SIMULATED:
        for provider in providers:
            yield pytest.param(fault, needles, provider, when, id=f"{fault}-{when}-{provider}")


@pytest.mark.parametrize("fault, needles, provider, when", list(simulated_cases()))
def test_a_write_refused_at_each_site_is_a_clear_error_and_the_next_runs_finish(
    make_lane, fault, needles, provider, when
):
    options = {"client_options": {"inline_threshold": 0}} if provider in ("mistral", "gemini") else {}
    lane = make_lane(provider, **options)
    if when == "collect":
        lane.run(expect=75)
        lane.advance()
    result = lane.run(fault=fault)
    result.assert_clear_error(*needles)
    assert_true_about_the_run(result, submitted=0)
    assert len(lane.remote_jobs()) <= 1
    lane.advance()
    assert_finishes_paid_once(lane)
