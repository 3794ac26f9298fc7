"""overnight.retryafter: the wait a 429 or 5xx asks for, as the plugins' generate hooks read it."""

from __future__ import annotations

import email.utils
import time

from overnight.retryafter import MAX_WAIT, retry_after


def test_milliseconds_win_over_seconds_and_names_are_case_blind():
    assert retry_after({"Retry-After-Ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"Retry-After": "7"}) == 7.0
    assert retry_after({"retry-after": "0.25"}) == 0.25


def test_an_http_date_is_a_wait_from_now():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after({"retry-after": when}) <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert retry_after({"retry-after": past}) == 0.0


def test_absent_unreadable_or_negative_is_none_and_huge_is_capped():
    assert retry_after(None) is None and retry_after({}) is None
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({"retry-after": "-3"}) is None
    assert retry_after({"retry-after": "nan"}) is None
    assert retry_after({"retry-after": "999999"}) == MAX_WAIT
