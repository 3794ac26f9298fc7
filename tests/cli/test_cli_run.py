"""``overnight run SCRIPT``: exit statuses, in a subprocess, as an operator runs it.

The scripts register the fake provider themselves (a subprocess gets no fixtures); the
fake's state lives on disk, so this process advances its clock between runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fakeprovider import FakeProvider

TESTS_DIR = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
from fakeprovider import FakeProvider
from overnight import LLM, LoadDataFromDicts, Pipeline, TextGeneration
from overnight.plugins import PluginRegistry, set_registry

set_registry(PluginRegistry([FakeProvider({state!r})], entrypoints=False))
rows = [{{"instruction": f"prompt {{i}}"}} for i in range(int(sys.argv[1]))]
with Pipeline(name="cli") as pipeline:
    LoadDataFromDicts(data=rows) >> TextGeneration(llm=LLM("fake/m"))
dataset = pipeline.run()
print("rows:", len(dataset), dataset[0]["generation"])
"""


def overnight(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "overnight.cli", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
    )


@pytest.fixture
def fake_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", "fk-test-secret-0000")
    return tmp_path / "fake-state"


def write(tmp_path, text, name="script.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_pending_exits_75_then_done_exits_0(tmp_path, fake_dir, overnight_home):
    script = write(tmp_path, SCRIPT.format(state=str(fake_dir)))
    for _ in range(2):
        result = overnight("run", script, 3)
        assert result.returncode == 75, result.stderr
        assert "Pipeline 'cli' is not finished" in result.stderr
        assert "Traceback" not in result.stderr
    fake = FakeProvider(fake_dir)
    assert len(fake.jobs()) == 1
    fake.advance()
    result = overnight("run", script, 3)
    assert result.returncode == 0, result.stderr
    assert "rows: 3 echo: prompt 0" in result.stdout
    assert "wrote 3 rows to" in result.stderr  # where the dataset is
    assert (overnight_home / "overnight.sqlite").exists()


def test_overnight_errors_exit_1_without_traceback(tmp_path, fake_dir):
    script = write(tmp_path, SCRIPT.format(state=str(fake_dir)).replace('f"prompt {i}"', '""'))
    result = overnight("run", script, 2)
    assert result.returncode == 1
    assert "cannot be sent; nothing was submitted" in result.stderr and "empty prompt" in result.stderr
    assert "Traceback" not in result.stderr
    assert FakeProvider(fake_dir).submitted_requests == 0


def test_unexpected_errors_show_a_traceback(tmp_path):
    script = write(tmp_path, "def f():\n    raise RuntimeError('a bug')\nf()\n")
    result = overnight("run", script)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "RuntimeError: a bug" in result.stderr


def test_script_arguments_exit_status_and_imports(tmp_path):
    (tmp_path / "helper.py").write_text("VALUE = 'from the script directory'\n")
    script = write(tmp_path, """
        import sys
        import helper
        print(__name__, sys.argv[1:], helper.VALUE)
        sys.exit(int(sys.argv[1]))
    """)
    result = overnight("run", script, 0, "--flag")
    assert result.returncode == 0 and "__main__ ['0', '--flag'] from the script directory" in result.stdout
    assert overnight("run", script, 3).returncode == 3
    missing = overnight("run", tmp_path / "missing.py")
    assert missing.returncode == 1 and "no such script" in missing.stderr


def test_cache_dir_option(tmp_path, fake_dir):
    script = write(tmp_path, SCRIPT.format(state=str(fake_dir)))
    result = overnight("--cache-dir", tmp_path / "elsewhere", "run", script, 1)
    assert result.returncode == 75
    assert (tmp_path / "elsewhere" / "overnight.sqlite").exists()
    jobs = overnight("--cache-dir", tmp_path / "elsewhere", "jobs")
    assert jobs.returncode == 0 and FakeProvider(fake_dir).jobs()[0]["id"] in jobs.stdout


def test_not_finished_raised_by_a_script_directly_exits_75(tmp_path):
    script = write(tmp_path, """
        from overnight import OfflineBatchGenerationNotFinished
        raise OfflineBatchGenerationNotFinished(["job-1"], provider="acme", counts={"pending": 5})
    """)
    result = overnight("run", script)
    assert result.returncode == 75
    assert "1 acme batch job(s) still running (5 pending)" in result.stderr and "Traceback" not in result.stderr


def test_sigint_while_polling_exits_75_and_the_next_run_resumes(tmp_path, fake_dir):
    import signal

    script = write(tmp_path, SCRIPT.format(state=str(fake_dir)).replace(
        'LLM("fake/m")', 'LLM("fake/m", offline_batch_generation_block_until_done=3600, poll_interval=600)'
    ))
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "overnight.cli", "run", str(script), "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        seen = []
        for line in proc.stderr:  # blocks until the executor says it is waiting
            seen.append(line)
            if "Ctrl+C to stop" in line:
                break
        else:
            pytest.fail("no polling message: " + "".join(seen))
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 75, err
    assert "polling stopped by the user" in err and "Traceback" not in err
    fake = FakeProvider(fake_dir)
    assert len(fake.jobs()) == 1
    fake.advance()
    result = overnight("run", script, 2)
    assert result.returncode == 0, result.stderr
    assert "rows: 2 echo: prompt 0" in result.stdout and len(fake.jobs()) == 1
