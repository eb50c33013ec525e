"""What the worker writes for the dashboard, through the real broker and Redis: the evidence
strip of a high-priority alert and of a bedside-alarm decision, the latest vitals and the
trend points (stream/agents/care_feed.py)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from alerting.evidence_store import RedisEvidenceStore
from alerting.store import RedisAlertStore
from alerting.ward_store import RedisWardStore
from stream.device_alarm import DeviceAlarm
from stream.gateway import publish_device_alarms
from stream.simulator import EpisodeSpec, PatientScenario
from tests.e2e.publish import publish_recordings, simulate
from tests.e2e.test_alerts_flow import wait_for

pytestmark = pytest.mark.e2e


def test_worker_stores_strips_vitals_and_trends(pipeline) -> None:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:6]
    patient = f"asys-{tag}"
    recordings = simulate([PatientScenario(patient, (EpisodeSpec("asystole", start_s=40, duration_s=12),),
                                           duration_s=90)])
    start = recordings[0].start_ms
    alarm = DeviceAlarm(patient, "asystole", start + 46_000, "mx-9", "ASYSTOLE")
    asyncio.run(publish_device_alarms(pipeline.endpoints.kafka_bootstrap, [alarm]))
    publish_recordings(pipeline.endpoints.kafka_bootstrap, recordings)
    store = RedisAlertStore(pipeline.redis, prefix=pipeline.prefix)
    strips = RedisEvidenceStore(pipeline.redis, prefix=pipeline.prefix)
    ward = RedisWardStore(pipeline.redis, prefix=pipeline.prefix)

    def asystole() -> list:
        return [a for a in store.list_alerts(patient, include_resolved=True) if a.type == "asystole"]

    alerts = wait_for(asystole, timeout_s=90)
    assert alerts, pipeline.worker.log_tail()
    strip = wait_for(lambda: strips.get("alert", alerts[0].alert_id), timeout_s=20)
    assert strip is not None, pipeline.worker.stats()
    assert strip.end_ms == alerts[0].raised_ms and strip.end_ms - strip.start_ms == 10_000
    ecg = next(t for t in strip.traces if t.signal == "ecg")
    assert ecg.fs == 125.0 and ecg.coverage > 0.95 and {t.signal for t in strip.traces} == {"ecg", "ppg", "resp"}
    # The asystole itself: no beat in the last 4 s of the strip; beats (classified) before it.
    assert strip.beats and all(t < strip.end_ms - 4000 for t, _ in strip.beats)
    assert {c for _, c in strip.beats} <= {"N", "S", "V", "F", "Q", ""} and any(c for _, c in strip.beats)

    decision = wait_for(lambda: store.device_alarms(patient), timeout_s=60)
    assert decision and decision[0]["verdict"] == "confirmed", decision
    alarm_strip = wait_for(lambda: strips.get("device-alarm", alarm.alarm_id), timeout_s=20)
    assert alarm_strip is not None and alarm_strip.verdict == "confirmed" and alarm_strip.end_ms == alarm.t_ms
    assert "longest interval without a QRS" in alarm_strip.reason

    latest = wait_for(lambda: ward.latest([patient]).get(patient), timeout_s=20)
    assert latest is not None, (pipeline.worker.stats(), pipeline.worker.log_tail(4000))
    snap, written = latest
    assert written is not None and snap.signals == "ecg,ppg,resp"
    assert patient in ward.patients()
    points = wait_for(lambda: ward.trend(patient) if len(ward.trend(patient)) >= 2 else None, timeout_s=20)
    assert points and all(p.n >= 1 for p in points) and any(p.hr is not None for p in points)
    stats = pipeline.worker.stats() or {}
    assert stats.get("strips_written", 0) >= 2 and stats.get("care_feed_errors") == 0, stats
