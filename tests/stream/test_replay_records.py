from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import wfdb

from stream.replay.records import (
    detect_suite,
    ecg_lead_quality,
    fill_short_gaps,
    load_bidmc,
    load_bidmc_csv,
    load_challenge2015,
    load_mitdb,
    load_paths,
    rank_ecg_leads,
    resample_into_range,
    rhythm_episodes,
)
from stream.schema import Signal

FS = 250


def synthetic_ecg(seconds: float, fs: int = FS, hr_bpm: float = 75.0, amplitude: float = 1.0) -> np.ndarray:
    """Gaussian QRS-like spikes on a small baseline wander."""
    t = np.arange(int(seconds * fs)) / fs
    x = 0.05 * np.sin(2 * np.pi * 0.3 * t)
    for beat in np.arange(0.3, seconds, 60.0 / hr_bpm):
        x += amplitude * np.exp(-0.5 * ((t - beat) / 0.012) ** 2)
    return x.astype(np.float64)


def write_record(
    tmp_path: Path,
    name: str,
    names: list[str],
    columns: list[np.ndarray],
    fs: int = FS,
    units: list[str] | None = None,
) -> None:
    sig = np.column_stack(columns)
    wfdb.wrsamp(
        name,
        fs=fs,
        units=units or ["mV"] * len(names),
        sig_name=names,
        p_signal=sig,
        fmt=["16"] * len(names),
        write_dir=str(tmp_path),
    )


def test_fill_short_gaps_interpolates_short_runs_and_keeps_long_ones() -> None:
    x = np.arange(1000, dtype=np.float32)
    x[100:105] = np.nan  # 5 samples = 20 ms at 250 Hz: interpolated
    x[500:800] = np.nan  # 1.2 s: a real gap
    y = fill_short_gaps(x, 250.0)
    np.testing.assert_allclose(y[100:105], np.arange(100, 105), atol=1e-4)
    assert np.isnan(y[500:800]).all()
    assert np.isnan(x[100:105]).all(), "input must not be modified"


def test_fill_short_gaps_at_edges_uses_nearest_value() -> None:
    x = np.array([np.nan, np.nan, 3.0, 4.0, np.nan], dtype=np.float32)
    y = fill_short_gaps(x, 250.0)
    np.testing.assert_array_equal(y, [3, 3, 3, 4, 4])


def test_lead_quality_penalises_flat_and_nan_leads() -> None:
    good = synthetic_ecg(30)
    flat = np.zeros_like(good)
    holes = good.copy()
    holes[: len(holes) // 2] = np.nan
    assert ecg_lead_quality(good, FS) > 0.5
    assert ecg_lead_quality(flat, FS) == 0.0
    assert ecg_lead_quality(holes, FS) < 0.6 * ecg_lead_quality(good, FS)


def test_lead_ranking_prefers_ii_unless_clearly_worse() -> None:
    good = synthetic_ecg(30)
    slightly_noisier = good + 0.05 * np.random.default_rng(0).standard_normal(len(good))
    assert rank_ecg_leads({"V": (good, FS), "II": (slightly_noisier, FS)})[0] == "II"
    broken = np.full_like(good, np.nan)
    broken[:FS] = good[:FS]
    assert rank_ecg_leads({"II": (broken, FS), "V": (good, FS)})[0] == "V"
    # The rest follow by quality: the second ECG stream is the best remaining lead.
    assert rank_ecg_leads({"I": (broken, FS), "V": (good, FS), "II": (slightly_noisier, FS)}) == ["II", "V", "I"]
    assert rank_ecg_leads({}) == []


def test_resample_only_when_out_of_range() -> None:
    x = np.ones(500, dtype=np.float32)
    y, fs = resample_into_range(x, 360.0, Signal.ECG)
    assert fs == 360.0 and y is x
    y, fs = resample_into_range(np.sin(np.arange(500) / 5).astype(np.float32), 50.0, Signal.ECG)
    assert fs == 100.0 and len(y) == 1000


def test_rhythm_episodes_last_until_next_change() -> None:
    eps = rhythm_episodes([(0.0, "(N"), (10.0, "(AFIB"), (50.0, "(N")], 60.0)
    assert [(e.label, e.start_s, e.end_s) for e in eps] == [
        ("(N", 0, 10),
        ("(AFIB", 10, 50),
        ("(N", 50, 60),
    ]


def test_wfdb_challenge_record_maps_channels_and_alarm(tmp_path: Path) -> None:
    ecg_ii = synthetic_ecg(20)
    ecg_ii[1000:1010] = np.nan  # short dropout: interpolated
    ecg_v = synthetic_ecg(20, amplitude=0.5)
    pleth = np.sin(np.arange(len(ecg_ii)) / FS * 2 * np.pi * 1.2)
    abp = 80 + 20 * pleth
    write_record(
        tmp_path,
        "a001l",
        ["II", "V", "PLETH", "ABP"],
        [ecg_ii, ecg_v, pleth, abp],
        units=["mV", "mV", "NU", "mmHg"],
    )
    (tmp_path / "ALARMS").write_text("a001l,Asystole,0\n")
    (tmp_path / "RECORDS").write_text("a001l\n")
    assert detect_suite(tmp_path) == "challenge2015"
    [rec] = load_challenge2015(tmp_path, prefix="t-")
    assert rec.patient_id == "t-a001l"
    assert set(rec.channels) == {Signal.ECG, Signal.ECG2, Signal.PPG, Signal.ABP}
    assert rec.channel_names[Signal.ECG] == "II"
    assert rec.channel_names[Signal.ECG2] == "V"
    assert rec.channel_names[Signal.ABP] == "ABP"
    assert rec.channels[Signal.ABP][0].max() == pytest.approx(100.0, abs=0.1)  # mmHg kept
    x, fs = rec.channels[Signal.ECG]
    assert fs == FS and x.dtype == np.float32 and len(x) == 20 * FS
    assert np.isfinite(x).all()
    assert rec.duration_s == pytest.approx(20.0)
    [alarm] = rec.annotations.alarms
    assert (alarm.alarm_type, alarm.time_s, alarm.is_true) == ("Asystole", 300.0, False)


def test_wfdb_mitdb_like_record_with_annotations(tmp_path: Path) -> None:
    fs = 360
    write_record(tmp_path, "900", ["MLII", "V1"], [synthetic_ecg(10, fs), synthetic_ecg(10, fs)], fs=fs)
    samples = np.array([0, 108, 400, 700, 1000, 1800])
    wfdb.wrann(
        "900",
        "atr",
        sample=samples,
        symbol=["+", "N", "N", "+", "V", "N"],
        aux_note=["(N", "", "", "(AFIB", "", ""],
        write_dir=str(tmp_path),
    )
    [rec] = load_mitdb(tmp_path, ["900"])
    assert rec.channel_names[Signal.ECG] == "MLII"
    np.testing.assert_allclose(rec.annotations.beat_times_s, np.array([108, 400, 1000, 1800]) / fs)
    assert rec.annotations.beat_symbols == ["N", "N", "V", "N"]
    assert [e.label for e in rec.annotations.rhythm] == ["(N", "(AFIB"]
    assert rec.annotations.rhythm[1].start_s == pytest.approx(700 / fs)


def test_bidmc_csv_maps_pleth_resp_and_ii_and_reads_breaths(tmp_path: Path) -> None:
    fs = 125
    n = 20 * fs
    t = np.arange(n) / fs
    ecg = synthetic_ecg(20, fs)
    resp = np.sin(2 * np.pi * 0.25 * t)
    pleth = np.sin(2 * np.pi * 1.2 * t)
    lines = ["Time [s], RESP, PLETH, V, AVR, II"]
    for i in range(n):
        lines.append(f"{t[i]:.3f},{resp[i]:.5f},{pleth[i]:.5f},{ecg[i] * 0.3:.5f},{-ecg[i]:.5f},{ecg[i]:.5f}")
    with gzip.open(tmp_path / "bidmc_07_Signals.csv.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    breaths = (np.arange(1, 20, 4.0) * fs).astype(int)
    (tmp_path / "bidmc_07_Breaths.csv").write_text(
        "breaths ann1 [signal sample no], breaths ann2 [signal sample no]\n"
        + "\n".join(f"{b},{b + 2}" for b in breaths)
        + "\n"
    )
    assert detect_suite(tmp_path) == "bidmc"
    rec = load_bidmc_csv(tmp_path / "bidmc_07_Signals.csv.gz")
    assert rec.name == "bidmc07"
    assert rec.channel_names == {Signal.ECG: "II", Signal.ECG2: "V", Signal.PPG: "PLETH", Signal.RESP: "RESP"}
    assert all(fs_ == pytest.approx(125.0) for _, fs_ in rec.channels.values())
    assert rec.duration_s == pytest.approx(20.0)
    np.testing.assert_allclose(rec.annotations.breaths_s[0], breaths / fs)
    [via_dir] = load_bidmc(tmp_path, ["bidmc07"], prefix="b-")
    assert via_dir.patient_id == "b-bidmc07"
    assert [r.name for r in load_paths([tmp_path])] == ["bidmc07"]


def test_loading_never_writes_next_to_the_records(tmp_path: Path) -> None:
    write_record(tmp_path, "r1", ["II"], [synthetic_ecg(5)])
    before = sorted(p.name for p in tmp_path.iterdir())
    load_paths([tmp_path])
    load_paths([tmp_path / "r1.hea"])
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.realdata
def test_real_records_of_each_kind_load(data_dir: Path) -> None:
    if (data_dir / "challenge2015" / "ALARMS").exists():
        [rec] = load_challenge2015(data_dir / "challenge2015", ["a105l"])
        assert Signal.ECG in rec.channels and Signal.PPG in rec.channels
        assert rec.annotations.alarms[0].alarm_type == "Asystole"
        assert rec.duration_s == pytest.approx(330.0)
    if (data_dir / "mitdb" / "101.hea").exists():
        [rec] = load_mitdb(data_dir / "mitdb", ["101"])
        assert rec.channel_names[Signal.ECG] == "MLII"
        assert rec.channel_names[Signal.ECG2] == "V1"
        assert len(rec.annotations.beat_times_s) > 1800
    if (data_dir / "bidmc" / "bidmc_01_Signals.csv.gz").exists():
        [rec] = load_bidmc(data_dir / "bidmc", ["bidmc01"])
        assert set(rec.channels) == {Signal.ECG, Signal.ECG2, Signal.PPG, Signal.RESP}
        assert rec.channels[Signal.RESP][1] == pytest.approx(125.0)
        assert rec.duration_s == pytest.approx(480.0, abs=0.1)
        assert len(rec.annotations.breaths_s) == 2


def test_simulator_output_loads_with_truth_in_record_seconds(tmp_path: Path) -> None:
    from stream import simulator
    from stream.replay.records import load_synthetic

    simulator.write_simulated(tmp_path, patients=3, duration_s=60, seed=1, start_ms=1_700_000_000_000)
    assert detect_suite(tmp_path) == "synthetic"
    recs = load_synthetic(tmp_path, prefix="s-")
    sims = {s.patient_id: s for s in simulator.load_simulated(tmp_path)}
    assert [r.patient_id for r in recs] == [f"s-{p}" for p in sorted(sims)]
    for rec in recs:
        sim = sims[rec.name]
        assert set(rec.channels) == {Signal.ECG, Signal.PPG, Signal.RESP}
        assert rec.duration_s == pytest.approx(60.0)
        expected = [((r["start_ms"] - sim.start_ms) / 1000, r["type"]) for r in sim.episodes]
        assert [(e.start_s, e.label) for e in rec.annotations.episodes] == expected
        assert len(rec.annotations.tolerated) == len(sim.tolerated)
