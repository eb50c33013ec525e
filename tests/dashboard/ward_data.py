"""A ward's worth of Redis data for the dashboard tests and the bench, written through the
worker's own store classes (alert emissions, vitals snapshots, evidence strips)."""

from __future__ import annotations

import numpy as np
from scipy.signal import find_peaks

from alerting.catalogue import CATALOGUE, AlertType
from alerting.episode import raise_episode
from alerting.evidence_store import RedisEvidenceStore
from alerting.store import RedisAlertStore
from alerting.verification import DeviceAlarmDecision, Verdict
from alerting.ward import TrendSampler, VitalsSnapshot
from alerting.ward_store import RedisWardStore
from stream.device_alarm import DeviceAlarm
from stream.evidence import EvidenceRecorder, EvidenceStrip
from stream.schema import SampleChunk, Signal
from stream.simulator import EpisodeSpec, PatientScenario, simulate_patient

T0 = 1_764_390_000_000


def raised(patient_id: str, alert_type: str, t_ms: int, message: str = "", value: float | None = None):  # type: ignore[no-untyped-def]
    """The worker's ``raised`` emission of a new alert (the aggregator's own episode code)."""
    d = CATALOGUE[AlertType(alert_type)]
    _, emissions = raise_episode(patient_id=patient_id, alert_type=alert_type, priority=d.priority.value,
                                 latching=d.latching, onset_ms=t_ms - 2000, now_ms=t_ms, value=value,
                                 message=message or f"{alert_type.replace('_', ' ')} ({patient_id})")
    return emissions[0]


def snapshot(patient_id: str, t_ms: int, hr: float = 72.0, **changes: object) -> VitalsSnapshot:
    base = dict(patient_id=patient_id, t_ms=t_ms, hr_bpm=hr, pulse_bpm=hr + 1, pulse_source="ppg", resp_bpm=15.0,
                resp_source="resp", news2=0, ecg_quality=0.93, ppg_quality=0.88, resp_quality=0.8, ecg_usable=True,
                signals="ecg,ppg,resp")
    base.update(changes)
    return VitalsSnapshot(**base)  # type: ignore[arg-type]


def write_ward(ward: RedisWardStore, patients: list[str], t_ms: int, minutes: int = 0) -> None:
    """Latest vitals for each patient, and ``minutes`` of one-minute trend points before."""
    sampler = TrendSampler(60.0)
    points = []
    for m in range(minutes, 0, -1):
        for i, pid in enumerate(patients):
            hr = 70 + 10 * np.sin(m / 20 + i) + (25 if m < 30 and i == 0 else 0)
            news2 = 5 if m < 30 and i == 0 else 0
            p = sampler.observe(snapshot(pid, t_ms - m * 60_000, hr=round(float(hr), 1), news2=news2,
                                         sys_mmhg=118.0 - m % 7, dia_mmhg=72.0, map_mmhg=87.0))
            if p is not None:
                points.append((pid, p))
    ward.write([snapshot(pid, t_ms, hr=70 + i % 30) for i, pid in enumerate(patients)], points)


def vtach_strip(patient_id: str, kind: str, ref_id: str, end_offset_s: float = 40.0, title: str = "vtach",
                verdict: str = "", reason: str = "") -> EvidenceStrip:
    """A strip cut by the worker's recorder from simulated signals with a VT episode; beats
    from a plain peak finder, labelled V inside the episode (test data, not a classifier)."""
    rec = simulate_patient(PatientScenario(patient_id, (EpisodeSpec("vtach", 30.0, 20.0),), duration_s=50.0),
                           seed=3, start_ms=T0)
    recorder = EvidenceRecorder(60.0)
    for name, (x, fs) in rec.signal_arrays().items():
        step = int(fs)
        for k in range(0, x.size, step):
            recorder.record_chunk(SampleChunk(patient_id, "dev", Signal(name), fs, T0 + round(k * 1000 / fs), k // step,
                                              np.asarray(x[k:k + step], dtype=np.float32), "mV"))
    x, fs = rec.signal_arrays()["ecg"]
    peaks, _ = find_peaks(x, distance=int(0.25 * fs), prominence=0.4)
    times = T0 + peaks * 1000.0 / fs
    classes = ["V" if 30_000 <= t - T0 < 50_000 else "N" for t in times]
    recorder.record_beats(patient_id, times.tolist(), classes)
    strip = recorder.strip(patient_id, T0 + int(end_offset_s * 1000), kind=kind, ref_id=ref_id, title=title,
                           verdict=verdict, reason=reason)
    assert strip is not None
    return strip


def seed_ward(client, prefix: str, n_patients: int = 6, t_ms: int = T0) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A ward: vitals for ``n_patients``, a high-priority VT alert with its strip on bed-1,
    a medium tachycardia on bed-2, a lead-off on bed-3, a suppressed bedside VT alarm with
    its strip on bed-4. Returns the alert ids by type (and the alarm id as "alarm")."""
    alerts = RedisAlertStore(client, prefix)
    ward = RedisWardStore(client, prefix)
    strips = RedisEvidenceStore(client, prefix)
    patients = [f"bed-{i + 1}" for i in range(n_patients)]
    write_ward(ward, patients, t_ms, minutes=90)
    vt = raised("bed-1", "vtach", t_ms, "ventricular tachycardia: run of 9 beats at 172 bpm", 9.0)
    tachy = raised("bed-2", "tachy", t_ms - 60_000, "heart rate 128 bpm > 120", 128.0)
    lead = raised("bed-3", "lead_off", t_ms - 30_000, "ECG flat or saturated")
    alerts.apply([vt, tachy, lead])
    strips.put(vtach_strip("bed-1", "alert", vt.alert_id, reason=vt.message))
    alarm = DeviceAlarm("bed-4", "vtach", t_ms - 20_000, "mx-4", "V-TACH")
    reason = ("longest ventricular run 2.0 beats in the 10 s before the alarm, confirm bound >= 5 beats "
              "(5 windows judged)")
    decision = DeviceAlarmDecision(alarm, Verdict.SUPPRESSED, t_ms - 18_000, reason, 2.0, 5)
    alerts.apply([decision])
    strips.put(vtach_strip("bed-4", "device-alarm", alarm.alarm_id, end_offset_s=28.0, title="V-TACH",
                           verdict="suppressed", reason=reason))
    return {"vtach": vt.alert_id, "tachy": tachy.alert_id, "lead_off": lead.alert_id, "alarm": alarm.alarm_id}
