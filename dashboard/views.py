"""View models of the dashboard: what each screen shows, as plain data. Pure (no I/O).

The HTTP layer (``dashboard.app``) reads Redis through ``dashboard.source`` and hands the
results to these functions; the browser only draws what they return.

Colours follow IEC 60601-1-8 alarm priorities: high red, medium yellow, low cyan.
Technical conditions (lead off, device silent, poor signal, signal loss; the catalogue's
``technical`` types) are shown as a tile's technical state, apart from clinical alarms.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from alerting.catalogue import CATALOGUE, PRIORITY_RANK, Priority
from alerting.store import Alert, AuditEntry
from alerting.ward import TrendPoint, VitalsSnapshot
from stream.evidence import EvidenceStrip

TECHNICAL_TYPES = frozenset(t.value for t, d in CATALOGUE.items() if d.technical)
HIGH_PRIORITY_TYPES = frozenset(t.value for t, d in CATALOGUE.items() if d.priority is Priority.HIGH)
# A tile whose newest vitals are older than this (wall clock) says "no data" (the worker
# writes every second while findings arrive, a finding every 2 s).
STALE_AFTER_S = 15.0
UNACKNOWLEDGED = frozenset({"raised", "escalated"})

# Ids come from the pipeline: alert ids "<type>-<12 hex>", alarm ids "<patient>:<type>:<ms>";
# patient ids are the gateways' (<= 64 bytes, no control characters).
ALERT_ID_RE = re.compile(r"^[a-z_]{1,40}-[0-9a-f]{12}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class BadInput(ValueError):
    """A request parameter that cannot name anything (HTTP 400)."""


def check_alert_id(alert_id: str) -> str:
    if not ALERT_ID_RE.match(alert_id or ""):
        raise BadInput("malformed alert id (expected <type>-<12 hex digits>)")
    return alert_id


def check_patient_id(patient_id: str) -> str:
    if not patient_id or len(patient_id.encode()) > 64 or _CONTROL_RE.search(patient_id):
        raise BadInput("malformed patient id (1-64 bytes, no control characters)")
    return patient_id


def check_alarm_id(alarm_id: str) -> str:
    patient, _, rest = (alarm_id or "").rpartition(":")
    patient, _, kind = patient.rpartition(":")
    if not patient or not kind or not rest.isdigit() or len(alarm_id) > 300:
        raise BadInput("malformed bedside alarm id (expected <patient>:<type>:<epoch ms>)")
    check_patient_id(patient)
    return alarm_id


def check_minutes(raw: Any, max_minutes: float) -> float:
    try:
        minutes = float(raw)
    except (TypeError, ValueError):
        raise BadInput("minutes must be a number") from None
    if not math.isfinite(minutes) or not 0 < minutes <= max_minutes:
        raise BadInput(f"minutes must be in (0, {max_minutes:g}]")
    return minutes


def check_hours(raw: Any, max_hours: float) -> float:
    try:
        hours = float(raw)
    except (TypeError, ValueError):
        raise BadInput("hours must be a number") from None
    if not math.isfinite(hours) or not 0 < hours <= max_hours:
        raise BadInput(f"hours must be in (0, {max_hours:g}]")
    return hours


# --------------------------------------------------------------------------- alerts

def priority_rank(priority: str) -> int:
    try:
        return PRIORITY_RANK[Priority(priority)]
    except ValueError:
        return len(PRIORITY_RANK)


def alert_order_key(alert: Alert) -> tuple[int, int, int, str]:
    """Priority first (high, medium, low), unacknowledged before acknowledged/snoozed, then
    age: the longest-waiting first (first written, wall clock; event time if unknown)."""
    waiting = 0 if alert.state in UNACKNOWLEDGED else 1
    since = alert.created_wall_ms if alert.created_wall_ms is not None else alert.raised_ms
    return priority_rank(alert.priority), waiting, since, alert.alert_id


def sort_alerts(alerts: Iterable[Alert]) -> list[Alert]:
    return sorted(alerts, key=alert_order_key)


def alert_view(alert: Alert) -> dict[str, Any]:
    d = alert.to_dict()
    d["technical"] = alert.type in TECHNICAL_TYPES
    d["unacknowledged"] = alert.state in UNACKNOWLEDGED
    d["order"] = list(alert_order_key(alert))
    d["evidence_expected"] = alert.type in HIGH_PRIORITY_TYPES or alert.priority == Priority.HIGH
    return d


def audit_view(entries: Sequence[AuditEntry]) -> list[dict[str, Any]]:
    return [e.to_dict() for e in entries]


# ---------------------------------------------------------------------------- tiles

def _tile_alerts(alerts: Sequence[Alert]) -> list[dict[str, Any]]:
    return [{"alert_id": a.alert_id, "type": a.type, "priority": a.priority, "state": a.state,
             "message": a.message, "escalation_level": a.escalation_level, "acked_by": a.acked_by,
             "technical": a.type in TECHNICAL_TYPES} for a in sort_alerts(alerts)]


def technical_states(snapshot: VitalsSnapshot | None, alerts: Sequence[Alert]) -> list[str]:
    """What keeps the monitoring from working, in words a tile can show."""
    states: list[str] = []
    open_types = {a.type for a in alerts}
    if snapshot is not None and snapshot.lead_off:
        states.append("ECG lead off")
    for kind, words in (("lead_off", "ECG lead off"), ("device_silent", "device silent"),
                        ("poor_signal", "poor signal"), ("signal_loss", "signal loss")):
        if kind in open_types and words not in states:
            states.append(words)
    if snapshot is not None and snapshot.gaps:
        states.append(f"gap: {snapshot.gaps.replace(',', ', ')}")
    return states


def tile_view(patient_id: str, snapshot: VitalsSnapshot | None, written_ms: int | None,
              alerts: Sequence[Alert]) -> dict[str, Any]:
    """One patient's tile. ``alerts``: the patient's open alerts. ``rank``: where the tile
    goes on the board (0 first): the highest priority of its unacknowledged clinical
    alerts, then acknowledged ones, then technical only, then quiet patients."""
    clinical = [a for a in alerts if a.type not in TECHNICAL_TYPES]
    waiting = [a for a in clinical if a.state in UNACKNOWLEDGED]
    worst = min((priority_rank(a.priority) for a in waiting), default=None)
    if worst is not None:
        rank, tone = worst, ("high", "medium", "low")[min(worst, 2)]
    elif clinical:
        rank, tone = 3, "acknowledged"
    elif alerts:
        rank, tone = 4, "technical"
    else:
        rank, tone = 5, "quiet"
    vitals = snapshot.to_dict() if snapshot is not None else None
    return {"patient_id": patient_id, "vitals": vitals, "written_ms": written_ms, "alerts": _tile_alerts(alerts),
            "technical": technical_states(snapshot, alerts), "rank": rank, "tone": tone}


def board_view(patients: Iterable[str], latest: Mapping[str, tuple[VitalsSnapshot, int | None]],
               open_alerts: Iterable[Alert], now_ms: int) -> dict[str, Any]:
    """The ward: a tile per patient (with vitals or open alerts), ordered by rank then id,
    and the open alerts in the alert list's order."""
    alerts = list(open_alerts)
    by_patient: dict[str, list[Alert]] = {}
    for a in alerts:
        by_patient.setdefault(a.patient_id, []).append(a)
    ids = set(patients) | set(by_patient)
    tiles = []
    for pid in ids:
        snap, written = latest.get(pid, (None, None))
        tiles.append(tile_view(pid, snap, written, by_patient.get(pid, [])))
    tiles.sort(key=lambda t: (t["rank"], natural_key(t["patient_id"])))
    counts = {p.value: sum(1 for a in alerts if a.priority == p.value and a.state in UNACKNOWLEDGED)
              for p in Priority}
    return {"server_now_ms": now_ms, "stale_after_s": STALE_AFTER_S, "tiles": tiles,
            "alerts": [alert_view(a) for a in sort_alerts(alerts)], "counts": counts}


def natural_key(text: str) -> tuple[Any, ...]:
    """"bed-2" before "bed-10"."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


# --------------------------------------------------------------------------- strips

def strip_view(strip: EvidenceStrip, digits: int = 4) -> dict[str, Any]:
    """A strip as the page draws it: times in ms from the strip's start, values in the
    signal's units (None = no data)."""
    traces = []
    for t in strip.traces:
        values = [None if not math.isfinite(v) else round(float(v), digits) for v in t.values()]
        traces.append({"signal": t.signal, "fs": t.fs, "t0_ms": round(t.t0_ms - strip.start_ms, 1),
                       "units": t.units, "filtered": t.filtered, "values": values,
                       "coverage": round(t.coverage, 3)})
    return {"kind": strip.kind, "ref_id": strip.ref_id, "patient_id": strip.patient_id, "start_ms": strip.start_ms,
            "end_ms": strip.end_ms, "title": strip.title, "verdict": strip.verdict, "reason": strip.reason,
            "traces": traces, "beats": [[t - strip.start_ms, c] for t, c in strip.beats],
            "size_bytes": strip.size_bytes}


# --------------------------------------------------------------------------- trends

TREND_SERIES = ("hr", "pulse", "rr", "sys", "dia", "map", "news2")


def trend_view(points: Sequence[TrendPoint]) -> dict[str, Any]:
    """Columns: ``t_ms`` and one list per series (None where not measured)."""
    out: dict[str, Any] = {"t_ms": [p.t_ms for p in points]}
    for name in TREND_SERIES:
        out[name] = [getattr(p, name) for p in points]
    return out


def device_alarm_view(d: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(d)
    for k in ("t_ms", "decided_ms", "windows_judged"):
        if out.get(k, "") != "":
            out[k] = int(out[k])
    # The learned verifier's probability that the alarm is true (absent before verifier-1.0.0).
    out["p_true"] = float(out["p_true"]) if out.get("p_true", "") != "" else None
    return out
