"""A worker that starts on a backlog (after a restart or an outage) reads each signal topic
at its own pace: the PPG topic of this test holds two patients, the ECG topic twelve, so the
worker reaches a PPG patient's PPG minutes of event time before its ECG. The findings must
still be those of an interleaved feed: no window missing a signal, no gap, no signal-loss
alert (see ``PatientMonitor``: chunks read ahead of a lagging topic wait for it).

The test has a broker of its own: a worker already running on the session's broker would
read the same topics live, and its findings would be indistinguishable from this one's."""

from __future__ import annotations

import json
import uuid

import pytest

from alerting.store import RedisAlertStore
from stream.findings import VitalsFinding
from stream.schema import Signal
from stream.services import create_topics, embedded_services
from stream.simulator import PatientScenario
from stream.worker_process import WorkerProcess
from tests.e2e.conftest import PARTITIONS, pipeline_env
from tests.e2e.kafka_io import consume_until
from tests.e2e.publish import publish_recordings, simulate

pytestmark = pytest.mark.e2e

DURATION_S = 150
PATIENTS = 12


def test_a_worker_reading_a_backlog_waits_for_its_lagging_topics(services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with embedded_services(tmp_path / "services", env={"REDIS_URL": services.redis_url}) as private:
        create_topics(private.kafka_bootstrap, PARTITIONS)
        _check_backlog(private, tmp_path)


def _check_backlog(endpoints, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:6]
    recordings = simulate([PatientScenario(f"bl{i}-{tag}", (), duration_s=DURATION_S) for i in range(PATIENTS)])
    with_ppg = {recordings[0].patient_id, recordings[1].patient_id}
    publish_recordings(
        endpoints.kafka_bootstrap,
        recordings,
        without={r.patient_id: {Signal.PPG} for r in recordings if r.patient_id not in with_ppg},
    )
    # The worker starts after everything was published: a backlog from its first fetch.
    env = pipeline_env(endpoints, tmp_path, f"bl{tag}")
    patients = {r.patient_id for r in recordings}
    windows_each = (DURATION_S - 10) // 2 + 1

    def findings_of(kept: list[tuple[bytes | None, bytes]]) -> dict[str, list[VitalsFinding]]:
        out: dict[str, list[VitalsFinding]] = {}
        for _key, value in kept:
            f = VitalsFinding.from_json(value)
            out.setdefault(f.patient_id, []).append(f)
        return out

    import redis

    client = redis.Redis.from_url(endpoints.redis_url)
    store = RedisAlertStore(client, prefix=env["VITALSTREAM_REDIS_PREFIX"])
    try:
        with WorkerProcess(env, tmp_path / "worker.log") as worker:
            worker.wait_ready(150)
            kept = consume_until(
                endpoints.kafka_bootstrap,
                "vitals.findings",
                lambda k: sum(len(v) >= windows_each for v in findings_of(k).values()) == PATIENTS,
                timeout_s=120,
                keep=lambda key, _v: key is not None and key.decode() in patients,
            )
            stats = worker.stats() or {}
            log = worker.log_tail()
        findings = findings_of(kept)
        assert sorted(findings) == sorted(patients), log
        assert stats["pipeline"]["held"] > 0, json.dumps(stats["pipeline"])  # the PPG topic did lag
        for pid in with_ppg:
            fs = findings[pid]
            assert len({f.t_ms for f in fs}) >= windows_each
            assert all(f.ecg is not None and f.ppg is not None and not f.gaps for f in fs), pid
        assert all(not f.gaps and f.ecg is not None for fs in findings.values() for f in fs)
        alerts = [a for pid in patients for a in store.list_alerts(pid, include_resolved=True)]
        # (device_silent may be raised: the recordings end, and the devices then are silent)
        assert not [a for a in alerts if a.type in ("signal_loss", "lead_off", "poor_signal")], alerts
    finally:
        for key in client.scan_iter(match=f"{env['VITALSTREAM_REDIS_PREFIX']}:*", count=1000):
            client.delete(key)
