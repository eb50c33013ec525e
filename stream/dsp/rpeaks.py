"""Streaming QRS (R-peak) detection, chunk-invariant by construction.

The detector follows Pan & Tompkins (1985) with the decision rules of Hamilton & Tompkins
(1986) / Hamilton's open-source OSEA detector (2002):

1. band-pass 5–15 Hz (where QRS energy dominates P and T waves and noise),
   five-point derivative, rectification (absolute value, as in Hamilton's OSEA, rather
   than Pan & Tompkins' squaring, which shrinks wide ventricular beats relative to narrow
   ones), 150 ms moving-window integration (MWI);
2. candidate peaks: samples of the MWI that are the maximum within ±200 ms (the
   physiological refractory period: no two QRS complexes closer than 200 ms);
3. adaptive threshold ``noise + 0.25 (qrs - noise)`` from the medians of the last 8 QRS
   and last 8 noise peak heights (Hamilton & Tompkins 1986 use 0.3125 on a squared
   signal; 0.25 on the rectified one here keeps wide, low-slope ventricular beats);
4. T-wave discrimination: a candidate within 360 ms of the previous beat whose maximal slope
   is under half that beat's slope is a T wave (Pan & Tompkins 1985);
5. search-back: when no beat has been found for 1.66 × the median RR, the largest rejected
   candidate above half the threshold since the last beat is taken as a beat (Pan & Tompkins)
   — provided its maximal slope is at least 20 % of the median slope of recent beats, so
   that the P waves of a ventricular asystole (low, slow waves, ~12 %) are not taken for
   QRS while wide ventricular beats after narrow ones (~20-30 %) still are. The gap before
   that candidate is filled too: every other eligible candidate, largest first, a
   refractory period from the ones taken and not a T wave of one (a run of low, wide
   ventricular beats after tall narrow ones is otherwise reported one beat per search-back).

Every step is causal and carries its state, and every decision is taken at a sample-defined
moment (when a candidate's ±200 ms neighbourhood is complete), so the beats found do not
depend on how the signal was cut into chunks. Each beat is reported once, in time order, with
a latency of ~0.45 s (search-back beats one RR interval later).

The R position reported is the largest absolute deflection of the 0.5–40 Hz band-passed ECG
in the 250 ms before the MWI peak (the integrator's peak trails the QRS by about half its
width plus filter delay).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median

import numpy as np
from scipy.ndimage import maximum_filter1d

from stream.dsp.filters import QRS_BAND_HZ, StreamingSosFilter, bandpass_sos, ecg_filter

MWI_S = 0.150
REFRACTORY_S = 0.200
T_WAVE_WINDOW_S = 0.360
R_SEARCH_S = 0.250
LEARNING_S = 2.0
SEARCHBACK_RR_FACTOR = 1.66
RELEARN_S = 8.0
SEARCHBACK_SLOPE_FRACTION = 0.2
RELEARN_PROMINENCE = 4.0
PENDING_SPAN_S = 10.0
THRESHOLD_FRACTION = 0.25
HISTORY_BEATS = 8
DEFAULT_RR_S = 0.8


@dataclass(slots=True)
class _Candidate:
    peak: int  # MWI peak, absolute sample index
    height: float
    r: int  # R position, absolute sample index
    slope: float
    floor: float  # 10th percentile of the MWI around the candidate (its local baseline)


@dataclass(slots=True)
class DetectorOutput:
    bandpassed: np.ndarray  # 0.5–40 Hz ECG for the pushed samples
    beats: np.ndarray  # absolute sample indices of beats found by this push, increasing
    final_until: int  # beats at indices < final_until are decided (except search-back)


class StreamingRPeakDetector:
    """Push raw ECG chunks; get band-passed ECG and newly detected R peaks."""

    def __init__(self, fs: float, mains_hz: float | None = None) -> None:
        self.fs = float(fs)
        self._ecg_filter = ecg_filter(self.fs, mains_hz)
        self._qrs_filter = StreamingSosFilter(bandpass_sos(self.fs, *QRS_BAND_HZ))
        self._mwi_len = max(1, round(MWI_S * self.fs))
        self._dominance = max(1, round(REFRACTORY_S * self.fs))
        self._refractory = self._dominance
        self._t_wave = round(T_WAVE_WINDOW_S * self.fs)
        self._r_search = round(R_SEARCH_S * self.fs)
        self._learning = round(LEARNING_S * self.fs)
        self._relearn = round(RELEARN_S * self.fs)
        self._pending_span = round(PENDING_SPAN_S * self.fs)
        keep = self._dominance * 2 + self._r_search + self._mwi_len + 8
        self._keep = keep
        # Levels survive a segment reset (gap): amplitude knowledge is still valid.
        self._qrs_heights: list[float] = []
        self._noise_heights: list[float] = []
        self._rr: list[int] = []
        self._last_slope = 0.0
        self._slopes: list[float] = []
        self.n_seen = 0  # samples pushed since the detector was created
        self._new_segment()

    # -- state -------------------------------------------------------------------------

    def _new_segment(self) -> None:
        self._ecg_filter.reset()
        self._qrs_filter.reset()
        self._segment_start = self.n_seen
        self._qrs_tail = np.zeros(4)  # last 4 QRS-band samples for the derivative
        self._rect_tail = np.zeros(self._mwi_len - 1)  # last rectified samples for the MWI
        # Rolling histories (absolute start index ``_hist_start``).
        self._hist_start = self.n_seen
        self._mwi = np.zeros(0)
        self._bp = np.zeros(0)
        self._slope = np.zeros(0)
        self._next_check = self.n_seen + 1  # first MWI index whose candidacy is undecided
        self._learning_candidates: list[_Candidate] | None = [] if not self._qrs_heights else None
        self._pending: list[_Candidate] = []  # rejected since last beat, for search-back
        self._last_r: int | None = None

    def reset_segment(self) -> None:
        """Start a new contiguous segment (after a gap): filters and beat timing restart,
        learned QRS/noise levels are kept."""
        self._new_segment()

    def skip(self, n_samples: int) -> None:
        """Account for ``n_samples`` of missing signal (a gap) and start a new segment."""
        self.n_seen += int(n_samples)
        self._new_segment()

    # -- processing --------------------------------------------------------------------

    def process(self, x: np.ndarray) -> DetectorOutput:
        x = np.asarray(x, dtype=np.float64)
        n = x.size
        bp = self._ecg_filter.process(x)
        if n == 0:
            return DetectorOutput(bp, np.zeros(0, dtype=np.int64), self._final_until())
        qrs = self._qrs_filter.process(x)
        ext = np.concatenate([self._qrs_tail, qrs])
        # Five-point derivative (Pan & Tompkins): (2x[n] + x[n-1] - x[n-3] - 2x[n-4]) / 8.
        deriv = (2 * ext[4:] + ext[3:-1] - ext[1:-3] - 2 * ext[:-4]) * (self.fs / 8.0)
        self._qrs_tail = ext[-4:]
        rect = np.abs(deriv)
        rect_ext = np.concatenate([self._rect_tail, rect])
        csum = np.concatenate([[0.0], np.cumsum(rect_ext)])
        mwi = (csum[self._mwi_len :] - csum[: -self._mwi_len]) / self._mwi_len
        if self._mwi_len > 1:
            self._rect_tail = rect_ext[-(self._mwi_len - 1) :]
        # Append to rolling histories.
        self._mwi = np.concatenate([self._mwi, mwi])
        self._bp = np.concatenate([self._bp, bp])
        self._slope = np.concatenate([self._slope, np.abs(deriv)])
        self.n_seen += n
        beats = self._scan()
        drop = self._mwi.size - self._keep
        if drop > 0:
            self._mwi = self._mwi[drop:]
            self._bp = self._bp[drop:]
            self._slope = self._slope[drop:]
            self._hist_start += drop
        return DetectorOutput(bp, np.asarray(beats, dtype=np.int64), self._final_until())

    def flush(self) -> DetectorOutput:
        """The stream ended (or paused): decide what the missing look-ahead still holds.

        Candidates in the last ``dominance`` samples are judged on the samples there are;
        a QRS whose integrated energy is still rising at the very end is left undecided
        (it may be the start of a beat, and half a QRS measures nothing). Everything before
        the end is then final, so the window closing there can be measured now instead of
        waiting for data that may never come. If data does continue, detection resumes
        where it stopped.
        """
        beats = self._scan(final=True)
        if self._learning_candidates:
            beats.extend(self._finish_learning())
        return DetectorOutput(np.zeros(0), np.asarray(beats, dtype=np.int64), self.n_seen)

    def _final_until(self) -> int:
        return max(self._segment_start, self.n_seen - self._dominance - self._r_search)

    def _scan(self, final: bool = False) -> list[int]:
        w = self._dominance
        # A candidate needs w samples of look-ahead; at a flush, one falling sample.
        last_checkable = self.n_seen - 2 if final else self.n_seen - 1 - w
        lo = max(self._next_check, self._hist_start + 1)
        if last_checkable < lo:
            return []
        seg_lo = max(self._hist_start, lo - w)
        seg = self._mwi[seg_lo - self._hist_start : last_checkable + w + 1 - self._hist_start]
        local_max = maximum_filter1d(seg, size=2 * w + 1, mode="nearest")
        offs = lo - seg_lo
        core = seg[offs : offs + last_checkable - lo + 1]
        prev = seg[offs - 1 : offs - 1 + core.size]
        is_peak = (core == local_max[offs : offs + core.size]) & (core > prev) & (core > 0)
        self._next_check = last_checkable + 1
        beats: list[int] = []
        for k in np.flatnonzero(is_peak):
            peak = lo + int(k)
            beats.extend(self._decide(self._candidate(peak)))
        # Learning ends at a sample-defined point, not at a chunk boundary.
        if self._learning_candidates is not None and last_checkable >= self._learning_end():
            beats.extend(self._finish_learning())
        return beats

    def _learning_end(self) -> int:
        return self._segment_start + self._learning

    def _candidate(self, peak: int) -> _Candidate:
        h0 = self._hist_start
        r_lo = max(h0, peak - self._r_search, self._segment_start)
        window = self._bp[r_lo - h0 : peak - h0 + 1]
        r = r_lo + int(np.argmax(np.abs(window))) if window.size else peak
        s_lo = max(h0, peak - self._mwi_len)
        slope = float(self._slope[s_lo - h0 : peak - h0 + 1].max())
        ctx_lo = max(0, peak - h0 - self._r_search - self._dominance)
        context = self._mwi[ctx_lo : peak - h0 + self._dominance + 1]
        k = context.size // 10
        floor = float(np.partition(context, k)[k])
        return _Candidate(peak, float(self._mwi[peak - h0]), r, slope, floor)

    def _finish_learning(self) -> list[int]:
        """End of the 2 s learning phase (Pan & Tompkins): QRS level from the largest
        candidate, noise level from the typical one; then decide the held candidates."""
        held = self._learning_candidates or []
        self._learning_candidates = None
        if held:
            heights = np.array([c.height for c in held])
            self._qrs_heights = [float(heights.max()) * 0.5]
            self._noise_heights = [float(np.median(heights)) * 0.5]
        beats: list[int] = []
        for c in held:
            beats.extend(self._decide(c))
        return beats

    # -- decision rules ----------------------------------------------------------------

    def _threshold(self) -> float:
        qrs = median(self._qrs_heights) if self._qrs_heights else 0.0
        noise = median(self._noise_heights) if self._noise_heights else 0.0
        return noise + THRESHOLD_FRACTION * (qrs - noise)

    def _rr_median(self) -> float:
        return float(median(self._rr)) if self._rr else DEFAULT_RR_S * self.fs

    def _decide(self, c: _Candidate) -> list[int]:
        beats: list[int] = []
        if self._learning_candidates is not None:
            if c.peak < self._learning_end():
                self._learning_candidates.append(c)
                return []
            beats.extend(self._finish_learning())
        if self._last_r is not None and c.r - self._last_r > self._relearn and self._pending:
            # No beat for 8 s: the QRS level may be stale (gain change, lead moved). Re-learn
            # it from the largest recent candidate so detection cannot stay blind for ever —
            # but only from a candidate that stands well above its local MWI baseline (a QRS
            # does; the baseline noise of a true asystole does not), so an asystole is not
            # filled with false beats. 8 s, not less: the P waves of a ventricular
            # standstill are prominent too, and the pause must last well past the 4 s
            # asystole definition before they can be taken for beats.
            prominent = [p for p in self._pending if p.height > RELEARN_PROMINENCE * p.floor]
            if prominent:
                best = max(prominent, key=lambda p: p.height)
                self._qrs_heights = [best.height]
                self._slopes = [best.slope]
                # Never search back into the pause with the re-learned level: after a
                # ventricular standstill the small regular waves inside it are P waves,
                # and the pause must be reported whole.
                self._pending = []
        beats.extend(self._searchback(c.r))
        thr = self._threshold()
        if c.height > thr and self._is_qrs(c):
            self._accept(c)
            beats.append(c.r)
        else:
            self._push(self._noise_heights, c.height)
            self._pending.append(c)
            # Search-back and re-learning look back at most a few seconds; bound the list
            # so a long asystole or lead-off cannot make it (and each decision) grow.
            while self._pending and self._pending[0].r < c.r - self._pending_span:
                self._pending.pop(0)
        return beats

    def _is_qrs(self, c: _Candidate) -> bool:
        if self._last_r is None:
            return True
        dist = c.r - self._last_r
        if dist < self._refractory:
            return False
        return not (dist < self._t_wave and c.slope < 0.5 * self._last_slope)

    def _searchback(self, now: int) -> list[int]:
        beats: list[int] = []
        while self._last_r is not None and now - self._last_r > self._searchback_after():
            half = 0.5 * self._threshold()
            lo, hi = self._last_r + self._t_wave, now - self._refractory
            min_slope = SEARCHBACK_SLOPE_FRACTION * median(self._slopes) if self._slopes else 0.0
            eligible = [
                c
                for c in self._pending
                if c.height > half and lo <= c.r < hi and c.slope >= min_slope
            ]
            if not eligible:
                break
            best = max(eligible, key=lambda c: c.height)
            # Fill the gap before the chosen beat too: candidates at least a refractory
            # period apart from each other and from both ends, taken largest first.
            chosen = [best]
            for c in sorted(eligible, key=lambda c: -c.height):
                if c.r < best.r and all(self._spaced(c, o) for o in chosen):
                    chosen.append(c)
            for c in sorted(chosen, key=lambda c: c.r):
                self._accept(c, searchback=True)
                beats.append(c.r)
        return beats

    def _spaced(self, c: _Candidate, other: _Candidate) -> bool:
        """Two search-back picks can both be beats: a refractory period apart, and the
        later not a T wave of the earlier (within 360 ms with under half its slope)."""
        first, second = (c, other) if c.r < other.r else (other, c)
        dist = second.r - first.r
        return dist >= self._refractory and not (dist < self._t_wave
                                                 and second.slope < 0.5 * first.slope)

    def _searchback_after(self) -> float:
        return SEARCHBACK_RR_FACTOR * self._rr_median()

    def _accept(self, c: _Candidate, searchback: bool = False) -> None:
        if self._last_r is not None:
            self._push(self._rr, c.r - self._last_r)
        self._last_r = c.r
        self._last_slope = c.slope
        self._push(self._qrs_heights, c.height)
        self._push(self._slopes, c.slope)
        self._pending = [p for p in self._pending if p.r > c.r]

    @staticmethod
    def _push(buf: list, value: float) -> None:
        buf.append(value)
        if len(buf) > HISTORY_BEATS:
            del buf[0]


def ecg_rpeaks(x: np.ndarray, fs: float, chunk_s: float | None = None) -> np.ndarray:
    """R-peak sample indices of a whole recording through the streaming detector
    (optionally fed in ``chunk_s`` chunks, which gives the same result)."""
    det = StreamingRPeakDetector(fs)
    x = np.asarray(x, dtype=np.float64)
    step = x.size if not chunk_s else max(1, round(chunk_s * fs))
    out = [det.process(x[i : i + step]).beats for i in range(0, x.size, step)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
