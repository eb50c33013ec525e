"""A device that stops sending for ``VITALSTREAM_FORGET_IDLE_S`` has left (discharge,
transfer): the worker forgets the patient, so its memory does not grow with every admission,
after saving the patient's trend state; a device that comes back resumes from that copy.

On a broker of its own, like the rebalance test, so the worker's counts are this test's."""

from __future__ import annotations

import json
import uuid

import pytest

from stream.services import create_topics, embedded_services
from stream.simulator import PatientScenario
from stream.worker_process import WorkerProcess
from tests.e2e.conftest import PARTITIONS, pipeline_env
from tests.e2e.publish import publish_recordings, simulate
from tests.e2e.test_alerts_flow import wait_for

pytestmark = pytest.mark.e2e


def test_a_silent_patient_is_forgotten_and_comes_back_with_its_trends(services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with embedded_services(tmp_path / "services", env={"REDIS_URL": services.redis_url}) as private:
        create_topics(private.kafka_bootstrap, PARTITIONS)
        tag = uuid.uuid4().hex[:6]
        recordings = simulate([PatientScenario(f"lv{i}-{tag}", (), duration_s=150) for i in range(2)])
        env = {**pipeline_env(private, tmp_path, f"lv{tag}"), "VITALSTREAM_FORGET_IDLE_S": "8"}

        with WorkerProcess(env, tmp_path / "worker.log", name="worker-leaves") as worker:
            worker.wait_ready(150)

            def stats() -> dict:
                return worker.stats() or {}

            # 90 s: past the first minute, in which a new patient's trend state is not saved.
            publish_recordings(private.kafka_bootstrap, recordings, span_s=(0, 90))
            gone = wait_for(lambda: stats().get("pipeline", {}).get("patients_left", 0) >= 2, 90)
            assert gone and stats()["patients"] == 0, (json.dumps(stats()), worker.log_tail())
            saved = stats()["pipeline"]["trends_saved"]
            assert saved >= 2, json.dumps(stats())

            publish_recordings(private.kafka_bootstrap, recordings, span_s=(90, 150))
            back = wait_for(lambda: stats().get("pipeline", {}).get("trends_restored", 0) >= 2, 60)
            assert back and stats()["patients"] == 2, json.dumps(stats())
