"""What a validation run produced, as the scorers and the report read it: the types shared
by the broker route (:mod:`stream.replay.validation`), the in-process route
(:mod:`stream.replay.in_process`) and the report (:mod:`stream.replay.report`). Nothing here
imports those three, so each of them imports this one way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream.replay import scoring
from stream.replay.replayer import ReplayStats


@dataclass
class FindingRecord:
    t_ms: int
    window_s: float
    resp_rate_bpm: float | None
    hr_bpm: float | None
    gaps: tuple[str, ...] = ()
    signals: tuple[str, ...] = ()  # the signals with their own findings in the window (ecg, ecg2, ppg, abp)

    @classmethod
    def of(cls, f: Any) -> FindingRecord:
        """The part of a ``VitalsFinding`` the scorers use."""
        return cls(
            f.t_ms,
            f.window_s,
            f.resp.rate_bpm if f.resp is not None else None,
            f.ecg.hr_bpm if f.ecg is not None else None,
            tuple(f.gaps),
            # Respiration may come from the RESP channel or be derived from ECG/PPG, so its
            # presence says nothing about the RESP signal's data.
            tuple(name for name in ("ecg", "ecg2", "ppg", "abp") if getattr(f, name) is not None),
        )


def findings_completeness(findings: dict[str, list[FindingRecord]]) -> dict[str, Any]:
    """How complete the windows were, to compare routes and runs: windows with a gap, and
    windows that closed without ECG, PPG or ABP findings (either ECG lead) where the same
    patient's other windows had them (a signal lagging the others by more than a window
    does not hold windows back, so cross-topic skew would show up there rather than as a
    gap). ``missing_signal_by_record``: per patient and missing signal, how many windows and
    where (seconds from the patient's first window), to find a difference between runs."""
    missing = 0
    by_record: dict[str, dict[str, list[float]]] = {}
    for pid, fs in findings.items():
        seen = {name for f in fs for name in f.signals}
        start_ms = min((f.t_ms for f in fs), default=0)
        for f in fs:
            absent = seen.difference(f.signals)
            missing += bool(absent)
            for name in absent:
                at_s = round((f.t_ms - start_ms) / 1000.0, 1)
                n, first, last = by_record.setdefault(pid, {}).get(name, [0, at_s, at_s])
                by_record[pid][name] = [n + 1, min(first, at_s), max(last, at_s)]
    return {
        "findings_with_gaps": sum(1 for fs in findings.values() for f in fs if f.gaps),
        "findings_missing_signal": missing,
        "missing_signal_by_record": {pid: by_record[pid] for pid in sorted(by_record)},
    }


@dataclass
class RunOutput:
    """What the pipeline produced for the replayed patients."""

    alerts: dict[str, list[scoring.AlertSpan]]
    findings: dict[str, list[FindingRecord]]
    base_ms: int
    replay: ReplayStats
    drain: dict[str, Any] = field(default_factory=dict)
    # What became of the bedside monitors' alarms (CinC 2015), one dict per alarm with the
    # store's fields (alarm_id, alarm_type, t_ms, verdict, reason, alert_id, ...).
    device_alarms: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SuiteResult:
    metrics: dict[str, Any]
    false_events: list[tuple[str, str, float]]  # (patient, alert type, record time s)
    missed_events: list[tuple[str, str, float]]
    outcomes: dict[str, dict[str, int]]  # type -> {outcome: count} for the bar chart
    # Values for the distribution plot: (title, x label, values).
    distribution: tuple[str, str, list[float]] = ("", "", [])
