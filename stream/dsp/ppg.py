"""Streaming PPG pulse detection, pulse rate and perfusion.

Systolic peaks of the 0.5–8 Hz band-passed PPG: a candidate is the maximum within ±270 ms
(so pulses up to 220/min are resolved and the dicrotic wave, 250–400 ms after systole at
rest, never competes with its own systolic peak once it is lower), and is a pulse when its
amplitude above the preceding foot exceeds 35 % of the median of the last 8 pulse
amplitudes — the adaptive-amplitude rule of most PPG beat detectors (e.g. Aboy et al. 2005;
Li & Clifford 2012 review). Like the R-peak detector, every decision is taken when the
candidate's look-ahead is complete, so the output does not depend on chunking.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median

import numpy as np
from scipy.ndimage import maximum_filter1d

from stream.dsp.filters import ppg_filter

DOMINANCE_S = 0.27
FOOT_SEARCH_S = 0.6
AMPLITUDE_FRACTION = 0.35
LEARNING_S = 2.0
RELEARN_S = 5.0
HISTORY = 8


@dataclass(slots=True)
class PulseOutput:
    filtered: np.ndarray
    pulses: np.ndarray  # absolute sample indices of systolic peaks found by this push
    amplitudes: np.ndarray  # their peak-to-foot amplitudes (filtered units)
    feet: np.ndarray  # filtered value at each pulse's foot (for baseline modulation)
    final_until: int


class StreamingPulseDetector:
    def __init__(self, fs: float) -> None:
        self.fs = float(fs)
        self._filter = ppg_filter(self.fs)
        self._w = max(1, round(DOMINANCE_S * self.fs))
        self._foot = max(1, round(FOOT_SEARCH_S * self.fs))
        self._learning = round(LEARNING_S * self.fs)
        self._relearn = round(RELEARN_S * self.fs)
        self._keep = 2 * self._w + self._foot + 4
        self._amps: list[float] = []
        self.n_seen = 0
        self._new_segment()

    def _new_segment(self) -> None:
        self._filter.reset()
        self._segment_start = self.n_seen
        self._hist = np.zeros(0)
        self._hist_start = self.n_seen
        self._next_check = self.n_seen + 1
        self._held: list[tuple[int, float, float]] | None = [] if not self._amps else None
        self._last: int | None = None
        self._best_rejected = 0.0

    def skip(self, n_samples: int) -> None:
        self.n_seen += int(n_samples)
        self._new_segment()

    def process(self, x: np.ndarray) -> PulseOutput:
        x = np.asarray(x, dtype=np.float64)
        y = self._filter.process(x)
        self._hist = np.concatenate([self._hist, y])
        self.n_seen += x.size
        found = self._scan(self.n_seen - 1 - self._w)  # a peak needs w samples of look-ahead
        final_until = max(self._segment_start, self.n_seen - self._w)
        return self._output(y, found, final_until)

    def flush(self) -> PulseOutput:
        """The stream ended (or paused): decide the peaks the missing look-ahead held back
        (one falling sample is enough; a pulse still rising at the end is left). Everything
        before the end is then final; if data continues, detection resumes."""
        found = self._scan(self.n_seen - 2)
        if self._held:
            found.extend(self._finish_learning())
        return self._output(np.zeros(0), found, self.n_seen)

    def _scan(self, last_checkable: int) -> list[tuple[int, float, float]]:
        found: list[tuple[int, float, float]] = []
        w = self._w
        lo = max(self._next_check, self._hist_start + 1)
        if last_checkable >= lo:
            seg_lo = max(self._hist_start, lo - w)
            seg = self._hist[seg_lo - self._hist_start : last_checkable + w + 1 - self._hist_start]
            local_max = maximum_filter1d(seg, size=2 * w + 1, mode="nearest")
            offs = lo - seg_lo
            core = seg[offs : offs + last_checkable - lo + 1]
            prev = seg[offs - 1 : offs - 1 + core.size]
            is_peak = (core == local_max[offs : offs + core.size]) & (core > prev)
            self._next_check = last_checkable + 1
            for k in np.flatnonzero(is_peak):
                found.extend(self._decide(lo + int(k)))
            if self._held is not None and last_checkable >= self._segment_start + self._learning:
                found.extend(self._finish_learning())
        drop = self._hist.size - self._keep
        if drop > 0:
            self._hist = self._hist[drop:]
            self._hist_start += drop
        return found

    @staticmethod
    def _output(y: np.ndarray, found: list[tuple[int, float, float]], final_until: int) -> PulseOutput:
        arr = np.array(found, dtype=np.float64).reshape(-1, 3)
        return PulseOutput(y, arr[:, 0].astype(np.int64), arr[:, 1], arr[:, 2], final_until)

    def _measure(self, peak: int) -> tuple[int, float, float]:
        h0 = self._hist_start
        lo = max(h0, peak - self._foot, self._segment_start)
        before = self._hist[lo - h0 : peak - h0 + 1]
        foot = float(before.min())
        return peak, float(self._hist[peak - h0]) - foot, foot

    def _decide(self, peak: int) -> list[tuple[int, float, float]]:
        cand = self._measure(peak)
        out: list[tuple[int, float, float]] = []
        if self._held is not None:
            if peak < self._segment_start + self._learning:
                self._held.append(cand)
                return []
            out.extend(self._finish_learning())
        if self._last is not None and peak - self._last > self._relearn and self._best_rejected > 0:
            # No pulse for 5 s: amplitude reference is stale (sensor moved, gain changed).
            self._amps = [self._best_rejected]
        ref = median(self._amps) if self._amps else 0.0
        if cand[1] > AMPLITUDE_FRACTION * ref and cand[1] > 0:
            self._accept(cand)
            out.append(cand)
        else:
            self._best_rejected = max(self._best_rejected, cand[1])
        return out

    def _finish_learning(self) -> list[tuple[int, float, float]]:
        held = self._held or []
        self._held = None
        if not held:
            return []
        self._amps = [max(c[1] for c in held) * 0.7]
        out: list[tuple[int, float, float]] = []
        for c in held:
            if c[1] > AMPLITUDE_FRACTION * median(self._amps):
                self._accept(c)
                out.append(c)
        return out

    def _accept(self, cand: tuple[int, float, float]) -> None:
        self._last = cand[0]
        self._best_rejected = 0.0
        self._amps.append(cand[1])
        if len(self._amps) > HISTORY:
            del self._amps[0]


def ppg_pulses(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Whole-signal helper: (filtered, pulse indices, amplitudes, feet)."""
    out = StreamingPulseDetector(fs).process(np.asarray(x, dtype=np.float64))
    return out.filtered, out.pulses, out.amplitudes, out.feet


def perfusion_index(raw: np.ndarray, amplitudes: np.ndarray) -> float | None:
    """Perfusion index (%): pulsatile (AC) over static (DC) light absorption, AC as the
    median pulse amplitude. Meaningful only for a DC-coupled PPG with a positive baseline;
    None otherwise (many gateways send AC-coupled or normalised pleth)."""
    x = np.asarray(raw, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0 or np.size(amplitudes) == 0:
        return None
    dc = float(np.mean(x))
    if dc <= 0:
        return None
    return float(100.0 * np.median(amplitudes) / dc)
