"""What a fault campaign lost, from what it observed. Pure (no Kafka, no Redis).

Definitions (docs/faults.md explains the choices):

* **Episode outcome** — a scripted episode (simulator truth, ``role="expected"``) is
  *covered* by an alert of its type for its patient active anywhere in
  ``[start - PRE_MS, end + POST_MS]`` (the episode-scoring rule of
  ``stream/replay/scoring.py``). *Alerted once*: covered, and at most one alert of the
  type raised inside that interval. *Duplicated*: more than one raised inside it. *Missed*:
  not covered although the fault-free reference run (the same chunks through the same
  stages in process) covers it; an episode the reference misses too is the detector's
  own miss, reported apart (``not_detected_without_faults``).
* **Duplicate alert** — besides the per-episode count: an alert raised for a patient and
  type while another alert of that patient and type is still open (two open alerts for
  one condition: what a lost state would produce), or an alert whose audit holds more than
  one ``raised``.
* **Alert lost between worker and Redis** — the findings that reached ``vitals.findings``,
  de-duplicated and in event-time order, run through the alert state machine give the
  alerts the aggregator had to write; each needs a stored alert of its patient and type
  active within ``LOST_TOLERANCE_MS`` of its span. Time-driven types (``device_silent``)
  come from ticks, not findings, and are left out.
* **Findings lost** — a hop of a patient's data (the ``hop`` seconds before a window end
  of the fault-free reference) that no published finding's window covers: samples no
  finding ever analysed.
* **Recovery** — the system is *healthy* at a moment when (a) every patient's latest
  finding arrived within the last ``fresh_ms`` (``FRESH_MS`` or twice the p99 gap between
  a patient's findings before the first fault) with its normal lag (event time of the
  window end to arrival, under ``normal_finding_lag_ms``) and (b) the worker group's
  uncommitted findings (the aggregator's consumer lag) are under their normal level. The
  recovery time of a fault is the end of the last unhealthy moment between its start and
  the next fault, minus the fault's end (the worker restarted, Redis back, the connection
  restored; an instant fault's injection): 0 if nothing was unhealthy after it ended.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

PRE_MS = 5_000
POST_MS = 15_000
LOST_TOLERANCE_MS = 30_000
# A patient's findings arrive every hop (2 s) give or take the delivery's batching: fresh
# means one arrived within this (or twice the p99 gap before the first fault, if longer).
FRESH_MS = 6_000
TICK_DRIVEN_TYPES = frozenset({"device_silent"})


@dataclass(frozen=True)
class Episode:
    patient_id: str
    type: str
    start_ms: int
    end_ms: int
    episode: str = ""  # the scripted episode (e.g. "asystole" for a type "brady" tolerated row)


@dataclass(frozen=True)
class AlertRecord:
    alert_id: str
    patient_id: str
    type: str
    raised_ms: int
    resolved_ms: int | None = None
    raised_events: int = 1  # "raised" entries in its audit (1 unless duplicated)
    aliases: int = 0  # re-raised episodes the store merged into it
    # When its condition held, (start, end or None), from its change history: a latching
    # alert stays open after the condition ended, and that tail covers no later episode.
    condition: tuple[tuple[int, int | None], ...] = ()

    def active_during(self, start_ms: int, end_ms: int) -> bool:
        if self.condition:
            return any(s <= end_ms and (e is None or e >= start_ms) for s, e in self.condition)
        return self.raised_ms <= end_ms and (self.resolved_ms is None or self.resolved_ms >= start_ms)


def condition_spans(raised_ms: int, changes: Iterable[tuple[int | None, bool]]) -> tuple[tuple[int, int | None], ...]:
    """When the condition held, from the alert's changes in order: (event time ms,
    condition held after the change). Starts at the raise."""
    out: list[tuple[int, int | None]] = []
    start: int | None = raised_ms
    for t_ms, active in changes:
        if t_ms is None:
            continue
        if active and start is None:
            start = t_ms
        elif not active and start is not None:
            out.append((start, t_ms))
            start = None
    if start is not None:
        out.append((start, None))
    return tuple(out)


@dataclass(frozen=True)
class EpisodeOutcome:
    episode: Episode
    covering: tuple[str, ...]  # alert ids active in the interval
    raised_inside: tuple[str, ...]  # alert ids raised in the interval
    detected_without_faults: bool

    @property
    def alerted_once(self) -> bool:
        return bool(self.covering) and len(self.raised_inside) <= 1

    @property
    def duplicated(self) -> bool:
        return len(self.raised_inside) > 1

    @property
    def missed(self) -> bool:
        return not self.covering and self.detected_without_faults


def _by_patient_type(alerts: Iterable[AlertRecord]) -> dict[tuple[str, str], list[AlertRecord]]:
    out: dict[tuple[str, str], list[AlertRecord]] = defaultdict(list)
    for a in alerts:
        out[(a.patient_id, a.type)].append(a)
    for items in out.values():
        items.sort(key=lambda a: (a.raised_ms, a.alert_id))
    return out


def covered(episode: Episode, alerts: Sequence[AlertRecord]) -> list[AlertRecord]:
    lo, hi = episode.start_ms - PRE_MS, episode.end_ms + POST_MS
    return [a for a in alerts if a.patient_id == episode.patient_id and a.type == episode.type
            and a.active_during(lo, hi)]


def episode_outcomes(truth: Sequence[Episode], alerts: Sequence[AlertRecord],
                     reference: Sequence[AlertRecord]) -> list[EpisodeOutcome]:
    grouped = _by_patient_type(alerts)
    ref_grouped = _by_patient_type(reference)
    out = []
    for ep in truth:
        mine = grouped.get((ep.patient_id, ep.type), [])
        lo, hi = ep.start_ms - PRE_MS, ep.end_ms + POST_MS
        out.append(EpisodeOutcome(
            episode=ep,
            covering=tuple(a.alert_id for a in covered(ep, mine)),
            raised_inside=tuple(a.alert_id for a in mine if lo <= a.raised_ms <= hi),
            detected_without_faults=bool(covered(ep, ref_grouped.get((ep.patient_id, ep.type), []))),
        ))
    return out


def overlapping_alerts(alerts: Sequence[AlertRecord]) -> list[tuple[str, str]]:
    """(open alert, second alert) pairs: a second alert of a patient and type raised while
    the first was still open; plus (alert, alert) for an alert raised more than once."""
    pairs: list[tuple[str, str]] = []
    for items in _by_patient_type(alerts).values():
        for i, later in enumerate(items):
            for earlier in items[:i]:
                if earlier.resolved_ms is None or earlier.resolved_ms > later.raised_ms:
                    pairs.append((earlier.alert_id, later.alert_id))
                    break
    pairs.extend((a.alert_id, a.alert_id) for a in alerts if a.raised_events > 1)
    return pairs


def lost_alerts(expected: Sequence[AlertRecord], stored: Sequence[AlertRecord]) -> list[AlertRecord]:
    """Alerts the findings called for (``expected``) with no stored alert of their patient
    and type active within :data:`LOST_TOLERANCE_MS` of their span."""
    grouped = _by_patient_type(stored)
    lost = []
    for want in expected:
        if want.type in TICK_DRIVEN_TYPES:
            continue
        end = want.resolved_ms if want.resolved_ms is not None else want.raised_ms
        candidates = grouped.get((want.patient_id, want.type), [])
        if not any(a.active_during(want.raised_ms - LOST_TOLERANCE_MS, end + LOST_TOLERANCE_MS) for a in candidates):
            lost.append(want)
    return lost


def uncovered_hops(reference_ends: Mapping[str, Sequence[int]], published: Mapping[str, Sequence[int]],
                   window_ms: int, hop_ms: int) -> dict[str, list[int]]:
    """Per patient, the reference window ends whose last hop of data ``(end - hop, end]``
    lies in no published finding's window ``(t - window, t]``."""
    out: dict[str, list[int]] = {}
    for patient, ends in reference_ends.items():
        windows = sorted(published.get(patient, ()))
        missing = []
        for end in ends:
            # A finding at t covers the hop iff t - window <= end - hop and t >= end.
            i = bisect.bisect_left(windows, end)
            if i == len(windows) or windows[i] - window_ms > end - hop_ms:
                missing.append(end)
        if missing:
            out[patient] = missing
    return out


@dataclass(frozen=True)
class FindingSeen:
    received_ms: int  # wall clock when it reached the topic's reader
    patient_id: str
    t_ms: int  # event time of the window end (= wall time for a live device)

    @property
    def lag_ms(self) -> int:
        return self.received_ms - self.t_ms


@dataclass
class RecoveryInputs:
    patients: Sequence[str]
    findings: Sequence[FindingSeen]  # sorted by received_ms
    group_lag: Sequence[tuple[int, int]]  # (wall ms, uncommitted findings of the worker group), sorted
    normal_finding_lag_ms: int
    normal_group_lag: int
    fresh_ms: int = FRESH_MS
    _per_patient: dict[str, list[FindingSeen]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for f in self.findings:
            self._per_patient.setdefault(f.patient_id, []).append(f)
        self._received = {p: [f.received_ms for f in fs] for p, fs in self._per_patient.items()}
        self._lag_times = [t for t, _ in self.group_lag]

    def healthy_at(self, t_ms: int) -> bool:
        for patient in self.patients:
            times = self._received.get(patient, [])
            i = bisect.bisect_right(times, t_ms) - 1
            if i < 0:
                return False
            latest = self._per_patient[patient][i]
            if t_ms - latest.received_ms > self.fresh_ms or latest.lag_ms > self.normal_finding_lag_ms:
                return False
        j = bisect.bisect_right(self._lag_times, t_ms) - 1
        return j >= 0 and self.group_lag[j][1] <= self.normal_group_lag


def recovery_ms(inputs: RecoveryInputs, fault_start_ms: int, fault_end_ms: int, horizon_ms: int,
                step_ms: int = 250) -> int | None:
    """Milliseconds from the fault's end until the system is healthy for good: the end of
    the last unhealthy moment between the fault's start and ``horizon_ms`` (the next
    fault, or the end of the run), minus the fault's end; 0 if it never was unhealthy after
    the fault ended. A fault's effect can come late (a killed worker is noticed after the
    session timeout), so recovery is not the first healthy moment after the end. None if
    still unhealthy at the horizon."""
    last_bad: int | None = None
    t = fault_start_ms
    while t <= horizon_ms:
        if not inputs.healthy_at(t):
            last_bad = t
        t += step_ms
    if last_bad is None:
        return 0
    if last_bad + step_ms > horizon_ms:
        return None
    return max(0, last_bad + step_ms - fault_end_ms)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return float(ordered[k])


def alerts_from_emissions(emissions: Iterable[object]) -> list[AlertRecord]:
    """Alerts as the store would keep them, from the state machine's emissions in order
    (duck-typed ``AlertEmission``: alert_id, patient_id, type, event, raised_ms, resolved_ms)."""
    last: dict[str, object] = {}
    raised: dict[str, int] = defaultdict(int)
    changes: dict[str, list[tuple[int | None, bool]]] = defaultdict(list)
    for em in emissions:
        alert_id = em.alert_id  # type: ignore[attr-defined]
        if getattr(em, "event", "") == "raised":
            raised[alert_id] += 1
        held = bool(getattr(em, "condition_active", True)) and getattr(em, "event", "") != "resolved"
        changes[alert_id].append((getattr(em, "updated_ms", None), held))
        last[alert_id] = em
    out = []
    for i, em in last.items():
        raised_ms = int(em.raised_ms)  # type: ignore[attr-defined]
        out.append(AlertRecord(
            alert_id=i, patient_id=str(em.patient_id), type=str(getattr(em.type, "value", em.type)),  # type: ignore[attr-defined]
            raised_ms=raised_ms, resolved_ms=getattr(em, "resolved_ms", None), raised_events=raised[i] or 1,
            condition=condition_spans(raised_ms, changes[i])))
    return out


def arrival_gaps_ms(findings: Sequence[FindingSeen]) -> list[int]:
    """Gaps between consecutive arrivals of each patient's findings."""
    last: dict[str, int] = {}
    gaps = []
    for f in sorted(findings, key=lambda f: f.received_ms):
        if f.patient_id in last:
            gaps.append(f.received_ms - last[f.patient_id])
        last[f.patient_id] = f.received_ms
    return gaps
