"""PPG pulses, breathing rate (RESP and derived) and beat-interval measures."""

from __future__ import annotations

import neurokit2 as nk
import numpy as np
import pytest

from stream.dsp import hrv
from stream.dsp.filters import resp_bandpass
from stream.dsp.ppg import perfusion_index, ppg_pulses
from stream.dsp.resp import count_breaths, derived_resp_rate, resp_rate, resp_rate_whole


@pytest.mark.parametrize("rate", [55, 90, 150])
def test_ppg_pulse_rate(rate: int) -> None:
    fs = 125.0
    x = nk.ppg_simulate(duration=30, sampling_rate=int(fs), heart_rate=rate, random_state=rate)
    _, pulses, amps, _ = ppg_pulses(x, fs)
    measured = hrv.heart_rate(np.diff(pulses) / fs)
    assert measured is not None and abs(measured - rate) < 0.05 * rate
    assert np.all(amps > 0)


@pytest.mark.parametrize("rate", [8, 15, 30])
def test_resp_rate_from_simulated_breathing(rate: int) -> None:
    fs = 25.0
    x = nk.rsp_simulate(
        duration=64, sampling_rate=int(fs), respiratory_rate=rate, random_state=rate
    )
    est = resp_rate_whole(x, fs)
    assert est.rate_bpm is not None and abs(est.rate_bpm - rate) < 1.5


def test_count_breaths_ignores_small_wiggles() -> None:
    fs = 25.0
    t = np.arange(int(60 * fs)) / fs
    x = np.sin(2 * np.pi * 0.25 * t) + 0.03 * np.sin(2 * np.pi * 1.3 * t)
    peaks = count_breaths(x)
    assert 14 <= peaks.size <= 16


def test_derived_resp_from_modulated_beats() -> None:
    """Beats at 72/min whose amplitude and timing are modulated by 12 breaths/min."""
    rng = np.random.default_rng(0)
    t = np.cumsum(np.full(40, 60 / 72.0))
    t = t + 0.03 * np.sin(2 * np.pi * 0.2 * t)
    amps = 1.0 + 0.1 * np.sin(2 * np.pi * 0.2 * t) + 0.01 * rng.standard_normal(t.size)
    est = derived_resp_rate(t, amps, None, float(t[-1] - t[0]))
    assert est.rate_bpm is not None and abs(est.rate_bpm - 12) < 1.5


def test_hrv_and_extremes() -> None:
    rr_ms = np.array([800, 810, 790, 805, 795, 800.0])
    sdnn, rmssd = hrv.hrv_time(rr_ms)
    assert sdnn == pytest.approx(np.std(rr_ms, ddof=1))
    assert rmssd == pytest.approx(np.sqrt(np.mean(np.diff(rr_ms) ** 2)))
    beats = np.concatenate([np.arange(0, 5, 1.0), 4 + np.arange(1, 6) * 1.6])  # 60 then 37.5 bpm
    assert hrv.rate_extreme(beats, 5, lowest=True) == pytest.approx(37.5)
    assert hrv.rate_extreme(beats, 5, lowest=False) == pytest.approx(60.0)
    assert hrv.rate_extreme(beats[:4], 5, lowest=True) is None


def test_max_pause_includes_open_interval_and_straddling_pause() -> None:
    assert hrv.max_pause(np.array([1.0, 2.0, 3.0]), 0.0, 10.0) == pytest.approx(7.0)
    assert hrv.max_pause(np.array([2.0]), 0.0, 3.0, previous_s=-3.0) == pytest.approx(5.0)
    assert hrv.max_pause(np.zeros(0), 0.0, 10.0) == pytest.approx(10.0)


def test_irregularity_separates_af_like_from_regular() -> None:
    rng = np.random.default_rng(1)
    regular = 0.8 + 0.01 * rng.standard_normal(20)
    irregular = rng.uniform(0.4, 1.2, 20)
    assert hrv.rr_irregularity(regular) < 0.05 < 0.1 < hrv.rr_irregularity(irregular)


def test_perfusion_index() -> None:
    raw = np.full(100, 2.0)
    assert perfusion_index(raw, np.array([0.04, 0.04])) == pytest.approx(2.0)
    assert perfusion_index(raw - 5, np.array([0.04])) is None


@pytest.mark.realdata
def test_bidmc_breathing_rate_one_record(data_dir) -> None:
    from stream.dsp_eval import evaluate_resp

    folder = data_dir / "bidmc"
    if not (folder / "bidmc_01_Signals.csv.gz").is_file():
        pytest.skip("bidmc_01 not present")
    result = evaluate_resp(folder, ["01"])
    assert result["windows"] == 15
    assert result["mae_resp"] < 1.5
    assert result["mae_ppg"] < 3.0


def test_breath_floor_stops_noise_being_counted_as_breaths() -> None:
    fs = 25.0
    rng = np.random.default_rng(1)
    noise = 0.01 * rng.standard_normal(int(30 * fs))
    y = resp_bandpass(noise, fs)
    # The window-relative merge threshold counts filtered noise as breaths...
    assert count_breaths(y).size > 3
    # ...a floor from the patient's own breaths (span ~1 here) does not.
    assert count_breaths(y, min_amplitude=0.2).size == 0
    est = resp_rate(y, fs, min_breath_amplitude=0.2)
    assert est.rate_bpm is None and est.breaths_s.size == 0


@pytest.mark.realdata
def test_bidmc_as_physionet_ships_it_plain_csv_and_a_clear_error_when_missing(data_dir, tmp_path) -> None:
    """PhysioNet's zip has bidmc_csv/*.csv (plain); the shared subset has .csv.gz. Both
    read the same; a missing record says which files were looked for."""
    import gzip

    from typer.testing import CliRunner

    from stream.cli.main import app
    from stream.dsp_eval import evaluate_resp

    folder = data_dir / "bidmc"
    if not (folder / "bidmc_01_Signals.csv.gz").is_file():
        pytest.skip("bidmc_01 not present")
    plain = tmp_path / "bidmc_csv"
    plain.mkdir()
    for kind in ("Signals", "Breaths", "Numerics"):
        (plain / f"bidmc_01_{kind}.csv").write_bytes(gzip.decompress((folder / f"bidmc_01_{kind}.csv.gz").read_bytes()))
    assert evaluate_resp(plain, ["01"]) == evaluate_resp(folder, ["01"])
    result = CliRunner().invoke(app, ["eval", "resp", "--data-dir", str(plain), "--records", "02"])
    assert result.exit_code == 2
    assert "bidmc_02_Signals.csv.gz and bidmc_02_Signals.csv" in result.output
