"""Exactly-once effect on Redis despite at-least-once Kafka (issue: alerting).

* The same findings published twice produce each alert once.
* A worker killed with SIGKILL mid-episode and replaced neither loses nor duplicates an
  episode: the open episode continues as one alert, and an episode that starts after the
  crash is raised by the replacement.
"""

from __future__ import annotations

import time
import uuid

import pytest

from alerting.aggregator import PatientAlertState, process_finding
from alerting.store import RedisAlertStore
from models.runtime import ModelRuntime
from stream.pipeline import VitalsPipeline
from stream.simulator import EpisodeSpec, PatientScenario
from stream.worker_process import WorkerProcess
from tests.e2e.conftest import pipeline_env
from tests.e2e.kafka_io import produce
from tests.e2e.publish import publish_recordings, simulate
from tests.e2e.test_alerts_flow import wait_for

pytestmark = pytest.mark.e2e


def findings_for(recordings) -> list:  # type: ignore[no-untyped-def]
    from stream.gateway import chunk_signals, merge_by_time
    from stream.schema import Signal

    pipe = VitalsPipeline(ModelRuntime.load_default())
    streams = [
        chunk_signals(r.patient_id, "dev", {Signal.ECG: (r.ecg, r.fs["ecg"]), Signal.PPG: (r.ppg, r.fs["ppg"]),
                                            Signal.RESP: (r.resp, r.fs["resp"])}, r.start_ms)
        for r in recordings
    ]
    return pipe.process(merge_by_time(*streams))


def test_findings_published_twice_produce_each_alert_once(pipeline) -> None:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:6]
    patients = [f"dup-asys-{tag}", f"dup-tachy-{tag}"]
    recordings = simulate(
        [
            PatientScenario(patients[0], (EpisodeSpec("asystole", 30, 8),), duration_s=70),
            PatientScenario(patients[1], (EpisodeSpec("extreme_tachy", 20, 30),), duration_s=70),
        ]
    )
    findings = findings_for(recordings)
    # What the state machine alone decides for these findings, in order, once.
    expected: set[tuple[str, str]] = set()
    for pid in patients:
        state = PatientAlertState.new(pid)
        for f in (f for f in findings if f.patient_id == pid):
            state, emissions = process_finding(state, f)
            expected |= {(e.alert_id, e.type) for e in emissions}
    assert {t for _, t in expected} >= {"asystole", "extreme_tachy"}

    messages = [("vitals.findings", f.patient_id.encode(), f.to_json()) for f in findings]
    produce(pipeline.endpoints.kafka_bootstrap, messages + messages)
    store = RedisAlertStore(pipeline.redis, prefix=pipeline.prefix)

    def stored() -> list:
        return [a for pid in patients for a in store.list_alerts(pid, include_resolved=True)]

    wait_for(lambda: len(stored()) >= len(expected), timeout_s=60)
    time.sleep(5)  # the second copy of every finding has been consumed by now
    alerts = stored()
    assert sorted((a.alert_id, a.type) for a in alerts) == sorted(expected)
    for a in alerts:
        history = store.history(a.alert_id)
        assert [h.event for h in history].count("raised") == 1


def test_killed_worker_neither_loses_nor_duplicates_an_episode(services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:8]
    env = pipeline_env(services, tmp_path, f"kill{tag}")
    store_prefix = env["VITALSTREAM_REDIS_PREFIX"]
    long_brady, late_asystole = f"kb-{tag}", f"ka-{tag}"
    recordings = simulate(
        [
            PatientScenario(long_brady, (EpisodeSpec("brady", 20, 150),), duration_s=200),
            PatientScenario(late_asystole, (EpisodeSpec("asystole", 140, 10),), duration_s=200),
        ]
    )
    first = [r.__class__(**{**r.__dict__, "ecg": r.ecg[: 100 * 250], "ppg": r.ppg[: 100 * 125],
                            "resp": r.resp[: 100 * 25]}) for r in recordings]
    import redis

    client = redis.Redis.from_url(services.redis_url)
    store = RedisAlertStore(client, prefix=store_prefix)

    def alerts_of(pid: str, kind: str) -> list:
        return [a for a in store.list_alerts(pid, include_resolved=True) if a.type == kind]

    worker = WorkerProcess(env, tmp_path / "a.log", name="worker-a")
    replacement = WorkerProcess(env, tmp_path / "b.log", name="worker-b")
    try:
        worker.start()
        worker.wait_ready(120)
        publish_recordings(services.kafka_bootstrap, first)
        assert wait_for(lambda: alerts_of(long_brady, "brady"), timeout_s=90), worker.log_tail()
        # Killed once both patients' trend state was saved (it is, after TREND_LOOKUP_S of
        # event time), so the replacement has a copy to start from.
        saved = wait_for(lambda: (worker.stats() or {}).get("pipeline", {}).get("trends_saved", 0) >= 2, timeout_s=60)
        assert saved, worker.log_tail()
        time.sleep(1)  # the table's changelog write leaves in the background
        worker.kill()  # SIGKILL: no leave-group, no final offset commit

        replacement.start()
        replacement.wait_ready(150)
        # The gateways keep sending (the first 100 s again, as after a gateway retry, then the rest).
        publish_recordings(services.kafka_bootstrap, recordings)
        assert wait_for(lambda: alerts_of(late_asystole, "asystole"), timeout_s=90), replacement.log_tail()
        time.sleep(5)
        assert len(alerts_of(long_brady, "brady")) == 1
        assert len(alerts_of(late_asystole, "asystole")) == 1
        # The trend history the killed worker saved (table changelog) is where the
        # replacement's trends start, not from nothing. (At least these two patients: both
        # workers also read what earlier tests left on the shared topics.)
        # (stats() is None when the busy worker does not answer within 1 s: ask again.)
        restored = wait_for(
            lambda: (replacement.stats() or {}).get("pipeline", {}).get("trends_restored", 0) >= 2, timeout_s=30)
        assert restored, (replacement.stats() or {}).get("pipeline", {})
    finally:
        # A failed assertion must not leave a worker running after the session.
        worker.stop()
        replacement.stop()
        for key in client.scan_iter(match=f"{store_prefix}:*", count=1000):
            client.delete(key)
