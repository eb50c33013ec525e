"""A device that falls silent just before its worker restarts still gets its
``device_silent`` alert from the replacement: only findings put a patient on the
aggregator's tick clock, and a silent device sends none, so the replacement must take the
patient from the alert-state table.

On a broker of its own, so the replacement restores only this test's patients."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from alerting.store import RedisAlertStore
from stream.services import create_topics, embedded_services
from stream.simulator import PatientScenario
from stream.worker_process import WorkerProcess
from tests.e2e.conftest import PARTITIONS, pipeline_env
from tests.e2e.publish import publish_recordings, simulate
from tests.e2e.test_alerts_flow import wait_for

pytestmark = pytest.mark.e2e


def test_a_device_silent_before_a_restart_is_reported_by_the_replacement(services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with embedded_services(tmp_path / "services", env={"REDIS_URL": services.redis_url}) as private:
        create_topics(private.kafka_bootstrap, PARTITIONS)
        tag = uuid.uuid4().hex[:6]
        patient = f"sil-{tag}"
        env = pipeline_env(private, tmp_path, f"sil{tag}")
        store = RedisAlertStore(redis.Redis.from_url(services.redis_url), prefix=env["VITALSTREAM_REDIS_PREFIX"])

        def silent_alerts() -> list:
            return [a for a in store.list_alerts(patient, include_resolved=True) if a.type == "device_silent"]

        try:
            with WorkerProcess(env, tmp_path / "first.log", name="worker-first") as first:
                first.wait_ready(150)
                publish_recordings(private.kafka_bootstrap, simulate([PatientScenario(patient, (), duration_s=30)]))
                # Stopped a few seconds after the device's last finding, before the 30-s
                # silence limit (AlertConfig.device_silent_after_s).
                assert wait_for(lambda: (first.stats() or {}).get("findings_in", 0) >= 10, 60), first.log_tail()
                assert wait_for(lambda: (first.stats() or {}).get("alert_emissions", -1) >= 0, 5)
            assert silent_alerts() == []
            with WorkerProcess(env, tmp_path / "second.log", name="worker-second") as second:
                second.wait_ready(150)
                raised = wait_for(lambda: silent_alerts(), 90)
                stats = second.stats() or {}
                assert raised, (json.dumps(stats), second.log_tail())
                assert stats["clocks_from_table"] >= 1
            assert len(silent_alerts()) == 1
        finally:
            client = redis.Redis.from_url(services.redis_url)
            for key in client.scan_iter(match=f"{env['VITALSTREAM_REDIS_PREFIX']}:*", count=1000):
                client.delete(key)
