"""The alert catalogue: every alert type, its priority, and its default thresholds.

Pure data, no I/O. The aggregator (:mod:`alerting.aggregator`) reads the thresholds from
an :class:`AlertConfig`, which starts from :data:`DEFAULT_TYPE_SETTINGS` and can be
overridden globally or per patient (both JSON-serialisable, so a ward can ship its own
configuration file and the worker can load it).

Threshold sources:

* High priority (life-threatening) definitions are the PhysioNet/CinC Challenge 2015 ones
  (Clifford et al., "False alarm reduction in critical care", Physiol Meas 2016):
  asystole = no QRS for >= 4 s; extreme bradycardia = HR < 40 bpm for 5 consecutive beats;
  extreme tachycardia = HR > 140 bpm for 17 consecutive beats; ventricular tachycardia =
  >= 5 ventricular beats at > 100 bpm; ventricular flutter/fibrillation = fibrillatory,
  flutter or oscillatory waveform for >= 4 s. They are *latching* (IEC 60601-1-8: a latching
  alarm signal continues after its condition has ceased until the operator acknowledges it).
  Their definitions already contain a duration (4 s, 5 or 17 beats), and the challenge's
  real-time rule charges a missed true alarm like five false ones, so their default
  persistence is one window; their false alarms are fought with signal-quality gating and
  cross-signal (arterial pressure / PPG) corroboration, which is what the best 2015 entries did.
* Atrial fibrillation: an AF episode is >= 30 s (ESC 2020 guidelines), hence 8 of 10
  windows at a 2 s hop over 10 s windows (~30 s of evidence).
* Sustained brady/tachycardia (< 50 / > 120 bpm) and abnormal respiration (<= 8 or >= 25
  breaths/min) follow the NEWS2 3-point bands (RCP 2017) and common bedside alarm limits.
* Apnoea: cessation of breathing >= 20 s (the usual clinical monitoring definition; AASM
  uses >= 10 s for sleep scoring, too sensitive for a ward alarm).
* Hypotension (arterial line): mean arterial pressure < 65 mmHg, the floor that sepsis
  and shock resuscitation targets (Surviving Sepsis Campaign 2021); the MAP, unlike the
  systolic, is barely moved by an under- or over-damped line.
* Trend deterioration: NEWS2 aggregate >= 5 calls for an urgent response (RCP 2017); the
  pipeline's NEWS2 is partial (pulse + respiration only), so a 5 is already significant.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any


class Priority(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


PRIORITY_RANK = {Priority.HIGH: 0, Priority.MEDIUM: 1, Priority.LOW: 2}


class AlertType(StrEnum):
    ASYSTOLE = "asystole"
    VFIB = "vfib"
    VTACH = "vtach"
    EXTREME_BRADY = "extreme_brady"
    EXTREME_TACHY = "extreme_tachy"
    AFIB = "afib"
    BRADY = "brady"
    TACHY = "tachy"
    RESP_ABNORMAL = "resp_abnormal"
    APNEA = "apnea"
    HYPOTENSION = "hypotension"
    TREND_DETERIORATION = "trend_deterioration"
    SIGNAL_LOSS = "signal_loss"
    LEAD_OFF = "lead_off"
    DEVICE_SILENT = "device_silent"
    POOR_SIGNAL = "poor_signal"


class Corroboration(StrEnum):
    """What to do when another signal contradicts a clinical alert (e.g. ECG asystole while
    the arterial line or the PPG shows a normal pulse)."""

    SUPPRESS = "suppress"
    DOWNGRADE = "downgrade"  # raise it, but at medium priority and saying why
    OFF = "off"


@dataclass(frozen=True, slots=True)
class AlertDefinition:
    """What an alert type means; fixed (the tunable numbers live in :class:`TypeSettings`)."""

    type: AlertType
    priority: Priority
    latching: bool
    technical: bool
    unit: str
    definition: str
    # Alerts of these types being open makes this one redundant (alarm hierarchy: a
    # sustained-bradycardia alert adds nothing while extreme bradycardia is raised).
    suppressed_by: tuple[AlertType, ...] = ()


@dataclass(frozen=True, slots=True)
class TypeSettings:
    """Tunable numbers of one alert type. Meaning of ``threshold`` per type is in
    :data:`CATALOGUE` (``unit``); ``clear_threshold`` is the hysteresis bound: an open
    alert only counts a window as normal once the value is past it."""

    enabled: bool = True
    threshold: float | None = None
    clear_threshold: float | None = None
    # Second bound for two-sided types (resp_abnormal: low rate).
    low_threshold: float | None = None
    low_clear_threshold: float | None = None
    # Extra criterion: vtach minimum rate within the run (bpm); afib minimum RR
    # irregularity (nRMSSD) when the rhythm model is absent.
    secondary_threshold: float | None = None
    # Persistence: raise when the condition holds in k of the last n windows.
    persistence_k: int = 1
    persistence_n: int = 1
    # Consecutive normal windows (past clear_threshold) before the condition counts as over.
    clear_windows: int = 2
    # Signal-quality gate: below it (or unusable, when require_usable) the clinical criterion
    # is not judged and a technical poor_signal alert is raised instead.
    min_quality: float = 0.5
    require_usable: bool = True
    corroboration: Corroboration = Corroboration.OFF
    # The pulse rate (arterial line, else PPG) must lie within this many bpm of the alarm
    # side of the threshold to count as agreeing with an ECG rate alarm.
    rate_agreement_bpm: float = 20.0
    # Per-patient alert budget: threshold moves this far away from normal per budget level
    # (medium/low types only; high priority is never adapted).
    budget_step: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> TypeSettings:
        known = {f.name for f in fields(cls)}
        unknown = set(obj) - known
        if unknown:
            raise ValueError(f"unknown alert setting(s) {sorted(unknown)}")
        kwargs = dict(obj)
        if "corroboration" in kwargs:
            kwargs["corroboration"] = Corroboration(kwargs["corroboration"])
        return cls(**kwargs)


def _d(
    type_: AlertType,
    priority: Priority,
    latching: bool,
    unit: str,
    definition: str,
    *,
    technical: bool = False,
    suppressed_by: tuple[AlertType, ...] = (),
) -> AlertDefinition:
    return AlertDefinition(type_, priority, latching, technical, unit, definition, suppressed_by)


A = AlertType
CATALOGUE: dict[AlertType, AlertDefinition] = {
    d.type: d
    for d in (
        _d(A.ASYSTOLE, Priority.HIGH, True, "s",
           "no QRS complex for >= threshold s on any usable ECG lead (ecg/ecg2 max_pause_s)"),
        _d(A.VFIB, Priority.HIGH, True, "s",
           "ventricular fibrillation/flutter for >= threshold s of the window (ECG vf_seconds); "
           "not while an arterial line or PPG keeps pulsing or >= 2 and at least half of the newest beats are "
           "conducted (N/S), unless the arterial line has had no pulse for >= 4 s"),
        _d(A.VTACH, Priority.HIGH, True, "beats",
           ">= threshold consecutive ventricular beats at > secondary_threshold bpm "
           "(ECG v_run_length, v_run_rate_bpm), or a flutter-like ventricular rhythm: VF "
           "detector >= 4 s with >= 3 of the newest beats ventricular; a run is not raised "
           "while a usable second lead shows no 5 beats faster than secondary_threshold"),
        _d(A.EXTREME_BRADY, Priority.HIGH, True, "bpm",
           "heart rate < threshold bpm over 5 consecutive beats (ECG hr_min_5beats)"),
        _d(A.EXTREME_TACHY, Priority.HIGH, True, "bpm",
           "heart rate > threshold bpm over 17 consecutive beats (ECG hr_max_17beats)"),
        _d(A.AFIB, Priority.MEDIUM, False, "p(AF)",
           "atrial fibrillation onset: rhythm model p(A) >= threshold (RR irregularity >= "
           "secondary_threshold when no rhythm model ran); termination resolves the alert"),
        _d(A.BRADY, Priority.MEDIUM, False, "bpm", "sustained heart rate < threshold bpm",
           suppressed_by=(A.EXTREME_BRADY, A.ASYSTOLE)),
        _d(A.TACHY, Priority.MEDIUM, False, "bpm", "sustained heart rate > threshold bpm",
           suppressed_by=(A.EXTREME_TACHY, A.VTACH, A.VFIB)),
        _d(A.RESP_ABNORMAL, Priority.MEDIUM, False, "breaths/min",
           "sustained respiration rate <= low_threshold or >= threshold", suppressed_by=(A.APNEA,)),
        _d(A.APNEA, Priority.MEDIUM, False, "s", "no breath for >= threshold s (RESP max_pause_s)"),
        _d(A.HYPOTENSION, Priority.MEDIUM, False, "mmHg",
           "mean arterial pressure < threshold mmHg (arterial line, ABP mean_mmhg)",
           suppressed_by=(A.ASYSTOLE, A.VFIB)),
        _d(A.TREND_DETERIORATION, Priority.MEDIUM, False, "NEWS2",
           "partial NEWS2 >= threshold, or a deterioration trend reported within the last "
           "secondary_threshold s"),
        _d(A.SIGNAL_LOSS, Priority.LOW, False, "signals",
           "missing data inside the window (finding gaps)", technical=True),
        _d(A.LEAD_OFF, Priority.LOW, False, "", "ECG flat or saturated (lead/electrode off)",
           technical=True),
        _d(A.DEVICE_SILENT, Priority.LOW, False, "s",
           "no finding for >= AlertConfig.device_silent_after_s", technical=True),
        _d(A.POOR_SIGNAL, Priority.LOW, False, "quality",
           "sustained poor ECG/PPG/ABP quality, or a clinical criterion met on a poor signal",
           technical=True),
    )
}
del A

HIGH_PRIORITY_TYPES = tuple(t for t, d in CATALOGUE.items() if d.priority is Priority.HIGH)

S = TypeSettings
C = Corroboration
DEFAULT_TYPE_SETTINGS: dict[AlertType, TypeSettings] = {
    AlertType.ASYSTOLE: S(threshold=4.0, clear_threshold=3.0, corroboration=C.SUPPRESS),
    # VF destroys the QRS template the quality index relies on, so only a technical fault
    # (lead off, flat, clipped) gates it, never "poor quality". Because noise is not gated
    # out, one window is not enough: the VF detector must report >= 4 s of VF in two
    # consecutive windows (2 s hop, so the fibrillatory waveform has lasted >= 6 s, still
    # inside the 10 s an ICU VF alarm may take). A single noisy window (motion, electrode
    # artefact) caused 2 of the 5 VF false alarms on the CinC 2015 training records.
    AlertType.VFIB: S(threshold=4.0, clear_threshold=2.0, min_quality=0.0, require_usable=False,
                      persistence_k=2, persistence_n=2, corroboration=C.SUPPRESS),
    # Wide ventricular complexes lower the template correlation too: a lenient gate. The
    # run criterion is contradicted by a clean second lead without 5 beats > 100 bpm.
    AlertType.VTACH: S(threshold=5, clear_threshold=3, secondary_threshold=100.0,
                       min_quality=0.3, require_usable=False, corroboration=C.SUPPRESS),
    AlertType.EXTREME_BRADY: S(threshold=40.0, clear_threshold=45.0, corroboration=C.SUPPRESS),
    # A PPG pulse rate below the ECG rate must not silence extreme tachycardia: in fast
    # (especially irregular or ventricular) rhythms short-filled beats eject too little to
    # make a pulse wave (pulse deficit), so the PPG undercounts precisely when the ECG is
    # right. The disagreement is stated and the alert shown at medium priority instead.
    AlertType.EXTREME_TACHY: S(threshold=140.0, clear_threshold=130.0,
                               corroboration=C.DOWNGRADE),
    # Termination needs 30 s without AF (15 windows), as an episode needs ~30 s to count:
    # a rhythm model hovering around the threshold otherwise ends and restarts the same
    # episode (MIT-BIH 215, frequent ectopy: 10 alerts in 30 min with 10 s, 2 with 30 s).
    AlertType.AFIB: S(threshold=0.6, clear_threshold=0.4, secondary_threshold=0.1,
                      persistence_k=8, persistence_n=10, clear_windows=15, budget_step=0.1),
    AlertType.BRADY: S(threshold=50.0, clear_threshold=55.0, persistence_k=5, persistence_n=6,
                       clear_windows=3, corroboration=C.SUPPRESS, budget_step=5.0),
    AlertType.TACHY: S(threshold=120.0, clear_threshold=110.0, persistence_k=5, persistence_n=6,
                       clear_windows=3, corroboration=C.SUPPRESS, budget_step=10.0),
    AlertType.RESP_ABNORMAL: S(threshold=25.0, clear_threshold=23.0, low_threshold=8.0,
                               low_clear_threshold=10.0, persistence_k=5, persistence_n=6,
                               clear_windows=3, min_quality=0.3, budget_step=2.0),
    AlertType.APNEA: S(threshold=20.0, clear_threshold=10.0, min_quality=0.0,
                       require_usable=False),
    # ~10 s of evidence: a zeroing, flush or blood draw on the line lasts seconds and
    # makes the mean implausible or the window unusable rather than low.
    AlertType.HYPOTENSION: S(threshold=65.0, clear_threshold=70.0, persistence_k=5, persistence_n=6,
                             clear_windows=3, budget_step=5.0),
    AlertType.TREND_DETERIORATION: S(threshold=5, clear_threshold=3, secondary_threshold=900.0,
                                     persistence_k=3, persistence_n=5, clear_windows=15,
                                     budget_step=1.0),
    AlertType.SIGNAL_LOSS: S(persistence_k=3, persistence_n=5, clear_windows=3),
    AlertType.LEAD_OFF: S(persistence_k=3, persistence_n=5, clear_windows=2),
    AlertType.DEVICE_SILENT: S(clear_windows=1),
    AlertType.POOR_SIGNAL: S(persistence_k=10, persistence_n=15, clear_windows=3,
                             min_quality=0.5),
}
del S, C


@dataclass(frozen=True)
class AlertConfig:
    """Everything the aggregator needs to decide; JSON round-trip via to_dict/from_dict.

    ``patient_overrides`` maps patient id -> {alert type -> {setting -> value}} (plus the
    optional key ``"budget_per_hour"``), e.g. a patient with known chronic bradycardia:
    ``{"bed-7": {"brady": {"threshold": 42, "clear_threshold": 46}}}``.
    """

    types: dict[str, TypeSettings] = field(
        default_factory=lambda: {str(t): s for t, s in DEFAULT_TYPE_SETTINGS.items()}
    )
    # Unacknowledged high-priority alerts escalate after this, then again every
    # escalation_repeat_s, up to max_escalation_level (level 1 = charge nurse, 2 = rapid
    # response, ...; the mapping to people is the ward's).
    escalate_after_s: float = 120.0
    escalation_repeat_s: float = 120.0
    max_escalation_level: int = 3
    # Medium-priority escalation is off by default (None); a ward may set it.
    escalate_medium_after_s: float | None = None
    device_silent_after_s: float = 30.0
    # Latched alerts need an acknowledgement to resolve. Nobody acknowledges during an
    # unattended validation replay: set this (e.g. 60) to resolve a latched alert that long
    # after its condition ended without an acknowledgement. None (default) = never.
    unattended_latch_resolve_s: float | None = None
    # Per-patient budget of raised alerts (all priorities counted) per budget_window_s;
    # beyond it, medium/low thresholds and persistence tighten by one level (up to
    # max_budget_level). High priority is counted but never adapted or silenced.
    budget_per_hour: int = 6
    budget_window_s: float = 3600.0
    max_budget_level: int = 3
    # An open alert gets an "updated" emission when its value worsens by this fraction of
    # the last reported value (or its priority changes), not on every window.
    update_min_change: float = 0.1
    # Bedside-monitor alarms (alerting/verification.py): whether the learned verifier may
    # suppress beyond the fixed evidence rules (False: the rules alone decide).
    learned_verifier: bool = True
    patient_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.types:
            AlertType(name)  # raises on an unknown type
        for pid, over in self.patient_overrides.items():
            for name in over:
                if name != "budget_per_hour":
                    try:
                        AlertType(name)
                    except ValueError:
                        raise ValueError(f"patient {pid}: unknown alert type {name!r}") from None
        object.__setattr__(self, "_patient_cache", {})

    def settings(self, alert_type: str) -> TypeSettings:
        return self.types.get(alert_type) or DEFAULT_TYPE_SETTINGS[AlertType(alert_type)]

    def for_patient(self, patient_id: str) -> AlertConfig:
        """This config with the patient's overrides applied (cached; configs are immutable)."""
        over = self.patient_overrides.get(patient_id)
        if not over:
            return self
        cache: dict[str, AlertConfig] = self._patient_cache  # type: ignore[attr-defined]
        cached = cache.get(patient_id)
        if cached is None:
            types = dict(self.types)
            budget = self.budget_per_hour
            for name, values in over.items():
                if name == "budget_per_hour":
                    budget = int(values)
                    continue
                base = self.settings(name).to_dict()
                types[name] = TypeSettings.from_dict({**base, **values})
            cached = replace(self, types=types, budget_per_hour=budget, patient_overrides={})
            cache[patient_id] = cached
        return cached

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["types"] = {name: s.to_dict() for name, s in self.types.items()}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> AlertConfig:
        """Missing keys keep their defaults; ``types`` entries are merged into the defaults."""
        known = {f.name for f in fields(cls)}
        unknown = set(obj) - known
        if unknown:
            raise ValueError(f"unknown AlertConfig key(s) {sorted(unknown)}")
        kwargs = {k: v for k, v in obj.items() if k != "types"}
        types = {str(t): s for t, s in DEFAULT_TYPE_SETTINGS.items()}
        for name, values in obj.get("types", {}).items():
            base = types[str(AlertType(name))].to_dict()
            types[name] = TypeSettings.from_dict({**base, **values})
        return cls(types=types, **kwargs)

    @classmethod
    def from_json(cls, data: str | bytes) -> AlertConfig:
        return cls.from_dict(json.loads(data))


def definition(alert_type: str) -> AlertDefinition:
    return CATALOGUE[AlertType(alert_type)]
