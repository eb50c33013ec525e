"""A bradycardia patient gets exactly one bradycardia alert in Redis; a normal patient none."""

from __future__ import annotations

import time
import uuid

import pytest

from alerting.store import RedisAlertStore
from stream.schema import Signal
from stream.simulator import EpisodeSpec, PatientScenario
from tests.e2e.publish import publish_recordings, simulate
from tests.stream.test_dsp_abp import FS as ABP_FS
from tests.stream.test_dsp_abp import arterial_wave

pytestmark = pytest.mark.e2e


def wait_for(predicate, timeout_s: float, interval_s: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval_s)
        value = predicate()
    return value


def test_bradycardia_patient_gets_one_alert_and_normal_patient_none(pipeline) -> None:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:6]
    brady, normal = f"brady-{tag}", f"normal-{tag}"
    recordings = simulate(
        [
            PatientScenario(brady, (EpisodeSpec("brady", start_s=20, duration_s=60),), duration_s=100),
            PatientScenario(normal, (), duration_s=100),
        ]
    )
    # Gateways retry: publish everything twice; the worker must drop the duplicates.
    publish_recordings(pipeline.endpoints.kafka_bootstrap, recordings, times=2)
    store = RedisAlertStore(pipeline.redis, prefix=pipeline.prefix)

    def brady_alerts() -> list:
        return [a for a in store.list_alerts(brady, include_resolved=True) if a.type == "brady"]

    alerts = wait_for(brady_alerts, timeout_s=90)
    assert alerts, pipeline.worker.log_tail()
    time.sleep(8)  # let the rest of the record drain: no second alert may appear
    alerts = brady_alerts()
    assert len(alerts) == 1, alerts
    onset_s = (alerts[0].onset_ms - recordings[0].start_ms) / 1000
    assert 18 <= onset_s <= 40, onset_s
    assert store.list_alerts(normal, include_resolved=True) == []
    clinical = [a for a in store.list_alerts(brady, include_resolved=True) if a.priority != "low"]
    assert [a.type for a in clinical] == ["brady"]


def test_arterial_line_flows_through_its_topic_to_a_hypotension_alert(pipeline) -> None:  # type: ignore[no-untyped-def]
    """An ICU patient with an arterial line: ECG, PPG and respiration from the simulator,
    ABP (80/45, mean ~59 mmHg) on ``vitals.abp``. One hypotension alert lands in Redis,
    saying the measured pressures, and the systolic pressure's NEWS2 red score raises the
    trend alert; nothing else clinical is raised."""
    tag = uuid.uuid4().hex[:6]
    patient = f"icu-{tag}"
    recordings = simulate([PatientScenario(patient, (), duration_s=60)])
    line = arterial_wave(systolic=80.0, diastolic=45.0, rate=72.0, seconds=60.0)
    publish_recordings(pipeline.endpoints.kafka_bootstrap, recordings,
                       extra={patient: {Signal.ABP: (line, float(ABP_FS))}})
    store = RedisAlertStore(pipeline.redis, prefix=pipeline.prefix)

    def hypotension() -> list:
        return [a for a in store.list_alerts(patient, include_resolved=True) if a.type == "hypotension"]

    alerts = wait_for(hypotension, timeout_s=90)
    assert alerts, pipeline.worker.log_tail()
    time.sleep(5)
    alerts = hypotension()
    assert len(alerts) == 1, alerts
    assert "mean arterial pressure" in alerts[0].message and "(80/45)" in alerts[0].message
    clinical = {a.type: a for a in store.list_alerts(patient, include_resolved=True) if a.priority != "low"}
    assert sorted(clinical) == ["hypotension", "trend_deterioration"]
    assert "systolic BP" in clinical["trend_deterioration"].message
