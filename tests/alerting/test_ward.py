"""The ward board's data: snapshots and trend points (pure), their Redis store, the evidence
strip store, and the care-action path shared by the CLI and the dashboard."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis

from alerting.actions import CareAction
from alerting.care_actions import apply_care_action, take_care_action
from alerting.evidence_store import RedisEvidenceStore
from alerting.store import RedisAlertStore
from alerting.ward import TrendPoint, TrendSampler, VitalsSnapshot
from alerting.ward_store import RedisWardStore
from tests.alerting.conftest import T0, abp, ecg, finding, ppg, resp
from tests.alerting.test_store import scenario
from tests.dashboard.ward_data import vtach_strip


def test_snapshot_takes_the_arterial_pulse_over_the_ppg_and_says_what_is_off() -> None:
    f = finding(0, ecg=ecg(hr_bpm=81.0, quality=0.91), ppg=ppg(pulse_rate_bpm=79.0), abp=abp(pulse_rate_bpm=80.0),
                resp=resp(rate_bpm=17.0))
    s = VitalsSnapshot.from_finding(f)
    assert (s.hr_bpm, s.pulse_bpm, s.pulse_source, s.resp_bpm) == (81.0, 80.0, "abp", 17.0)
    assert (s.sys_mmhg, s.dia_mmhg, s.map_mmhg) == (120.0, 80.0, 93.0)
    assert s.signals == "ecg,ppg,abp,resp" and not s.lead_off
    off = VitalsSnapshot.from_finding(finding(1, ecg=ecg(usable=False, lead_off=True, hr_bpm=None), ppg=ppg()))
    assert off.hr_bpm is None and off.lead_off and off.pulse_source == "ppg"
    assert VitalsSnapshot.from_fields(s.to_fields()) == s
    assert VitalsSnapshot.from_fields({k.encode(): v.encode() for k, v in off.to_fields().items()}) == off


def test_trend_point_is_the_running_mean_of_its_minute_and_late_findings_stay_out() -> None:
    sampler = TrendSampler(60.0)
    base = T0 - T0 % 60_000
    p = None
    for i, hr in enumerate([60.0, 70.0, 80.0]):
        p = sampler.observe(VitalsSnapshot("p1", base + i * 2000, hr_bpm=hr, news2=i))
    assert p == TrendPoint(t_ms=base, n=3, hr=70.0, news2=2)
    nxt = sampler.observe(VitalsSnapshot("p1", base + 61_000, hr_bpm=90.0, resp_bpm=20.0))
    assert nxt == TrendPoint(t_ms=base + 60_000, n=1, hr=90.0, rr=20.0)
    assert sampler.observe(VitalsSnapshot("p1", base + 2000, hr_bpm=10.0)) is None  # late: left out
    assert TrendPoint.from_json(nxt.to_json()) == nxt
    with pytest.raises(ValueError):
        TrendSampler(0)


def test_ward_store_writes_latest_stream_index_and_trimmed_trend(redis_client: redis.Redis) -> None:
    ward = RedisWardStore(redis_client, "testward" + str(T0)[-6:], trend_keep_s=3600)
    try:
        snaps = [VitalsSnapshot(f"bed-{i}", T0, hr_bpm=70.0 + i) for i in range(3)]
        points = [("bed-0", TrendPoint(T0 - h * 1_800_000, 1, hr=60.0 + h)) for h in range(5)]
        ward.write(snaps, points, now_ms=1_000)
        ward.write([VitalsSnapshot("bed-0", T0 + 2000, hr_bpm=99.0)], [("bed-0", TrendPoint(T0, 2, hr=61.5))],
                   now_ms=2_000)
        assert ward.patients(now_ms=2_000) == ["bed-0", "bed-1", "bed-2"]
        latest = ward.latest(["bed-0", "bed-1", "nobody"])
        assert latest["bed-0"] == (VitalsSnapshot("bed-0", T0 + 2000, hr_bpm=99.0), 2_000)
        assert "nobody" not in latest
        trend = ward.trend("bed-0")
        # Kept: the last hour before the newest point (and the point replaced in place).
        assert [(p.t_ms, p.hr) for p in trend] == [(T0 - 3_600_000, 62.0), (T0 - 1_800_000, 61.0), (T0, 61.5)]
        assert redis_client.xlen(ward.stream_key) == 4
        assert ward.patients(now_ms=2_000 + ward.keep_s * 1000 + 1) == []  # older than keep_s: pruned
    finally:
        for key in redis_client.scan_iter(match=f"{ward.prefix}:*"):
            redis_client.delete(key)


def test_evidence_store_writes_once_with_ttl_and_indexes_by_patient(redis_client: redis.Redis) -> None:
    strips = RedisEvidenceStore(redis_client, "teststrip" + str(T0)[-6:], ttl_s=600)
    try:
        first = vtach_strip("bed-1", "alert", "vtach-0123456789ab")
        later = vtach_strip("bed-1", "alert", "vtach-0123456789ab", end_offset_s=45.0)
        assert strips.put(first) is True
        assert strips.put(later) is False  # the first write wins
        assert strips.get("alert", "vtach-0123456789ab") == first
        assert 0 < redis_client.ttl(strips.key("alert", "vtach-0123456789ab")) <= 600
        assert strips.of_patient("bed-1") == [("alert", "vtach-0123456789ab", first.start_ms)]
        assert strips.get("device-alarm", "nope") is None
        redis_client.delete(strips.key("alert", "vtach-0123456789ab"))
        assert strips.of_patient("bed-1") == []  # expired: pruned from the index
        with pytest.raises(ValueError):
            strips.key("other", "x")
    finally:
        for key in redis_client.scan_iter(match=f"{strips.prefix}:*"):
            redis_client.delete(key)


class RecordingPublisher:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[CareAction] = []
        self.fail = fail

    async def send(self, action: CareAction) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append(action)


def test_care_action_writes_redis_then_tells_the_worker(store: RedisAlertStore) -> None:
    store.apply(scenario())
    alert = store.list_alerts("p1")[0]
    publisher = RecordingPublisher()
    result = asyncio.run(take_care_action(store, publisher, "ack", alert.alert_id, "kim"))
    assert result is not None and result.published and result.outcome.changed
    assert store.get(alert.alert_id).acked_by == "kim"  # type: ignore[union-attr]
    assert publisher.sent == [result.outcome.action]
    assert json.loads(publisher.sent[0].to_json())["by"] == "kim"
    # Broker down: Redis keeps the change, the result says the worker was not told.
    snoozed = asyncio.run(take_care_action(store, RecordingPublisher(fail=True), "snooze", alert.alert_id, "kim", 5))
    assert snoozed is not None and not snoozed.published and "broker down" in snoozed.publish_error
    assert store.get(alert.alert_id).state == "snoozed"  # type: ignore[union-attr]
    assert asyncio.run(take_care_action(store, publisher, "ack", "asystole-000000000000", "kim")) is None
    with pytest.raises(ValueError):
        apply_care_action(store, "snooze", alert.alert_id, "kim", 500)
    with pytest.raises(ValueError):
        apply_care_action(store, "ack", alert.alert_id, "")
