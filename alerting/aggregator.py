"""The alert-fatigue-aware aggregator: findings in, alert emissions out. Pure.

Three entry points, each ``(state, input, ...) -> (new state, emissions)``; the input
state is never mutated:

* :func:`process_finding` -- one :class:`~stream.findings.VitalsFinding` (event time ``t_ms``);
* :func:`process_action` -- an acknowledgement or snooze from the care team;
* :func:`process_device_alarm` -- an alarm the bedside monitor raised itself, confirmed or
  suppressed against the pipeline's measurements (:mod:`alerting.verification`);
* :func:`process_tick` -- time passing without findings (escalation, snooze expiry,
  ``device_silent``). ``now_ms`` must be on the findings' clock (event time): in the worker,
  the largest ``t_ms`` seen on the partition (a watermark), so a replay at any speed
  behaves like the live ward.

Fatigue controls (each has a unit test in ``tests/alerting/test_aggregator.py``):

1. persistence -- a criterion must hold in k of the last n windows;
2. hysteresis -- an open alert only counts a window as normal past ``clear_threshold``;
3. signal-quality gating -- a criterion met on a poor signal is not alarmed; a technical
   ``poor_signal`` alert says so instead;
4. cross-signal corroboration -- ECG asystole/VF while a pulse wave (arterial line or PPG)
   shows a regular pulse, or an ECG rate alarm that the pulse rate contradicts, is
   suppressed (or downgraded);
5. one alert per episode -- later windows update it (only when it worsens, recurs or
   changes priority), never raise a second one; alarm hierarchy (``suppressed_by``);
6. acknowledgement, 7. timed snooze, 8. escalation of unacknowledged alerts;
9. auto-resolution of non-latching alerts (latching ones need an acknowledgement);
10. per-patient alert budget -- a patient raising more than ``budget_per_hour`` alerts gets
    stricter medium/low thresholds and persistence, counted and explained in the alert
    text; high priority is never adapted or silenced.

Idempotence: a finding whose ``t_ms`` is not after the last processed one is a redelivery
and changes nothing (counted in ``duplicates``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from alerting.actions import ActionKind, CareAction
from alerting.catalogue import (
    CATALOGUE,
    AlertConfig,
    AlertType,
    Corroboration,
    Priority,
    TypeSettings,
)
from alerting.episode import (
    Acknowledge,
    AlertEmission,
    AlertEpisode,
    ConditionCleared,
    Observed,
    Resolve,
    Snooze,
    Tick,
    raise_episode,
    transition,
)
from alerting.verification import (
    DECIDED_KEEP,
    VERIFY_KEEP_S,
    VERIFY_TIMEOUT_S,
    DeviceAlarmDecision,
    Verdict,
    WindowCheck,
    decide_alarm,
    default_verifier,
)
from models.verifier import NORMAL_BEATS_RUN as VT_NORMAL_RUN_BEATS
from models.verifier import VF_ORGANISED_S
from models.verifier_features import window_evidence
from stream.device_alarm import DeviceAlarm
from stream.findings import AbpFindings, EcgFindings, PpgFindings, VitalsFinding

DEFAULT_CONFIG = AlertConfig()
T = AlertType
# What the aggregator hands the store: alert changes, and the decisions on bedside alarms.
Emission = AlertEmission | DeviceAlarmDecision


@dataclass(frozen=True, slots=True)
class TypeTrack:
    """Recent windows of one alert type: ``history`` holds one character per window, oldest
    first ("1" criterion met, "0" not met, "." not judgeable); ``met_ms`` the t_ms of the
    "1" windows; ``clear_run`` consecutive normal windows of an open alert."""

    history: str = ""
    met_ms: tuple[int, ...] = ()
    clear_run: int = 0

    def push(self, met: bool | None, t_ms: int, keep: int) -> TypeTrack:
        mark = "." if met is None else ("1" if met else "0")
        history = self.history + mark
        met_ms = (*self.met_ms, t_ms) if met else self.met_ms
        if len(history) > keep:
            dropped = history[: len(history) - keep]
            met_ms = met_ms[dropped.count("1"):]
            history = history[-keep:]
        return TypeTrack(history, met_ms, self.clear_run)

    def met_in_last(self, n: int) -> int:
        return self.history[-n:].count("1")

    def first_met_in_last(self, n: int) -> int:
        return self.met_ms[len(self.met_ms) - self.met_in_last(n)]


@dataclass(frozen=True)
class PatientAlertState:
    """Everything the aggregator remembers about one patient. JSON via to_dict/from_dict."""

    patient_id: str
    last_t_ms: int | None = None
    episodes: dict[str, AlertEpisode] = field(default_factory=dict)  # open ones, by type
    tracks: dict[str, TypeTrack] = field(default_factory=dict)
    raise_log: tuple[int, ...] = ()  # raised_ms of this patient's alerts in the budget window
    budget_level: int = 0
    budget_changed_ms: int | None = None
    last_trend_ms: int | None = None
    last_trend_message: str = ""
    # Counters (never reset): what the fatigue controls held back, by alert type.
    held_back: dict[str, int] = field(default_factory=dict)  # by the budget
    contradicted: dict[str, int] = field(default_factory=dict)  # by the other signal or the rhythm
    gated: dict[str, int] = field(default_factory=dict)  # by poor signal quality
    duplicates: int = 0
    # Bedside-monitor alarms (alerting/verification.py): the recent windows' evidence rows,
    # the alarms waiting for the findings that cover them, the ids already decided
    # (idempotence), and how many were confirmed / suppressed / unverifiable.
    checks: tuple[WindowCheck, ...] = ()
    pending_alarms: tuple[DeviceAlarm, ...] = ()
    decided_alarms: tuple[str, ...] = ()
    device_alarms: dict[str, int] = field(default_factory=dict)

    @classmethod
    def new(cls, patient_id: str) -> PatientAlertState:
        return cls(patient_id=patient_id)

    def open_alert_ids(self) -> list[str]:
        return [ep.alert_id for ep in self.episodes.values()]

    def awaits_time(self) -> bool:
        """Whether time alone (process_tick) can still change this state: a device heard
        from that may fall silent, or an open alert that may escalate, end a snooze or
        resolve. Not a departed device whose only open alert is its unsnoozed
        ``device_silent``, so a worker need not tick every patient it ever saw."""
        if self.pending_alarms:
            return True  # decided by a tick if no finding reaches them
        if self.last_t_ms is None:
            return False
        silent = self.episodes.get(T.DEVICE_SILENT.value)
        if silent is None:
            return True
        return len(self.episodes) > 1 or silent.snoozed_until_ms is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"patient_id": self.patient_id, "last_t_ms": self.last_t_ms}
        if self.episodes:
            out["episodes"] = {t: ep.to_dict() for t, ep in self.episodes.items()}
        if self.tracks:
            out["tracks"] = {t: [tr.history, list(tr.met_ms), tr.clear_run]
                             for t, tr in self.tracks.items()}
        for name in ("raise_log", "budget_level", "budget_changed_ms", "last_trend_ms",
                     "last_trend_message", "held_back", "contradicted", "gated", "duplicates",
                     "decided_alarms", "device_alarms"):
            value = getattr(self, name)
            if value:
                out[name] = list(value) if isinstance(value, tuple) else value
        if self.checks:
            out["checks"] = [c.to_list() for c in self.checks]
        if self.pending_alarms:
            out["pending_alarms"] = [asdict(a) for a in self.pending_alarms]
        return out

    def to_json(self) -> bytes:
        """What the worker stores in its Faust table (typically a few hundred bytes)."""
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> PatientAlertState:
        return cls.from_dict(json.loads(data))

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> PatientAlertState:
        return cls(
            patient_id=obj["patient_id"],
            last_t_ms=obj.get("last_t_ms"),
            episodes={t: AlertEpisode.from_dict(e) for t, e in obj.get("episodes", {}).items()},
            tracks={t: TypeTrack(h, tuple(m), c) for t, (h, m, c) in obj.get("tracks", {}).items()},
            raise_log=tuple(obj.get("raise_log", ())),
            budget_level=obj.get("budget_level", 0),
            budget_changed_ms=obj.get("budget_changed_ms"),
            last_trend_ms=obj.get("last_trend_ms"),
            last_trend_message=obj.get("last_trend_message", ""),
            held_back=dict(obj.get("held_back", {})),
            contradicted=dict(obj.get("contradicted", {})),
            gated=dict(obj.get("gated", {})),
            duplicates=obj.get("duplicates", 0),
            checks=WindowCheck.from_lists(obj.get("checks", ())),
            pending_alarms=tuple(DeviceAlarm.from_dict(a) for a in obj.get("pending_alarms", ())),
            decided_alarms=tuple(obj.get("decided_alarms", ())),
            device_alarms=dict(obj.get("device_alarms", {})),
        )


@dataclass(frozen=True, slots=True)
class Assessment:
    """One alert type judged on one finding."""

    met: bool | None  # criterion held (at the budget-adapted threshold); None = not judgeable
    clear: bool = False  # past the hysteresis bound on the normal side
    value: float | None = None
    message: str = ""
    downgraded: bool = False
    gated: str | None = None  # criterion met on a poor signal (reason)
    contradicted: str | None = None  # criterion met but the other signal disagrees
    held_back: bool = False  # met at the base threshold, not at the adapted one
    lower_is_worse: bool = False


UNKNOWN = Assessment(met=None)


# ------------------------------------------------------------------ per-type criteria


def _ecg_quality_problem(ecg: EcgFindings, s: TypeSettings) -> str | None:
    if ecg.quality < s.min_quality or (s.require_usable and not ecg.usable):
        return f"ECG quality {ecg.quality:.2f}"
    return None


def _judged_ecg(f: VitalsFinding) -> EcgFindings | None:
    """The ECG part when it can say anything at all (present, not lead-off)."""
    if f.ecg is None or f.ecg.lead_off:
        return None
    return f.ecg


def _pulse_waves(f: VitalsFinding) -> list[tuple[str, PpgFindings | AbpFindings]]:
    """The usable pulse waves of the window, the arterial line first: it is calibrated and
    does not suffer the PPG's motion and perfusion artefacts, so its rate is preferred."""
    waves: list[tuple[str, PpgFindings | AbpFindings]] = []
    for name, wave in (("ABP", f.abp), ("PPG", f.ppg)):
        if wave is not None and wave.usable:
            waves.append((name, wave))
    return waves


def _pulse_rate(f: VitalsFinding) -> tuple[str, float] | None:
    """(source, rate) of the preferred usable pulse wave that measured a rate."""
    for name, wave in _pulse_waves(f):
        if wave.pulse_rate_bpm is not None:
            return name, wave.pulse_rate_bpm
    return None


# An arterial line without a pulse for this long confirms an ECG arrest (asystole, VF):
# the alarms' own duration criterion (>= 4 s).
ARREST_CONFIRM_S = 4.0


def _arterial_pulse_lost(f: VitalsFinding, min_gap_s: float) -> str | None:
    """A usable arterial line went at least ``min_gap_s`` without a pulse. The line is the
    reference for perfusion: when it stops pulsing, a PPG that still seems to pulse is
    motion or light artefact (CinC 2015 f544s: ventricular fibrillation, the pressure
    decaying for 6 s while the PPG wobbled at "53 bpm")."""
    line = f.abp
    if line is None or not line.usable or line.max_pause_s is None or line.max_pause_s < min_gap_s:
        return None
    return f"the arterial line has had no pulse for {line.max_pause_s:.1f} s"


def _pulse_through(f: VitalsFinding, ecg_gap_s: float) -> str | None:
    """A pulse wave (ABP or PPG) kept pulsing through an ECG pause/fibrillation of
    ``ecg_gap_s``: its own longest pulse-free interval is at most half of it (a real arrest
    stops the pulse too). Nothing contradicts the ECG once the arterial line lost its pulse
    for as long as the alarm's own duration criterion."""
    if _arterial_pulse_lost(f, min(ecg_gap_s, ARREST_CONFIRM_S)):
        return None
    for name, wave in _pulse_waves(f):
        if not wave.pulsatile or wave.max_pause_s is None or wave.max_pause_s > 0.5 * ecg_gap_s:
            continue
        rate = f" at {wave.pulse_rate_bpm:.0f} bpm" if wave.pulse_rate_bpm is not None else ""
        return f"{name} shows a regular pulse{rate} (longest pulse gap {wave.max_pause_s:.1f} s)"
    return None


def _finish(met_raw: bool, met_eff: bool, clear: bool, value: float | None, message: str,
            s: TypeSettings, *, gate: str | None = None, contradiction: str | None = None,
            lower_is_worse: bool = False) -> Assessment:
    """Apply the quality gate and corroboration to a raw criterion."""
    if gate is not None:
        return Assessment(None, False, value, message, gated=gate if met_raw else None,
                          lower_is_worse=lower_is_worse)
    held = met_raw and not met_eff
    if met_eff and contradiction is not None and s.corroboration != Corroboration.OFF:
        if s.corroboration == Corroboration.SUPPRESS:
            return Assessment(False, False, value, message, contradicted=contradiction,
                              lower_is_worse=lower_is_worse)
        return Assessment(True, False, value, f"{message}; downgraded: {contradiction}",
                          downgraded=True, contradicted=contradiction,
                          lower_is_worse=lower_is_worse)
    return Assessment(met_eff, clear and not met_eff, value, message, held_back=held,
                      lower_is_worse=lower_is_worse)


def _shift(s: TypeSettings, level: int, *, above: bool) -> float:
    """Raise threshold moved away from normal by the budget level."""
    assert s.threshold is not None
    step = level * s.budget_step
    return s.threshold + step if above else s.threshold - step


def _ecg_leads(f: VitalsFinding) -> list[tuple[str, EcgFindings]]:
    """The ECG leads that can say anything (present, not lead-off), the first lead first.

    The second lead only corroborates or stands in for a first lead that is there but
    off or failing its quality gate: a window without any first-lead data (its topic late
    at start-up, a gap) is not judged on the second lead alone, whose detector may still
    be settling and which was never validated on its own."""
    if f.ecg is None:
        return []
    leads = [("first lead", f.ecg), ("second lead", f.ecg2)]
    return [(name, lead) for name, lead in leads if lead is not None and not lead.lead_off]


def _lead_for(f: VitalsFinding, s: TypeSettings) -> tuple[EcgFindings | None, str | None, str]:
    """(lead, gate, note) for a criterion judged on one lead: the first lead when it passes
    the type's quality gate, else the second lead when that one does (a noisy or
    disconnected first lead no longer hides a rhythm the second shows), else the first
    lead with its gate reason.

    A first lead that fails the gate still counts beats. When its own value is past the
    clear bound (steady QRS detections at a normal rate) the callers keep it: the second
    lead's alarm value is then more likely its own missed beats (a small QRS on that lead)
    than the rhythm. MIT-BIH 223: mixed VT-like morphology fails the first lead's template
    gate at 112 bpm while V1 misses beats."""
    leads = _ecg_leads(f)
    if not leads:
        return None, None, ""
    for name, lead in leads:
        if _ecg_quality_problem(lead, s) is None:
            return lead, None, "" if name == "first lead" else f" ({name})"
    return leads[0][1], _ecg_quality_problem(leads[0][1], s), ""


def _assess_asystole(f: VitalsFinding, s: TypeSettings, level: int) -> Assessment:
    if s.threshold is None:
        return UNKNOWN
    leads = [(name, lead) for name, lead in _ecg_leads(f) if lead.max_pause_s is not None]
    if not leads:
        return UNKNOWN
    good = [(name, lead) for name, lead in leads if _ecg_quality_problem(lead, s) is None]
    # A QRS on any lead that passes the gate ends the pause: a lead whose complexes fade
    # (low amplitude, electrode drift) is the classic false asystole of one-lead monitors.
    # A lead that fails the gate still ends it when it kept detecting QRS complexes well
    # inside the pause (its own pause below the clear bound; see _lead_for).
    steady = [(name, lead) for name, lead in leads
              if s.clear_threshold is not None and (lead.max_pause_s or 0.0) < s.clear_threshold]
    name, lead = min(good + steady if good else leads[:1], key=lambda nl: nl[1].max_pause_s or 0.0)
    pause = float(lead.max_pause_s or 0.0)
    met = pause >= s.threshold
    clear = s.clear_threshold is None or pause < s.clear_threshold
    where = " on both leads" if len(good) == 2 else (f" ({name})" if name != "first lead" else "")
    msg = f"asystole: no QRS for {pause:.1f} s{where}"
    gate = None if good else _ecg_quality_problem(lead, s)
    return _finish(met, met, clear, pause, msg, s, gate=gate,
                   contradiction=_pulse_through(f, pause) if met else None)


def _conducted_rhythm(ecg: EcgFindings) -> str | None:
    """At least two of the hop's newest beats, and at least half of them, classified
    normal or supraventricular: an organised, conducted rhythm, which fibrillation is not
    (the VF detector also responds to noise and to wide, slow complexes)."""
    counts = ecg.beat_counts
    total = sum(counts.values())
    conducted = counts.get("N", 0) + counts.get("S", 0)
    if total and conducted >= 2 and 2 * conducted >= total:
        return f"{conducted} of the {total} newest beats are normal or supraventricular"
    return None


def _assess_vfib(f: VitalsFinding, s: TypeSettings, level: int) -> Assessment:
    ecg = _judged_ecg(f)
    if ecg is None or s.threshold is None or (ecg.vf_score is None and ecg.vf_seconds == 0):
        return UNKNOWN  # no VF detector output
    secs = ecg.vf_seconds
    met = secs >= s.threshold
    clear = s.clear_threshold is None or secs < s.clear_threshold
    score = f", score {ecg.vf_score:.2f}" if ecg.vf_score is not None else ""
    msg = f"ventricular fibrillation/flutter for {secs:.1f} s{score}"
    contradiction = None
    if met:
        confirmed = _arterial_pulse_lost(f, s.threshold)
        # Beats "detected" on fibrillatory waves look conducted to the beat model; a
        # pulseless arterial line settles it.
        contradiction = None if confirmed else (_pulse_through(f, secs) or _conducted_rhythm(ecg))
        if confirmed:
            msg = f"{msg}; {confirmed}"
    return _finish(met, met, clear, secs, msg, s, gate=_ecg_quality_problem(ecg, s),
                   contradiction=contradiction)


# Fast monomorphic VT looks like ventricular flutter: wide, near-sinusoidal complexes that
# the QRS detector undercounts (every other one, or none for seconds), so the measured run
# is too short or too slow. When the VF detector reports a flutter-like waveform for at
# least this long *and* the beat model calls at least this many of the hop's newest beats
# ventricular (three in a row is the smallest run called non-sustained VT), the rhythm is
# ventricular and fast whatever the undercounted rate says. On the 150 CinC 2015 records
# this found 4 of the 7 true VT alarms the run criterion missed, for 4 more false ones.
FLUTTER_VF_S = 4.0
FLUTTER_MIN_V_BEATS = 3


def _second_lead_without_run(f: VitalsFinding, min_rate: float, *, flutter: bool) -> str | None:
    """The run criterion counts 5 ventricular beats faster than ``min_rate`` on the first
    lead. A clean second lead (usable: its complexes match their template) with normal
    beats in the same window contradicts it: no 5 consecutive beats faster than that and no
    ventricular run of more than a couplet (its own beat classes); against the flutter-like
    rule (``flutter``), no fibrillatory stretch either. The "run" was noise or artefact on
    the first lead (CinC 2015 v513l, v282s, v359l). A real run shows on both leads; during
    one the second lead's template breaks, and an unusable lead contradicts nothing. The
    same evidence suppresses a bedside VT alarm (models.verifier)."""
    second = f.ecg2
    if second is None or second.lead_off or not second.usable or second.hr_max_5beats is None:
        return None
    if second.hr_max_5beats > min_rate:
        return None
    if second.beat_counts and second.v_run_length > VT_NORMAL_RUN_BEATS:
        return None
    if flutter and second.vf_score is not None and second.vf_seconds >= VF_ORGANISED_S:
        return None
    return (f"the second lead shows normal beats, no 5 faster than {second.hr_max_5beats:.0f} bpm")


def _assess_vtach(f: VitalsFinding, s: TypeSettings, level: int) -> Assessment:
    ecg = _judged_ecg(f)
    if ecg is None or s.threshold is None:
        return UNKNOWN
    if not ecg.beat_counts and ecg.n_beats > 0:
        return UNKNOWN  # beats found but not classified: no beat model output
    run, rate = ecg.v_run_length, ecg.v_run_rate_bpm
    min_rate = s.secondary_threshold or 0.0
    met = run >= s.threshold and rate is not None and rate > min_rate
    clear = s.clear_threshold is None or run < s.clear_threshold
    rate_txt = f" at {rate:.0f} bpm" if rate is not None else ""
    msg = f"ventricular tachycardia: run of {run} ventricular beats{rate_txt}"
    n_v = ecg.beat_counts.get("V", 0)
    flutter = False
    if not met and ecg.vf_seconds >= FLUTTER_VF_S and n_v >= FLUTTER_MIN_V_BEATS:
        flutter = True
        met, clear = True, False
        msg = (f"ventricular tachycardia: flutter-like ventricular rhythm for {ecg.vf_seconds:.0f} s, "
               f"{n_v} of the newest beats ventricular (QRS detection undercounts it)")
    contradiction = _second_lead_without_run(f, min_rate, flutter=flutter) if met else None
    return _finish(met, met, clear, float(run), msg, s, gate=_ecg_quality_problem(ecg, s),
                   contradiction=contradiction)


def _rate_contradiction(f: VitalsFinding, s: TypeSettings, threshold: float,
                        above: bool) -> str | None:
    pulse = _pulse_rate(f)
    if pulse is None:
        return None
    source, rate = pulse
    if above and rate < threshold - s.rate_agreement_bpm:
        return f"{source} pulse rate {rate:.0f} bpm disagrees"
    if not above and rate > threshold + s.rate_agreement_bpm:
        return f"{source} pulse rate {rate:.0f} bpm disagrees"
    return None


def _assess_extreme_rate(f: VitalsFinding, s: TypeSettings, level: int, *,
                         above: bool) -> Assessment:
    ecg, gate, where = _lead_for(f, s)
    if ecg is None or s.threshold is None:
        return UNKNOWN
    clear_thr = s.clear_threshold

    def past_clear(value: float | None) -> bool:
        return value is not None and clear_thr is not None and (
            value <= clear_thr if above else value >= clear_thr)

    hr = ecg.hr_max_17beats if above else ecg.hr_min_5beats
    if where and f.ecg is not None and not f.ecg.lead_off:  # second lead judging a gated first
        first = f.ecg.hr_max_17beats if above else f.ecg.hr_min_5beats
        if past_clear(first):  # the first lead still counts a normal rate (see _lead_for)
            ecg, hr, where = f.ecg, first, ""
    if hr is None:
        return UNKNOWN
    met = hr > s.threshold if above else hr < s.threshold
    clear = clear_thr is None or past_clear(hr)
    msg = (f"extreme tachycardia: {hr:.0f} bpm over 17 beats{where}" if above
           else f"extreme bradycardia: {hr:.0f} bpm over 5 beats{where}")
    return _finish(met, met, clear, hr, msg, s, gate=gate,
                   contradiction=_rate_contradiction(f, s, s.threshold, above) if met else None,
                   lower_is_worse=not above)


def _assess_sustained_rate(f: VitalsFinding, s: TypeSettings, level: int, *,
                           above: bool) -> Assessment:
    if s.threshold is None:
        return UNKNOWN
    ecg = _judged_ecg(f)
    gate = _ecg_quality_problem(ecg, s) if ecg is not None else None
    hr: float | None = None
    source = "ECG"
    if ecg is not None and gate is None and ecg.hr_bpm is not None:
        hr = ecg.hr_bpm
    elif (pulse := _pulse_rate(f)) is not None:
        (source, hr), gate = pulse, None
    elif ecg is not None and ecg.hr_bpm is not None:
        hr = ecg.hr_bpm  # only to report what the gate held back
    if hr is None:
        return UNKNOWN
    thr = _shift(s, level, above=above)
    met_raw = hr > s.threshold if above else hr < s.threshold
    met = hr > thr if above else hr < thr
    clear_thr = s.clear_threshold
    clear = clear_thr is None or (hr <= clear_thr if above else hr >= clear_thr)
    word = "tachycardia" if above else "bradycardia"
    msg = f"sustained {word}: {source} rate {hr:.0f} bpm"
    contradiction = (_rate_contradiction(f, s, thr, above)
                     if met and source == "ECG" else None)
    return _finish(met_raw, met, clear, hr, msg, s, gate=gate, contradiction=contradiction,
                   lower_is_worse=not above)


def _assess_afib(f: VitalsFinding, s: TypeSettings, level: int) -> Assessment:
    ecg = _judged_ecg(f)
    if ecg is None or s.threshold is None:
        return UNKNOWN
    gate = _ecg_quality_problem(ecg, s)
    if ecg.rhythm_probs or ecg.rhythm is not None:
        p = ecg.rhythm_probs.get("A", 1.0 if ecg.rhythm == "A" else 0.0)
        thr = min(0.95, s.threshold + level * s.budget_step)
        clear = s.clear_threshold is None or p < s.clear_threshold
        msg = f"atrial fibrillation: rhythm model p(AF) {p:.2f}"
        return _finish(p >= s.threshold, p >= thr, clear, p, msg, s, gate=gate)
    # No rhythm model output: irregularly irregular RR alone (normalised RMSSD; Dash et
    # al. 2009), with the same 30-s persistence.
    irr = ecg.rr_irregularity
    if irr is None or s.secondary_threshold is None:
        return UNKNOWN
    met = irr >= s.secondary_threshold
    clear = irr < 0.7 * s.secondary_threshold
    msg = f"atrial fibrillation suspected: RR irregularity {irr:.2f} (no rhythm model)"
    return _finish(met, met, clear, irr, msg, s, gate=gate)


def _assess_resp_abnormal(f: VitalsFinding, s: TypeSettings, level: int) -> Assessment:
    resp = f.resp
    if resp is None or resp.rate_bpm is None or s.threshold is None or s.low_threshold is None:
        return UNKNOWN
    rate = resp.rate_bpm
    high_eff = s.threshold + level * s.budget_step
    low_eff = s.low_threshold - level * s.budget_step
    met_raw = rate >= s.threshold or rate <= s.low_threshold
    met = rate >= high_eff or rate <= low_eff
    high_clear = s.clear_threshold if s.clear_threshold is not None else s.threshold
    low_clear = s.low_clear_threshold if s.low_clear_threshold is not None else s.low_threshold
    clear = low_clear <= rate <= high_clear
    gate = None
    if resp.quality < s.min_quality or (s.require_usable and not resp.usable):
        gate = f"respiration ({resp.source}) quality {resp.quality:.2f}"
    word = "high" if rate >= s.threshold else "low"
    msg = f"abnormal respiration: {word} rate {rate:.0f} breaths/min ({resp.source})"
    return _finish(met_raw, met, clear, rate, msg, s, gate=gate,
                   lower_is_worse=rate <= s.low_threshold)


def _assess_apnea(f: VitalsFinding, s: TypeSettings, level: int) -> Assessment:
    resp = f.resp
    if resp is None or resp.max_pause_s is None or s.threshold is None:
        return UNKNOWN
    pause = resp.max_pause_s
    met = pause >= s.threshold
    clear = s.clear_threshold is None or pause < s.clear_threshold
    gate = None
    if resp.quality < s.min_quality or (s.require_usable and not resp.usable):
        gate = f"respiration quality {resp.quality:.2f}"
    return _finish(met, met, clear, pause, f"apnoea: no breath for {pause:.0f} s", s, gate=gate)


def _assess_hypotension(f: VitalsFinding, s: TypeSettings, level: int) -> Assessment:
    line = f.abp
    if line is None or line.mean_mmhg is None or s.threshold is None:
        return UNKNOWN
    mean = line.mean_mmhg
    thr = _shift(s, level, above=False)
    clear = s.clear_threshold is None or mean >= s.clear_threshold
    gate = None
    if line.quality < s.min_quality or (s.require_usable and not line.usable):
        gate = f"arterial line quality {line.quality:.2f}"
    pressures = f" ({line.systolic_mmhg:.0f}/{line.diastolic_mmhg:.0f})" if (
        line.systolic_mmhg is not None and line.diastolic_mmhg is not None) else ""
    msg = f"hypotension: mean arterial pressure {mean:.0f} mmHg{pressures}"
    return _finish(mean < s.threshold, mean < thr, clear, mean, msg, s, gate=gate, lower_is_worse=True)


def _assess_trend(f: VitalsFinding, s: TypeSettings, level: int,
                  state: PatientAlertState) -> Assessment:
    if s.threshold is None:
        return UNKNOWN
    hold_ms = (s.secondary_threshold or 0.0) * 1000
    recent_trend = (state.last_trend_ms is not None
                    and f.t_ms - state.last_trend_ms <= hold_ms)
    if f.news2 is None and not recent_trend:
        return UNKNOWN if state.last_trend_ms is None else Assessment(False, True)
    thr = s.threshold + level * s.budget_step
    news2 = f.news2
    met_raw = recent_trend or (news2 is not None and news2 >= s.threshold)
    met = recent_trend or (news2 is not None and news2 >= thr)
    clear = not recent_trend and (news2 is None or s.clear_threshold is None
                                  or news2 <= s.clear_threshold)
    parts = []
    if news2 is not None:
        parts.append(f"partial NEWS2 {news2}")
    if recent_trend:
        parts.append(state.last_trend_message)
    value = float(news2) if news2 is not None else None
    return _finish(met_raw, met, clear, value, "deterioration: " + "; ".join(parts), s)


def _assess_signal_loss(f: VitalsFinding, s: TypeSettings, level: int) -> Assessment:
    if f.gaps:
        return Assessment(True, False, float(len(f.gaps)),
                          f"signal loss: missing {', '.join(f.gaps).upper()} data")
    return Assessment(False, True, 0.0)


def _assess_lead_off(f: VitalsFinding, s: TypeSettings, level: int) -> Assessment:
    if f.ecg is None:
        return UNKNOWN
    if f.ecg.lead_off:
        return Assessment(True, False, 1.0, "ECG lead off (flat or saturated signal)")
    return Assessment(False, True, 0.0)


def _assess_poor_signal(f: VitalsFinding, s: TypeSettings, level: int) -> Assessment:
    poor: list[tuple[str, float]] = []
    judged = False
    if f.ecg is not None and not f.ecg.lead_off:
        judged = True
        if f.ecg.quality < s.min_quality or not f.ecg.usable:
            poor.append(("ECG", f.ecg.quality))
    for name, wave in (("PPG", f.ppg), ("ABP", f.abp)):
        if wave is not None and wave.quality > 0.0:  # quality 0 = flat/clipped: not "poor"
            judged = True
            if wave.quality < s.min_quality or not wave.usable:
                poor.append((name, wave.quality))
    if not judged:
        return UNKNOWN
    if not poor:
        return Assessment(False, True, None)
    worst = min(q for _, q in poor)
    text = ", ".join(f"{name} quality {q:.2f}" for name, q in poor)
    return Assessment(True, False, worst, f"poor signal: {text}", lower_is_worse=True)


def _assess(alert_type: AlertType, f: VitalsFinding, s: TypeSettings, level: int,
            state: PatientAlertState) -> Assessment:
    match alert_type:
        case T.ASYSTOLE:
            return _assess_asystole(f, s, level)
        case T.VFIB:
            return _assess_vfib(f, s, level)
        case T.VTACH:
            return _assess_vtach(f, s, level)
        case T.EXTREME_BRADY:
            return _assess_extreme_rate(f, s, level, above=False)
        case T.EXTREME_TACHY:
            return _assess_extreme_rate(f, s, level, above=True)
        case T.AFIB:
            return _assess_afib(f, s, level)
        case T.BRADY:
            return _assess_sustained_rate(f, s, level, above=False)
        case T.TACHY:
            return _assess_sustained_rate(f, s, level, above=True)
        case T.RESP_ABNORMAL:
            return _assess_resp_abnormal(f, s, level)
        case T.APNEA:
            return _assess_apnea(f, s, level)
        case T.HYPOTENSION:
            return _assess_hypotension(f, s, level)
        case T.TREND_DETERIORATION:
            return _assess_trend(f, s, level, state)
        case T.SIGNAL_LOSS:
            return _assess_signal_loss(f, s, level)
        case T.LEAD_OFF:
            return _assess_lead_off(f, s, level)
        case T.POOR_SIGNAL:
            return _assess_poor_signal(f, s, level)
    return UNKNOWN  # device_silent: decided by process_tick


# ---------------------------------------------------------------------- the machine


class _Run:
    """Mutable working copy of a state during one call (the caller's state is untouched)."""

    def __init__(self, state: PatientAlertState, config: AlertConfig) -> None:
        self.state = state
        self.config = config
        self.episodes = dict(state.episodes)
        self.tracks = dict(state.tracks)
        self.raise_log = list(state.raise_log)
        self.counters = {name: dict(getattr(state, name))
                         for name in ("held_back", "contradicted", "gated")}
        self.budget_level = state.budget_level
        self.budget_changed_ms = state.budget_changed_ms
        self.checks = list(state.checks)
        self.pending = list(state.pending_alarms)
        self.decided = list(state.decided_alarms)
        self.device_alarms = dict(state.device_alarms)
        self.emissions: list[Emission] = []

    def bump(self, counter: str, alert_type: str) -> None:
        c = self.counters[counter]
        c[alert_type] = c.get(alert_type, 0) + 1

    def level_for(self, alert_type: AlertType) -> int:
        return 0 if CATALOGUE[alert_type].priority is Priority.HIGH else self.budget_level

    def apply(self, alert_type: str, ep: AlertEpisode, emissions: list[AlertEmission]) -> None:
        self.emissions.extend(emissions)
        if ep.is_open:
            self.episodes[alert_type] = ep
        else:
            self.episodes.pop(alert_type, None)
            self.tracks.pop(alert_type, None)  # a new episode needs fresh evidence

    def raise_alert(self, alert_type: AlertType, onset_ms: int, now_ms: int,
                    value: float | None, message: str, downgraded: bool) -> None:
        d = CATALOGUE[alert_type]
        priority = Priority.MEDIUM if downgraded and d.priority is Priority.HIGH else d.priority
        message = message + self.budget_note(alert_type)
        ep, emissions = raise_episode(
            patient_id=self.state.patient_id, alert_type=alert_type.value,
            priority=priority.value, latching=d.latching, onset_ms=onset_ms, now_ms=now_ms,
            value=value, message=message)
        self.apply(alert_type.value, ep, emissions)
        self.raise_log.append(now_ms)
        self.update_budget(now_ms)

    def budget_note(self, alert_type: AlertType) -> str:
        if self.budget_level == 0 or CATALOGUE[alert_type].priority is Priority.HIGH:
            return ""
        held = sum(self.counters["held_back"].values())
        return (f" [alert budget: this patient raised more than {self.config.budget_per_hour}"
                f" alerts within {self.config.budget_window_s / 60:.0f} min, so medium/low"
                f" thresholds and persistence are tightened (level {self.budget_level});"
                f" {held} windows held back so far; high priority is never limited]")

    def update_budget(self, now_ms: int) -> None:
        window_ms = self.config.budget_window_s * 1000
        self.raise_log = [t for t in self.raise_log if now_ms - t < window_ms]
        count = len(self.raise_log)
        if count > self.config.budget_per_hour and self.budget_level < self.config.max_budget_level:
            self.budget_level += 1
            self.budget_changed_ms = now_ms
            self.raise_log = []  # the next level needs another full budget of alerts
        elif (self.budget_level > 0 and count <= self.config.budget_per_hour // 2
              and self.budget_changed_ms is not None
              and now_ms - self.budget_changed_ms >= window_ms / 4):
            self.budget_level -= 1
            self.budget_changed_ms = now_ms

    def tick_episodes(self, now_ms: int) -> None:
        cfg = self.config
        for alert_type, ep in list(self.episodes.items()):
            after = (cfg.escalate_after_s if ep.priority == Priority.HIGH
                     else cfg.escalate_medium_after_s if ep.priority == Priority.MEDIUM else None)
            tick = Tick(after, cfg.escalation_repeat_s, cfg.max_escalation_level)
            new, emissions = transition(ep, tick, now_ms)
            self.apply(alert_type, new, emissions)
            limit = cfg.unattended_latch_resolve_s
            if (limit is not None and new.is_open and new.latching and not new.condition_active
                    and now_ms - new.updated_ms >= limit * 1000):
                at = new.updated_ms + round(limit * 1000)  # deterministic, not the tick time
                message = (f"{new.message}; resolved unacknowledged {limit:g} s after the "
                           "condition ended (unattended mode)")
                done, emissions = transition(new, Resolve(at, message), now_ms)
                self.apply(alert_type, done, emissions)

    # ------------------------------------------------------------- bedside alarms

    def check_window(self, f: VitalsFinding) -> None:
        """Keep this window's evidence row for alarms that arrive later (see
        alerting/verification.py)."""
        self.checks.append(WindowCheck(f.t_ms, window_evidence(f)))
        oldest = f.t_ms - round(VERIFY_KEEP_S * 1000)
        self.checks = [c for c in self.checks if c.t_ms >= oldest]

    def decide_due(self, newest_ms: int | None, timeout_at_ms: int | None = None) -> None:
        """Decide the pending alarms that a window now covers (``newest_ms``: the newest
        finding's end), or, on a tick, those past ``VERIFY_TIMEOUT_S`` without one."""
        waiting = []
        timeout_ms = round(VERIFY_TIMEOUT_S * 1000)
        for alarm in self.pending:
            covering = [c.t_ms for c in self.checks if c.t_ms >= alarm.t_ms]
            if covering:
                self.decide(alarm, min(covering))
            elif newest_ms is not None and newest_ms >= alarm.t_ms:
                self.decide(alarm, newest_ms)  # its windows were pruned: decided on what is left
            elif timeout_at_ms is not None and timeout_at_ms - alarm.t_ms >= timeout_ms:
                self.decide(alarm, alarm.t_ms + timeout_ms)  # deterministic, not the tick time
            else:
                waiting.append(alarm)
        self.pending = waiting

    def decide(self, alarm: DeviceAlarm, decide_ms: int) -> None:
        kind = AlertType(alarm.alarm_type)
        ep = self.episodes.get(kind.value)
        model = default_verifier() if self.config.learned_verifier else None
        v = decide_alarm(alarm, self.checks, decide_ms, model)
        label = f"bedside monitor {alarm.label or kind.value} alarm"
        alert_id: str | None = None
        note = ""
        if v.verdict is Verdict.SUPPRESSED:
            if ep is not None:
                # Raised on the pipeline's own evidence and still open (going on, or latched
                # awaiting an acknowledgement): the care team already has it.
                alert_id = ep.alert_id
                state = "" if ep.condition_active else ", its condition over, awaiting acknowledgement"
                note = f"the pipeline's own {kind.value} alert {ep.alert_id} is open{state}: {ep.message}"
        else:
            # Confirmed, or not verifiable either way: the monitor saw something, and nothing
            # says it is false, so the alarm reaches the care team at its own priority.
            word = "confirmed" if v.verdict is Verdict.CONFIRMED else "not verifiable"
            message = f"{label} {word}: {v.reason}"
            if ep is None:
                self.raise_alert(kind, alarm.t_ms, decide_ms, v.value, message, False)
            elif not ep.condition_active:  # latched after an earlier event: it recurred
                obs = Observed(decide_ms, v.value, message, CATALOGUE[kind].priority.value)
                new, ems = transition(ep, obs, decide_ms, update_min_change=self.config.update_min_change,
                                      lower_is_worse=kind is T.EXTREME_BRADY)
                self.apply(kind.value, new, ems)
            alert_id = self.episodes[kind.value].alert_id
        self.emissions.append(DeviceAlarmDecision(alarm, v.verdict, decide_ms, v.reason, v.value, v.windows,
                                                  alert_id, note, v.p_true, model.version if model else ""))
        self.decided = [*self.decided, alarm.alarm_id][-DECIDED_KEEP:]
        self.device_alarms[v.verdict.value] = self.device_alarms.get(v.verdict.value, 0) + 1

    def result(self, **changes: Any) -> tuple[PatientAlertState, list[Emission]]:
        state = replace(
            self.state, episodes=self.episodes, tracks=self.tracks,
            raise_log=tuple(self.raise_log), budget_level=self.budget_level,
            budget_changed_ms=self.budget_changed_ms, checks=tuple(self.checks),
            pending_alarms=tuple(self.pending), decided_alarms=tuple(self.decided),
            device_alarms=self.device_alarms, **self.counters, **changes)
        return state, self.emissions


def process_finding(
    state: PatientAlertState, finding: VitalsFinding, config: AlertConfig = DEFAULT_CONFIG
) -> tuple[PatientAlertState, list[Emission]]:
    """Feed one finding. Returns the new state and the emissions to write, in order.

    A finding not newer than the last one processed (a Kafka redelivery, or a replay of
    what the restored state already contains) returns the state unchanged (but for the
    ``duplicates`` counter) and no emissions.
    """
    if finding.patient_id != state.patient_id:
        raise ValueError(f"finding for {finding.patient_id!r} fed to {state.patient_id!r}'s state")
    if state.last_t_ms is not None and finding.t_ms <= state.last_t_ms:
        return replace(state, duplicates=state.duplicates + 1), []
    cfg = config.for_patient(state.patient_id)
    now = finding.t_ms
    run = _Run(state, cfg)
    if state.last_t_ms is not None and now - state.last_t_ms > cfg.device_silent_after_s * 1000:
        # After a silence, persistence must be rebuilt from fresh, contiguous windows.
        run.tracks = {t: replace(tr, history="", met_ms=()) for t, tr in run.tracks.items()}
    silent = run.episodes.get(T.DEVICE_SILENT.value)
    if silent is not None:
        gap_s = (now - (state.last_t_ms or now)) / 1000
        ep, ems = transition(silent, Resolve(now, f"data resumed after {gap_s:.0f} s"), now)
        run.apply(T.DEVICE_SILENT.value, ep, ems)
    trend_changes: dict[str, Any] = {}
    if finding.trends:
        trend_changes = {"last_trend_ms": now,
                         "last_trend_message": "; ".join(t.message for t in finding.trends)}
        state = replace(state, **trend_changes)
        run.state = state

    gated: list[str] = []
    for alert_type, d in CATALOGUE.items():
        s = cfg.settings(alert_type)
        if not s.enabled or alert_type is T.DEVICE_SILENT:
            continue
        level = run.level_for(alert_type)
        a = _assess(alert_type, finding, s, level, state)
        if a.gated:
            gated.append(f"{alert_type.value} criterion met on a poor signal ({a.gated})")
            run.bump("gated", alert_type.value)
        if a.contradicted:
            run.bump("contradicted", alert_type.value)
        if a.held_back:
            run.bump("held_back", alert_type.value)
        immediate = False
        if alert_type is T.POOR_SIGNAL and gated:
            # A clinical criterion met on a poor signal: not alarmed, but said at once.
            message = "; ".join(gated) + " - not alarmed, check the sensors"
            a = Assessment(True, False, a.value, f"poor signal: {message}", lower_is_worse=True)
            immediate = True
        keep = s.persistence_n + cfg.max_budget_level
        track = run.tracks.get(alert_type.value, TypeTrack()).push(a.met, now, keep)
        ep = run.episodes.get(alert_type.value)
        if ep is not None:
            if a.met:
                track = replace(track, clear_run=0)
                prio = (Priority.MEDIUM.value if a.downgraded and d.priority is Priority.HIGH
                        else d.priority.value)
                obs = Observed(now, a.value, a.message, prio)
                new, ems = transition(ep, obs, now, update_min_change=cfg.update_min_change,
                                      lower_is_worse=a.lower_is_worse)
                run.tracks[alert_type.value] = track
                run.apply(alert_type.value, new, ems)
                continue
            if a.met is not None:
                track = replace(track, clear_run=track.clear_run + 1 if a.clear else 0)
            run.tracks[alert_type.value] = track
            if track.clear_run >= s.clear_windows:
                new, ems = transition(ep, ConditionCleared(now, _normal_text(alert_type, a)),
                                      now)
                run.apply(alert_type.value, new, ems)
            continue
        run.tracks[alert_type.value] = track
        if not a.met:
            if "1" not in track.history:
                del run.tracks[alert_type.value]  # nothing in it can matter any more
            continue
        if any(sup.value in run.episodes for sup in d.suppressed_by):
            continue
        k, n = s.persistence_k, s.persistence_n
        if level and d.priority is not Priority.HIGH:
            k, n = k + level, n + level
        if immediate or track.met_in_last(n) >= k:
            onset = track.first_met_in_last(n)
            run.raise_alert(alert_type, onset, now, a.value, a.message, a.downgraded)

    run.update_budget(now)
    run.tick_episodes(now)
    run.check_window(finding)
    if run.pending:
        run.decide_due(now)
    return run.result(last_t_ms=now, **trend_changes)


def _normal_text(alert_type: AlertType, a: Assessment) -> str:
    value = "" if a.value is None else f" (value {a.value:g})"
    return f"{alert_type.value} condition over{value}"


def process_action(
    state: PatientAlertState, action: CareAction, now_ms: int
) -> tuple[PatientAlertState, list[Emission]]:
    """Apply an acknowledgement or snooze to the matching open episode (by alert id).

    Unknown or already-resolved alert ids and repeated actions change nothing. ``now_ms``
    is the event-time clock (the watermark), used to stamp the emissions.
    """
    for alert_type, ep in state.episodes.items():
        if ep.alert_id != action.alert_id:
            continue
        if action.kind == ActionKind.ACK:
            new, ems = transition(ep, Acknowledge(action.action_id, action.by, action.issued_ms),
                                  now_ms)
        else:
            until = action.snoozed_until_ms
            assert until is not None
            new, ems = transition(ep, Snooze(action.action_id, action.by, until), now_ms)
        if not ems:
            return state, []
        episodes = dict(state.episodes)
        tracks = state.tracks
        if new.is_open:
            episodes[alert_type] = new
        else:
            episodes.pop(alert_type)
            tracks = {t: tr for t, tr in state.tracks.items() if t != alert_type}
        return replace(state, episodes=episodes, tracks=tracks), ems
    return state, []


def process_tick(
    state: PatientAlertState, now_ms: int, config: AlertConfig = DEFAULT_CONFIG
) -> tuple[PatientAlertState, list[Emission]]:
    """Time passed without a finding: escalate unacknowledged alerts, end expired snoozes,
    and raise ``device_silent`` once no finding arrived for ``device_silent_after_s``.

    Deterministic ids and times: the device_silent alert's onset is the last finding's
    t_ms and its raise time is that plus the silence limit, whenever the tick happens.
    """
    cfg = config.for_patient(state.patient_id)
    run = _Run(state, cfg)
    silent_ms = round(cfg.device_silent_after_s * 1000)
    s = cfg.settings(T.DEVICE_SILENT)
    if (s.enabled and state.last_t_ms is not None and T.DEVICE_SILENT.value not in run.episodes
            and now_ms - state.last_t_ms >= silent_ms):
        raised = state.last_t_ms + silent_ms
        message = f"device silent: no data for {cfg.device_silent_after_s:.0f} s"
        run.raise_alert(T.DEVICE_SILENT, state.last_t_ms, raised, None, message, False)
    run.tick_episodes(now_ms)
    if run.pending:
        run.decide_due(None, timeout_at_ms=now_ms)
    if not run.emissions:
        return state, []
    return run.result()


def process_device_alarm(
    state: PatientAlertState, alarm: DeviceAlarm, config: AlertConfig = DEFAULT_CONFIG
) -> tuple[PatientAlertState, list[Emission]]:
    """Take an alarm the bedside monitor raised. It is decided (confirmed, suppressed or
    unverifiable, with a :class:`DeviceAlarmDecision` among the emissions) as soon as a
    finding covers its instant: now, if the findings are already past it, else by the
    finding that gets there, or by a tick after ``VERIFY_TIMEOUT_S``. A redelivered alarm
    changes nothing but the ``duplicates`` counter."""
    if alarm.patient_id != state.patient_id:
        raise ValueError(f"device alarm for {alarm.patient_id!r} fed to {state.patient_id!r}'s state")
    if alarm.alarm_id in state.decided_alarms or alarm in state.pending_alarms:
        return replace(state, duplicates=state.duplicates + 1), []
    run = _Run(state, config.for_patient(state.patient_id))
    run.pending.append(alarm)
    run.decide_due(state.last_t_ms)
    return run.result()
