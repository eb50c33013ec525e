"""What the ward board and the patient view show of each patient's vitals. Pure.

The aggregator reads every finding; from each it takes a :class:`VitalsSnapshot` (the
latest measurements, signal quality and technical state, what a central station's tile
shows) and feeds a :class:`TrendSampler`, which averages the findings of each
``point_s`` of event time into one :class:`TrendPoint` (the patient view's trend plots).
The worker writes both to Redis (``alerting.ward_store``); nothing here does I/O.

Why not the trend tracker's state (``models.trends``)? It lives in the worker's Faust
table as 5-minute bins of four series for the trend models, not in Redis, and has no
pressure or NEWS2 history; the dashboard must not read Kafka.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from stream.findings import VitalsFinding

DEFAULT_TREND_POINT_S = 60.0
DEFAULT_TREND_KEEP_S = 12 * 3600.0


def _num(v: Any) -> float | None:
    if v is None or v == "":
        return None
    x = float(v)
    return x if math.isfinite(x) else None


def _round(v: float | None, digits: int = 1) -> float | None:
    return None if v is None else round(float(v), digits)


@dataclass(frozen=True, slots=True)
class VitalsSnapshot:
    """One patient's latest window. ``pulse_bpm``: from the arterial line when it is usable,
    else the PPG (``pulse_source``). Qualities are 0..1 (None: signal absent)."""

    patient_id: str
    t_ms: int
    hr_bpm: float | None = None
    pulse_bpm: float | None = None
    pulse_source: str = ""
    resp_bpm: float | None = None
    resp_source: str = ""
    sys_mmhg: float | None = None
    dia_mmhg: float | None = None
    map_mmhg: float | None = None
    news2: int | None = None
    ecg_quality: float | None = None
    ppg_quality: float | None = None
    resp_quality: float | None = None
    abp_quality: float | None = None
    lead_off: bool = False
    ecg_usable: bool = False
    gaps: str = ""  # comma-separated signals with missing data in the window
    signals: str = ""  # comma-separated signals present

    @classmethod
    def from_finding(cls, f: VitalsFinding) -> VitalsSnapshot:
        ecg, ppg, abp, resp = f.ecg, f.ppg, f.abp, f.resp
        pulse, source = None, ""
        if abp is not None and abp.usable and abp.pulse_rate_bpm is not None:
            pulse, source = abp.pulse_rate_bpm, "abp"
        elif ppg is not None and ppg.usable and ppg.pulse_rate_bpm is not None:
            pulse, source = ppg.pulse_rate_bpm, "ppg"
        hr = ecg.hr_bpm if ecg is not None and ecg.usable else None
        if hr is None and f.ecg2 is not None and f.ecg2.usable:
            hr = f.ecg2.hr_bpm
        present = [name for name in ("ecg", "ecg2", "ppg", "abp", "resp") if getattr(f, name) is not None]
        usable_abp = abp is not None and abp.usable
        return cls(
            patient_id=f.patient_id, t_ms=f.t_ms,
            hr_bpm=_round(hr), pulse_bpm=_round(pulse), pulse_source=source,
            resp_bpm=_round(resp.rate_bpm) if resp is not None and resp.usable else None,
            resp_source=resp.source if resp is not None else "",
            sys_mmhg=_round(abp.systolic_mmhg, 0) if usable_abp else None,
            dia_mmhg=_round(abp.diastolic_mmhg, 0) if usable_abp else None,
            map_mmhg=_round(abp.mean_mmhg, 0) if usable_abp else None,
            news2=f.news2,
            ecg_quality=_round(ecg.quality, 2) if ecg is not None else None,
            ppg_quality=_round(ppg.quality, 2) if ppg is not None else None,
            resp_quality=_round(resp.quality, 2) if resp is not None else None,
            abp_quality=_round(abp.quality, 2) if abp is not None else None,
            lead_off=bool(ecg is not None and ecg.lead_off),
            ecg_usable=bool(ecg is not None and ecg.usable),
            gaps=",".join(f.gaps), signals=",".join(present),
        )

    def to_fields(self) -> dict[str, str]:
        """Flat strings for a Redis hash / stream entry ("" = None)."""
        out: dict[str, str] = {}
        for k, v in asdict(self).items():
            out[k] = "" if v is None else ("1" if v is True else "0" if v is False else str(v))
        return out

    @classmethod
    def from_fields(cls, mapping: dict[Any, Any]) -> VitalsSnapshot:
        m = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
             for k, v in mapping.items()}
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in m:
                continue
            raw = m[f.name]
            if f.name in ("patient_id", "pulse_source", "resp_source", "gaps", "signals"):
                kwargs[f.name] = raw
            elif f.name == "t_ms":
                kwargs[f.name] = int(raw)
            elif f.name == "news2":
                kwargs[f.name] = None if raw == "" else int(raw)
            elif f.name in ("lead_off", "ecg_usable"):
                kwargs[f.name] = raw == "1"
            else:
                kwargs[f.name] = _num(raw)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The series of a trend point: snapshot field -> point field.
_SERIES = {"hr_bpm": "hr", "pulse_bpm": "pulse", "resp_bpm": "rr", "sys_mmhg": "sys", "dia_mmhg": "dia",
           "map_mmhg": "map"}


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """Means over the findings of ``[t_ms, t_ms + point_s)`` (event time); ``news2`` the
    highest score; ``n`` findings averaged."""

    t_ms: int
    n: int
    hr: float | None = None
    pulse: float | None = None
    rr: float | None = None
    sys: float | None = None
    dia: float | None = None
    map: float | None = None
    news2: int | None = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: bytes | str) -> TrendPoint:
        obj = json.loads(data)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in known})


@dataclass(slots=True)
class _Bucket:
    t_ms: int
    n: int
    sums: dict[str, float]
    counts: dict[str, int]
    news2: int | None


class TrendSampler:
    """The running trend point of each patient. A finding older than the patient's current
    point (a redelivery, a late window) is left out rather than reopening a written point."""

    def __init__(self, point_s: float = DEFAULT_TREND_POINT_S) -> None:
        if point_s <= 0:
            raise ValueError("trend point length must be > 0 s")
        self.point_ms = int(point_s * 1000)
        self.current: dict[str, _Bucket] = {}

    def observe(self, snap: VitalsSnapshot) -> TrendPoint | None:
        """Add a snapshot; returns the patient's current point (None if it was left out)."""
        start = snap.t_ms // self.point_ms * self.point_ms
        b = self.current.get(snap.patient_id)
        if b is not None and start < b.t_ms:
            return None
        if b is None or start > b.t_ms:
            b = self.current[snap.patient_id] = _Bucket(start, 0, {}, {}, None)
        b.n += 1
        for src, dst in _SERIES.items():
            v = getattr(snap, src)
            if v is not None:
                b.sums[dst] = b.sums.get(dst, 0.0) + v
                b.counts[dst] = b.counts.get(dst, 0) + 1
        if snap.news2 is not None:
            b.news2 = snap.news2 if b.news2 is None else max(b.news2, snap.news2)
        return self.point(snap.patient_id)

    def point(self, patient_id: str) -> TrendPoint | None:
        b = self.current.get(patient_id)
        if b is None:
            return None
        means = {k: round(b.sums[k] / b.counts[k], 1) for k in b.sums}
        return TrendPoint(t_ms=b.t_ms, n=b.n, news2=b.news2, **means)

    def forget(self, patient_id: str) -> None:
        self.current.pop(patient_id, None)
