"""PatientMonitor: windows per hop with plausible measurements, robust to transport faults."""

from __future__ import annotations

import neurokit2 as nk
import numpy as np
import pytest

from stream.monitor import RR_HISTORY_BEATS, PatientMonitor
from stream.schema import make_chunk
from stream.windows import ChunkStatus
from tests.stream.test_dsp_abp import arterial_wave

T0 = 1_700_000_000_000
RATES = {"ecg": 250, "ecg2": 250, "ppg": 125, "resp": 25, "abp": 125}


@pytest.fixture(scope="module")
def signals() -> dict[str, np.ndarray]:
    d = 60
    return {
        "ecg": nk.ecg_simulate(
            duration=d, sampling_rate=250, heart_rate=72, noise=0.02, random_state=1
        ),
        "ppg": nk.ppg_simulate(duration=d, sampling_rate=125, heart_rate=72, random_state=1),
        "resp": nk.rsp_simulate(duration=d, sampling_rate=25, respiratory_rate=15, random_state=1),
        "abp": arterial_wave(systolic=118.0, diastolic=76.0, rate=72.0, seconds=d),
        "ecg2": 0.4 * nk.ecg_simulate(duration=d, sampling_rate=250, heart_rate=72, noise=0.02, random_state=1),
    }


def chunks(signals: dict[str, np.ndarray], which=("ecg", "ppg", "resp"), seconds: int = 60):
    out = []
    for k in range(seconds):
        for sig in which:
            fs = RATES[sig]
            out.append(
                make_chunk(
                    "p1", "d1", sig, fs, T0 + 1000 * k, k, signals[sig][k * fs : (k + 1) * fs]
                )
            )
    return out


def run(monitor: PatientMonitor, chunk_list) -> tuple[list, list]:
    windows, outs = [], []
    for c in chunk_list:
        out = monitor.push(c)
        outs.append(out)
        windows.extend(out.windows)
    return windows, outs


def test_windows_every_hop_with_plausible_vitals(signals) -> None:
    windows, outs = run(PatientMonitor("p1"), chunks(signals))
    assert all(o.statuses == [ChunkStatus.ACCEPTED] and not o.gap for o in outs)
    ends = [w.t_ms - T0 for w in windows]
    assert ends[0] == 10_000 and np.all(np.diff(ends) == 2_000) and ends[-1] >= 56_000
    for w in windows:
        assert w.ecg is not None and w.ecg.usable and not w.ecg.lead_off
        assert abs(w.ecg.hr_bpm - 72) < 3
        assert w.ecg.hr_min_5beats <= w.ecg.hr_bpm + 1 and abs(w.ecg.hr_max_5beats - 72) < 6
        assert 10 <= w.ecg.n_beats <= 13
        assert w.ecg.max_pause_s < 1.2
        assert w.ecg_window is not None and w.ecg_window.size == 2500 and w.ecg_fs == 250
        assert w.ppg is not None and w.ppg.pulsatile and abs(w.ppg.pulse_rate_bpm - 72) < 6
        assert w.gaps == ()
    late = [w for w in windows if w.t_ms - T0 >= 30_000]
    assert all(
        w.resp is not None and w.resp.source == "resp" and abs(w.resp.rate_bpm - 15) < 2
        for w in late
    )
    # 60 s at 72 bpm: the last window starts at 48 s and gets every RR before it, also the
    # ones older than the monitor's 40-s beat memory (the S expert compares with 60 RR).
    hist = windows[-1].rr_history_ms
    assert 55 <= hist.size <= RR_HISTORY_BEATS and np.all(np.abs(hist - 833) < 60)


def test_each_beat_offered_once(signals) -> None:
    windows, _ = run(PatientMonitor("p1"), chunks(signals, which=("ecg",)))
    offered = []
    for w in windows:
        start = w.t_ms - 10_000
        assert w.beat_samples.size == w.beat_is_new.size
        offered.extend(np.round(start + w.beat_samples[w.beat_is_new] * 4.0).tolist())
    assert len(offered) == len(set(offered))
    # Every beat of the stream except the last window's tail is offered.
    assert len(offered) >= 72 * (windows[-1].t_ms - T0 - 1000) / 60_000 - 1


def test_reordered_and_duplicated_chunks_give_the_same_windows(signals) -> None:
    clean, _ = run(PatientMonitor("p1"), chunks(signals))
    noisy_list = chunks(signals)
    # swap neighbours and retry some chunks
    for i in range(5, len(noisy_list) - 6, 9):
        noisy_list[i], noisy_list[i + 3] = noisy_list[i + 3], noisy_list[i]
    noisy_list = noisy_list[:40] + noisy_list[30:36] + noisy_list[40:]
    noisy, outs = run(PatientMonitor("p1"), noisy_list)
    statuses = {s for o in outs for s in o.statuses}
    assert ChunkStatus.DUPLICATE in statuses and ChunkStatus.REORDERED in statuses
    assert [w.t_ms for w in noisy] == [w.t_ms for w in clean]
    for a, b in zip(noisy, clean, strict=True):
        assert a.ecg.hr_bpm == b.ecg.hr_bpm and a.ecg.n_beats == b.ecg.n_beats


def test_gap_is_marked_not_bridged(signals) -> None:
    lst = [c for c in chunks(signals, which=("ecg",)) if c.seq != 20]
    windows, outs = run(PatientMonitor("p1"), lst)
    assert any(o.gap for o in outs)
    gapped = [w for w in windows if 20_000 < w.t_ms - T0 <= 31_000]
    assert gapped and all("ecg" in w.gaps and w.ecg_window is None for w in gapped)
    clean_after = [w for w in windows if w.t_ms - T0 >= 34_000]
    assert clean_after and all(w.gaps == () and w.ecg.usable for w in clean_after)


def test_asystole_reports_growing_pause(signals) -> None:
    ecg = signals["ecg"].copy()
    rng = np.random.default_rng(0)
    ecg[30 * 250 :] = ecg[30 * 250] + 0.01 * rng.standard_normal(ecg.size - 30 * 250)
    windows, _ = run(PatientMonitor("p1"), chunks({"ecg": ecg}, which=("ecg",)))
    pauses = {w.t_ms - T0: w.ecg.max_pause_s for w in windows}
    assert pauses[28_000] < 1.2
    assert pauses[36_000] >= 5.0 and pauses[40_000] >= 9.0
    assert all(not w.ecg.lead_off for w in windows)


def test_flat_line_is_lead_off(signals) -> None:
    ecg = signals["ecg"].copy()
    ecg[20 * 250 :] = 0.0
    windows, _ = run(PatientMonitor("p1"), chunks({"ecg": ecg}, which=("ecg",)))
    last = windows[-1]
    assert last.ecg.lead_off and not last.ecg.usable and last.ecg_window is None


def test_ppg_only_patient_advances_on_ppg(signals) -> None:
    windows, _ = run(PatientMonitor("p1"), chunks(signals, which=("ppg",), seconds=30))
    assert windows and windows[0].ecg is None and windows[0].ppg is not None
    assert all(w.ppg.usable for w in windows)
    late = [w for w in windows if w.t_ms - T0 >= 20_000]
    assert all(w.resp is not None and w.resp.source == "ppg" for w in late)


def test_arterial_line_gives_pressures_and_pulse(signals) -> None:
    windows, _ = run(PatientMonitor("p1"), chunks(signals, which=("ecg", "abp"), seconds=30))
    assert windows and all(w.ppg is None for w in windows)
    for w in windows:
        assert w.abp is not None and w.abp.usable and w.abp.pulsatile
        assert w.abp.pulse_rate_bpm == pytest.approx(72.0, abs=1.5)
        assert w.abp.systolic_mmhg == pytest.approx(118.0, abs=0.5)
        assert w.abp.diastolic_mmhg == pytest.approx(76.0, abs=0.5)
        assert w.abp.max_pause_s < 1.0


def test_second_ecg_lead_is_measured_but_not_classified(signals) -> None:
    signals = dict(signals)
    second = signals["ecg2"].copy()
    second[250 * 20 :] = 0.002 * np.sin(np.arange(second.size - 250 * 20))  # complexes vanish at 20 s
    signals["ecg2"] = second
    windows, _ = run(PatientMonitor("p1"), chunks(signals, which=("ecg", "ecg2"), seconds=30))
    by_end = {w.t_ms - T0: w for w in windows}
    early, late = by_end[16_000], by_end[28_000]
    assert early.ecg2 is not None and early.ecg2.usable and abs(early.ecg2.hr_bpm - 72) < 3
    assert late.ecg2 is not None and late.ecg2.max_pause_s >= 7.5
    assert late.ecg.max_pause_s < 1.2  # the first lead keeps its own beats
    # Only the first lead feeds the models.
    assert late.ecg_window is not None and late.ecg2.beat_counts == {}


def test_abp_only_patient_advances_on_abp(signals) -> None:
    windows, _ = run(PatientMonitor("p1"), chunks(signals, which=("abp",), seconds=20))
    assert windows and windows[0].ecg is None and windows[0].abp is not None
    assert [w.t_ms - T0 for w in windows][:2] == [10_000, 12_000]


def test_a_damped_arterial_line_is_not_a_pulse() -> None:
    damped = {"abp": arterial_wave(systolic=70.0, diastolic=64.0, seconds=20)}
    windows, _ = run(PatientMonitor("p1"), chunks(damped, which=("abp",), seconds=20))
    assert windows
    for w in windows:
        assert w.abp is not None and not w.abp.pulsatile
        assert w.abp.systolic_mmhg is not None and w.abp.systolic_mmhg < 72.0


def test_silent_device_produces_no_windows(signals) -> None:
    m = PatientMonitor("p1")
    w1, _ = run(m, chunks(signals, which=("ecg",), seconds=20))
    assert w1
    assert m.push(make_chunk("p1", "d1", "ecg", 250, T0 + 20_000, 19, np.zeros(250))).windows == []


def test_sampling_rate_change_resets_cleanly(signals) -> None:
    lst = chunks(signals, which=("ecg",), seconds=20)
    ecg500 = nk.ecg_simulate(duration=30, sampling_rate=500, heart_rate=90, random_state=2)
    lst += [
        make_chunk(
            "p1", "d1", "ecg", 500, T0 + 1000 * (20 + k), 20 + k, ecg500[k * 500 : (k + 1) * 500]
        )
        for k in range(30)
    ]
    windows, outs = run(PatientMonitor("p1"), lst)
    assert outs[20].gap
    after = [w for w in windows if w.t_ms - T0 >= 32_000]
    assert after and all(w.ecg_fs == 500 and abs(w.ecg.hr_bpm - 90) < 4 for w in after)


def test_resume_after_silence_marks_gap_and_skips_empty_windows(signals) -> None:
    lst = chunks(signals, which=("ecg",), seconds=20)
    # the device is silent for 15 s, then resumes (seq continues, time jumps)
    ecg = signals["ecg"]
    lst += [
        make_chunk(
            "p1", "d1", "ecg", 250, T0 + 1000 * (35 + k), 20 + k, ecg[k * 250 : (k + 1) * 250]
        )
        for k in range(20)
    ]
    windows, outs = run(PatientMonitor("p1"), lst)
    assert outs[20].gap
    assert all(w.ecg is not None for w in windows)
    resumed = [w for w in windows if w.t_ms - T0 > 35_000]
    assert all("ecg" in w.gaps and w.ecg_window is None for w in resumed if w.t_ms - T0 < 45_000)
    assert any(w.gaps == () and w.ecg.usable for w in resumed if w.t_ms - T0 >= 46_000)


# -- simulated episodes (stream.simulator) ----------------------------------------------


def _simulated_windows(episode: str, start_s: float, duration_s: float, total_s: float,
                       params: dict[str, float] | None = None, which=("ecg", "ppg", "resp")):
    from stream.gateway import chunk_signals
    from stream.schema import Signal
    from stream.simulator import EpisodeSpec, PatientScenario, simulate_patient

    spec = EpisodeSpec(episode, start_s, duration_s, params or {})
    rec = simulate_patient(PatientScenario("sim", (spec,), duration_s=total_s), seed=3)
    channels = {
        Signal(sig): (getattr(rec, sig), rec.fs[sig]) for sig in ("ecg", "ppg", "resp")
        if sig in which
    }
    monitor = PatientMonitor("sim")
    windows = []
    for chunk in chunk_signals("sim", "dev", channels, 0):
        windows.extend(monitor.push(chunk).windows)
    return {round(w.t_ms / 1000): w for w in windows}


def test_apnoea_on_flat_resp_reports_the_pause_not_a_derived_rate() -> None:
    # Breathing stops at 30 s (2 s ramp before) and resumes at 55 s; ECG and PPG stay clean,
    # so ECG/PPG-derived respiration would report a normal rate throughout.
    w = _simulated_windows("apnea", 30, 25, 70)
    assert w[24].resp.source == "resp" and abs(w[24].resp.rate_bpm - 15) < 2
    for t in range(46, 58, 2):
        resp = w[t].resp
        assert resp.source == "resp" and resp.rate_bpm is None and resp.usable
        # time since the last (shallow, ramping-down) breath, ~28-31 s
        assert resp.max_pause_s == pytest.approx(t - 29.5, abs=3.0)
    assert max(w[t].resp.max_pause_s for t in range(50, 58, 2)) >= 20.0  # apnea alert
    assert all(w[t].ecg.usable and w[t].ppg.usable for t in range(46, 58, 2))


def test_lead_off_stretch_is_not_a_pause_afterwards() -> None:
    # ECG railed (constant) 30-50 s; the first windows after it used to measure the 20 s
    # from the last beat before the lead-off as a pause (false asystole/extreme brady).
    w = _simulated_windows("lead_off", 30, 20, 70, which=("ecg",))
    assert all(w[t].ecg.lead_off for t in range(34, 58, 2))
    for t in range(60, 70, 2):  # (the 58 s window still holds 2 s of rail: clipped)
        ecg = w[t].ecg
        assert not ecg.lead_off and ecg.max_pause_s < 1.5
        assert ecg.hr_min_5beats is None or ecg.hr_min_5beats > 50


def test_lead_off_at_mid_level_does_not_open_a_pause() -> None:
    # A flat line that is neither extreme (not "saturated") is lead_off only once it fills
    # half the window; before that, the flat tail must not count as time without QRS.
    w = _simulated_windows("lead_off", 30, 20, 70, {"rail_mv": 0.0}, which=("ecg",))
    for t in (32, 34):
        assert not w[t].ecg.lead_off and w[t].ecg.max_pause_s < 1.5
    assert w[40].ecg.lead_off


def test_simulated_asystole_still_reports_a_pause() -> None:
    w = _simulated_windows("asystole", 30, 9, 60, which=("ecg", "ppg"))
    assert max(w[t].ecg.max_pause_s for t in range(34, 42, 2)) >= 8.0
    assert not any(w[t].ecg.lead_off for t in range(30, 42, 2))


def test_motion_artefact_makes_ppg_unusable() -> None:
    w = _simulated_windows("motion", 30, 15, 70, which=("ppg",))
    during = [w[t].ppg for t in range(36, 52, 2)]
    assert all(not p.usable and p.pulse_rate_bpm is None for p in during)
    assert all(w[t].ppg.usable for t in (24, 28, 60, 64))


def test_flat_resp_is_apnoea_even_when_ecg_derived_rate_is_available(signals) -> None:
    sig = dict(signals)
    resp = signals["resp"].copy()
    resp[25 * 25 :] = resp[25 * 25]  # breathing stops; the trace is exactly flat
    sig["resp"] = resp
    windows, _ = run(PatientMonitor("p1"), chunks(sig, which=("ecg", "resp")))
    late = [w for w in windows if w.t_ms - T0 >= 48_000]
    assert late and all(
        w.resp.source == "resp" and w.resp.rate_bpm is None and w.resp.max_pause_s >= 20.0
        for w in late
    )


def test_flush_closes_the_window_ending_at_the_end_of_data(signals) -> None:
    monitor = PatientMonitor("p1")
    windows, _ = run(monitor, chunks(signals))
    assert windows[-1].t_ms - T0 == 58_000  # the 60 s window waits for look-ahead
    flushed = monitor.flush().windows
    assert [w.t_ms - T0 for w in flushed] == [60_000]
    last = flushed[0]
    assert last.ecg is not None and abs(last.ecg.hr_bpm - 72) < 3 and last.ecg.max_pause_s < 1.2
    assert monitor.flush().windows == []  # nothing new: nothing more to close


def test_models_get_unusable_but_not_faulty_windows(signals) -> None:
    """A poor template correlation (noise, or a rhythm mixing morphologies) does not stop the
    models: the window goes to them and the aggregator's per-type gates decide."""
    rng = np.random.default_rng(5)
    noisy = signals["ecg"] + rng.normal(0.0, 1.0, size=signals["ecg"].size)
    windows, _ = run(PatientMonitor("p1"), chunks({"ecg": noisy}, which=("ecg",)))
    unusable = [w for w in windows if not w.ecg.usable]
    assert unusable, "the noise should make some windows unusable"
    assert all(w.ecg_window is not None and not w.ecg.lead_off for w in unusable)


class TopicReader:
    """What a worker knows of its topics while it reads them in a given order: every chunk was
    produced at its event time (a live feed), and a topic holds data up to ``ends_s``."""

    def __init__(self, ends_s: dict[str, float]) -> None:
        self.ends_s = ends_s
        self.read_s: dict[str, float] = {}

    def read(self, chunk) -> float:  # type: ignore[no-untyped-def]
        produced = (chunk.ts_ms - T0) / 1000.0
        self.read_s[chunk.signal] = max(self.read_s.get(chunk.signal, -1.0), produced)
        return produced

    def unread(self, signal, produced_s: float) -> bool:  # type: ignore[no-untyped-def]
        read = self.read_s.get(signal)
        return read is not None and read < produced_s and read < self.ends_s.get(signal, -1.0)


def test_a_signal_read_ahead_of_a_lagging_topic_waits_for_it(signals) -> None:
    """A worker reading a backlog reads ECG seconds 0-29 with only PPG second 0, then PPG 1-29
    interleaved with ECG 30-58, then the rest. Knowing what it has read of each topic, the
    monitor gives the windows of an interleaved feed: none closes early, none has a gap."""
    ecg = chunks(signals, which=("ecg",))
    ppg = chunks(signals, which=("ppg",))
    clean_monitor = PatientMonitor("p1")
    clean, _ = run(clean_monitor, chunks(signals, which=("ecg", "ppg")))
    clean += clean_monitor.flush().windows
    order = [ppg[0], *ecg[:30]]
    for k in range(1, 30):
        order += [ppg[k], ecg[29 + k]]
    order += [ecg[59], *ppg[30:]]
    reader = TopicReader({"ecg": 59.0, "ppg": 59.0})
    monitor = PatientMonitor("p1")
    outs, pushed_held = [], 0
    for c in order:
        outs.append(monitor.push(c, reader.read(c), reader.unread))
        pushed_held += monitor.holds(c)
    windows = [w for o in outs for w in o.windows] + monitor.flush().windows
    assert max(o.held for o in outs) >= 25 and pushed_held >= 25
    assert [w.t_ms for w in windows] == [w.t_ms for w in clean]
    assert all(w.gaps == () for w in windows)
    for a, b in zip(windows, clean, strict=True):
        assert a.ppg is not None and a.ppg.pulse_rate_bpm == b.ppg.pulse_rate_bpm
        assert a.ecg.hr_bpm == b.ecg.hr_bpm


def test_a_signal_whose_topic_was_read_to_its_end_is_not_waited_for(signals) -> None:
    """The PPG stopped at second 20 (its topic holds nothing more): the ECG does not wait."""
    ecg = chunks(signals, which=("ecg",))
    ppg = chunks(signals, which=("ppg",))[:20]
    reader = TopicReader({"ecg": 59.0, "ppg": 19.0})
    monitor = PatientMonitor("p1")
    outs = [monitor.push(c, reader.read(c), reader.unread) for c in [*ppg, *ecg]]
    assert all(o.held == 0 for o in outs)
    assert any("ppg" in w.gaps or w.ppg is None for o in outs for w in o.windows)


def test_holding_for_a_lagging_topic_is_bounded(signals) -> None:
    ecg = chunks(signals, which=("ecg",))
    ppg = chunks(signals, which=("ppg",))
    monitor = PatientMonitor("p1", align_hold_s=20.0)
    for c in ecg[:2] + ppg[:2]:
        monitor.push(c)
    outs = [monitor.push(c, (c.ts_ms - T0) / 1000.0, lambda s, t: s == "ppg") for c in ecg[2:]]
    # At most align_hold_s of ECG waits; beyond that the oldest go on and windows close
    # without the PPG (a topic that far behind is treated as a fault, not waited for).
    assert 15 <= max(o.held for o in outs) <= 21
    assert sum(o.overdue for o in outs) > 0
    assert any(o.windows for o in outs)
