"""Breathing rate and apnoea from a respiration signal, or derived from ECG / PPG.

* From RESP (impedance pneumography or a belt): the "advanced counting" method of Schäfer
  & Kratky (2008): take all local extrema of the 0.1–0.7 Hz band-passed signal, then
  repeatedly merge the extremum pair with the smallest amplitude difference while that
  difference is under a fraction of the third quartile of all differences; each remaining
  peak-to-peak cycle is one breath (10 % in the paper; 25 % here, chosen on the 18 shared
  BIDMC records, where cardiac oscillation in the impedance signal needs a firmer merge).
  Charlton et al. (2016, Physiol. Meas.) found counting methods among the most accurate
  time-domain estimators.
* Derived respiration when RESP is absent or poor: breathing modulates the cardiac signal
  three ways — baseline wander (BW), amplitude (AM) and rate (FM, respiratory sinus
  arrhythmia). Each modulation series (one value per beat/pulse) is resampled at 4 Hz,
  its rate estimated, and the estimates fused by median (in the spirit of Karlen et al.
  2013 "smart fusion", which averages BW/AM/FM estimates; a median tolerates one bad one).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from stream.dsp.filters import RESP_BAND_HZ, bandpass_sos, filtfilt_sos

MERGE_FRACTION = 0.25
MIN_RATE_BPM = 4.0
MAX_RATE_BPM = 60.0
DERIVED_FS = 4.0
DERIVED_BAND_HZ = (0.1, 0.7)
DERIVED_METHOD = "count"  # 6–42 breaths/min: adult range for derived respiration


@dataclass(frozen=True, slots=True)
class RespEstimate:
    rate_bpm: float | None
    breaths_s: np.ndarray  # breath (inspiration peak) times, seconds from segment start
    quality: float  # 0..1
    usable: bool


def _extrema(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of alternating local extrema and a flag per extremum (True = maximum)."""
    d = np.diff(x)
    sign = np.sign(d)
    # Carry the previous non-zero slope across plateaus.
    nz = np.flatnonzero(sign)
    if nz.size < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    s = sign[nz]
    turns = np.flatnonzero(s[1:] != s[:-1])
    idx = nz[turns + 1]
    is_max = s[turns] > 0
    return idx, is_max


def _upper_quartile(a: np.ndarray) -> float:
    """75th percentile, linear interpolation (as numpy's default), without its overhead."""
    s = np.sort(a)
    pos = 0.75 * (s.size - 1)
    lo = int(pos)
    hi = min(lo + 1, s.size - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (pos - lo))


def count_breaths(x: np.ndarray, min_amplitude: float | None = None) -> np.ndarray:
    """Breath peaks (indices) by Schäfer & Kratky's advanced counting on a band-passed
    respiration signal.

    The merge threshold is relative to the window itself, so in a window of pure baseline
    noise (apnoea) the noise wiggles would be counted as breaths. ``min_amplitude`` (in
    signal units, from the patient's own recent breaths) sets a floor under it: swings
    smaller than that are never breaths."""
    idx, is_max = _extrema(x)
    if idx.size < 3:
        return np.zeros(0, dtype=np.int64)
    vals = x[idx]
    thr = MERGE_FRACTION * _upper_quartile(np.abs(np.diff(vals)))
    if min_amplitude is not None:
        thr = max(thr, min_amplitude)
    idx_l, vals_l, max_l = idx.tolist(), vals.tolist(), is_max.tolist()
    while len(vals_l) >= 3:
        d = [abs(b - a) for a, b in itertools.pairwise(vals_l)]
        k = min(range(len(d)), key=d.__getitem__)
        if d[k] >= thr:
            break
        # Remove the pair (k, k+1): a small wiggle, not a breath.
        # (Removing one maximum and one minimum keeps the sequence alternating.)
        del idx_l[k : k + 2], vals_l[k : k + 2], max_l[k : k + 2]
    if min_amplitude is not None and (len(vals_l) < 2 or max(abs(b - a) for a, b in itertools.pairwise(vals_l)) < thr):
        return np.zeros(0, dtype=np.int64)  # merging stops at 2 extrema: no swing left
    return np.array([i for i, m in zip(idx_l, max_l, strict=True) if m], dtype=np.int64)


def _rate_from_peaks(peaks_s: np.ndarray) -> float | None:
    if peaks_s.size < 3:
        return None
    intervals = np.diff(peaks_s)
    rate = 60.0 / float(np.mean(intervals))
    return rate if MIN_RATE_BPM <= rate <= MAX_RATE_BPM else None


def resp_rate(filtered: np.ndarray, fs: float, min_breath_amplitude: float | None = None) -> RespEstimate:
    """Breathing rate over a window of band-passed respiration (NaN-free).
    ``min_breath_amplitude``: see :func:`count_breaths` (None: the window alone decides)."""
    x = np.asarray(filtered, dtype=np.float64)
    if x.size < fs * 8 or not np.isfinite(x).all() or np.ptp(x) == 0:
        return RespEstimate(None, np.zeros(0), 0.0, False)
    peaks = count_breaths(x, min_breath_amplitude)
    t = peaks / fs
    rate = _rate_from_peaks(t)
    if rate is None:
        return RespEstimate(None, t, 0.0, False)
    # Quality: regular breathing has consistent breath-to-breath intervals and amplitudes.
    intervals = np.diff(t)
    cv = float(np.std(intervals) / np.mean(intervals))
    quality = float(np.clip(1.0 - cv, 0.0, 1.0))
    return RespEstimate(rate, t, round(quality, 3), quality >= 0.5)


def breath_amplitude(filtered: np.ndarray) -> float:
    """Typical breath size of a band-passed respiration window: 5th–95th percentile span
    (robust to a single sigh or spike)."""
    s = np.sort(np.asarray(filtered, dtype=np.float64))  # (np.percentile costs ~5x more)
    if s.size == 0:
        return 0.0
    return float(s[round(0.95 * (s.size - 1))] - s[round(0.05 * (s.size - 1))])


def resp_rate_whole(x: np.ndarray, fs: float) -> RespEstimate:
    """Convenience: band-pass (causal, as in the stream) then :func:`resp_rate`."""
    y = sps.sosfilt(np.array(bandpass_sos(fs, *RESP_BAND_HZ)), np.asarray(x, dtype=np.float64))
    return resp_rate(y, fs)


def _modulation_rate(times_s: np.ndarray, values: np.ndarray, duration_s: float) -> float | None:
    """Breathing rate from one per-beat modulation series: resample at 4 Hz, band-pass
    0.1–0.7 Hz (zero-phase: this runs on a finished window), count breaths."""
    t = np.asarray(times_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    t, v = t[ok], v[ok]
    if t.size < 6 or duration_s < 15:
        return None
    grid = np.arange(t[0], t[-1], 1.0 / DERIVED_FS)
    if grid.size < 40:
        return None
    series = np.interp(grid, t, v)
    series = series - series.mean()
    if np.ptp(series) == 0:
        return None
    if DERIVED_METHOD == "spectral":
        return _spectral_rate(series)
    y = filtfilt_sos(bandpass_sos(DERIVED_FS, *DERIVED_BAND_HZ), series)
    peaks = count_breaths(y)
    return _rate_from_peaks(peaks / DERIVED_FS)


def _spectral_rate(series: np.ndarray) -> float | None:
    """Frequency of the largest spectral peak in 0.1–0.7 Hz (Hann window, linear trend
    removed, zero-padded to 1024 points: 0.23 breaths/min bins)."""
    n = series.size
    t = np.arange(n)
    slope, intercept = np.polyfit(t, series, 1)
    x = (series - (slope * t + intercept)) * np.hanning(n)
    nfft = max(1024, 1 << (n - 1).bit_length())
    power = np.abs(np.fft.rfft(x, nfft)) ** 2
    freqs = np.fft.rfftfreq(nfft, 1.0 / DERIVED_FS)
    band = (freqs >= DERIVED_BAND_HZ[0]) & (freqs <= DERIVED_BAND_HZ[1])
    if not band.any() or power[band].max() <= 0:
        return None
    return float(60.0 * freqs[band][np.argmax(power[band])])


def derived_resp_rate(
    beat_times_s: np.ndarray,
    amplitudes: np.ndarray,
    baselines: np.ndarray | None,
    duration_s: float,
) -> RespEstimate:
    """Breathing rate from beat/pulse modulations: AM (``amplitudes``), FM (beat-to-beat
    intervals) and BW (``baselines``, when given), fused by median. Quality is the
    agreement between the modulations (Karlen 2013: estimates within 4 breaths/min)."""
    t = np.asarray(beat_times_s, dtype=np.float64)
    if t.size < 6:
        return RespEstimate(None, np.zeros(0), 0.0, False)
    rates = []
    am = _modulation_rate(t, amplitudes, duration_s)
    fm = _modulation_rate(t[1:], np.diff(t), duration_s)
    rates = [r for r in (am, fm) if r is not None]
    if baselines is not None:
        bw = _modulation_rate(t, baselines, duration_s)
        if bw is not None:
            rates.append(bw)
    if not rates:
        return RespEstimate(None, np.zeros(0), 0.0, False)
    rate = float(np.median(rates))
    spread = float(np.ptp(rates)) if len(rates) > 1 else 8.0
    quality = float(np.clip(1.0 - spread / 8.0, 0.0, 1.0))
    return RespEstimate(rate, np.zeros(0), round(quality, 3), len(rates) >= 2 and spread <= 4.0)
