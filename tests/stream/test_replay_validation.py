"""Suite scoring and the report on a hand-made pipeline output (no Kafka, no Redis)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream.replay.records import AlarmLabel, Annotations, Recording, RhythmEpisode
from stream.replay.replayer import ReplayStats
from stream.replay.report import pick_snippets, write_report
from stream.replay.scoring import AlertSpan
from stream.replay.validation import (
    FindingRecord,
    RunOutput,
    findings_completeness,
    score_bidmc,
    score_challenge2015,
    score_synthetic,
    suite_end_s,
)
from stream.schema import Signal

BASE = 1_700_000_000_000


def rec(name: str, seconds: float, annotations: Annotations) -> Recording:
    fs = 125.0
    t = np.arange(int(seconds * fs)) / fs
    channels = {
        Signal.ECG: (np.sin(2 * np.pi * 1.2 * t).astype(np.float32), fs),
        Signal.RESP: (np.sin(2 * np.pi * 0.25 * t).astype(np.float32), fs),
    }
    return Recording(name, f"v-{name}", channels, annotations, channel_names={Signal.ECG: "II"})


def output(alerts: dict[str, list[AlertSpan]], seconds: float, findings: dict | None = None) -> RunOutput:
    return RunOutput(alerts, findings or {}, BASE, ReplayStats(records=len(alerts), record_seconds=seconds))


def test_challenge_suite_decisions_and_metrics(tmp_path: Path) -> None:
    recs = [
        rec("t1", 302, Annotations(alarms=[AlarmLabel("Tachycardia", 300.0, True)])),
        rec("t2", 302, Annotations(alarms=[AlarmLabel("Tachycardia", 300.0, True)])),
        rec("f1", 302, Annotations(alarms=[AlarmLabel("Asystole", 300.0, False)])),
        rec("f2", 302, Annotations(alarms=[AlarmLabel("Asystole", 300.0, False)])),
    ]
    alerts = {
        "v-t1": [AlertSpan("v-t1", "extreme_tachy", "high", 280.0, 270.0)],  # TP, 20 s before
        "v-t2": [],  # FN
        "v-f1": [AlertSpan("v-f1", "asystole", "high", 296.0, 292.0)],  # FP
        "v-f2": [AlertSpan("v-f2", "asystole", "high", 100.0, 96.0, 120.0)],  # TN (resolved)
    }
    result = score_challenge2015(recs, output(alerts, 4 * 302))
    m = result.metrics
    assert m["counts"] == {"TP": 1, "FP": 1, "TN": 1, "FN": 1}
    assert m["score"] == pytest.approx(100 * 2 / (2 + 1 + 5), abs=0.01)
    assert m["latency_s"]["p50"] == -20.0
    assert [e[0] for e in result.false_events] == ["v-f1"]
    assert [e[0] for e in result.missed_events] == ["v-t2"]
    assert m["false_alerts_per_hour"] == pytest.approx(1 / (4 * 302 / 3600), abs=1e-3)

    metrics = {
        "suite": "challenge2015",
        "records": 4,
        "score": m["score"],
        "per_type": m["per_type"],
        "false_alerts_per_hour": m["false_alerts_per_hour"],
        "latency_s": m["latency_s"],
        "wall_s": 1.0,
    }
    report = write_report(tmp_path, metrics, recs, output(alerts, 4 * 302), result)
    text = report.read_text()
    assert "Challenge score" in text and "outcomes.png" in text
    assert (tmp_path / "outcomes.png").stat().st_size > 1000
    snippets = sorted((tmp_path / "snippets").glob("*.png"))
    assert [p.name.split("_")[1] for p in snippets] == ["false", "missed"]


def test_challenge_metrics_and_report_say_what_became_of_each_bedside_alarm(tmp_path: Path) -> None:
    recs = [
        rec("t1", 302, Annotations(alarms=[AlarmLabel("Tachycardia", 300.0, True)])),
        rec("v1", 302, Annotations(alarms=[AlarmLabel("Ventricular_Tachycardia", 300.0, True)])),
        rec("f1", 302, Annotations(alarms=[AlarmLabel("Asystole", 300.0, False)])),
    ]
    alerts = {"v-t1": [AlertSpan("v-t1", "extreme_tachy", "high", 300.0, 300.0)], "v-v1": [], "v-f1": []}
    out = output(alerts, 3 * 302)
    out.device_alarms = [
        {"patient_id": "v-t1", "alarm_type": "extreme_tachy", "verdict": "confirmed", "reason": "127 bpm"},
        {"patient_id": "v-v1", "alarm_type": "vtach", "verdict": "suppressed", "reason": "run of 2 beats"},
        {"patient_id": "v-f1", "alarm_type": "asystole", "verdict": "suppressed", "reason": "pause 1.1 s"},
    ]
    result = score_challenge2015(recs, out)
    m = result.metrics
    assert m["device_alarms"] == {"confirmed": {"TP": 1}, "suppressed": {"FN": 1, "TN": 1}}
    assert [(d["record"], d["device_alarm"], d["reason"]) for d in m["decisions"]] == [
        ("t1", "confirmed", "127 bpm"), ("v1", "suppressed", "run of 2 beats"), ("f1", "suppressed", "pause 1.1 s")]
    text = write_report(tmp_path, {"suite": "challenge2015", "records": 3, **m}, recs, out, result).read_text()
    assert "## Bedside-monitor alarms" in text and "| suppressed | 0 | 0 | 1 | 1 |" in text
    assert "- v1 Ventricular_Tachycardia (FN): suppressed, run of 2 beats" in text
    # Without replayed alarms (--no-device-alarms) there is no such section.
    plain = score_challenge2015(recs, output(alerts, 3 * 302))
    assert plain.metrics["device_alarms"] is None and "device_alarm" not in plain.metrics["decisions"][0]


def test_challenge_replays_only_up_to_the_alarm() -> None:
    r = rec("x", 330, Annotations())
    assert suite_end_s("challenge2015")(r) == 300.0
    assert suite_end_s("mitdb")(r) is None


def test_synthetic_suite_scores_every_alert_type(tmp_path: Path) -> None:
    truth = Annotations(episodes=[RhythmEpisode("apnea", 60.0, 90.0), RhythmEpisode("vfib", 200.0, 210.0)])
    recs = [rec("s1", 300, truth)]
    alerts = {
        "v-s1": [
            AlertSpan("v-s1", "apnea", "medium", 75.0, 62.0),
            AlertSpan("v-s1", "tachy", "medium", 250.0, 240.0),
        ]
    }
    result = score_synthetic(recs, output(alerts, 300))
    per_type = result.metrics["per_type"]
    assert per_type["apnea"]["sensitivity"] == 1.0
    assert per_type["vfib"]["sensitivity"] == 0.0
    assert per_type["tachy"]["false_alerts"] == 1
    assert result.metrics["false_alerts_per_hour"] == pytest.approx(12.0)
    assert result.metrics["latency_s"]["p50"] == 15.0


def test_bidmc_suite_compares_findings_with_breaths() -> None:
    breaths = np.arange(0.5, 120, 4.0)  # 15 breaths/min
    recs = [rec("bidmc01", 120, Annotations(breaths_s=[breaths, breaths + 0.1]))]
    findings = {"v-bidmc01": [FindingRecord(BASE + t * 1000, 10.0, 16.0, 70.0) for t in range(40, 120, 2)]}
    result = score_bidmc(recs, output({"v-bidmc01": []}, 120, findings))
    rr = result.metrics["resp_rate"]
    assert rr["mae_bpm"] == pytest.approx(1.0, abs=0.05)
    assert rr["n_compared"] == 40


def test_findings_completeness_counts_gaps_and_windows_without_a_signal_the_patient_has() -> None:
    both = ("ecg", "ppg")
    findings = {
        "p1": [FindingRecord(BASE, 10.0, None, 70.0, (), both),
               FindingRecord(BASE + 2000, 10.0, None, 70.0, (), ("ecg",)),  # PPG skipped
               FindingRecord(BASE + 4000, 10.0, None, 70.0, ("ppg",), both)],
        "p2": [FindingRecord(BASE, 10.0, None, 70.0, (), ("ecg",))],  # ECG-only patient
    }
    assert findings_completeness(findings) == {
        "findings_with_gaps": 1, "findings_missing_signal": 1,
        "missing_signal_by_record": {"p1": {"ppg": [1, 2.0, 2.0]}},  # windows, first and last s
    }


def test_replay_worker_flush_outlasts_throttle_pauses_but_not_device_silence() -> None:
    from alerting.catalogue import AlertConfig
    from stream.replay.validation import REPLAY_FLUSH_IDLE_S, REPLAY_THROTTLE_TIMEOUT_S

    # A throttle pause must never flush a patient mid-record (that cuts the filters'
    # look-ahead), and the end-of-replay flush must come before "device silent".
    assert REPLAY_THROTTLE_TIMEOUT_S < REPLAY_FLUSH_IDLE_S < AlertConfig().device_silent_after_s


def test_pick_snippets_first_per_type_then_fill() -> None:
    false = [("p1", "vtach", 10.0), ("p2", "vtach", 20.0), ("p3", "afib", 30.0)]
    missed = [("p4", "vtach", 40.0)]
    picked = pick_snippets(false, missed, limit=3)
    assert [(k, t) for k, _, t, _ in picked] == [
        ("false", "vtach"),
        ("false", "afib"),
        ("missed", "vtach"),
    ]
    many_false = [("p1", "vtach", float(t)) for t in range(30)]
    many_missed = [("p2", "afib", float(t)) for t in range(30)]
    assert len(pick_snippets(many_false, many_missed)) == 20


def test_in_process_validation_on_real_cinc_records(data_dir: Path, tmp_path: Path) -> None:
    """The transport-free loop runs the same stages: a true VT alarm is confirmed and the
    report says which route the data took. (The Kafka path gave the same decisions on 12
    records.)"""
    from stream.replay.validation import run_validation

    metrics = run_validation(
        "challenge2015", data_dir / "challenge2015", tmp_path, ["v132s"], in_process=True, jobs=1
    )
    assert metrics["path"] == "in-process"
    assert [(d["record"], d["outcome"]) for d in metrics["decisions"]] == [("v132s", "TP")]
    assert metrics["replay"]["record_seconds"] == pytest.approx(300.0)
    assert metrics["replay"]["chunks_sent"] == metrics["replay"]["chunks_total"] > 300
    assert metrics["replay"]["samples_sent"] > 300 * 250
    assert "without Kafka or Redis" in (tmp_path / "report.md").read_text()


def test_arterial_line_and_second_lead_on_real_asystole_alarms(data_dir: Path, tmp_path: Path) -> None:
    """CinC 2015 a109l has no PPG: its ECG loses the QRS for > 4 s at the alarm while the
    arterial line keeps pulsing (false alarm). a639l: noise on lead II is taken for a QRS
    in the final pause, while lead V shows the > 4 s asystole (true alarm). Before the ABP
    and the second lead were read, both were decided wrongly."""
    from stream.replay.validation import run_validation

    metrics = run_validation(
        "challenge2015", data_dir / "challenge2015", tmp_path, ["a109l", "a639l"], in_process=True, jobs=1
    )
    outcomes = {d["record"]: d["outcome"] for d in metrics["decisions"]}
    assert outcomes == {"a109l": "TN", "a639l": "TP"}
    assert "asystole" not in [alert[0] for alert in metrics["alerts"]["a109l"]]


def test_bedside_alarms_on_real_records_are_suppressed_only_on_evidence(data_dir: Path, tmp_path: Path) -> None:
    """Three CinC 2015 alarms through the in-process pipeline and the aggregator: b227l, a
    true extreme bradycardia at 39 bpm on both clean leads, is confirmed (the PPG must not
    overrule it); v607l, a true VT with a run on both leads, is confirmed; v282s, a false VT
    whose "run" is on the first lead while the clean second lead shows normal beats at 75 bpm,
    is suppressed, saying so, and the pipeline's own VT detection does not raise it either.
    v523l, the true VT that kept beats-2.0.0 from shipping (it saw no ventricular run on the
    clean first lead, and a rule suppressed the alarm), reaches the care team."""
    from stream.replay.validation import run_validation

    metrics = run_validation(
        "challenge2015", data_dir / "challenge2015", tmp_path, ["b227l", "v607l", "v282s", "v523l"],
        in_process=True, jobs=1,
    )
    decided = {d["record"]: d for d in metrics["decisions"]}
    assert {r: d["device_alarm"] for r, d in decided.items() if r != "v523l"} == {
        "b227l": "confirmed", "v607l": "confirmed", "v282s": "suppressed"}
    assert decided["v523l"]["device_alarm"] != "suppressed"
    assert decided["v282s"]["reason"].startswith("evidence it is false: the second ECG lead was clean throughout")
    assert {r: d["outcome"] for r, d in decided.items()} == {"b227l": "TP", "v607l": "TP", "v282s": "TN", "v523l": "TP"}
