"""An input file is identified by its content: an edit that keeps size and mtime is seen.

For each loader that reads a file (JSONL, CSV, Parquet): a row edited in place with the
file's size and timestamps put back re-runs the steps, and only the changed row costs a
request (the others are content-addressed and reused). The stat shortcut that saves
re-hashing is trusted only where safe and re-verified before a finished step is reused.
"""

from __future__ import annotations

import csv
import json
import os

import pytest

from overnight import (
    LLM,
    LoadDataFromCSV,
    LoadDataFromJSONL,
    LoadDataFromParquet,
    Pipeline,
    PipelineNotFinished,
    TextGeneration,
)
from overnight import filedigests

PROMPTS = [f"question number {i}" for i in range(6)]


def write_jsonl(path, prompts):
    path.write_text("".join(json.dumps({"instruction": p}) + "\n" for p in prompts))


def write_csv(path, prompts):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["instruction"])
        writer.writerows([p] for p in prompts)


def write_parquet(path, prompts):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"instruction": p} for p in prompts]), path, compression="none")


LOADERS = {
    "jsonl": (LoadDataFromJSONL, write_jsonl),
    "csv": (LoadDataFromCSV, write_csv),
    "parquet": (LoadDataFromParquet, write_parquet),
}


def build(loader, path, name="inputs"):
    with Pipeline(name=name) as p:
        loader(name="load", path=path) >> TextGeneration(name="gen", llm=LLM("fake/m"))
    return p


def run_to_done(fake, pipeline_factory):
    with pytest.raises(PipelineNotFinished):
        pipeline_factory().run()
    fake.advance()
    return pipeline_factory().run()


def edit_keeping_size_and_times(path, write, prompts):
    """Rewrite ``path`` with ``prompts`` and put its size and timestamps back, as ``touch -r`` would."""
    before = os.stat(path)
    write(path, prompts)
    assert os.stat(path).st_size == before.st_size  # the edit keeps the size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


@pytest.fixture
def hashes(monkeypatch):
    """Counts the files hashed (every byte read for identity goes through hash_file)."""
    seen: list[str] = []
    real = filedigests.hash_file

    def counting(path):
        seen.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(filedigests, "hash_file", counting)
    return seen


@pytest.mark.parametrize("kind", list(LOADERS))
def test_an_edit_that_keeps_size_and_mtime_reruns_and_pays_only_for_the_changed_row(fake, tmp_path, kind):
    loader, write = LOADERS[kind]
    path = tmp_path / f"in.{kind}"
    write(path, PROMPTS)
    first = run_to_done(fake, lambda: build(loader, path))
    assert fake.submitted_requests == 6

    edited = [*PROMPTS[:4], "question NUMBER 4", PROMPTS[5]]  # same length, new content
    edit_keeping_size_and_times(path, write, edited)
    second = run_to_done(fake, lambda: build(loader, path))
    assert fake.submitted_requests == 7  # only row 4 was sent again
    assert second["instruction"] == edited and second.path != first.path
    assert second[4]["generation"] != first[4]["generation"]
    assert [r["generation"] for i, r in enumerate(second) if i != 4] == [
        r["generation"] for i, r in enumerate(first) if i != 4
    ]


@pytest.mark.parametrize("kind", list(LOADERS))
def test_a_remembered_digest_is_verified_before_a_finished_step_is_reused(fake, tmp_path, overnight_home, kind):
    """Where the stat shortcut cannot tell (a filesystem without a real ctime, a clock set
    back), the digest remembered for an unchanged stat key is checked against the bytes
    before the finished output is returned."""
    loader, write = LOADERS[kind]
    path = tmp_path / f"in.{kind}"
    write(path, PROMPTS)
    first = run_to_done(fake, lambda: build(loader, path))

    digests_file = overnight_home / filedigests.FILE_NAME
    old = json.loads(digests_file.read_text())["files"][str(path.resolve())]
    edited = [*PROMPTS[:4], "question NUMBER 4", PROMPTS[5]]
    edit_keeping_size_and_times(path, write, edited)
    # Forge the shortcut: the file's new stat key, the old content's digest, not racy.
    data = json.loads(digests_file.read_text())
    data["files"][str(path.resolve())] = {**old, "key": filedigests._stat_key(os.stat(path)), "racy": False}
    digests_file.write_text(json.dumps(data))

    with pytest.raises(PipelineNotFinished):  # not the stale finished output: the step runs again
        build(loader, path).run()
    fake.advance()
    second = build(loader, path).run()
    assert second["instruction"] == edited and second[4]["generation"] != first[4]["generation"]
    assert fake.submitted_requests == 7


def test_an_unchanged_file_is_not_hashed_again_where_no_finished_step_is_reused(fake, tmp_path, hashes, monkeypatch):
    monkeypatch.setattr(filedigests, "RACY_NS", 0)  # the file was written a moment ago
    path = tmp_path / "in.jsonl"
    write_jsonl(path, PROMPTS)
    with pytest.raises(PipelineNotFinished):
        build(LoadDataFromJSONL, path).run()
    assert len(hashes) == 1

    # A second pipeline over the same file: nothing of it is finished, the shortcut is enough.
    with pytest.raises(PipelineNotFinished):
        build(LoadDataFromJSONL, path, name="other").run()
    assert len(hashes) == 1
    assert fake.submitted_requests == 6  # the same requests, not paid again

    # Reusing a finished step (the loader's output) verifies the bytes once.
    with pytest.raises(PipelineNotFinished):
        build(LoadDataFromJSONL, path).run()
    assert len(hashes) == 2


def test_a_racy_entry_is_not_trusted(fake, tmp_path, hashes):
    """A file hashed within the timestamp granularity of its last change could change
    again with the same timestamps: its digest is taken again from the bytes."""
    path = tmp_path / "in.jsonl"
    write_jsonl(path, PROMPTS)
    for name in ("a", "b"):  # nothing finished in either: only the racy rule forces the hash
        with pytest.raises(PipelineNotFinished):
            build(LoadDataFromJSONL, path, name=name).run()
    assert len(hashes) == 2


def test_a_changed_stat_key_is_hashed_again(tmp_path, hashes, monkeypatch):
    monkeypatch.setattr(filedigests, "RACY_NS", 0)
    path = tmp_path / "in.jsonl"
    write_jsonl(path, PROMPTS)
    digests = filedigests.FileDigests(tmp_path / "cache")
    first = digests.digest(path)
    digests.save()
    again = filedigests.FileDigests(tmp_path / "cache")
    assert again.digest(path) == first and len(hashes) == 1  # from the shortcut
    before = os.stat(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same mtime, new ctime
    assert filedigests.FileDigests(tmp_path / "cache").digest(path) == first and len(hashes) == 2


def test_a_corrupt_or_unwritable_shortcut_file_only_costs_a_hash(tmp_path, hashes):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / filedigests.FILE_NAME).write_text("{not json")
    path = tmp_path / "in.jsonl"
    write_jsonl(path, PROMPTS)
    assert filedigests.FileDigests(cache).digest(path) == filedigests.hash_file(path)
    digests = filedigests.FileDigests(tmp_path / "missing-parent" / "file-not-dir")
    (tmp_path / "missing-parent").write_text("a file where a directory should be")
    digests.digest(path)
    digests.save()  # cannot write: silently skipped
