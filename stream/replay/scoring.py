"""Score the pipeline's alerts and findings against recording annotations. Pure.

All times are seconds from the start of the record (the validation run converts the
alerts' event-time epoch ms back to record time).

Rules (``stream/replay/README.md`` explains them with the clinical sources):

* CinC 2015 (:func:`challenge_alarm_raised`, :func:`challenge_score`): one decision per
  record. The monitor's alarm fires at 300 s; our system "raises" it when an alert of the
  mapped type has its condition active at some time in the 10 s before the alarm (up to
  ``alarm_s + tolerance_s``). A latching alert whose condition ended earlier, still open
  only because nobody acknowledged it in the replay, is about an earlier event and does
  not count. Score =
  (TP+TN)/(TP+TN+FP+5*FN) in percent (Clifford et al. 2015).
* Episodes (:func:`score_episodes`): a truth episode is detected when an alert of the
  same type is active anywhere in ``[start - pre_s, end + post_s]``; an alert is a true
  positive when it was raised inside that interval of a same-type truth episode; alerts
  raised inside an "ignore" interval (a same-type event too short to count, e.g. a 3-beat
  VT run) are neither; every other alert of a scored type is a false alert. Latency =
  raise time - episode start for the first alert raised in the interval (episodes covered
  by an alert raised before ``start - pre_s`` have no latency).
* Breathing rate (:func:`score_resp_rate`): per finding, the reference rate is the mean
  breath rate of each annotator over the ``window_s`` seconds ending at the finding's time
  (averaged over annotators); MAE in breaths/min over findings that have both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.replay.records import RhythmEpisode

CHALLENGE2015_ALERT_TYPES: dict[str, str] = {
    "Asystole": "asystole",
    "Bradycardia": "extreme_brady",
    "Tachycardia": "extreme_tachy",
    "Ventricular_Tachycardia": "vtach",
    "Ventricular_Flutter_Fib": "vfib",
}
HIGH_PRIORITY_TYPES = ("asystole", "vfib", "vtach", "extreme_brady", "extreme_tachy")
MEDIUM_PRIORITY_TYPES = ("afib", "brady", "tachy", "resp_abnormal", "apnea", "hypotension", "trend_deterioration")
TECHNICAL_TYPES = ("signal_loss", "lead_off", "device_silent", "poor_signal")
ALERT_TYPES = HIGH_PRIORITY_TYPES + MEDIUM_PRIORITY_TYPES + TECHNICAL_TYPES
# The challenge judged the alarm on the 10 s before it fired.
CHALLENGE2015_LOOKBACK_S = 10.0
# The 2015 challenge's FN weight: missing a true life-threatening alarm costs 5 false ones.
CHALLENGE2015_FN_WEIGHT = 5


@dataclass(frozen=True)
class AlertSpan:
    """An alert in record time (seconds from the record's start)."""

    patient_id: str
    type: str
    priority: str
    raised_s: float
    onset_s: float
    resolved_s: float | None = None
    alert_id: str = ""
    value: float | None = None
    # When the condition held: (start, end or None). A latching alert stays open after its
    # condition ended (awaiting an ack); that tail says nothing about later events. Empty
    # when the alert's change history is unknown: then raised..resolved counts.
    condition: tuple[tuple[float, float | None], ...] = ()

    def active_during(self, start_s: float, end_s: float) -> bool:
        if self.condition:
            return any(s <= end_s and (e is None or e >= start_s) for s, e in self.condition)
        return self.raised_s <= end_s and (self.resolved_s is None or self.resolved_s >= start_s)


def condition_intervals(
    raised_ms: int, changes: Iterable[tuple[int | None, bool]], base_ms: int
) -> tuple[tuple[float, float | None], ...]:
    """Intervals (record time) in which the condition held, from the alert's changes in
    order: (event time ms, condition held after the change). Starts at the raise."""
    out: list[tuple[float, float | None]] = []
    start: float | None = (raised_ms - base_ms) / 1000.0
    for t_ms, active in changes:
        if t_ms is None:
            continue
        t = (t_ms - base_ms) / 1000.0
        if active and start is None:
            start = t
        elif not active and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, None))
    return tuple(out)


def alert_span(alert: Any, base_ms: int, changes: Sequence[tuple[int | None, bool]] = ()) -> AlertSpan:
    """Convert an ``alerting`` Alert or AlertEmission (duck-typed) with epoch-ms times to
    record time; ``changes`` (see :func:`condition_intervals`, the alert's audit trail) gives
    when the condition held. Without them the alert counts from raise to resolve."""

    def rel(ms: Any) -> float | None:
        return None if ms is None else (float(ms) - base_ms) / 1000.0

    raised = rel(getattr(alert, "raised_ms", None))
    onset = rel(getattr(alert, "onset_ms", None))
    priority = getattr(alert, "priority", "")
    return AlertSpan(
        patient_id=str(alert.patient_id),
        type=str(getattr(alert.type, "value", alert.type)),
        priority=str(getattr(priority, "value", priority)),
        raised_s=raised if raised is not None else (onset or 0.0),
        onset_s=onset if onset is not None else (raised or 0.0),
        resolved_s=rel(getattr(alert, "resolved_ms", None)),
        alert_id=str(getattr(alert, "alert_id", "")),
        value=getattr(alert, "value", None),
        condition=condition_intervals(int(getattr(alert, "raised_ms", 0) or 0), changes, base_ms)
        if changes
        else (),
    )


# ---------------------------------------------------------------- CinC 2015


@dataclass(frozen=True)
class ChallengeDecision:
    record: str
    alarm_type: str
    alarm_true: bool
    raised: bool

    @property
    def outcome(self) -> str:
        if self.alarm_true:
            return "TP" if self.raised else "FN"
        return "FP" if self.raised else "TN"


def challenge_alarm_raised(
    alerts: Iterable[AlertSpan],
    alarm_type: str,
    alarm_s: float = 300.0,
    tolerance_s: float = 0.0,
    lookback_s: float = CHALLENGE2015_LOOKBACK_S,
) -> bool:
    wanted = CHALLENGE2015_ALERT_TYPES[alarm_type]
    return any(a.type == wanted and a.active_during(alarm_s - lookback_s, alarm_s + tolerance_s) for a in alerts)


def challenge_score(decisions: Sequence[ChallengeDecision]) -> dict[str, Any]:
    """Per-type TP/FP/TN/FN and score; overall score as in the 2015 challenge."""

    def score(c: Mapping[str, int]) -> float | None:
        denom = c["TP"] + c["TN"] + c["FP"] + CHALLENGE2015_FN_WEIGHT * c["FN"]
        return None if denom == 0 else round(100.0 * (c["TP"] + c["TN"]) / denom, 2)

    per_type: dict[str, dict[str, Any]] = {}
    total = {"TP": 0, "FP": 0, "TN": 0, "FN": 0}
    for d in decisions:
        counts = per_type.setdefault(d.alarm_type, {"TP": 0, "FP": 0, "TN": 0, "FN": 0})
        counts[d.outcome] += 1
        total[d.outcome] += 1
    for counts in per_type.values():
        counts["score"] = score(counts)
        tp, fn, fp = counts["TP"], counts["FN"], counts["FP"]
        counts["sensitivity"] = None if tp + fn == 0 else round(tp / (tp + fn), 4)
        counts["ppv"] = None if tp + fp == 0 else round(tp / (tp + fp), 4)
    return {"score": score(total), "counts": total, "per_type": dict(sorted(per_type.items()))}


# ---------------------------------------------------------------- episodes


@dataclass
class TypeScore:
    episodes: int = 0
    detected: int = 0
    alerts: int = 0
    true_alerts: int = 0
    false_alerts: int = 0
    ignored_alerts: int = 0
    latencies_s: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "episodes": self.episodes,
            "detected": self.detected,
            "sensitivity": None if self.episodes == 0 else round(self.detected / self.episodes, 4),
            "alerts": self.alerts,
            "true_alerts": self.true_alerts,
            "false_alerts": self.false_alerts,
            "ignored_alerts": self.ignored_alerts,
            "ppv": None
            if self.true_alerts + self.false_alerts == 0
            else round(self.true_alerts / (self.true_alerts + self.false_alerts), 4),
            "latency_s": latency_summary(self.latencies_s),
        }


@dataclass(frozen=True)
class MissedEpisode:
    patient_id: str
    episode: RhythmEpisode


@dataclass
class EpisodeScores:
    per_type: dict[str, TypeScore]
    hours: float
    false_alerts: list[AlertSpan]
    missed: list[MissedEpisode]
    unscored_alerts: dict[str, int]
    latencies_s: list[float]

    def as_dict(self) -> dict[str, Any]:
        false_high = [a for a in self.false_alerts if a.type in HIGH_PRIORITY_TYPES]

        def per_hour(n):
            return None if self.hours <= 0 else round(n / self.hours, 3)

        return {
            "per_type": {t: s.as_dict() for t, s in sorted(self.per_type.items())},
            "hours": round(self.hours, 4),
            "false_alerts": len(self.false_alerts),
            "false_alerts_per_hour": per_hour(len(self.false_alerts)),
            "false_high_priority_alerts_per_hour": per_hour(len(false_high)),
            "unscored_alerts": dict(sorted(self.unscored_alerts.items())),
            "latency_s": latency_summary(self.latencies_s),
        }


def latency_summary(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None}
    arr = np.asarray(values, dtype=float)
    return {
        "n": int(arr.size),
        "p50": round(float(np.percentile(arr, 50)), 3),
        "p95": round(float(np.percentile(arr, 95)), 3),
    }


def score_episodes(
    truth: Mapping[str, Sequence[RhythmEpisode]],
    alerts: Mapping[str, Sequence[AlertSpan]],
    scored_types: Iterable[str],
    hours: float,
    *,
    ignore: Mapping[str, Sequence[RhythmEpisode]] | None = None,
    pre_s: float = 5.0,
    post_s: float = 15.0,
) -> EpisodeScores:
    """Episode sensitivity / alert PPV / latency / false alerts per hour (rules in module doc).

    ``truth`` and ``ignore`` map patient id -> episodes whose ``label`` is an alert type.
    """
    types = list(dict.fromkeys(scored_types))
    per_type = {t: TypeScore() for t in types}
    false_alerts: list[AlertSpan] = []
    missed: list[MissedEpisode] = []
    unscored: dict[str, int] = {}
    latencies: list[float] = []
    ignore = ignore or {}
    patients = set(truth) | set(alerts)
    for pid in sorted(patients):
        episodes = [e for e in truth.get(pid, ()) if e.label in per_type]
        ignored = [e for e in ignore.get(pid, ()) if e.label in per_type]
        patient_alerts = sorted(alerts.get(pid, ()), key=lambda a: a.raised_s)
        for a in patient_alerts:
            if a.type not in per_type:
                unscored[a.type] = unscored.get(a.type, 0) + 1
                continue
            score = per_type[a.type]
            score.alerts += 1
            if any(e.label == a.type and e.start_s - pre_s <= a.raised_s <= e.end_s + post_s for e in episodes):
                score.true_alerts += 1
            elif any(e.label == a.type and e.start_s - pre_s <= a.raised_s <= e.end_s + post_s for e in ignored):
                score.ignored_alerts += 1
            else:
                score.false_alerts += 1
                false_alerts.append(a)
        for e in episodes:
            score = per_type[e.label]
            score.episodes += 1
            lo, hi = e.start_s - pre_s, e.end_s + post_s
            same = [a for a in patient_alerts if a.type == e.label and a.active_during(lo, hi)]
            if not same:
                missed.append(MissedEpisode(pid, e))
                continue
            score.detected += 1
            raised_in = [a for a in same if a.raised_s >= lo]
            if raised_in:
                latency = max(0.0, raised_in[0].raised_s - e.start_s)
                score.latencies_s.append(latency)
                latencies.append(latency)
    return EpisodeScores(per_type, hours, false_alerts, missed, unscored, latencies)


# ---------------------------------------------------------------- truth from annotations

MITDB_RHYTHM_ALERT_TYPES: dict[str, str] = {
    "(AFIB": "afib",
    # Atrial flutter is scored with AF: the pipeline's rhythm model has no separate flutter
    # class and both carry the same stroke risk and alert (AHA/ACC/HRS 2014 AF guideline).
    "(AFL": "afib",
    "(VT": "vtach",
    "(VFL": "vfib",
}
# Minimum durations for an annotated episode to count as an alertable event: AF >= 30 s
# (ESC 2020 AF guideline's episode definition); VF/flutter >= 4 s (CinC 2015 definition).
MIN_EPISODE_S: dict[str, float] = {"afib": 30.0, "vfib": 4.0}
VENTRICULAR_SYMBOLS = {"V", "E"}


def mitdb_truth(
    rhythm: Sequence[RhythmEpisode], beat_times_s: np.ndarray, beat_symbols: Sequence[str]
) -> tuple[list[RhythmEpisode], list[RhythmEpisode]]:
    """(scored episodes, ignored episodes) with alert types as labels.

    VT counts when it has >= 5 ventricular beats faster than 100 bpm (CinC 2015 definition);
    extreme brady/tachy come from the annotated beats (< 40 bpm over 5 beats, > 140 bpm
    over 17 beats, CinC 2015). Shorter events of the same kind go to "ignored".
    """
    scored: list[RhythmEpisode] = []
    ignored: list[RhythmEpisode] = []
    beats = np.asarray(beat_times_s, dtype=float)
    symbols = list(beat_symbols)
    for ep in _bridge_af(rhythm):
        alert_type = MITDB_RHYTHM_ALERT_TYPES.get(ep.label)
        if alert_type is None:
            continue
        typed = RhythmEpisode(alert_type, ep.start_s, ep.end_s)
        if alert_type == "vtach":
            inside = [(t, s) for t, s in zip(beats, symbols, strict=True) if ep.start_s - 0.05 <= t < ep.end_s]
            v_times = [t for t, s in inside if s in VENTRICULAR_SYMBOLS]
            rate = (
                60.0 * (len(v_times) - 1) / (v_times[-1] - v_times[0])
                if len(v_times) >= 2 and v_times[-1] > v_times[0]
                else 0.0
            )
            (scored if len(v_times) >= 5 and rate > 100 else ignored).append(typed)
        elif ep.end_s - ep.start_s >= MIN_EPISODE_S.get(alert_type, 0.0):
            scored.append(typed)
        else:
            ignored.append(typed)
    # Ventricular flutter/fibrillation has no annotated beats; the beat gap there is not
    # bradycardia.
    vf = [e for e in rhythm if e.label == "(VFL"]
    brady = [
        e
        for e in beat_rate_episodes(beats, 5, lambda hr: hr < 40, "extreme_brady")
        if not any(e.start_s <= v.end_s and v.start_s <= e.end_s for v in vf)
    ]
    scored.extend(_merge(brady))
    scored.extend(_merge(beat_rate_episodes(beats, 17, lambda hr: hr > 140, "extreme_tachy")))
    return _merge(scored), _merge(ignored)


# AF annotated around a short interruption (a VT run, a bigeminy stretch) is one AF
# episode: the atrial rhythm did not change.
AF_BRIDGE_S = 10.0


def _bridge_af(rhythm: Sequence[RhythmEpisode]) -> list[RhythmEpisode]:
    out: list[RhythmEpisode] = []
    for ep in sorted(rhythm, key=lambda e: e.start_s):
        is_af = MITDB_RHYTHM_ALERT_TYPES.get(ep.label) == "afib"
        prev_af = next(
            (i for i in range(len(out) - 1, -1, -1) if MITDB_RHYTHM_ALERT_TYPES.get(out[i].label) == "afib"),
            None,
        )
        if is_af and prev_af is not None and ep.start_s - out[prev_af].end_s <= AF_BRIDGE_S:
            prev = out[prev_af]
            out[prev_af] = RhythmEpisode(prev.label, prev.start_s, max(prev.end_s, ep.end_s))
        else:
            out.append(ep)
    return out


def beat_rate_episodes(beat_times_s: np.ndarray, n_beats: int, condition: Any, label: str) -> list[RhythmEpisode]:
    """Spans of ``n_beats`` consecutive beats whose mean rate meets ``condition``."""
    t = np.asarray(beat_times_s, dtype=float)
    out = []
    for i in range(len(t) - n_beats + 1):
        span = t[i + n_beats - 1] - t[i]
        if span <= 0:
            continue
        hr = 60.0 * (n_beats - 1) / span
        if condition(hr):
            out.append(RhythmEpisode(label, float(t[i]), float(t[i + n_beats - 1])))
    return out


def _merge(episodes: Iterable[RhythmEpisode]) -> list[RhythmEpisode]:
    """Merge overlapping or touching episodes of the same label."""
    out: list[RhythmEpisode] = []
    for ep in sorted(episodes, key=lambda e: (e.label, e.start_s)):
        if out and out[-1].label == ep.label and ep.start_s <= out[-1].end_s:
            last = out[-1]
            out[-1] = RhythmEpisode(last.label, last.start_s, max(last.end_s, ep.end_s))
        else:
            out.append(ep)
    return sorted(out, key=lambda e: e.start_s)


# ---------------------------------------------------------------- breathing rate


def reference_breath_rate(breaths_s: Sequence[np.ndarray], start_s: float, end_s: float) -> float | None:
    """Mean of the annotators' rates (breaths/min) from breaths inside [start, end]."""
    rates = []
    for times in breaths_s:
        inside = np.asarray(times)[(np.asarray(times) >= start_s) & (np.asarray(times) <= end_s)]
        if len(inside) >= 2 and inside[-1] > inside[0]:
            rates.append(60.0 * (len(inside) - 1) / (inside[-1] - inside[0]))
    return float(np.mean(rates)) if rates else None


def score_resp_rate(
    findings: Iterable[tuple[float, float | None]],
    breaths_s: Sequence[np.ndarray],
    window_s: float = 32.0,
) -> dict[str, Any]:
    """``findings`` = (finding time in record seconds, pipeline rate or None)."""
    errors: list[float] = []
    pairs: list[tuple[float, float, float]] = []
    n_findings = 0
    n_missing = 0
    for t_s, rate in findings:
        if t_s < window_s:
            continue
        n_findings += 1
        ref = reference_breath_rate(breaths_s, t_s - window_s, t_s)
        if ref is None:
            continue
        if rate is None:
            n_missing += 1
            continue
        errors.append(abs(rate - ref))
        pairs.append((t_s, float(rate), ref))
    return {
        "n_findings": n_findings,
        "n_compared": len(errors),
        "n_without_rate": n_missing,
        "mae_bpm": None if not errors else round(float(np.mean(errors)), 3),
        "median_abs_error_bpm": None if not errors else round(float(np.median(errors)), 3),
        "within_2bpm": None if not errors else round(float(np.mean(np.asarray(errors) <= 2.0)), 4),
        "pairs": pairs,
    }
