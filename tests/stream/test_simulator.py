from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import find_peaks

from stream import simulator as sim
from stream.simulator import EpisodeSpec, PatientScenario, PatientSimulator

SEED = 11
DURATION_S = 330.0
EPISODES = (
    EpisodeSpec("brady", 20, 40),
    EpisodeSpec("afib", 80, 60),
    EpisodeSpec("asystole", 160, 8),
    EpisodeSpec("vtach", 190, 12),
    EpisodeSpec("apnea", 225, 25),
    EpisodeSpec("lead_off", 270, 10),
    EpisodeSpec("motion", 300, 12),
)


@pytest.fixture(scope="module")
def scripted() -> tuple[PatientScenario, sim.SimulatedRecording]:
    scenario = PatientScenario("p-script", EPISODES, DURATION_S, hr_bpm=72.0, resp_rate_bpm=15.0)
    return scenario, sim.simulate_patient(scenario, seed=SEED, start_ms=1_700_000_000_000)


def _segment(rec: sim.SimulatedRecording, signal: str, t0: float, t1: float) -> np.ndarray:
    fs = rec.fs[signal]
    return getattr(rec, signal)[int(t0 * fs) : int(t1 * fs)]


def _r_peaks(rec: sim.SimulatedRecording, t0: float, t1: float) -> np.ndarray:
    """R times by a plain amplitude threshold, calibrated on the first (sinus) 15 s."""
    fs = rec.fs["ecg"]
    ref = _segment(rec, "ecg", 0, 15)
    level = 0.5 * np.percentile(np.abs(ref - np.median(ref)), 99.5)
    x = _segment(rec, "ecg", t0, t1)
    peaks, _ = find_peaks(np.abs(x - np.median(x)), height=level, distance=int(0.22 * fs))
    return t0 + peaks / fs


def _pulses(rec: sim.SimulatedRecording, t0: float, t1: float) -> np.ndarray:
    fs = rec.fs["ppg"]
    ref = _segment(rec, "ppg", 0, 15)
    x = _segment(rec, "ppg", t0, t1)
    peaks, _ = find_peaks(x, prominence=0.4 * np.ptp(ref), distance=int(0.25 * fs))
    return t0 + peaks / fs


def test_same_seed_same_signals_and_block_size_does_not_matter(scripted) -> None:
    scenario, rec = scripted
    again = sim.simulate_patient(scenario, seed=SEED, start_ms=rec.start_ms, block_s=3.7)
    for signal in sim.SIGNALS:
        np.testing.assert_array_equal(getattr(rec, signal), getattr(again, signal))
    other = sim.simulate_patient(scenario, seed=SEED + 1)
    assert not np.array_equal(rec.ecg, other.ecg)


def test_lengths_rates_and_finite(scripted) -> None:
    _, rec = scripted
    assert rec.fs == {"ecg": 250.0, "ppg": 125.0, "resp": 25.0}
    for signal in sim.SIGNALS:
        x = getattr(rec, signal)
        assert x.dtype == np.float32
        assert len(x) == DURATION_S * rec.fs[signal]
        assert np.isfinite(x).all()


def test_sinus_rhythm_rate_and_variability(scripted) -> None:
    _, rec = scripted
    beats = _r_peaks(rec, 1, 19)
    rr = np.diff(beats)
    assert 60 <= 60 / rr.mean() <= 85
    # Normal HRV: some variability (SDNN of a few tens of ms), but regular.
    assert 0.005 < rr.std() < 0.08
    assert np.abs(np.diff(rr)).mean() / rr.mean() < 0.08


def test_bradycardia_is_below_50_bpm(scripted) -> None:
    _, rec = scripted
    beats = _r_peaks(rec, 23, 59)
    assert 60 / np.diff(beats).mean() < 50


def test_atrial_fibrillation_rr_is_irregular(scripted) -> None:
    _, rec = scripted
    rr_af = np.diff(_r_peaks(rec, 82, 139))
    rr_sinus = np.diff(_r_peaks(rec, 1, 19))
    irregularity_af = np.abs(np.diff(rr_af)).mean() / rr_af.mean()
    irregularity_sinus = np.abs(np.diff(rr_sinus)).mean() / rr_sinus.mean()
    assert irregularity_af > 0.15
    assert irregularity_af > 3 * irregularity_sinus


def test_asystole_has_flat_ecg_and_no_pulse(scripted) -> None:
    _, rec = scripted
    assert len(_r_peaks(rec, 160, 168)) == 0
    assert len(_pulses(rec, 161, 168)) == 0
    ecg = _segment(rec, "ecg", 160.5, 167.5)
    assert np.ptp(ecg) < 0.3
    # Not a disconnected lead: the line still moves (noise, wander).
    assert np.mean(np.diff(ecg) == 0) < 0.1
    # Beats and pulses resume afterwards.
    assert len(_r_peaks(rec, 169, 179)) >= 8
    assert len(_pulses(rec, 169, 179)) >= 8


def test_vtach_run_is_fast(scripted) -> None:
    _, rec = scripted
    beats = _r_peaks(rec, 190.5, 201.5)
    assert len(beats) >= 5
    assert 150 <= 60 / np.diff(beats).mean() <= 195


def test_ppg_pulses_follow_the_r_peaks(scripted) -> None:
    _, rec = scripted
    beats = _r_peaks(rec, 0.5, 19)
    pulses = _pulses(rec, 1.5, 19)
    assert len(pulses) >= len(beats) - 3
    for p in pulses:
        before = beats[beats < p]
        assert before.size and 0.2 <= p - before[-1] <= 0.5


def test_apnea_flattens_respiration(scripted) -> None:
    _, rec = scripted
    during = _segment(rec, "resp", 226, 249)
    before = _segment(rec, "resp", 195, 220)
    assert during.std() < 0.1 * before.std()
    assert np.mean(np.diff(during) == 0) < 0.1  # still a live sensor


def test_lead_off_rails_ecg_while_ppg_continues(scripted) -> None:
    _, rec = scripted
    ecg = _segment(rec, "ecg", 270.2, 279.8)
    assert np.mean(np.diff(ecg) == 0) > 0.95
    assert len(_pulses(rec, 271, 279)) >= 6


def test_motion_artefact_is_large_noise(scripted) -> None:
    _, rec = scripted
    assert _segment(rec, "ecg", 300, 312).std() > 3 * _segment(rec, "ecg", 285, 297).std()
    assert _segment(rec, "ppg", 300, 312).std() > 2 * _segment(rec, "ppg", 285, 297).std()


def test_truth_rows(scripted) -> None:
    _, rec = scripted
    types = {r["type"] for r in rec.episodes}
    assert types == {"brady", "afib", "asystole", "vtach", "apnea", "lead_off", "poor_signal"}
    asystole = next(r for r in rec.episodes if r["type"] == "asystole")
    assert asystole == {
        "patient_id": "p-script",
        "type": "asystole",
        "episode": "asystole",
        "role": "expected",
        "start_ms": rec.start_ms + 160_000,
        "end_ms": rec.start_ms + 168_000,
    }
    assert {r["type"] for r in rec.tolerated} >= {"extreme_tachy", "extreme_brady"}


def test_extreme_rates() -> None:
    scenario = PatientScenario(
        "p-rates",
        (EpisodeSpec("extreme_brady", 5, 30), EpisodeSpec("extreme_tachy", 40, 25)),
        70.0,
    )
    simulator = PatientSimulator(scenario, seed=3)
    slow = simulator.beat_times(10, 35)
    fast = simulator.beat_times(45, 65)
    assert 60 / np.diff(slow).max() < 40 and 60 / np.diff(slow).mean() < 38
    assert 60 / np.diff(fast).mean() > 145


def test_vfib_has_no_beats_no_pulses_and_a_4_to_7_hz_wave() -> None:
    scenario = PatientScenario("p-vf", (EpisodeSpec("vfib", 10, 12),), 30.0)
    rec = sim.simulate_patient(scenario, seed=2)
    simulator = PatientSimulator(scenario, seed=2)
    assert len(simulator.beat_times(10, 22)) == 0
    assert len(simulator.pulse_times(11, 22)) == 0
    x = _segment(rec, "ecg", 11, 21).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x - x.mean()))
    freqs = np.fft.rfftfreq(len(x), 1 / rec.fs["ecg"])
    assert 4.0 <= freqs[spectrum.argmax()] <= 7.0
    assert np.ptp(x) > 0.5


def test_resp_abnormal_rate() -> None:
    scenario = PatientScenario(
        "p-rr",
        (EpisodeSpec("resp_abnormal", 20, 60, {"resp_rate_bpm": 30}),),
        90.0,
        resp_rate_bpm=14.0,
    )
    rec = sim.simulate_patient(scenario, seed=4)
    fs = rec.fs["resp"]

    def rate(t0: float, t1: float) -> float:
        x = _segment(rec, "resp", t0, t1)
        peaks, _ = find_peaks(x, prominence=0.5 * np.ptp(x), distance=int(1.2 * fs))
        return 60 * (len(peaks) - 1) / ((peaks[-1] - peaks[0]) / fs)

    assert 24 <= rate(25, 75) <= 36
    assert 10 <= rate(0, 19) <= 18


def test_default_cohort_for_the_demo() -> None:
    cohort = sim.default_cohort(8, 120, seed=0)
    assert len({s.patient_id for s in cohort}) == 8
    profiles = [s.profile for s in cohort]
    assert profiles.count("normal") >= 2
    for profile in ("bradycardia", "atrial_fibrillation", "cardiac_arrest"):
        assert profile in profiles
    for scenario in cohort:
        if scenario.episodes:
            assert 15 <= scenario.episodes[0].start_s <= 45
        for ep in scenario.episodes:
            assert ep.start_s < 120
    episode_types = {ep.type for s in cohort for ep in s.episodes}
    assert {"brady", "afib", "asystole", "vtach", "apnea", "motion"} <= episode_types
    assert sim.default_cohort(8, 120, seed=0) == cohort
    assert [s.patient_id for s in sim.default_cohort(3, None, seed=0)] == [
        "sim-001",
        "sim-002",
        "sim-003",
    ]


def test_streaming_an_endless_patient() -> None:
    scenario = sim.default_cohort(4, None, seed=1)[3]
    assert scenario.duration_s is None
    blocks = PatientSimulator(scenario, seed=1).blocks(2.0)
    for _ in range(30):
        block = next(blocks)
        assert {k: len(v) for k, v in block.items()} == {"ecg": 500, "ppg": 250, "resp": 50}


def test_write_and_load_simulated(tmp_path: Path) -> None:
    written = sim.write_simulated(
        tmp_path, patients=3, duration_s=45, seed=5, start_ms=1_700_000_000_000
    )
    loaded = sim.load_simulated(tmp_path)
    assert [r.patient_id for r in loaded] == ["sim-001", "sim-002", "sim-003"]
    for a, b in zip(written, loaded, strict=True):
        np.testing.assert_array_equal(a.ecg, b.ecg)
        assert a.fs == b.fs and a.start_ms == b.start_ms
        assert a.episodes == b.episodes and a.tolerated == b.tolerated
    rows = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert {r["type"] for r in rows if r["role"] == "expected"} >= {"brady", "afib"}
    for row in rows:
        assert set(row) == {"patient_id", "type", "episode", "role", "start_ms", "end_ms"}


def test_replay_loader_reads_simulator_output(tmp_path: Path) -> None:
    from stream.replay.records import load_synthetic

    sim.write_simulated(tmp_path, patients=2, duration_s=40, seed=5, start_ms=1_700_000_000_000)
    recordings = load_synthetic(tmp_path)
    brady = next(r for r in recordings if r.name == "sim-002")
    episode = brady.annotations.episodes[0]
    assert episode.label == "brady" and 15 <= episode.start_s <= 35


def test_live_ward_orders_chunks_and_writes_truth_as_episodes_start(tmp_path: Path) -> None:
    cohort = sim.default_cohort(3, 40, seed=2)
    truth = tmp_path / "truth.jsonl"
    ward = sim.LiveWard(cohort, start_ms=1_700_000_000_000, seed=2, truth_path=truth, keep=True)
    chunks = list(ward.chunks())
    ward.close()
    ends = [c.end_ms for c in chunks]
    assert ends == sorted(ends)
    by_stream: dict[tuple[str, str], list[int]] = {}
    for c in chunks:
        by_stream.setdefault((c.device_id, c.signal.value), []).append(c.seq)
    assert len(by_stream) == 9
    assert all(seqs == list(range(40)) for seqs in by_stream.values())
    rows = [json.loads(line) for line in truth.read_text().splitlines()]
    assert {r["type"] for r in rows if r["role"] == "expected"} == {"brady", "afib"}
    recordings = ward.recordings()
    reference = sim.simulate_patient(cohort[1], seed=2)
    np.testing.assert_array_equal(recordings[1].ecg, reference.ecg)


# ---------------------------------------------------------------- ICU bed


@pytest.fixture(scope="module")
def icu() -> sim.SimulatedRecording:
    scenario = PatientScenario(
        "p-icu",
        (EpisodeSpec("hypotension", 60, 90), EpisodeSpec("asystole", 200, 8), EpisodeSpec("lead_off", 230, 20)),
        270.0,
        icu=True,
    )
    return sim.simulate_patient(scenario, seed=SEED, start_ms=1_700_000_000_000)


def _pressures(rec: sim.SimulatedRecording, t0: float, t1: float) -> tuple[float, float, float]:
    """Median systolic and diastolic (per beat-to-beat cycle) and the mean, in mmHg."""
    x = _segment(rec, "abp", t0, t1)
    fs = rec.fs["abp"]
    peaks, _ = find_peaks(x, distance=int(0.3 * fs), prominence=8)
    cycles = [x[a:b] for a, b in itertools.pairwise(peaks)]
    return (
        float(np.median([c.max() for c in cycles])),
        float(np.median([c.min() for c in cycles])),
        float(np.mean([c.mean() for c in cycles])),
    )


def test_an_icu_bed_has_a_second_lead_and_an_arterial_line(icu, scripted) -> None:
    assert set(icu.signal_arrays()) == {"ecg", "ecg2", "ppg", "abp", "resp"}
    assert len(icu.ecg2) == len(icu.ecg) and len(icu.abp) == 270 * 125
    assert scripted[1].ecg2 is None and set(scripted[1].signal_arrays()) == {"ecg", "ppg", "resp"}
    # The second lead sees the same beats.
    r1 = _r_peaks(icu, 10, 40)
    lead2 = _segment(icu, "ecg2", 10, 40)
    peaks2, _ = find_peaks(lead2, distance=int(0.3 * 250), height=0.5 * np.percentile(lead2, 99.5))
    assert abs(len(peaks2) - len(r1)) <= 1


def test_arterial_pressure_at_rest_in_hypotension_and_in_arrest(icu) -> None:
    systolic, diastolic, mean = _pressures(icu, 10, 40)
    assert 100 <= systolic <= 145 and 55 <= diastolic <= 85 and 70 <= mean <= 105
    systolic, diastolic, mean = _pressures(icu, 100, 140)
    assert systolic < 90 and diastolic < 50 and mean < 65  # the alert's threshold
    _, _, mean_after = _pressures(icu, 170, 195)
    assert mean_after >= 70
    arrest = _segment(icu, "abp", 205, 208)  # 5-8 s into asystole: no pulse, pressure falling
    assert arrest.max() - arrest.min() < 10 and arrest.mean() < 40


def test_lead_off_disconnects_only_the_first_lead(icu) -> None:
    first = _segment(icu, "ecg", 232, 248)
    second = _segment(icu, "ecg2", 232, 248)
    assert np.ptp(first) < 1e-3 and np.ptp(second) > 0.3


def test_icu_signals_do_not_depend_on_block_size_and_survive_save_and_load(icu, tmp_path: Path) -> None:
    scenario = PatientScenario("p-icu", (EpisodeSpec("hypotension", 60, 90),), 270.0, icu=True)
    blocks = list(PatientSimulator(scenario, seed=SEED).blocks(7.0, end_s=70.0))
    abp = np.concatenate([b["abp"] for b in blocks])
    np.testing.assert_array_equal(abp, icu.abp[: len(abp)])
    sim.save_simulated(tmp_path, [icu])
    (loaded,) = sim.load_simulated(tmp_path)
    np.testing.assert_array_equal(loaded.abp, icu.abp)
    np.testing.assert_array_equal(loaded.ecg2, icu.ecg2)
    assert loaded.fs == icu.fs


def test_hypotension_needs_an_arterial_line() -> None:
    with pytest.raises(ValueError, match="arterial line"):
        PatientScenario("p", (EpisodeSpec("hypotension", 10, 30),), 60.0)


def test_the_ninth_patient_of_a_cohort_is_an_icu_bed() -> None:
    cohort = sim.default_cohort(9, 300, seed=0)
    assert [s.icu for s in cohort] == [False] * 8 + [True]
    assert {ep.type for ep in cohort[8].episodes} == {"hypotension", "lead_off"}
    assert {ep.type for s in cohort for ep in s.episodes} == set(sim.EPISODE_TYPES)


def test_live_ward_streams_an_icu_bed_on_five_topics() -> None:
    cohort = sim.default_cohort(9, 12, seed=2)[7:]
    ward = sim.LiveWard(cohort, start_ms=1_700_000_000_000, seed=2, keep=True)
    chunks = list(ward.chunks())
    topics = {c.patient_id: set() for c in chunks}
    for c in chunks:
        topics[c.patient_id].add(c.signal.topic)
    assert topics["sim-009"] == {"vitals.ecg", "vitals.ecg2", "vitals.ppg", "vitals.abp", "vitals.resp"}
    assert topics["sim-008"] == {"vitals.ecg", "vitals.ppg", "vitals.resp"}
    assert {c.units for c in chunks if c.signal.value == "abp"} == {"mmHg"}
    recordings = ward.recordings()
    np.testing.assert_array_equal(recordings[1].abp, sim.simulate_patient(cohort[1], seed=2).abp)
