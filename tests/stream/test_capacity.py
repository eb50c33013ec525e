"""The capacity bench's pure logic (stream/capacity.py): latency anchors, percentiles, the
lag verdict and the search for the largest patient count."""

from __future__ import annotations

import math

import pytest

from stream.capacity import SendBook, keeps_up, lag_verdict, next_patients, percentiles


def test_send_book_finds_the_chunk_holding_a_windows_last_sample() -> None:
    book = SendBook([1_000_000, 1_000_500], n_chunks=5)
    book.mark_sent(0, 3, 50.0)  # patient 0's chunk ending 4 s after its start
    book.mark_sent(1, 3, 50.5)
    # A window ending exactly on a chunk boundary: its last sample is in the chunk ending there.
    assert book.produced_s(0, 1_000_000 + 3_000) is None  # chunk 3 ends at +4 s; chunk 2 not sent
    assert book.produced_s(0, 1_000_000 + 4_000) == 50.0
    assert book.produced_s(0, 1_000_000 + 3_500) == 50.0
    assert book.produced_s(1, 1_000_500 + 4_000) == 50.5
    assert book.produced_s(0, 1_000_000 + 60_000) is None  # past the run
    book.mark_sent(0, 3, 99.0)  # a re-send keeps the first production time
    assert book.produced_s(0, 1_004_000) == 50.0


def test_send_book_with_two_second_chunks() -> None:
    book = SendBook([0], n_chunks=3, chunk_ms=2000)
    book.mark_sent(0, 1, 7.0)  # [2 s, 4 s)
    assert book.chunk_index(0, 3_000) == 1
    assert book.produced_s(0, 4_000) == 7.0
    assert book.produced_s(0, 2_500) == 7.0


def test_percentiles() -> None:
    p = percentiles(range(1, 101))
    assert p["p50"] == pytest.approx(50.5) and p["p99"] == pytest.approx(99.01) and p["max"] == 100
    assert percentiles([])["p99"] is None


def test_lag_that_grows_with_the_shortfall_is_not_bounded() -> None:
    rate = 1000.0
    steady = [(float(t), 200.0 + (50 if t % 5 == 0 else 0)) for t in range(60)]
    assert lag_verdict(steady, rate).bounded
    behind = [(float(t), 100.0 * t) for t in range(60)]  # reads 10 % less than arrives
    verdict = lag_verdict(behind, rate)
    assert not verdict.bounded and verdict.slope_per_s == pytest.approx(100.0)
    backlog = [(float(t), 5000.0) for t in range(60)]  # flat, but 5 s of load behind
    assert not lag_verdict(backlog, rate).bounded
    assert not lag_verdict([], rate).bounded and math.isnan(lag_verdict([], rate).final)


def test_keeps_up_needs_both_latency_and_bounded_lag() -> None:
    ok = lag_verdict([(float(t), 10.0) for t in range(30)], 100.0)
    assert keeps_up(4.9, ok) and not keeps_up(5.1, ok) and not keeps_up(None, ok)
    assert not keeps_up(1.0, lag_verdict([(float(t), 50.0 * t) for t in range(30)], 100.0))


def test_search_brackets_the_largest_passing_count() -> None:
    capacity = 730

    def run(n: int) -> bool:
        return n <= capacity

    tried: dict[int, bool] = {}
    while (n := next_patients(tried, start=600, step=50, ceiling=2000)) is not None:
        assert n not in tried
        tried[n] = run(n)
        assert len(tried) < 12
    best = max(n for n, ok in tried.items() if ok)
    assert best == 700 and min(n for n, ok in tried.items() if not ok) == 750


def test_search_goes_down_when_the_start_fails_and_stops_at_the_ceiling() -> None:
    tried: dict[int, bool] = {}
    while (n := next_patients(tried, start=600, step=100, ceiling=2000)) is not None:
        tried[n] = n <= 250
    assert max(n for n, ok in tried.items() if ok) == 200
    assert next_patients({2000: True}, start=600, step=100, ceiling=2000) is None
    assert next_patients({100: False}, start=100, step=100, ceiling=2000) is None
