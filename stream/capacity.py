"""Pure logic of the capacity benchmark (bench/bench_capacity.py): no Kafka, no Redis.

* :class:`SendBook` remembers when the load generator handed each chunk to the producer,
  and answers "when was the sample at event time t of patient p produced?" — the start of
  the sample-to-finding and sample-to-alert latencies.
* :func:`percentiles` and :func:`lag_verdict` turn the run's samples into figures and a
  verdict; :func:`keeps_up` is the pass criterion (p99 sample-to-finding under the limit,
  lag bounded), and :func:`next_patients` drives the search for the largest N that passes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# A finding later than this after its window's last sample was produced fails the run
# (issue #23: p99 sample-to-finding <= 5 s).
P99_LIMIT_S = 5.0


class SendBook:
    """When each patient's chunk ``k`` (event time ``[k, k + 1)`` chunk lengths after the
    patient's start) was handed to the producer: a ``(patients, chunks)`` array of wall
    times, NaN until sent.

    Every patient's chunks are cut on its own grid (``start_ms[p] + k * chunk_ms``), so the
    chunk holding the last sample of a window that ends at ``t_ms`` (exclusive) is the one
    ending at or after ``t_ms``: ``k = ceil((t_ms - start_ms[p]) / chunk_ms) - 1``."""

    def __init__(self, start_ms: Sequence[int], n_chunks: int, chunk_ms: int = 1000) -> None:
        self.start_ms = np.asarray(start_ms, dtype=np.int64)
        self.chunk_ms = int(chunk_ms)
        self.sent_s = np.full((len(self.start_ms), n_chunks + 1), np.nan)

    def chunk_index(self, patient: int, t_ms: float) -> int:
        # 1e-6: a window end that falls exactly on a chunk boundary belongs to the chunk
        # ending there, whatever the float rounding of the event time.
        return max(0, math.ceil((t_ms - float(self.start_ms[patient])) / self.chunk_ms - 1e-6) - 1)

    def mark_sent(self, patient: int, k: int, wall_s: float) -> None:
        if 0 <= k < self.sent_s.shape[1] and math.isnan(self.sent_s[patient, k]):
            self.sent_s[patient, k] = wall_s

    def produced_s(self, patient: int, t_ms: float) -> float | None:
        """Wall time the sample at event time ``t_ms`` (exclusive end of a window) left the
        generator; None when that chunk was never sent (outside the run)."""
        k = self.chunk_index(patient, t_ms)
        if k >= self.sent_s.shape[1]:
            return None
        value = float(self.sent_s[patient, k])
        return None if math.isnan(value) else value


def percentiles(values: Iterable[float], qs: Sequence[float] = (50, 95, 99)) -> dict[str, float | None]:
    """``{"p50": ..., "p95": ..., "p99": ..., "max": ..., "n": ...}`` (None without values)."""
    arr = np.asarray(list(values), dtype=np.float64)
    out: dict[str, float | None] = {}
    for q in qs:
        out[f"p{q:g}"] = round(float(np.percentile(arr, q)), 3) if arr.size else None
    out["max"] = round(float(arr.max()), 3) if arr.size else None
    out["n"] = float(arr.size)
    return out


@dataclass(frozen=True)
class LagVerdict:
    bounded: bool
    slope_per_s: float  # least-squares growth of the lag over the measured span (messages/s)
    final: float  # lag at the end of the span (messages)
    peak: float
    limit: float  # the most the lag may be at the end and still count as bounded

    def as_dict(self) -> dict[str, object]:
        return {"bounded": self.bounded, "slope_msgs_per_s": round(self.slope_per_s, 2),
                "final_msgs": round(self.final, 1), "peak_msgs": round(self.peak, 1),
                "limit_msgs": round(self.limit, 1)}


def lag_verdict(samples: Sequence[tuple[float, float]], rate_per_s: float, *,
                max_backlog_s: float = 2.0, max_growth: float = 0.01) -> LagVerdict:
    """Whether the consumer lag stayed bounded over ``samples`` (``(wall_s, messages)``).

    Bounded means the worker reads as fast as the load arrives: the lag neither grows (the
    least-squares slope stays under ``max_growth`` of the offered rate, i.e. under 1 % of
    the load left unread each second) nor ends above ``max_backlog_s`` seconds of load. A
    worker that falls behind shows both: a lag growing by the shortfall every second."""
    if not samples:
        return LagVerdict(False, math.nan, math.nan, math.nan, 0.0)
    t = np.array([s[0] for s in samples], dtype=np.float64)
    lag = np.array([s[1] for s in samples], dtype=np.float64)
    slope = float(np.polyfit(t - t[0], lag, 1)[0]) if len(samples) >= 3 and np.ptp(t) > 0 else 0.0
    limit = max_backlog_s * rate_per_s
    bounded = slope <= max_growth * rate_per_s and float(lag[-1]) <= limit
    return LagVerdict(bool(bounded), slope, float(lag[-1]), float(lag.max()), limit)


def keeps_up(p99_finding_s: float | None, lag: LagVerdict, limit_s: float = P99_LIMIT_S) -> bool:
    """The pass criterion of one run: every window became a finding within ``limit_s`` at
    the 99th percentile, and the lag stayed bounded."""
    return p99_finding_s is not None and p99_finding_s <= limit_s and lag.bounded


def next_patients(results: Mapping[int, bool], *, start: int, step: int, ceiling: int) -> int | None:
    """The next patient count to try, or None when the search is done.

    Doubling-free bracket search on multiples of ``step``: from ``start``, go up by the
    gap to the next known failure (halved) after a pass, down the same way after a fail,
    until the largest pass and the smallest fail are ``step`` apart (or the ceiling passes,
    or even ``step`` patients fail)."""
    if not results:
        return start
    passed = [n for n, ok in results.items() if ok]
    failed = [n for n, ok in results.items() if not ok]
    best = max(passed) if passed else 0
    worst = min((n for n in failed if n > best), default=None)
    if worst is None:
        if best >= ceiling:
            return None
        # No failure above yet: grow by half again (capacity is unknown, runs are costly).
        return min(ceiling, _round_to(max(best + step, best * 3 // 2), step))
    if worst - best <= step:
        return None
    mid = _round_to((best + worst) // 2, step)
    if mid <= best:
        mid = best + step
    if mid >= worst:
        return None
    return mid


def _round_to(n: int, step: int) -> int:
    return max(step, round(n / step) * step)
