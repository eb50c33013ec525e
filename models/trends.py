"""Per-patient trend tracking and a partial NEWS2-style early-warning score.

Pure logic: :class:`TrendTracker` is fed each :class:`~stream.findings.VitalsFinding` of
one patient (event time) and returns new :class:`~stream.findings.TrendFinding` s plus the
partial NEWS2 score. Its state is small (5-minute bin medians over 6 h) and
JSON-serialisable (:meth:`TrendTracker.to_dict` / :meth:`TrendTracker.from_dict`), so the
worker can keep it in a changelogged table.

Method
------
* Robust baseline: each signal is summarised per 5-minute bin by its median (a few
  artefactual windows do not move it). The "recent" level is the median of the last
  15 minutes of bin medians; the baseline for horizon H is the median of the bins around
  ``now - H`` (±15 min).
* A trend fires when the recent level differs from the baseline by at least the
  signal's threshold (relative and absolute) AND the Theil–Sen slope of the bins over the
  horizon points the same way (so a single step artefact or a transient spike does not
  qualify), AND the whole last 15 minutes lie beyond half the threshold (persistence).
* Not repeating: once a trend is reported it is re-reported only if the change grows by
  another threshold step; it re-arms when the change falls below half the threshold.

Partial NEWS2
-------------
NEWS2 (Royal College of Physicians 2017) scores respiration rate, SpO2, supplemental
oxygen, systolic BP, pulse, consciousness and temperature. This pipeline measures
respiration rate, pulse (ECG heart rate, else the arterial-line or PPG pulse rate) and,
for patients with an arterial line, systolic BP, so the score here is **partial** (0..6,
0..9 with an arterial line): it can only under-estimate the full NEWS2 and must not be
read against the full-score trigger levels alone. A single parameter scoring 3 is the
NEWS2 "red score" (urgent review).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.findings import TrendFinding, VitalsFinding

BIN_S = 300.0  # 5-minute bins
HISTORY_BINS = 72  # 6 hours
RECENT_BINS = 3  # 15 minutes
HORIZONS_S = (3600.0, 7200.0)  # 1 h and 2 h trends
MIN_BIN_VALUES = 10  # a bin needs >= 10 windows (~20 s of 2-s hops) to count


@dataclass(frozen=True, slots=True)
class SignalRule:
    name: str  # e.g. "hr"
    label: str  # for messages
    unit: str
    rel_threshold: float  # relative change that qualifies (0.2 = 20 %)
    abs_threshold: float  # and absolute change in the signal's unit
    directions: tuple[str, ...] = ("rising", "falling")


# Thresholds: a sustained 20 %/15 bpm resting HR change, and a 4 breaths/min (25 %) change in
# respiratory rate, are the deterioration signals used by continuous-monitoring early
# warning studies (e.g. Churpek et al. 2016; respiratory rate is the earliest marker,
# Cretikos et al. 2008). HRV (RMSSD) falls with sympathetic activation and early sepsis
# (Ahmad et al. 2009); only falls are reported. Systolic BP (arterial line): a sustained
# change of 20 mmHg and 15 %, the size of a NEWS2 band step (90/100/110 mmHg) twice over.
RULES: tuple[SignalRule, ...] = (
    SignalRule("hr", "resting HR", "bpm", 0.20, 15.0),
    SignalRule("resp_rate", "breathing rate", "/min", 0.25, 4.0),
    SignalRule("hrv_rmssd", "HRV (RMSSD)", "ms", 0.40, 10.0, ("falling",)),
    SignalRule("sbp", "systolic BP", "mmHg", 0.15, 20.0),
)


# NEWS2 sub-score bands (Royal College of Physicians 2017): (inclusive upper bound, score),
# in rising order; a value above the last bound scores 3.
NEWS2_RESP_RATE_BANDS = ((8, 3), (11, 1), (20, 0), (24, 2))
NEWS2_PULSE_BANDS = ((40, 3), (50, 1), (90, 0), (110, 1), (130, 2))
NEWS2_SYSTOLIC_BANDS = ((90, 3), (100, 2), (110, 1), (219, 0))


def _news2_band(value: float, bands: tuple[tuple[float, int], ...]) -> int:
    for upper, score in bands:
        if value <= upper:
            return score
    return 3


def news2_resp_rate(rate: float) -> int:
    """NEWS2 respiration-rate sub-score (breaths/min)."""
    return _news2_band(rate, NEWS2_RESP_RATE_BANDS)


def news2_pulse(rate: float) -> int:
    """NEWS2 pulse sub-score (beats/min)."""
    return _news2_band(rate, NEWS2_PULSE_BANDS)


def news2_systolic(sbp: float) -> int:
    """NEWS2 systolic blood pressure sub-score (mmHg)."""
    return _news2_band(sbp, NEWS2_SYSTOLIC_BANDS)
    if sbp <= 100:
        return 2
    if sbp <= 110:
        return 1
    if sbp <= 219:
        return 0
    return 3


def news2_partial(resp_rate: float | None, pulse: float | None, systolic: float | None = None) -> int | None:
    """Partial NEWS2 from the parameters this pipeline has (None when none is known)."""
    if resp_rate is None and pulse is None and systolic is None:
        return None
    score = 0
    if resp_rate is not None:
        score += news2_resp_rate(resp_rate)
    if pulse is not None:
        score += news2_pulse(pulse)
    if systolic is not None:
        score += news2_systolic(systolic)
    return score


def news2_band(score: int, red: bool) -> str:
    """NEWS2 clinical-risk band: 0-4 low (5-6 medium, 7+ high; a single 3 is 'low-medium')."""
    if score >= 7:
        return "high"
    if score >= 5:
        return "medium"
    if red:
        return "low-medium"
    return "low"


def _theil_sen_slope(t: np.ndarray, y: np.ndarray) -> float:
    if t.size < 3:
        return 0.0
    i, j = np.triu_indices(t.size, k=1)
    dt = t[j] - t[i]
    ok = dt > 0
    return float(np.median((y[j] - y[i])[ok] / dt[ok])) if ok.any() else 0.0


@dataclass(slots=True)
class _Series:
    bins: list[tuple[int, float]] = field(default_factory=list)  # (bin index, median)
    current_bin: int | None = None
    current: list[float] = field(default_factory=list)

    def add(self, bin_index: int, value: float) -> bool:
        """Add a value; True when a bin was closed (a new bin median exists)."""
        closed = False
        if self.current_bin is not None and bin_index != self.current_bin:
            if len(self.current) >= MIN_BIN_VALUES:
                self.bins.append((self.current_bin, float(np.median(self.current))))
                closed = True
            self.current = []
        self.current_bin = bin_index
        self.current.append(round(float(value), 2))
        oldest = bin_index - HISTORY_BINS
        self.bins = [b for b in self.bins if b[0] > oldest]
        return closed


@dataclass(slots=True)
class TrendTracker:
    """Trend state of one patient."""

    last_t_ms: int | None = None
    series: dict[str, _Series] = field(default_factory=dict)
    # (signal, direction, horizon) -> change (fraction) last reported
    reported: dict[str, float] = field(default_factory=dict)
    news2_last_band: str = "low"
    recent_pulse: list[float] = field(default_factory=list)
    recent_resp: list[float] = field(default_factory=list)
    recent_sbp: list[float] = field(default_factory=list)

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "last_t_ms": self.last_t_ms,
            "series": {k: {"bins": [list(b) for b in s.bins], "current_bin": s.current_bin,
                           "current": list(s.current)} for k, s in self.series.items()},
            "reported": dict(self.reported),
            "news2_last_band": self.news2_last_band,
            "recent_pulse": list(self.recent_pulse),
            "recent_resp": list(self.recent_resp),
            "recent_sbp": list(self.recent_sbp),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrendTracker:
        series = {k: _Series([(int(b[0]), float(b[1])) for b in s["bins"]], s["current_bin"],
                             [float(v) for v in s["current"]])
                  for k, s in d.get("series", {}).items()}
        return cls(d.get("last_t_ms"), series, {k: float(v) for k, v in
                                                 d.get("reported", {}).items()},
                   d.get("news2_last_band", "low"), [float(v) for v in d.get("recent_pulse", [])],
                   [float(v) for v in d.get("recent_resp", [])],
                   [float(v) for v in d.get("recent_sbp", [])])

    # ---------------------------------------------------------------- update
    @staticmethod
    def _values(finding: VitalsFinding) -> dict[str, float]:
        out: dict[str, float] = {}
        ecg, ppg, abp, resp = finding.ecg, finding.ppg, finding.abp, finding.resp
        if ecg is not None and ecg.usable and ecg.hr_bpm is not None:
            out["hr"] = ecg.hr_bpm
            if ecg.rmssd_ms is not None:
                out["hrv_rmssd"] = ecg.rmssd_ms
        elif abp is not None and abp.usable and abp.pulse_rate_bpm is not None:
            out["hr"] = abp.pulse_rate_bpm
        elif ppg is not None and ppg.usable and ppg.pulse_rate_bpm is not None:
            out["hr"] = ppg.pulse_rate_bpm
        if abp is not None and abp.pulsatile and abp.systolic_mmhg is not None:
            out["sbp"] = abp.systolic_mmhg
        if resp is not None and resp.usable and resp.rate_bpm is not None:
            out["resp_rate"] = resp.rate_bpm
        return {k: float(v) for k, v in out.items() if np.isfinite(v)}

    def update(self, finding: VitalsFinding) -> tuple[list[TrendFinding], int | None]:
        """Feed one finding (event time); returns (new trend findings, partial NEWS2)."""
        if self.last_t_ms is not None and finding.t_ms <= self.last_t_ms:
            # Redelivered or out-of-order window: state must not count it twice.
            return [], self._news2()[0]
        self.last_t_ms = finding.t_ms
        values = self._values(finding)
        bin_index = int(finding.t_ms // int(BIN_S * 1000))
        trends: list[TrendFinding] = []
        for rule in RULES:
            if rule.name not in values:
                continue
            s = self.series.setdefault(rule.name, _Series())
            if s.add(bin_index, values[rule.name]):
                trends.extend(self._check(rule, s))
        # NEWS2 on the last ~1 minute (30 windows at a 2-s hop): robust to single windows.
        self.recent_pulse = ([*self.recent_pulse, values["hr"]] if "hr" in values
                             else self.recent_pulse)[-30:]
        self.recent_resp = ([*self.recent_resp, values["resp_rate"]] if "resp_rate" in values
                            else self.recent_resp)[-30:]
        self.recent_sbp = ([*self.recent_sbp, values["sbp"]] if "sbp" in values
                           else self.recent_sbp)[-30:]
        score, red = self._news2()
        if score is not None:
            band = news2_band(score, red)
            order = ("low", "low-medium", "medium", "high")
            if order.index(band) > order.index(self.news2_last_band):
                trends.append(TrendFinding(
                    kind="news2", value=float(score), severity="high" if band == "high"
                    else "medium",
                    message=f"partial NEWS2 ({self._news2_parameters()} only) {score}: {band} risk"))
            self.news2_last_band = band
        return trends, score

    def _news2(self) -> tuple[int | None, bool]:
        pulse = float(np.median(self.recent_pulse)) if self.recent_pulse else None
        resp = float(np.median(self.recent_resp)) if self.recent_resp else None
        sbp = float(np.median(self.recent_sbp)) if self.recent_sbp else None
        score = news2_partial(resp, pulse, sbp)
        red = ((pulse is not None and news2_pulse(pulse) == 3)
               or (resp is not None and news2_resp_rate(resp) == 3)
               or (sbp is not None and news2_systolic(sbp) == 3))
        return score, red

    def _news2_parameters(self) -> str:
        names = [name for name, values in (("resp rate", self.recent_resp), ("pulse", self.recent_pulse),
                                           ("systolic BP", self.recent_sbp)) if values]
        return " + ".join(names)

    def _check(self, rule: SignalRule, s: _Series) -> list[TrendFinding]:
        if len(s.bins) < RECENT_BINS:
            return []
        idx = np.array([b[0] for b in s.bins], dtype=np.float64)
        val = np.array([b[1] for b in s.bins])
        now = idx[-1]
        recent_mask = idx > now - RECENT_BINS
        if recent_mask.sum() < RECENT_BINS:
            return []
        recent = float(np.median(val[recent_mask]))
        out: list[TrendFinding] = []
        for direction in rule.directions:
            sign = 1.0 if direction == "rising" else -1.0
            key = f"{rule.name}:{direction}"
            best: tuple[float, float, float] | None = None  # (signed change, baseline, horizon)
            receded = True
            for horizon in HORIZONS_S:
                h_bins = horizon / BIN_S
                base_mask = np.abs(idx - (now - h_bins)) <= (RECENT_BINS - 1) / 2 + 0.5
                if base_mask.sum() < 2:
                    continue
                baseline = float(np.median(val[base_mask]))
                if baseline <= 0:
                    continue
                signed = sign * (recent - baseline) / baseline
                if signed >= rule.rel_threshold / 2:
                    receded = False
                span = idx >= now - h_bins - 1
                slope = _theil_sen_slope(idx[span], val[span])
                persistent = bool(np.all(sign * (val[recent_mask] - baseline) / baseline
                                         >= rule.rel_threshold / 2))
                if (signed >= rule.rel_threshold and abs(recent - baseline) >= rule.abs_threshold
                        and sign * slope > 0 and persistent
                        and (best is None or signed > best[0])):
                    best = (signed, baseline, horizon)
            if receded:
                self.reported.pop(key, None)  # re-arm once the change has receded
                continue
            prev = self.reported.get(key)
            if best is None or (prev is not None and best[0] < prev + rule.rel_threshold):
                continue
            signed, baseline, horizon = best
            self.reported[key] = signed
            word = "up" if direction == "rising" else "down"
            out.append(TrendFinding(
                kind=f"{rule.name}_{direction}", value=round(recent, 1),
                baseline=round(baseline, 1), horizon_s=horizon, severity="medium",
                message=(f"{rule.label} {word} {signed * 100:.0f} % over {horizon / 3600:g} h "
                         f"({baseline:.0f} -> {recent:.0f} {rule.unit})")))
        return out
