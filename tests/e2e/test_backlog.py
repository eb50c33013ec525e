"""A worker restarted on a backlog reads each signal topic at its own pace: the PPG topic
of this test holds two patients, the ECG topic twelve, so the worker reaches a PPG
patient's PPG minutes of event time before its ECG. The findings must still be those of an
interleaved feed (no window missing a signal, no gap, no signal-loss alert; see
``PatientMonitor``: chunks read ahead of a lagging topic wait for it), and the messages of
the chunks held back must be committed once analysed, not before and not never.

The test has a broker of its own: a worker already running on the session's broker would
read the same topics live, and its findings would be indistinguishable from this one's."""

from __future__ import annotations

import json
import uuid
import warnings

import pytest

from alerting.store import RedisAlertStore
from stream.findings import VitalsFinding
from stream.schema import Signal
from stream.services import VITALS_TOPICS, consumer_group_lag, create_topics, embedded_services
from stream.simulator import PatientScenario
from stream.worker_process import WorkerProcess
from tests.e2e.conftest import PARTITIONS, pipeline_env
from tests.e2e.kafka_io import consume_until
from tests.e2e.publish import publish_recordings, simulate
from tests.e2e.test_alerts_flow import wait_for

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
    without = {r.patient_id: {Signal.PPG} for r in recordings if r.patient_id not in with_ppg}
    env = pipeline_env(endpoints, tmp_path, f"bl{tag}")
    group, topics = env["VITALSTREAM_APP_ID"], list(VITALS_TOPICS)
    patients = {r.patient_id for r in recordings}
    # The first worker's windows end at 10-18 s (20 s once its idle flush ran), the second's
    # at 30-150 s (its monitors start again at 20 s).
    windows_each = len(range(10, 20, 2)) + len(range(30, DURATION_S + 1, 2))

    def findings_of(kept: list[tuple[bytes | None, bytes]]) -> dict[str, list[VitalsFinding]]:
        out: dict[str, list[VitalsFinding]] = {}
        for _key, value in kept:
            f = VitalsFinding.from_json(value)
            out.setdefault(f.patient_id, []).append(f)
        return out

    def read_findings(until) -> dict[str, list[VitalsFinding]]:  # type: ignore[no-untyped-def]
        kept = consume_until(
            endpoints.kafka_bootstrap,
            "vitals.findings",
            lambda k: until(findings_of(k)),
            timeout_s=120,
            keep=lambda key, _v: key is not None and key.decode() in patients,
        )
        return findings_of(kept)

    import redis

    client = redis.Redis.from_url(endpoints.redis_url)
    store = RedisAlertStore(client, prefix=env["VITALSTREAM_REDIS_PREFIX"])
    try:
        # A first worker reads the first 20 s live and commits its offsets, then stops.
        with WorkerProcess(env, tmp_path / "first.log", name="worker-first") as worker:
            worker.wait_ready(150)
            publish_recordings(endpoints.kafka_bootstrap, recordings, without=without, span_s=(0, 20))
            assert read_findings(lambda fs: len(fs) == PATIENTS), worker.log_tail()
            assert wait_for(lambda: consumer_group_lag(endpoints.kafka_bootstrap, group, topics) == 0, 60)
        # The gateways carry on while no worker runs; the next worker starts on that backlog.
        publish_recordings(endpoints.kafka_bootstrap, recordings, without=without, span_s=(20, DURATION_S))
        with WorkerProcess(env, tmp_path / "second.log", name="worker-second") as worker:
            worker.wait_ready(150)
            findings = read_findings(
                lambda fs: sum(len({f.t_ms for f in v}) >= windows_each for v in fs.values()) == PATIENTS
            )
            # Held chunks' messages are acknowledged once analysed, so every offset gets committed.
            lag = wait_for(lambda: consumer_group_lag(endpoints.kafka_bootstrap, group, topics) == 0, 60)
            stats = worker.stats() or {}
            log = worker.log_tail()
        assert sorted(findings) == sorted(patients), log
        assert stats["pipeline"]["held"] > 0, json.dumps(stats["pipeline"])  # the PPG topic did lag
        assert stats["held_messages"] == 0 and stats["held_messages_acked"] > 0, json.dumps(stats)
        assert lag, "the consumer group kept a lag on the vitals topics: held messages were never committed"
        # Faust 0.15 sometimes skips a message right after an assignment; the worker reads
        # such messages again from the broker (ConsumerProgress.skipped_before,
        # recover_skipped). None may stay lost.
        assert stats["transport_skipped"] == 0, json.dumps(stats)
        if stats["transport_recovered"]:
            warnings.warn(f"the consumer skipped {stats['transport_recovered']} message(s); recovered", stacklevel=1)
        for pid in with_ppg:
            bad = [(f.t_ms - recordings[0].start_ms, f.gaps, f.ppg is None) for f in findings[pid]
                   if f.ecg is None or f.ppg is None or f.gaps]
            assert not bad, f"{pid} {bad[:6]} {json.dumps(stats)}"
        bad = [(f.patient_id, f.t_ms - recordings[0].start_ms, f.gaps) for fs in findings.values() for f in fs
               if f.gaps or f.ecg is None]
        assert not bad, f"{bad[:6]} {json.dumps(stats)}"
        alerts = [a for pid in patients for a in store.list_alerts(pid, include_resolved=True)]
        # (device_silent may be raised: the recordings end, and the devices then are silent)
        assert not [a for a in alerts if a.type in ("signal_loss", "lead_off", "poor_signal")], alerts
    finally:
        for key in client.scan_iter(match=f"{env['VITALSTREAM_REDIS_PREFIX']}:*", count=1000):
            client.delete(key)
