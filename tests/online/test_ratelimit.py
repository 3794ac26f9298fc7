"""The Pacer on its own: even spacing, the in-flight window (AIMD) and Retry-After."""

from __future__ import annotations

import threading

from overnight.ratelimit import MIN_PACE, Pacer


def test_requests_are_spaced_evenly_with_no_burst(fake_time):
    pacer = Pacer(requests_per_minute=120, concurrency=100)
    for _ in range(10):
        assert pacer.acquire()
        pacer.release(ok=True)
    gaps = [b - a for a, b in zip(pacer.starts, pacer.starts[1:])]
    assert pacer.starts[0] == 1000.0  # the first one at once
    assert all(abs(g - 0.5) < 1e-9 for g in gaps)  # 60 / 120 s apart


def test_a_429_holds_everyone_halves_the_window_and_the_pace(fake_time):
    pacer = Pacer(requests_per_minute=60, concurrency=8)
    assert pacer.limited(retry_after=5.0) == 5.0
    assert pacer.window == 4 and pacer.pace == 0.5
    assert pacer.acquire()
    assert pacer.starts[-1] >= 1005.0  # held for the Retry-After
    pacer.release(ok=True)
    assert pacer.acquire()
    assert pacer.starts[-1] - pacer.starts[-2] >= 2.0 - 1e-9  # at half pace: 2 s apart, not 1
    pacer.release(ok=True)
    for _ in range(200):
        pacer.limited(None)
    assert pacer.window == 1 and pacer.pace == MIN_PACE  # never below one request, 1/16 of the pace


def test_without_retry_after_the_pause_doubles(fake_time):
    pacer = Pacer()
    assert [pacer.limited(None) for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]
    pacer.release(ok=True)  # an answer resets it
    assert pacer.limited(None) == 1.0


def test_the_window_bounds_requests_in_flight_and_a_stop_frees_waiters(fake_time):
    pacer = Pacer(concurrency=2)
    assert pacer.acquire() and pacer.acquire()
    assert pacer.in_flight == 2
    stop = threading.Event()
    stop.set()
    assert pacer.acquire(stop=stop) is False  # full, and Ctrl+C: gives up instead of waiting to send
    assert pacer.in_flight == 2
    pacer.release(ok=True)
    assert pacer.acquire() and pacer.in_flight == 2


def test_tokens_per_minute_reserve_by_weight(fake_time):
    pacer = Pacer(tokens_per_minute=6000, concurrency=10)
    for weight in (3000, 3000, 600):
        assert pacer.acquire(weight)
        pacer.release(ok=True)
    assert [t - 1000.0 for t in pacer.starts] == [0.0, 30.0, 60.0]  # 3000 tokens: half a minute
