"""Signal quality flags on flat lines, clipping, noise and clean signals."""

from __future__ import annotations

import neurokit2 as nk
import numpy as np

from stream.dsp.filters import ecg_bandpass, ppg_bandpass
from stream.dsp.ppg import ppg_pulses
from stream.dsp.quality import ecg_quality, ppg_quality
from stream.dsp.rpeaks import ecg_rpeaks

FS = 250.0


def _ecg_window(x: np.ndarray):
    bp = ecg_bandpass(x, FS)
    beats = ecg_rpeaks(x, FS)
    return ecg_quality(x, bp, FS, beats)


def test_clean_ecg_is_usable() -> None:
    x = nk.ecg_simulate(
        duration=10, sampling_rate=int(FS), heart_rate=70, noise=0.01, random_state=0
    )
    q = _ecg_window(x)
    assert q.usable and q.quality > 0.7 and not q.flat and not q.saturated


def test_flat_line_is_lead_off() -> None:
    q = _ecg_window(np.full(2500, 0.42))
    assert q.flat and not q.usable and q.quality == 0.0 and q.technical_fault


def test_flat_with_sparse_steps_is_flat() -> None:
    x = np.zeros(2500)
    x[::200] = 0.01  # isolated ADC flickers on a disconnected lead
    assert _ecg_window(x).flat


def test_clipped_ecg_is_saturated() -> None:
    x = nk.ecg_simulate(duration=10, sampling_rate=int(FS), heart_rate=70, random_state=1)
    clipped = np.clip(5 * x, -0.3, 0.3)
    q = _ecg_window(clipped)
    assert q.saturated and not q.usable


def test_white_noise_is_not_usable_ecg() -> None:
    x = np.random.default_rng(0).standard_normal(2500)
    q = _ecg_window(x)
    assert not q.usable and q.quality < 0.6


def test_asystole_baseline_stays_usable() -> None:
    """Asystole after a rhythm: low-amplitude baseline, no QRS. The detector must not turn
    the baseline noise into beats, and the window must not be hidden as poor signal."""
    rng = np.random.default_rng(1)
    rhythm = nk.ecg_simulate(duration=20, sampling_rate=int(FS), heart_rate=70, random_state=4)
    t = np.arange(int(20 * FS)) / FS
    baseline = 0.05 * np.sin(2 * np.pi * 0.3 * t) + 0.005 * rng.standard_normal(t.size)
    x = np.concatenate([rhythm, baseline + rhythm[-1]])
    bp = ecg_bandpass(x, FS)
    beats = ecg_rpeaks(x, FS, chunk_s=1.0)
    assert beats.max() < 20.5 * FS
    w0 = int(30 * FS)
    q = ecg_quality(x[w0:], bp[w0:], FS, beats[beats >= w0] - w0)
    assert q.usable and not q.technical_fault


def test_ppg_quality_clean_vs_noise() -> None:
    fs = 125.0
    x = nk.ppg_simulate(duration=10, sampling_rate=int(fs), heart_rate=80, random_state=2)
    filt, pulses, _, _ = ppg_pulses(x, fs)
    good = ppg_quality(x, filt, fs, pulses)
    assert good.usable and good.quality > 0.7
    noise = np.random.default_rng(3).standard_normal(x.size)
    nf = ppg_bandpass(noise, fs)
    _, npulses, _, _ = ppg_pulses(noise, fs)
    bad = ppg_quality(noise, nf, fs, npulses)
    assert not bad.usable and bad.quality < good.quality


def test_ppg_motion_artefact_is_not_usable() -> None:
    fs = 125.0
    x = nk.ppg_simulate(duration=10, sampling_rate=int(fs), heart_rate=75, random_state=2)
    rng = np.random.default_rng(4)
    t = np.arange(x.size) / fs
    # Movement: large, symmetric low-frequency swings plus broadband noise, in bursts.
    burst = (np.sin(2 * np.pi * 0.3 * t) > -0.3).astype(float)
    motion = burst * np.ptp(x) * (
        1.5 * np.sin(2 * np.pi * 1.7 * t + rng.uniform(0, 6)) + 0.5 * rng.standard_normal(t.size)
    )
    clean_f, clean_p, _, _ = ppg_pulses(x, fs)
    moved_f, moved_p, _, _ = ppg_pulses(x + motion, fs)
    clean = ppg_quality(x, clean_f, fs, clean_p)
    moved = ppg_quality(x + motion, moved_f, fs, moved_p)
    assert clean.usable
    assert not moved.usable and moved.quality < clean.quality
