"""Causal IIR filters that carry their state from chunk to chunk.

Every filter here is a cascade of second-order sections run with :func:`scipy.signal.sosfilt`
and its ``zi`` state, so filtering a signal chunk by chunk gives exactly the same output as
filtering it in one piece, whatever the chunk sizes (a property the tests check). Causal
filters, not zero-phase ones: a stream cannot look ahead. The phase lag of the band-passes
below is a few milliseconds at QRS frequencies, far inside the 150 ms beat-match window.

Bands:

* ECG 0.5–40 Hz: the AHA/IEC 60601-2-27 *monitoring* bandwidth (0.5 Hz removes baseline
  wander from breathing and movement, 40 Hz removes EMG and most mains interference while
  keeping the QRS), with an optional 50/60 Hz notch for the mains fundamental.
* PPG 0.5–8 Hz: the cardiac fundamental (0.5–4 Hz for 30–240 bpm) plus a harmonic that
  keeps the systolic upstroke sharp (Elgendi 2012, "On the analysis of fingertip PPG").
* Respiration 0.1–0.7 Hz: 6–42 breaths/min at -3 dB (the second-order roll-off still passes
  ~50/min); cardiac oscillation in impedance pneumography (>= 0.8 Hz) is what limits it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal as sps

try:  # The Cython kernel behind sosfilt: same arithmetic, without ~45 µs of argument
    # normalisation per call, which dominates for 1 s chunks (tests pin equality).
    from scipy.signal._sosfilt import _sosfilt as _sosfilt_kernel
except ImportError:  # pragma: no cover - other scipy layouts
    _sosfilt_kernel = None

ECG_BAND_HZ = (0.5, 40.0)
PPG_BAND_HZ = (0.5, 8.0)
RESP_BAND_HZ = (0.1, 0.7)
QRS_BAND_HZ = (5.0, 15.0)  # Pan & Tompkins 1985: where QRS energy dominates P/T waves and noise


@lru_cache(maxsize=256)
def bandpass_sos(fs: float, low_hz: float, high_hz: float, order: int = 2) -> np.ndarray:
    """Butterworth band-pass as second-order sections; the upper edge is clipped below
    Nyquist so low sampling rates still get a valid (if narrower) filter."""
    nyq = fs / 2.0
    high = min(high_hz, 0.45 * fs)
    low = min(low_hz, high / 2.0)
    sos = sps.butter(order, [low / nyq, high / nyq], btype="bandpass", output="sos")
    sos.setflags(write=False)
    return sos


@lru_cache(maxsize=64)
def notch_sos(fs: float, mains_hz: float, quality: float = 30.0) -> np.ndarray:
    """Second-order IIR notch at the mains frequency (Q = 30: ~2 Hz wide at 50/60 Hz)."""
    if mains_hz >= fs / 2.0:
        return np.zeros((0, 6))
    b, a = sps.iirnotch(mains_hz, quality, fs=fs)
    sos = sps.tf2sos(b, a)
    sos.setflags(write=False)
    return sos


class StreamingSosFilter:
    """A SOS cascade with its state: ``process`` chunk after chunk == ``sosfilt`` on the whole.

    The state starts at the filter's steady state for the first sample's value, so a signal
    with a DC offset (ADC counts, PPG) does not produce a start-up step response. That depends
    only on the first sample, so chunking still does not matter.
    """

    __slots__ = ("_sos", "_zi", "_zi_unit")

    def __init__(self, sos: np.ndarray) -> None:
        self._sos = np.array(sos, dtype=np.float64)  # sosfilt needs a writable copy
        self._zi_unit = sps.sosfilt_zi(self._sos) if len(self._sos) else np.zeros((0, 2))
        self._zi: np.ndarray | None = None

    def reset(self) -> None:
        self._zi = None

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0 or len(self._sos) == 0:
            return x.copy()
        if self._zi is None:
            self._zi = self._zi_unit * x[0]
        return sosfilt_stateful(self._sos, x, self._zi)


def sosfilt_stateful(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> np.ndarray:
    """``sosfilt(sos, x, zi)`` updating ``zi`` (shape (n_sections, 2)) in place."""
    if _sosfilt_kernel is not None:
        y = np.array(x, dtype=np.float64, order="C", ndmin=2)
        z = zi.reshape(1, *zi.shape)
        _sosfilt_kernel(sos, y, z)
        return y[0]
    y, zf = sps.sosfilt(sos, x, zi=zi)
    zi[...] = zf
    return y


@lru_cache(maxsize=256)
def _unit_zi(sos_bytes: bytes, n_sections: int) -> np.ndarray:
    sos = np.frombuffer(sos_bytes, dtype=np.float64).reshape(n_sections, 6).copy()
    zi = sps.sosfilt_zi(sos)
    zi.setflags(write=False)
    return zi


def filtfilt_sos(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Zero-phase filtering of a finished segment (odd extension padding, as
    :func:`scipy.signal.sosfiltfilt`), with the filter's unit state cached: this runs on
    short per-window series every hop, where recomputing ``sosfilt_zi`` dominated."""
    sos = np.array(sos, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    zi = _unit_zi(sos.tobytes(), sos.shape[0])
    pad = min(3 * (2 * sos.shape[0] + 1), x.size - 1)
    if pad < 1:
        return x.copy()
    ext = np.concatenate([2 * x[0] - x[pad:0:-1], x, 2 * x[-1] - x[-2 : -pad - 2 : -1]])
    y = sosfilt_stateful(sos, ext, zi * ext[0])
    y = y[::-1]
    y = sosfilt_stateful(sos, y, zi * y[0])
    return y[::-1][pad:-pad]


def ecg_filter_sos(fs: float, mains_hz: float | None = None) -> np.ndarray:
    sos = bandpass_sos(fs, *ECG_BAND_HZ)
    if mains_hz:
        sos = np.vstack([sos, notch_sos(fs, mains_hz)])
    return sos


def ecg_filter(fs: float, mains_hz: float | None = None) -> StreamingSosFilter:
    """Streaming ECG band-pass 0.5–40 Hz (+ optional 50/60 Hz notch)."""
    return StreamingSosFilter(ecg_filter_sos(fs, mains_hz))


def ppg_filter(fs: float) -> StreamingSosFilter:
    """Streaming PPG band-pass 0.5–8 Hz."""
    return StreamingSosFilter(bandpass_sos(fs, *PPG_BAND_HZ))


def resp_filter(fs: float) -> StreamingSosFilter:
    """Streaming respiration band-pass 0.1–0.7 Hz."""
    return StreamingSosFilter(bandpass_sos(fs, *RESP_BAND_HZ))


def ecg_bandpass(x: np.ndarray, fs: float, mains_hz: float | None = None) -> np.ndarray:
    """Whole-signal version of :func:`ecg_filter` (same causal filter, same output)."""
    return ecg_filter(fs, mains_hz).process(x)


def ppg_bandpass(x: np.ndarray, fs: float) -> np.ndarray:
    return ppg_filter(fs).process(x)


def resp_bandpass(x: np.ndarray, fs: float) -> np.ndarray:
    return resp_filter(fs).process(x)
