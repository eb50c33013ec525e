"""Verifying the bedside monitor's own alarms against the pipeline's measurements. Pure.

A bedside monitor that alarms (``stream.device_alarm.DeviceAlarm``) is a second,
independent reading of the patient. Most of its arrhythmia alarms are false (ICU studies:
72-99 %; CinC 2015: 88.8 % of annotated arrhythmia alarms), so the aggregator checks
each one against what the pipeline measured over the same seconds and decides:

* **confirmed** -- a window ending in the alarm's lookback (the ``VERIFY_LOOKBACK_S``
  before it, data up to the alarm; the window that covers the alarm instant included)
  met the type's *confirm* bound
  (``TypeSettings.confirm_threshold``). That bound is looser than the pipeline's own alarm
  threshold: the monitor already saw the event, so the question is no longer "is this an
  emergency?" but "do the signals contradict the monitor?". A rate of 127 bpm under an
  extreme-tachycardia alarm (> 140) is a tachycardic patient whose two rate algorithms
  disagree, not a false alarm. The alarm reaches the care team at its own priority.
* **suppressed** -- the windows of the lookback could be judged and none met the confirm
  bound, or another signal contradicted it (e.g. an arterial line pulsing through an ECG
  "asystole"). The care team is not alarmed; the decision and its reason are recorded.
* **unverifiable** -- nothing in the lookback could be judged (no data, lead off, a signal
  too poor to measure). The clinical alarm is not confirmed, but it is not dropped either:
  a technical ``poor_signal`` alert says the monitor alarmed on a signal that cannot be
  checked (the catalogue's quality-gating rule: poor quality downgrades a clinical alarm
  to a technical one).

Each window is judged once, when its finding arrives (:class:`WindowCheck`, kept for
``VERIFY_KEEP_S``), so the decision is the same whether the alarm arrives before or after
the findings that cover it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from stream.device_alarm import VERIFIABLE_ALARM_TYPES, DeviceAlarm

# CinC 2015 judged each alarm on the 10 s of signal before it.
VERIFY_LOOKBACK_S = 10.0
# Window checks kept after the newest finding: an alarm that arrives later than this after
# the findings covering it is decided on what is left (the gateway forwards alarms within
# a second or two; the findings lag them).
VERIFY_KEEP_S = 30.0
# An alarm that no finding reaches within this much event time (the device stopped
# sending) is decided by a tick on the windows there are.
VERIFY_TIMEOUT_S = 20.0
# Ids of decided alarms remembered for idempotence (a redelivered alarm is decided once).
DECIDED_KEEP = 32


class Verdict(StrEnum):
    CONFIRMED = "confirmed"
    SUPPRESSED = "suppressed"
    UNVERIFIABLE = "unverifiable"


class Mark(StrEnum):
    """How one window judged one alarm type."""

    MET = "1"  # the confirm bound was met
    NOT_MET = "0"
    CONTRADICTED = "c"  # met on the ECG, contradicted by another signal
    GATED = "g"  # the signal was too poor to judge
    UNKNOWN = "."  # nothing to judge (no signal, lead off, no model output)


@dataclass(frozen=True, slots=True)
class WindowCheck:
    """One window judged against every verifiable alarm type: ``marks`` has one
    :class:`Mark` character per ``VERIFIABLE_ALARM_TYPES`` entry, ``values`` the measured
    value (pause s, bpm, run length, VF s; two decimals, rounded once when judged: the
    state is written on every finding) or None."""

    t_ms: int
    marks: str
    values: tuple[float | None, ...]

    def mark(self, alarm_type: str) -> Mark:
        return Mark(self.marks[VERIFIABLE_ALARM_TYPES.index(alarm_type)])

    def value(self, alarm_type: str) -> float | None:
        return self.values[VERIFIABLE_ALARM_TYPES.index(alarm_type)]

    def to_list(self) -> list[Any]:
        return [self.t_ms, self.marks, self.values]

    @classmethod
    def from_lists(cls, objs: Sequence[Sequence[Any]]) -> tuple[WindowCheck, ...]:
        """Checks saved by this version. Checks saved for another set of alarm types (a
        worker of another version wrote the state) are dropped, not misread: they are a
        30-s cache, and an alarm without them is decided on the windows that follow."""
        n = len(VERIFIABLE_ALARM_TYPES)
        # Plain JSON numbers as written by to_list: read on every finding (the table), so
        # no per-value conversion.
        return tuple([cls(t_ms, marks, tuple(values)) for t_ms, marks, values in objs
                      if len(marks) == n and len(values) == n])


@dataclass(frozen=True, slots=True)
class DeviceAlarmDecision:
    """What became of one bedside alarm; written to Redis (``RedisAlertStore``) for audit.
    ``alert_id`` is the alert that carries it to the care team (the confirmed alert, the
    technical alert of an unverifiable one, or the pipeline's own open alert of the type);
    None when nothing does. ``note``: that own alert, when the alarm was not confirmed by its
    lookback but the pipeline had already raised one (from earlier evidence)."""

    alarm: DeviceAlarm
    verdict: Verdict
    decided_ms: int  # event time of the decision
    reason: str
    value: float | None = None
    windows_judged: int = 0
    alert_id: str | None = None
    note: str = ""

    @property
    def emission_id(self) -> str:
        return f"device-alarm:{self.alarm.alarm_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "alarm_id": self.alarm.alarm_id, "patient_id": self.alarm.patient_id,
            "alarm_type": self.alarm.alarm_type, "t_ms": self.alarm.t_ms,
            "device_id": self.alarm.device_id, "label": self.alarm.label,
            "verdict": self.verdict.value, "decided_ms": self.decided_ms, "reason": self.reason,
            "value": self.value, "windows_judged": self.windows_judged, "alert_id": self.alert_id,
            "note": self.note,
        }


# What the measured value is, per type, and which extreme is the alarming one.
_MEASURE: dict[str, tuple[str, str, bool]] = {
    "asystole": ("longest interval without a QRS", "s", True),
    "vfib": ("fibrillatory waveform", "s", True),
    "vtach": ("longest ventricular run", "beats", True),
    "extreme_brady": ("lowest 5-beat heart rate", "bpm", False),
    "extreme_tachy": ("highest 17-beat heart rate", "bpm", True),
}


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    reason: str
    value: float | None
    windows_judged: int


def judge_alarm(alarm: DeviceAlarm, checks: Sequence[WindowCheck], *, decide_ms: int,
                confirm_bound: float, windows_needed: int = 1, bound_extra: str = "") -> Judgement:
    """Decide one alarm from the window checks ending in ``[t - lookback, decide_ms]``
    (``decide_ms``: the end of the first window covering the alarm, or the timeout).
    ``windows_needed``: confirming windows required (the type's own persistence, e.g. VF's
    two consecutive windows); ``bound_extra``: the rest of the bound, said in the reason
    (e.g. the VT run's minimum rate). A function of those windows alone, so the verdict does not
    depend on when the alarm arrived; the pipeline's own alerts only decide how a confirmed
    alarm is delivered (as the open alert of its type, never a second one)."""
    kind = alarm.alarm_type
    what, unit, higher_is_worse = _MEASURE[kind]
    start = alarm.t_ms - round(VERIFY_LOOKBACK_S * 1000)
    window = [c for c in checks if start <= c.t_ms <= decide_ms]
    marks = [c.mark(kind) for c in window]
    judgeable = (Mark.MET, Mark.NOT_MET, Mark.CONTRADICTED)
    judged = sum(1 for m in marks if m in judgeable)
    # The value a poor signal showed is not evidence either way, once any window was judged.
    values = [v for c in window if (v := c.value(kind)) is not None and (not judged or c.mark(kind) in judgeable)]
    worst = (max(values) if higher_is_worse else min(values)) if values else None
    measured = f"{what} {worst:.1f} {unit}" if worst is not None else f"no {what} measured"
    bound = f"{'>=' if higher_is_worse else '<='} {confirm_bound:g} {unit}{bound_extra}"
    met = marks.count(Mark.MET)
    if met >= windows_needed:
        return Judgement(Verdict.CONFIRMED, f"{measured} (confirm bound {bound}) in {met} of "
                         f"{len(window)} windows", worst, judged)
    if judged:
        contradicted = marks.count(Mark.CONTRADICTED)
        why = (f"; in {contradicted} window(s) another signal contradicted the ECG" if contradicted
               else "")
        return Judgement(Verdict.SUPPRESSED, f"{measured} in the {VERIFY_LOOKBACK_S:g} s before "
                         f"the alarm, confirm bound {bound} ({judged} windows judged){why}",
                         worst, judged)
    gated = marks.count(Mark.GATED)
    why = (f"the signal was too poor to measure in {gated} of {len(window)} windows" if gated
           else f"no usable measurement in the {VERIFY_LOOKBACK_S:g} s before it" if window
           else f"no data in the {VERIFY_LOOKBACK_S:g} s before it")
    return Judgement(Verdict.UNVERIFIABLE, why, worst, 0)
