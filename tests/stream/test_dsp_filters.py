"""Streaming filters and detectors give the same output whatever the chunking."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.dsp.filters import ecg_filter, ppg_filter, resp_filter
from stream.dsp.ppg import StreamingPulseDetector
from stream.dsp.rpeaks import StreamingRPeakDetector


def _signal(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 250.0
    return (
        0.8 * np.sin(2 * np.pi * 1.2 * t) ** 15
        + 0.3 * np.sin(2 * np.pi * 0.2 * t)
        + 0.05 * rng.standard_normal(n)
        + 2.0
    )


def _cuts(sizes: list[int], n: int) -> list[slice]:
    out, i, k = [], 0, 0
    while i < n:
        step = sizes[k % len(sizes)]
        out.append(slice(i, min(n, i + step)))
        i += step
        k += 1
    return out


chunk_sizes = st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None)
@given(
    sizes=chunk_sizes,
    seed=st.integers(0, 1000),
    which=st.sampled_from(["ecg", "ecg_notch", "ppg", "resp"]),
)
def test_filters_chunked_equal_whole(sizes: list[int], seed: int, which: str) -> None:
    x = _signal(seed, 3000)
    make = {
        "ecg": lambda: ecg_filter(250.0),
        "ecg_notch": lambda: ecg_filter(250.0, mains_hz=50.0),
        "ppg": lambda: ppg_filter(125.0),
        "resp": lambda: resp_filter(25.0),
    }[which]
    whole = make().process(x)
    f = make()
    chunked = np.concatenate([f.process(x[s]) for s in _cuts(sizes, x.size)])
    np.testing.assert_allclose(chunked, whole, rtol=1e-10, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(sizes=chunk_sizes, seed=st.integers(0, 1000))
def test_rpeak_detector_chunk_invariant(sizes: list[int], seed: int) -> None:
    x = _signal(seed, 250 * 12)
    whole = StreamingRPeakDetector(250.0).process(x).beats
    det = StreamingRPeakDetector(250.0)
    chunked = np.concatenate([det.process(x[s]).beats for s in _cuts(sizes, x.size)])
    np.testing.assert_array_equal(chunked, whole)
    assert whole.size >= 10  # 1.2 Hz "beats" for 12 s


@settings(max_examples=25, deadline=None)
@given(sizes=chunk_sizes, seed=st.integers(0, 1000))
def test_pulse_detector_chunk_invariant(sizes: list[int], seed: int) -> None:
    x = _signal(seed, 250 * 12)
    whole = StreamingPulseDetector(250.0).process(x).pulses
    det = StreamingPulseDetector(250.0)
    chunked = np.concatenate([det.process(x[s]).pulses for s in _cuts(sizes, x.size)])
    np.testing.assert_array_equal(chunked, whole)


def test_notch_removes_mains() -> None:
    fs = 500.0
    t = np.arange(int(10 * fs)) / fs
    hum = np.sin(2 * np.pi * 50 * t)
    y = ecg_filter(fs, mains_hz=50.0).process(hum)
    assert np.abs(y[int(2 * fs) :]).max() < 0.05
    y_no_notch = ecg_filter(fs).process(hum)
    assert np.abs(y_no_notch[int(2 * fs) :]).max() > 0.3  # 40 Hz low-pass alone leaves it


def test_dc_offset_does_not_ring() -> None:
    x = np.full(2000, 1500.0)  # ADC counts, no signal
    assert np.abs(ppg_filter(125.0).process(x)).max() < 1e-6


def test_fast_kernel_matches_scipy_sosfilt() -> None:
    from scipy import signal as sps

    from stream.dsp.filters import bandpass_sos, filtfilt_sos, sosfilt_stateful

    rng = np.random.default_rng(5)
    x = rng.standard_normal(1000)
    sos = np.array(bandpass_sos(250.0, 0.5, 40.0))
    zi0 = sps.sosfilt_zi(sos) * x[0]
    expected, zf = sps.sosfilt(sos, x, zi=zi0)
    zi = zi0.copy()
    np.testing.assert_allclose(sosfilt_stateful(sos, x, zi), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(zi, zf, rtol=1e-12, atol=1e-12)
    slow = sps.sosfiltfilt(np.array(bandpass_sos(4.0, 0.1, 0.7)), x[:200])
    np.testing.assert_allclose(filtfilt_sos(bandpass_sos(4.0, 0.1, 0.7), x[:200]), slow, atol=1e-9)
