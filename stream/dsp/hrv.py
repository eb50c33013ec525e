"""Beat-interval measurements: heart rate, pauses, time-domain HRV, irregularity.

Definitions follow the Task Force of the ESC/NASPE (1996) for SDNN and RMSSD, and the
PhysioNet/CinC 2015 alarm definitions for the rate extremes (extreme bradycardia: < 40 bpm
for 5 consecutive beats; extreme tachycardia: > 140 bpm for 17 consecutive beats).
"""

from __future__ import annotations

import numpy as np


def heart_rate(rr_s: np.ndarray) -> float | None:
    """Median heart rate (bpm) from RR intervals in seconds (median: robust to one ectopic
    or one missed beat)."""
    rr = np.asarray(rr_s, dtype=np.float64)
    if rr.size == 0:
        return None
    return float(60.0 / np.median(rr))


def hrv_time(rr_ms: np.ndarray) -> tuple[float | None, float | None]:
    """(SDNN, RMSSD) in ms; None when there are too few intervals to mean anything."""
    rr = np.asarray(rr_ms, dtype=np.float64)
    sdnn = float(np.std(rr, ddof=1)) if rr.size >= 3 else None
    rmssd = float(np.sqrt(np.mean(np.diff(rr) ** 2))) if rr.size >= 3 else None
    return sdnn, rmssd


def rate_extreme(beat_times_s: np.ndarray, n_beats: int, lowest: bool) -> float | None:
    """Lowest (or highest) mean rate over any ``n_beats`` consecutive beats, i.e. over
    ``n_beats - 1`` consecutive RR intervals: 60 (n - 1) / (t[i + n - 1] - t[i])."""
    t = np.asarray(beat_times_s, dtype=np.float64)
    if t.size < n_beats:
        return None
    spans = t[n_beats - 1 :] - t[: t.size - n_beats + 1]
    spans = spans[spans > 0]
    if spans.size == 0:
        return None
    rates = 60.0 * (n_beats - 1) / spans
    return float(rates.min() if lowest else rates.max())


def rr_irregularity(rr_s: np.ndarray) -> float | None:
    """Normalised RMSSD (RMSSD / mean RR), dimensionless: ~0.02–0.05 in sinus rhythm,
    typically > 0.1 in atrial fibrillation (Dash et al. 2009 use nRMSSD in their AF test)."""
    rr = np.asarray(rr_s, dtype=np.float64)
    if rr.size < 3:
        return None
    return float(np.sqrt(np.mean(np.diff(rr) ** 2)) / np.mean(rr))


def max_pause(
    event_times_s: np.ndarray, start_s: float, end_s: float, previous_s: float | None = None
) -> float:
    """Longest interval without an event over [start_s, end_s], including the open interval
    from the last event to ``end_s``. An interval that began before the window (from
    ``previous_s``, the last event before it) counts in full: a pause is clinically one
    event even when it straddles a window boundary."""
    t = np.asarray(event_times_s, dtype=np.float64)
    first = previous_s if previous_s is not None else start_s
    edges = np.concatenate([[first], t, [end_s]])
    return float(np.max(np.diff(edges))) if edges.size > 1 else end_s - start_s
