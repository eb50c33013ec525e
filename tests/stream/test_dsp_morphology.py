"""QRS width and spectral SQIs on synthetic and simulated ECG (stream/dsp/morphology.py)."""

from __future__ import annotations

import neurokit2 as nk
import numpy as np

from stream.dsp.filters import ecg_bandpass
from stream.dsp.morphology import ecg_morphology, ecg_spectral_sqi, ecg_spectral_sqi_many, qrs_widths_ms
from stream.dsp.rpeaks import ecg_rpeaks

FS = 250.0


def _beats(width_s: float, rate_bpm: float = 75.0, seconds: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian 'QRS complexes' of a given width (+-2 sigma = width) on a flat baseline."""
    t = np.arange(int(seconds * FS)) / FS
    peaks = np.arange(0.5, seconds - 0.3, 60.0 / rate_bpm)
    sigma = width_s / 4.0
    x = sum(np.exp(-0.5 * ((t - p) / sigma) ** 2) for p in peaks)
    return np.asarray(x), np.round(peaks * FS).astype(np.int64)


def test_a_wide_complex_measures_wider_than_a_narrow_one() -> None:
    narrow, beats_n = _beats(0.08)
    wide, beats_w = _beats(0.16)
    w_narrow = qrs_widths_ms(ecg_bandpass(narrow, FS), FS, beats_n)
    w_wide = qrs_widths_ms(ecg_bandpass(wide, FS), FS, beats_w)
    assert w_narrow.size >= 10 and w_wide.size >= 10
    assert np.median(w_wide) > 1.5 * np.median(w_narrow)


def test_beats_too_close_to_the_edges_are_left_out() -> None:
    x, beats = _beats(0.1)
    edge = np.array([5, beats[3], x.size - 5])
    assert qrs_widths_ms(ecg_bandpass(x, FS), FS, edge).size == 1


def test_spectral_sqis_tell_clean_ecg_from_noise_and_wander() -> None:
    clean = nk.ecg_simulate(duration=10, sampling_rate=int(FS), heart_rate=70, noise=0.01, random_state=1)
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 1.0, clean.size)
    t = np.arange(clean.size) / FS
    wander = clean + 3.0 * np.sin(2 * np.pi * 0.3 * t)
    p_clean, bas_clean, _ = ecg_spectral_sqi(clean, FS)
    p_noise, _, _ = ecg_spectral_sqi(noise, FS)
    _, bas_wander, _ = ecg_spectral_sqi(wander, FS)
    assert p_clean is not None and p_noise is not None and bas_clean is not None and bas_wander is not None
    assert p_clean > 0.5 > p_noise  # QRS energy sits in 5-15 Hz; white noise spreads to 40 Hz
    assert bas_clean > 0.8 > bas_wander


def test_morphology_of_a_simulated_window() -> None:
    x = nk.ecg_simulate(duration=10, sampling_rate=int(FS), heart_rate=80, noise=0.01, random_state=2)
    bp = ecg_bandpass(x, FS)
    m = ecg_morphology(x, bp, FS, ecg_rpeaks(x, FS))
    assert m.qrs_width_ms is not None and 40.0 <= m.qrs_width_ms <= 160.0
    assert m.qrs_width_max_ms is not None and m.qrs_width_max_ms >= m.qrs_width_ms
    # Too short a window for a spectrum, and no beats: nothing measured, nothing invented.
    short = ecg_morphology(x[:100], bp[:100], FS, np.zeros(0, dtype=np.int64))
    assert short.psqi is None and short.qrs_width_ms is None


def test_spectral_sqi_of_many_windows_is_bit_identical_to_one_at_a_time() -> None:
    """The batched call (one Welch per window length) must not change any published value."""
    rng = np.random.default_rng(3)
    windows = [rng.normal(size=2500).cumsum() for _ in range(6)]
    windows += [rng.normal(size=2499), rng.normal(size=120), np.full(2500, np.nan)]  # odd length, short, empty
    windows[1][100:200] = np.nan  # non-finite samples are dropped, as one at a time
    rates = [FS] * len(windows)
    rates[0] = 500.0
    many = ecg_spectral_sqi_many(windows, rates)
    assert many == [ecg_spectral_sqi(w, fs) for w, fs in zip(windows, rates, strict=True)]
    assert many[-1] == (None, None, None) and many[-2] == (None, None, None)
