from __future__ import annotations

import numpy as np

from models import preprocess as pp
from models.runtime import ModelRuntime


def test_vf_detector_separates_flutter_from_sinus(runtime: ModelRuntime) -> None:
    fs = pp.ECG_FS
    t = np.arange(int(10 * fs)) / fs
    # Ventricular flutter: large near-sinusoidal oscillation at ~4.5 Hz (270/min).
    flutter = pp.ecg_bandpass(np.sin(2 * np.pi * 4.5 * t) + 0.05 * np.sin(2 * np.pi * 0.3 * t))
    score_f, secs_f = runtime.vf_model.analyse(flutter)
    # Sinus rhythm at 75 bpm: narrow QRS spikes on a flat baseline.
    sinus = np.zeros_like(t)
    for r in np.arange(0.4, 10, 0.8):
        sinus += np.exp(-0.5 * ((t - r) / 0.012) ** 2)
    score_s, secs_s = runtime.vf_model.analyse(pp.ecg_bandpass(sinus))
    assert score_f is not None and score_s is not None
    assert score_f > 0.5 > score_s
    assert secs_f >= 4.0 and secs_s == 0.0


def test_vf_short_window_is_not_measurable(runtime: ModelRuntime) -> None:
    assert runtime.vf_model.analyse(np.zeros(100)) == (None, 0.0)


def test_vf_of_many_windows_is_bit_identical_to_one_at_a_time(runtime: ModelRuntime) -> None:
    rng = np.random.default_rng(5)
    fs = pp.ECG_FS
    t = np.arange(int(10 * fs)) / fs
    windows = [pp.ecg_bandpass(np.sin(2 * np.pi * 4.5 * t) + 0.1 * rng.normal(size=t.size)),
               pp.ecg_bandpass(rng.normal(size=t.size)), np.zeros(100), pp.ecg_bandpass(rng.normal(size=int(3 * fs))),
               pp.ecg_bandpass(rng.normal(size=int(10.5 * fs)))]
    assert runtime.vf_model.analyse_many(windows) == [runtime.vf_model.analyse(w) for w in windows]
