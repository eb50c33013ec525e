"""Verifying the bedside monitor's own alarms against the pipeline's measurements. Pure.

A bedside monitor that alarms (``stream.device_alarm.DeviceAlarm``) is a second,
independent reading of the patient. Most of its arrhythmia alarms are false (ICU studies:
72-99 %; of the 292 shared CinC 2015 training alarms 59 %, of their VT alarms 73 %), and a
true life-threatening alarm suppressed is the worst thing this product can do. So the
aggregator keeps, for every window, a compact row of evidence from every signal
(:func:`models.verifier_features.window_evidence`: both ECG leads, the arterial line, the
PPG), and decides each alarm on the windows ending in the 10 s before it and the one
covering it (:func:`models.verifier.verify`):

* **suppressed** -- only on *positive evidence* that it is false: an evidence rule (a pulse
  wave pulsing throughout an "asystole", a clean lead with normal beats throughout a "VT"),
  or the learned verifier's probability below its threshold where the event shows on one
  ECG lead at most. Not seeing the event with the pipeline's own detector is never enough.
  The care team is not alarmed; the decision, its evidence and the verifier's version are
  recorded.
* **confirmed** -- a lead meets the alarm's definition: the alarm reaches the care team at
  its own priority.
* **unverifiable** -- nothing says it is false, nothing that it is true (no data, signals too
  poor, or a value short of the definition): the alarm still reaches the care team at its
  own priority, saying it could not be verified. Failing safe: the monitor saw something.

Each window's row is computed once, when its finding arrives (:class:`WindowCheck`, kept
for ``VERIFY_KEEP_S``), so the decision is the same whether the alarm arrives before or
after the findings that cover it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from models.verifier import Verdict, Verification, VerifierModel, verify
from models.verifier_features import LOOKBACK_S, WINDOW_FIELDS, alarm_evidence
from stream.device_alarm import DeviceAlarm

__all__ = ["DECIDED_KEEP", "VERIFY_KEEP_S", "VERIFY_LOOKBACK_S", "VERIFY_TIMEOUT_S", "DeviceAlarmDecision",
           "Verdict", "WindowCheck", "decide_alarm", "default_verifier"]

# CinC 2015 judged each alarm on the 10 s of signal before it.
VERIFY_LOOKBACK_S = LOOKBACK_S
# Window checks kept after the newest finding: an alarm that arrives later than this after
# the findings covering it is decided on what is left (the gateway forwards alarms within
# a second or two; the findings lag them).
VERIFY_KEEP_S = 30.0
# An alarm that no finding reaches within this much event time (the device stopped
# sending) is decided by a tick on the windows there are.
VERIFY_TIMEOUT_S = 20.0
# Ids of decided alarms remembered for idempotence (a redelivered alarm is decided once).
DECIDED_KEEP = 32


@dataclass(frozen=True, slots=True)
class WindowCheck:
    """One window's evidence row (:data:`models.verifier_features.WINDOW_FIELDS`; NaN = not
    measured), kept in the patient's alert state for alarms that arrive later."""

    t_ms: int
    evidence: tuple[float, ...]

    def to_list(self) -> list[Any]:
        # JSON has no NaN: "not measured" travels as null.
        return [self.t_ms, [None if v != v else v for v in self.evidence]]

    @classmethod
    def from_lists(cls, objs: Sequence[Sequence[Any]]) -> tuple[WindowCheck, ...]:
        """Checks saved by this version. Checks saved with another set of evidence fields (a
        worker of another version wrote the state) are dropped, not misread: they are a 30-s
        cache, and an alarm without them is decided on the windows that follow."""
        n = len(WINDOW_FIELDS)
        out = []
        for obj in objs:
            if len(obj) != 2 or not isinstance(obj[1], list) or len(obj[1]) != n:
                continue
            out.append(cls(int(obj[0]), tuple(math.nan if v is None else v for v in obj[1])))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class DeviceAlarmDecision:
    """What became of one bedside alarm; written to Redis (``RedisAlertStore``) for audit.
    ``alert_id`` is the alert that carries it to the care team (the alert of its type,
    raised or already open); None when nothing does. ``note``: the pipeline's own open alert
    of the type when the alarm itself was suppressed. ``p_true``: the learned verifier's
    probability that the alarm is true; ``verifier``: its version."""

    alarm: DeviceAlarm
    verdict: Verdict
    decided_ms: int  # event time of the decision
    reason: str
    value: float | None = None
    windows_judged: int = 0
    alert_id: str | None = None
    note: str = ""
    p_true: float | None = None
    verifier: str = ""

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
            "note": self.note, "p_true": self.p_true, "verifier": self.verifier,
        }


@cache
def default_verifier() -> VerifierModel:
    """The shipped learned verifier (``models/weights/verifier.json``), loaded once."""
    return VerifierModel.load()


def decide_alarm(alarm: DeviceAlarm, checks: Sequence[WindowCheck], decide_ms: int,
                 model: VerifierModel | None) -> Verification:
    """Decide one alarm from the kept window checks (``decide_ms``: the end of the first
    window covering it, or the timeout). A function of those windows alone, so the verdict
    does not depend on when the alarm arrived."""
    ev = alarm_evidence([c.evidence for c in checks], [c.t_ms for c in checks], alarm.t_ms, decide_ms)
    return verify(alarm.alarm_type, ev, model)
