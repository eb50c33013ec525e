from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from stream.replay.records import RhythmEpisode
from stream.replay.scoring import (
    AlertSpan,
    ChallengeDecision,
    alert_span,
    beat_rate_episodes,
    challenge_alarm_raised,
    challenge_score,
    latency_summary,
    mitdb_truth,
    reference_breath_rate,
    score_episodes,
    score_resp_rate,
)


def span(type_: str, raised: float, resolved: float | None = None, pid: str = "p1") -> AlertSpan:
    return AlertSpan(pid, type_, "high", raised, raised, resolved)


def test_alert_span_converts_epoch_ms_to_record_seconds() -> None:
    alert = SimpleNamespace(
        alert_id="a1",
        patient_id="p1",
        type="vtach",
        priority="high",
        onset_ms=1_000_295_000,
        raised_ms=1_000_298_500,
        resolved_ms=None,
        value=180.0,
    )
    s = alert_span(alert, base_ms=1_000_000_000)
    assert (s.onset_s, s.raised_s, s.resolved_s, s.type) == (295.0, 298.5, None, "vtach")


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        ([span("asystole", 295.0)], True),  # raised in the 10 s before and still active
        ([span("asystole", 300.0)], True),  # raised exactly at the alarm time
        ([span("asystole", 300.5)], False),  # too late: after the alarm
        ([span("asystole", 250.0, resolved=289.0)], False),  # resolved before the 10 s window
        ([span("asystole", 250.0, resolved=291.0)], True),  # active during part of the window
        ([span("asystole", 100.0)], True),  # latched long before and never resolved
        ([span("vtach", 295.0)], False),  # wrong type
        ([], False),
    ],
)
def test_challenge_ten_second_rule(alerts: list[AlertSpan], expected: bool) -> None:
    assert challenge_alarm_raised(alerts, "Asystole", 300.0) is expected


def test_latched_alert_counts_only_while_its_condition_holds() -> None:
    base = 1_000_000_000
    alert = SimpleNamespace(alert_id="a1", patient_id="p1", type="asystole", priority="high",
                            onset_ms=base + 96_000, raised_ms=base + 100_000, resolved_ms=None, value=5.0)
    # Condition ended at 120 s, recurred at 295 s: the latch in between is not an alarm.
    ended = alert_span(alert, base, [(base + 100_000, True), (base + 120_000, False)])
    recurred = alert_span(alert, base, [(base + 100_000, True), (base + 120_000, False), (base + 295_000, True)])
    assert ended.condition == ((100.0, 120.0),)
    assert recurred.condition == ((100.0, 120.0), (295.0, None))
    assert challenge_alarm_raised([ended], "Asystole", 300.0) is False
    assert challenge_alarm_raised([recurred], "Asystole", 300.0) is True
    assert challenge_alarm_raised([alert_span(alert, base)], "Asystole", 300.0) is True  # history unknown


def test_challenge_tolerance_allows_raise_just_after_alarm() -> None:
    assert challenge_alarm_raised([span("vfib", 301.0)], "Ventricular_Flutter_Fib", 300.0, tolerance_s=2.0)
    assert not challenge_alarm_raised([span("vfib", 303.0)], "Ventricular_Flutter_Fib", 300.0, tolerance_s=2.0)


def test_challenge_alarm_mapping_uses_the_shared_vocabulary() -> None:
    assert challenge_alarm_raised([span("extreme_brady", 299)], "Bradycardia")
    assert challenge_alarm_raised([span("extreme_tachy", 299)], "Tachycardia")
    assert challenge_alarm_raised([span("vtach", 299)], "Ventricular_Tachycardia")


def test_challenge_score_formula() -> None:
    decisions = (
        [ChallengeDecision(f"t{i}", "Tachycardia", True, True) for i in range(6)]  # 6 TP
        + [ChallengeDecision("f1", "Tachycardia", True, False)]  # 1 FN
        + [ChallengeDecision(f"n{i}", "Asystole", False, False) for i in range(3)]  # 3 TN
        + [ChallengeDecision("p1", "Asystole", False, True)]  # 1 FP
    )
    result = challenge_score(decisions)
    assert result["counts"] == {"TP": 6, "FP": 1, "TN": 3, "FN": 1}
    # (6 + 3) / (6 + 3 + 1 + 5*1) = 9 / 15
    assert result["score"] == pytest.approx(60.0)
    tachy = result["per_type"]["Tachycardia"]
    assert tachy["score"] == pytest.approx(100 * 6 / (6 + 5), abs=0.01)
    assert tachy["sensitivity"] == pytest.approx(6 / 7, abs=1e-4)
    assert result["per_type"]["Asystole"]["score"] == pytest.approx(75.0)
    assert challenge_score([])["score"] is None


def test_episode_matching_sensitivity_ppv_latency_and_false_alerts() -> None:
    truth = {
        "p1": [RhythmEpisode("afib", 100.0, 400.0), RhythmEpisode("vtach", 1000.0, 1006.0)],
        "p2": [RhythmEpisode("afib", 50.0, 80.0)],
    }
    alerts = {
        "p1": [
            span("afib", 112.0, 410.0, "p1"),  # detects the AF episode, latency 12 s
            span("vtach", 1004.0, None, "p1"),  # detects the VT, latency 4 s
            span("vtach", 2000.0, 2010.0, "p1"),  # no VT there: false alert
            span("signal_loss", 500.0, 520.0, "p1"),  # not a scored type
        ],
        "p2": [],  # AF missed
    }
    scores = score_episodes(truth, alerts, ["afib", "vtach"], hours=2.0)
    result = scores.as_dict()
    assert result["per_type"]["afib"]["episodes"] == 2
    assert result["per_type"]["afib"]["detected"] == 1
    assert result["per_type"]["afib"]["sensitivity"] == 0.5
    assert result["per_type"]["afib"]["ppv"] == 1.0
    assert result["per_type"]["vtach"]["sensitivity"] == 1.0
    assert result["per_type"]["vtach"]["ppv"] == 0.5
    assert result["per_type"]["vtach"]["latency_s"]["p50"] == 4.0
    assert result["false_alerts"] == 1
    assert result["false_alerts_per_hour"] == 0.5
    assert result["false_high_priority_alerts_per_hour"] == 0.5
    assert result["unscored_alerts"] == {"signal_loss": 1}
    assert sorted(scores.latencies_s) == [4.0, 12.0]
    assert [(m.patient_id, m.episode.start_s) for m in scores.missed] == [("p2", 50.0)]


def test_episode_tolerances_and_ignored_events() -> None:
    truth = {"p1": [RhythmEpisode("vtach", 100.0, 103.0)]}
    ignore = {"p1": [RhythmEpisode("vtach", 500.0, 501.0)]}
    alerts = {
        "p1": [
            span("vtach", 117.0, None, "p1"),  # 14 s after the end: within post_s=15
            span("vtach", 505.0, 520.0, "p1"),  # a 3-beat run the truth ignores
        ]
    }
    result = score_episodes(truth, alerts, ["vtach"], hours=1.0, ignore=ignore).as_dict()
    assert result["per_type"]["vtach"]["detected"] == 1
    assert result["per_type"]["vtach"]["true_alerts"] == 1
    assert result["per_type"]["vtach"]["ignored_alerts"] == 1
    assert result["false_alerts"] == 0
    late = score_episodes(truth, {"p1": [span("vtach", 119.0, None, "p1")]}, ["vtach"], hours=1.0)
    assert late.as_dict()["per_type"]["vtach"]["detected"] == 0
    assert late.as_dict()["false_alerts"] == 1


def test_episode_covered_by_an_already_active_alert_has_no_latency() -> None:
    truth = {"p1": [RhythmEpisode("afib", 100.0, 200.0), RhythmEpisode("afib", 210.0, 300.0)]}
    alerts = {"p1": [span("afib", 110.0, None, "p1")]}
    scores = score_episodes(truth, alerts, ["afib"], hours=1.0)
    assert scores.per_type["afib"].detected == 2
    assert scores.latencies_s == [10.0]


def test_latency_summary() -> None:
    assert latency_summary([]) == {"n": 0, "p50": None, "p95": None}
    s = latency_summary(list(range(101)))
    assert (s["n"], s["p50"], s["p95"]) == (101, 50.0, 95.0)


def test_beat_rate_episodes_follow_cinc2015_definitions() -> None:
    slow = np.arange(0, 20, 2.0)  # 30 bpm
    eps = beat_rate_episodes(slow, 5, lambda hr: hr < 40, "extreme_brady")
    assert eps and eps[0].start_s == 0.0 and eps[0].end_s == 8.0
    normal = np.arange(0, 20, 0.8)  # 75 bpm
    assert beat_rate_episodes(normal, 5, lambda hr: hr < 40, "extreme_brady") == []
    fast = np.arange(0, 10, 0.4)  # 150 bpm, 25 beats
    assert beat_rate_episodes(fast, 17, lambda hr: hr > 140, "extreme_tachy")


def test_mitdb_truth_filters_short_runs() -> None:
    rhythm = [
        RhythmEpisode("(N", 0.0, 100.0),
        RhythmEpisode("(VT", 100.0, 102.1),  # 6 V beats at ~150 bpm: scored
        RhythmEpisode("(N", 102.1, 200.0),
        RhythmEpisode("(VT", 200.0, 200.9),  # 3 V beats: ignored
        RhythmEpisode("(AFIB", 300.0, 320.0),  # 20 s AF: ignored (< 30 s)
        RhythmEpisode("(AFL", 400.0, 500.0),  # scored as afib
    ]
    normal = [np.arange(90, 100, 0.8), np.arange(102.4, 200, 0.8)]
    v_runs = [np.arange(100, 102.1, 0.4), np.array([200.0, 200.4, 200.8])]
    beats = np.concatenate([normal[0], v_runs[0], normal[1], v_runs[1]])
    symbols = ["N"] * len(normal[0]) + ["V"] * len(v_runs[0]) + ["N"] * len(normal[1]) + ["V"] * 3
    scored, ignored = mitdb_truth(rhythm, beats, symbols)
    assert [(e.label, e.start_s) for e in scored] == [("vtach", 100.0), ("afib", 400.0)]
    assert sorted((e.label, e.start_s) for e in ignored) == [("afib", 300.0), ("vtach", 200.0)]


def test_reference_breath_rate_and_resp_mae() -> None:
    ann1 = np.arange(0, 120, 4.0)  # 15 breaths/min
    ann2 = np.arange(1, 120, 5.0)  # 12 breaths/min
    assert reference_breath_rate([ann1], 0, 32) == pytest.approx(15.0)
    assert reference_breath_rate([ann1, ann2], 40, 72) == pytest.approx(13.5)
    assert reference_breath_rate([ann1], 0, 3) is None
    findings = [(10.0, 20.0), (40.0, 15.5), (60.0, 12.5), (80.0, None)]
    result = score_resp_rate(findings, [ann1, ann2], window_s=32.0)
    # t=10 is before a full 32 s window; t=40 and t=60 compare with 13.5; t=80 has no rate.
    assert result["n_findings"] == 3
    assert result["n_compared"] == 2
    assert result["n_without_rate"] == 1
    assert result["mae_bpm"] == pytest.approx(1.5)


def test_mitdb_af_interrupted_by_a_short_vt_run_is_one_episode() -> None:
    rhythm = [
        RhythmEpisode("(AFIB", 0.0, 20.0),
        RhythmEpisode("(VT", 20.0, 21.5),
        RhythmEpisode("(AFIB", 21.5, 40.0),
        RhythmEpisode("(N", 40.0, 100.0),
        RhythmEpisode("(AFIB", 200.0, 215.0),
    ]
    scored, ignored = mitdb_truth(rhythm, np.zeros(0), [])
    assert [(e.label, e.start_s, e.end_s) for e in scored] == [("afib", 0.0, 40.0)]
    assert [(e.label, e.start_s) for e in ignored] == [("vtach", 20.0), ("afib", 200.0)]
