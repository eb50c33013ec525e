"""Signal preprocessing shared by training, evaluation and the inference runtime.

Everything a model sees goes through these functions, so the runtime and the training
data cannot drift apart: resampling to the pipeline ECG rate, band-pass, beat-segment
extraction with amplitude normalisation, RR-interval context features and rhythm-window
normalisation.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import signal as sps

ECG_FS = 250.0  # pipeline ECG rate (Hz)

# Beat segment: 0.256 s before to 0.448 s after the R peak (de Chazal-style window that
# holds the P wave, QRS and most of the T wave at normal rates).
BEAT_PRE = 64
BEAT_POST = 112
BEAT_LEN = BEAT_PRE + BEAT_POST
# Beat-model leads: the primary lead (MLII / the monitor's first ECG lead) and, where the
# recording has one, a second lead cut at the same R positions. An absent second lead is
# an all-zero channel (the model reads that as "one lead").
N_LEADS = 2

# RR context: pre-RR, post-RR, local RR, and their ratios. Ratios to the local rhythm are
# what carries supraventricular prematurity across patients (de Chazal et al. 2004;
# Llamedo & Martinez 2011 normalise RR per patient for the same reason).
RR_FEATURES = ("pre_rr_s", "post_rr_s", "local_rr_s", "pre_over_local",
               "post_over_local", "post_over_pre")
# Morphology relative to the patient's own dominant beat (median of the neighbouring
# beats, ~one 10-s window): a beat that does not look like the patient's usual beat is
# the patient-independent cue for ectopy, whatever the patient's baseline morphology
# (bundle branch blocks are N in AAMI but look "wide" in absolute terms).
MORPH_FEATURES = ("qrs_corr", "full_corr", "qrs_rms_diff", "qrs_amp_ratio")
CONTEXT_FEATURES = RR_FEATURES + MORPH_FEATURES
N_RR_FEATURES = len(RR_FEATURES)
N_CONTEXT_FEATURES = len(CONTEXT_FEATURES)
LOCAL_RR_BEATS = 10
TEMPLATE_HALF_BEATS = 5  # template = median of the 11 beats centred on the beat
_QRS_HALF = 25  # ±100 ms around R

RHYTHM_SECONDS = 10.0
RHYTHM_LEN = int(RHYTHM_SECONDS * ECG_FS)

_BANDPASS_SOS = sps.butter(2, [0.5, 40.0], btype="bandpass", fs=ECG_FS, output="sos")


def ecg_resample(x: np.ndarray, fs_in: float, fs_out: float = ECG_FS) -> np.ndarray:
    """Polyphase resampling (anti-aliased) from ``fs_in`` to ``fs_out``."""
    if abs(fs_in - fs_out) < 1e-9:
        return np.asarray(x, dtype=np.float64)
    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    return sps.resample_poly(np.asarray(x, dtype=np.float64), ratio.numerator, ratio.denominator)


def ecg_bandpass(x: np.ndarray) -> np.ndarray:
    """0.5–40 Hz zero-phase band-pass at :data:`ECG_FS` (removes baseline wander and mains
    harmonics but keeps QRS morphology; AHA diagnostic bandwidth for monitoring)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < 16:
        return x - (np.median(x) if x.size else 0.0)
    padlen = min(3 * 6, x.size - 1)
    return sps.sosfiltfilt(_BANDPASS_SOS, x, padlen=padlen)


def ecg_bandpass_many(xs: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`ecg_bandpass` of many windows, bit-identical to one call each: windows of
    equal length go through one 2-D ``sosfiltfilt`` (its rows are filtered with the 1-D
    call's arithmetic), which saves scipy's per-call set-up (the initial conditions are
    solved for on every call) for each of a poll's windows."""
    out: list[np.ndarray] = [np.zeros(0)] * len(xs)
    groups: dict[int, list[int]] = {}
    for i, x in enumerate(xs):
        if x.size >= 16 + 3:  # full padding (padlen 18): the batched path
            groups.setdefault(x.size, []).append(i)
        else:
            out[i] = ecg_bandpass(x)
    for rows in groups.values():
        filtered = sps.sosfiltfilt(_BANDPASS_SOS, np.stack([np.asarray(xs[i], dtype=np.float64) for i in rows]),
                                   padlen=18, axis=-1)
        for i, row in zip(rows, filtered, strict=True):
            out[i] = row
    return out


def qrs_amplitudes(ecg: np.ndarray, r_samples: np.ndarray) -> np.ndarray:
    """Peak-to-peak amplitude within ±50 ms of each R peak."""
    half = int(0.05 * ECG_FS)
    out = np.zeros(len(r_samples))
    n = ecg.size
    for i, r in enumerate(r_samples):
        lo, hi = max(0, int(r) - half), min(n, int(r) + half + 1)
        out[i] = float(np.ptp(ecg[lo:hi])) if hi > lo else 0.0
    return out


def beat_scale(amplitudes: np.ndarray) -> float:
    """One amplitude scale for a group of beats: the median QRS peak-to-peak (robust to a
    few ectopic or noisy beats), floored to avoid dividing by flat lines."""
    if amplitudes.size == 0:
        return 1.0
    return float(max(np.median(amplitudes), 1e-3))


def beat_segments(ecg: np.ndarray, r_samples: np.ndarray, scales: np.ndarray | float) -> np.ndarray:
    """Extract ``(n, 1, BEAT_LEN)`` float32 segments centred on ``r_samples``.

    Parts of a segment outside the signal are edge-padded. Each segment has its median
    removed and is divided by its scale (the local median QRS amplitude) so that amplitude
    relative to the patient's own normal beats survives (large V beats stay large).
    """
    r = np.asarray(r_samples, dtype=np.int64)
    n = ecg.size
    idx = r[:, None] + np.arange(-BEAT_PRE, BEAT_POST)[None, :]
    idx = np.clip(idx, 0, max(n - 1, 0))
    seg = ecg[idx] if n else np.zeros(idx.shape)
    seg = seg - np.median(seg, axis=1, keepdims=True)
    seg = seg / np.broadcast_to(np.asarray(scales, dtype=np.float64), (len(r),))[:, None]
    return np.clip(seg, -20, 20).astype(np.float32)[:, None, :]


def rr_features(pre_rr_s: np.ndarray, post_rr_s: np.ndarray, local_rr_s: np.ndarray) -> np.ndarray:
    """``(n, N_RR_FEATURES)`` float32 RR context features."""
    pre = np.clip(np.asarray(pre_rr_s, dtype=np.float64), 0.1, 4.0)
    post = np.clip(np.asarray(post_rr_s, dtype=np.float64), 0.1, 4.0)
    local = np.clip(np.asarray(local_rr_s, dtype=np.float64), 0.2, 3.0)
    feats = np.stack([pre, post, local, pre / local, post / local, post / pre], axis=1)
    return feats.astype(np.float32)


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1)) + 1e-9
    return (a * b).sum(axis=1) / den


def morphology_features(segments: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """``(n, 4)`` similarity of each beat segment to its local template (both
    ``(n, 1, BEAT_LEN)`` as from :func:`beat_segments`)."""
    b = np.asarray(segments, dtype=np.float64)[:, 0, :]
    t = np.asarray(templates, dtype=np.float64)[:, 0, :]
    q = slice(BEAT_PRE - _QRS_HALF, BEAT_PRE + _QRS_HALF + 1)
    qrs_corr = _corr(b[:, q], t[:, q])
    full_corr = _corr(b, t)
    rms = np.sqrt(((b[:, q] - t[:, q]) ** 2).mean(axis=1)) / (
        np.sqrt((t[:, q] ** 2).mean(axis=1)) + 1e-3)
    amp = np.ptp(b[:, q], axis=1) / (np.ptp(t[:, q], axis=1) + 1e-3)
    feats = np.stack([qrs_corr, full_corr, np.clip(rms, 0, 10), np.clip(amp, 0, 10)], axis=1)
    return feats.astype(np.float32)


def beat_context(pre_rr_s: np.ndarray, post_rr_s: np.ndarray, local_rr_s: np.ndarray,
                 segments: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """``(n, N_CONTEXT_FEATURES)`` float32: RR features then morphology features."""
    return np.concatenate([rr_features(pre_rr_s, post_rr_s, local_rr_s),
                           morphology_features(segments, templates)], axis=1)


def beat_templates(segments: np.ndarray, half: int = TEMPLATE_HALF_BEATS) -> np.ndarray:
    """Per-beat local template: median of the segments of the ``2*half+1`` beats centred on
    each beat (the runtime uses the median of all beats of its window, the same span)."""
    seg = np.asarray(segments)
    out = np.empty_like(seg)
    for i in range(seg.shape[0]):
        out[i] = np.median(seg[max(0, i - half): i + half + 1], axis=0)
    return out


def local_rr(rr_s: np.ndarray, n_beats: int = LOCAL_RR_BEATS) -> np.ndarray:
    """Causal local RR: median of the last ``n_beats`` RR intervals ending at each entry
    (median, not mean, so one premature beat does not move its own reference)."""
    rr = np.asarray(rr_s, dtype=np.float64)
    out = np.empty_like(rr)
    for i in range(rr.size):
        out[i] = np.median(rr[max(0, i - n_beats + 1): i + 1])
    return out


RHYTHM_RR_FEATURES = (
    "hr_per_100bpm",  # 60 / mean RR / 100
    "rr_cv",  # SD / mean of RR
    "rmssd_rel",  # RMSSD / mean RR
    "median_abs_drr_rel",  # median |successive RR difference| / median RR
    "share_drr_over_10pct",  # successive differences > 10 % of the median RR
    "rr_range_rel",  # (max - min) / median RR
    "share_rr_off_15pct",  # RR intervals more than 15 % off the median
    "few_beats",  # 1 when fewer than 3 intervals: the others are then 0
)
N_RHYTHM_RR_FEATURES = len(RHYTHM_RR_FEATURES)


def rhythm_rr_features(r_samples: np.ndarray, length: int = RHYTHM_LEN, fs: float = ECG_FS) -> np.ndarray:
    """RR irregularity of one rhythm window from the R peaks inside it (sample indices into
    the window). AF is "irregularly irregular" (Dash et al. 2009: normalised RMSSD and
    successive-difference statistics), ectopy makes a few intervals far off the median, and
    a 10-s CNN sees too few beats to learn these statistics reliably from 2,000 recordings,
    so they are given to it (as the CinC 2017 winners did with hand-made RR features)."""
    r = np.sort(np.asarray(r_samples, dtype=np.float64).ravel())
    r = r[(r >= 0) & (r < length)]
    out = np.zeros(N_RHYTHM_RR_FEATURES, dtype=np.float32)
    rr = np.diff(r) / fs
    rr = rr[rr > 0]
    if rr.size < 3:
        out[0] = r.size * 60.0 / (length / fs) / 100.0
        out[7] = 1.0
        return out
    mean, med = float(rr.mean()), float(np.median(rr))
    d = np.abs(np.diff(rr))
    out[0] = 60.0 / mean / 100.0
    out[1] = rr.std() / mean
    out[2] = np.sqrt(np.mean(d * d)) / mean
    out[3] = np.median(d) / med
    out[4] = np.mean(d > 0.1 * med)
    out[5] = (rr.max() - rr.min()) / med
    out[6] = np.mean(np.abs(rr - med) > 0.15 * med)
    return np.clip(out, 0.0, 5.0)


def rhythm_normalise(x: np.ndarray) -> np.ndarray:
    """Per-window scale normalisation for the rhythm model: zero median, unit robust
    amplitude (99th percentile of |x|, i.e. about the R-peak height), clipped."""
    x = np.asarray(x, dtype=np.float64)
    x = x - np.median(x, axis=-1, keepdims=True)
    scale = np.percentile(np.abs(x), 99, axis=-1, keepdims=True)
    scale = np.maximum(scale, 1e-3)
    return np.clip(x / scale, -10, 10).astype(np.float32)


def fit_length_start(n: int, length: int) -> int:
    """Where :func:`fit_length` puts sample 0 of its input relative to the output start:
    the crop start for a long input, minus the left padding for a short one."""
    return (n - length) // 2 if n >= length else -((length - n) // 2)


def fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """Centre-crop or zero-pad (both sides) a 1-D signal to ``length`` samples."""
    if x.size >= length:
        start = (x.size - length) // 2
        return x[start: start + length]
    out = np.zeros(length, dtype=x.dtype)
    start = (length - x.size) // 2
    out[start: start + x.size] = x
    return out
