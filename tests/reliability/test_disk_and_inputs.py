"""An input edited behind the cache's back, and full or read-only disks.

Stale input: the input file is edited in place with its size and mtime put back (as
``touch -r`` or an archive with fixed timestamps leaves it); the next run must see the
new content, pay only for the changed row, and give every row its own answer.
"""

from __future__ import annotations

import os

import pytest

from harness import PROVIDERS, ROWS


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
