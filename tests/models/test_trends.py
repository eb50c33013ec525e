from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from models.trends import TrendTracker, news2_partial, news2_pulse, news2_resp_rate, news2_systolic
from stream.findings import AbpFindings, EcgFindings, RespFindings, VitalsFinding

HOP_MS = 2000


def _finding(t_ms: int, hr: float | None, resp: float | None = 16.0,
             rmssd: float | None = 40.0) -> VitalsFinding:
    ecg = EcgFindings(quality=0.9, usable=True, lead_off=False, hr_bpm=hr, rmssd_ms=rmssd)
    rsp = None if resp is None else RespFindings(rate_bpm=resp, source="resp", quality=0.9,
                                                 usable=True)
    return VitalsFinding(patient_id="p1", t_ms=t_ms, window_s=10.0, ecg=ecg, resp=rsp)


def _run(hr_of_t, resp_of_t=lambda t: 16.0, hours: float = 3.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    tracker = TrendTracker()
    fired = []
    scores = []
    for t_ms in range(0, int(hours * 3600 * 1000), HOP_MS):
        t_h = t_ms / 3_600_000
        f = _finding(t_ms, hr_of_t(t_h) + rng.normal(0, 3), resp_of_t(t_h) + rng.normal(0, 1))
        trends, news2 = tracker.update(f)
        fired.extend((t_h, tr) for tr in trends)
        scores.append(news2)
    return tracker, fired, scores


def test_detects_hr_rise_once() -> None:
    # Resting HR 70 for 1 h, then a ramp to 95 over the next hour, then a plateau.
    _, fired, _ = _run(lambda t: 70 + 25 * min(max(t - 1.0, 0.0), 1.0))
    hr = [(t, tr) for t, tr in fired if tr.kind == "hr_rising"]
    assert hr, "a 35 % resting-HR rise over 1-2 h must be reported"
    first_t, first = hr[0]
    assert 1.3 < first_t < 2.5
    assert first.baseline == pytest.approx(70, abs=3)
    assert "resting HR up" in first.message
    # Not repeated every hop: at most one follow-up (when the change grows a further step).
    assert len(hr) <= 2
    assert not [tr for _, tr in fired if tr.kind.startswith("resp_rate")]


def test_flat_series_does_not_fire() -> None:
    _, fired, scores = _run(lambda t: 72.0)
    assert [tr for _, tr in fired if tr.kind != "news2"] == []
    assert set(scores[-100:]) == {0}


def test_single_spike_does_not_fire() -> None:
    _, fired, _ = _run(lambda t: 120.0 if 1.5 < t < 1.55 else 72.0)
    assert [tr for _, tr in fired if tr.kind == "hr_rising"] == []


def test_breathing_rate_rise_and_news2() -> None:
    _, fired, scores = _run(lambda t: 80.0, lambda t: 14 + 12 * min(max(t - 1.0, 0.0), 1.0))
    kinds = [tr.kind for _, tr in fired]
    assert "resp_rate_rising" in kinds
    # Resp rate ~26/min -> NEWS2 resp sub-score 3 (red score); pulse 80 -> 0.
    assert scores[-1] == 3
    news = [tr for _, tr in fired if tr.kind == "news2"]
    assert news and "partial NEWS2" in news[0].message


def test_state_round_trips_through_json() -> None:
    tracker, _, _ = _run(lambda t: 70 + 10 * t, hours=1.0)
    clone = TrendTracker.from_dict(json.loads(json.dumps(tracker.to_dict())))
    assert clone.to_dict() == tracker.to_dict()
    f = _finding(3_600_000 + HOP_MS, 90.0)
    assert clone.update(f) == tracker.update(f)
    assert len(json.dumps(tracker.to_dict())) < 20_000


def test_redelivered_finding_is_ignored() -> None:
    tracker = TrendTracker()
    tracker.update(_finding(10_000, 70.0))
    before = tracker.to_dict()
    tracker.update(_finding(10_000, 200.0))
    assert tracker.to_dict() == before


@pytest.mark.parametrize(
    ("rate", "score"),
    [(6, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (40, 3)],
)
def test_news2_resp_rate_table(rate: float, score: int) -> None:
    assert news2_resp_rate(rate) == score


@pytest.mark.parametrize(
    ("rate", "score"),
    [(35, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2),
     (130, 2), (131, 3), (180, 3)],
)
def test_news2_pulse_table(rate: float, score: int) -> None:
    assert news2_pulse(rate) == score


def test_news2_partial_combines_and_handles_missing() -> None:
    assert news2_partial(None, None) is None
    assert news2_partial(22, None) == 2
    assert news2_partial(None, 120) == 2
    assert news2_partial(26, 135) == 6
    assert news2_partial(None, None, 95) == 2
    assert news2_partial(16, 70, 88) == 3


@pytest.mark.parametrize(("sbp", "score"), [(85, 3), (90, 3), (95, 2), (100, 2), (105, 1), (110, 1),
                                            (111, 0), (219, 0), (220, 3)])
def test_news2_systolic_table(sbp: float, score: int) -> None:
    assert news2_systolic(sbp) == score


def test_arterial_line_adds_systolic_bp_to_news2_and_its_trend() -> None:
    """A patient whose systolic pressure falls from 130 to 88 mmHg over two hours: the
    trend is reported once and the partial NEWS2 picks up the hypotension (a red score)."""
    tracker = TrendTracker()
    trends, scores = [], []
    for t_ms in range(0, 3 * 3600 * 1000, HOP_MS):
        t_h = t_ms / 3_600_000
        sbp = 130.0 if t_h < 1.0 else max(88.0, 130.0 - 30.0 * (t_h - 1.0))
        line = AbpFindings(quality=0.95, usable=True, pulsatile=True, pulse_rate_bpm=72.0,
                           systolic_mmhg=sbp, diastolic_mmhg=sbp - 45, mean_mmhg=sbp - 30)
        out, score = tracker.update(replace(_finding(t_ms, 72.0), abp=line))
        trends += out
        scores.append(score)
    falling = [t for t in trends if t.kind == "sbp_falling"]
    assert len(falling) >= 1 and "systolic BP down" in falling[0].message
    assert scores[0] == 0 and scores[-1] == 3
    news2 = [t for t in trends if t.kind == "news2"]
    assert news2 and "systolic BP" in news2[-1].message
    restored = TrendTracker.from_dict(json.loads(json.dumps(tracker.to_dict())))
    assert restored.recent_sbp == tracker.recent_sbp
