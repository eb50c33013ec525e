"""What a fault campaign counts (``stream/faults/scoring.py``)."""

from __future__ import annotations

from stream.faults.scoring import (
    AlertRecord,
    Episode,
    FindingSeen,
    RecoveryInputs,
    alerts_from_emissions,
    condition_spans,
    episode_outcomes,
    lost_alerts,
    overlapping_alerts,
    recovery_ms,
    uncovered_hops,
)

S = 1000


def alert(alert_id: str, raised_s: float, resolved_s: float | None = None, *, type: str = "brady",
          patient: str = "p1", **kw: object) -> AlertRecord:
    return AlertRecord(alert_id, patient, type, int(raised_s * S), None if resolved_s is None else int(resolved_s * S),
                       **kw)  # type: ignore[arg-type]


def test_episode_alerted_once_missed_duplicated_and_not_detectable() -> None:
    episodes = [Episode("p1", "brady", 100 * S, 160 * S), Episode("p1", "brady", 400 * S, 460 * S),
                Episode("p1", "brady", 700 * S, 760 * S), Episode("p1", "brady", 900 * S, 960 * S)]
    stored = [alert("a", 110, 170), alert("b", 705, 720), alert("c", 730, 770)]
    reference = [alert("r1", 110, 170), alert("r2", 405, 470), alert("r3", 705, 770)]
    once, missed, duplicated, undetectable = episode_outcomes(episodes, stored, reference)
    assert once.alerted_once and not once.missed and not once.duplicated
    assert missed.missed and not missed.alerted_once
    assert duplicated.duplicated and not duplicated.alerted_once
    assert not undetectable.missed and not undetectable.detected_without_faults


def test_a_latched_alert_does_not_cover_a_later_episode() -> None:
    """Open (awaiting acknowledgement) long after its condition ended: its condition spans
    decide, not raise..resolve."""
    latched = alert("a", 100, None, condition=condition_spans(100 * S, [(150 * S, False)]))
    later = Episode("p1", "brady", 400 * S, 460 * S)
    (outcome,) = episode_outcomes([later], [latched], [alert("r", 405, 470)])
    assert outcome.missed


def test_two_open_alerts_for_one_condition_and_double_raises_are_duplicates() -> None:
    assert overlapping_alerts([alert("a", 100, 200), alert("b", 150, 300)]) == [("a", "b")]
    assert overlapping_alerts([alert("a", 100, 200), alert("b", 250, 300)]) == []
    assert overlapping_alerts([alert("a", 100, 200, type="tachy"), alert("b", 150, 300)]) == []
    assert overlapping_alerts([alert("a", 100, 200, raised_events=2)]) == [("a", "a")]


def test_lost_alerts_are_those_without_a_stored_alert_near_them() -> None:
    expected = [alert("x", 100, 150), alert("y", 500, 550), alert("z", 600, None, type="device_silent")]
    stored = [alert("merged-under-another-id", 110, 160)]
    assert [a.alert_id for a in lost_alerts(expected, stored)] == ["y"]


def test_uncovered_hops_are_data_no_finding_window_contains() -> None:
    reference = {"p1": [10_000 + 2_000 * i for i in range(20)]}
    # Findings at 24..44 s missing: the one at 46 s covers (36, 46], the one at 22 s
    # (12, 22]; the hops ending 24..36 s are in no window.
    published = {"p1": [t for t in reference["p1"] if not 24_000 <= t <= 44_000]}
    assert uncovered_hops(reference, published, 10_000, 2_000) == {"p1": list(range(24_000, 36_001, 2_000))}
    # Windows on another grid (a new owner's monitor started 1 s later) cover the same data.
    shifted = {"p1": [t + 1_000 for t in reference["p1"]]}
    assert uncovered_hops(reference, shifted, 10_000, 2_000) == {}


def test_recovery_ends_with_the_last_unhealthy_moment_after_the_fault() -> None:
    findings = []
    for t in range(0, 100, 2):
        for p in ("p1", "p2"):
            if p == "p2" and 40 <= t < 60:
                continue  # p2's worker was killed: nothing from it for 20 s
            findings.append(FindingSeen((t + 2) * S, p, t * S))
    findings.sort(key=lambda f: f.received_ms)
    lag = [(t * S, 30 if 46 <= t < 66 else 2) for t in range(0, 100)]
    inputs = RecoveryInputs(["p1", "p2"], findings, lag, normal_finding_lag_ms=8 * S, normal_group_lag=10)
    assert inputs.healthy_at(30 * S) and not inputs.healthy_at(50 * S)
    # Killed at 38 s, restarted at 41 s: still healthy at 41 s (p2's last finding is 3 s
    # old), unhealthy from 46 s until the backlog is through at 66 s.
    assert inputs.healthy_at(41 * S)
    assert recovery_ms(inputs, 38 * S, 41 * S, 100 * S) == (66 - 41) * S
    assert recovery_ms(inputs, 38 * S, 41 * S, 60 * S) is None
    assert recovery_ms(inputs, 80 * S, 80 * S, 100 * S) == 0


def test_alerts_from_emissions_keep_the_last_snapshot_and_count_raises() -> None:
    class Em:
        def __init__(self, event: str, updated_s: int, active: bool = True, resolved: int | None = None) -> None:
            self.alert_id, self.patient_id, self.type, self.event = "a", "p1", "brady", event
            self.raised_ms, self.updated_ms = 100 * S, updated_s * S
            self.condition_active, self.resolved_ms = active, resolved

    (a,) = alerts_from_emissions([Em("raised", 100), Em("updated", 120, active=False),
                                  Em("resolved", 200, active=False, resolved=200 * S)])
    assert a.raised_events == 1 and a.resolved_ms == 200 * S
    assert a.condition == ((100 * S, 120 * S),)
