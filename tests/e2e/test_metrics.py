"""A worker's /metrics page after a known input: a bradycardia patient's 100 s (one
alert), two malformed messages. The counters must equal what was sent, the histograms
must have observed every finding, alert and model call with sane values, the lag must
drain to 0, and the page must be served on loopback only.

On a broker of its own, like the rebalance test, so the worker's counts are this test's."""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from alerting.store import RedisAlertStore
from stream.schema import encode_chunk, make_chunk
from stream.services import VITALS_TOPICS, create_topics, embedded_services
from stream.simulator import EpisodeSpec, PatientScenario
from stream.worker_process import WorkerProcess
from tests.e2e.conftest import PARTITIONS, pipeline_env
from tests.e2e.kafka_io import produce, redis_for
from tests.e2e.publish import publish_recordings, simulate
from tests.e2e.test_alerts_flow import wait_for

pytestmark = pytest.mark.e2e

DURATION_S = 100


def scrape(port: int) -> tuple[str, dict[str, dict[tuple[tuple[str, str], ...], float]]]:
    """(content type, {sample name: {sorted labels: value}})."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return content_type, samples


def one(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    return samples[name].get(tuple(sorted(labels.items())), 0.0)


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (what `ss -ltn` shows)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
                found.add(address)
    return found


def test_metrics_count_what_was_sent(services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with embedded_services(tmp_path / "services", env={"REDIS_URL": services.redis_url}) as private:
        create_topics(private.kafka_bootstrap, PARTITIONS)
        tag = uuid.uuid4().hex[:6]
        patient = f"brady-{tag}"
        # Recent event times, as from a live device (the latencies are then the pipeline's).
        start = int(time.time() * 1000) - DURATION_S * 1000
        recordings = simulate([PatientScenario(patient, (EpisodeSpec("brady", start_s=20, duration_s=60),),
                                               duration_s=DURATION_S)], start_ms=start)
        env = {**pipeline_env(private, tmp_path, f"m{tag}"), "VITALSTREAM_LOG_LEVEL": "info"}
        store = RedisAlertStore(redis_for(private.redis_url), prefix=env["VITALSTREAM_REDIS_PREFIX"])
        try:
            with WorkerProcess(env, tmp_path / "worker.log", name="worker-metrics") as worker:
                worker.wait_ready(150)
                sent = publish_recordings(private.kafka_bootstrap, recordings)
                bad = [("vitals.ecg", patient.encode(), b"\x00\x01 not a chunk"),
                       ("vitals.ppg", b"someone-else",
                        encode_chunk(make_chunk(patient, "d", "ppg", 125, start, 10_000, [0.0] * 125)))]
                produce(private.kafka_bootstrap, bad)

                def settled() -> bool:
                    stats = worker.stats() or {}
                    return (stats.get("chunks_in") == sent + len(bad) and stats.get("windows", 0) > 0
                            and stats.get("findings_in") == stats.get("windows"))

                assert wait_for(settled, 120), (worker.stats(), worker.log_tail())
                assert wait_for(lambda: [a for a in store.list_alerts(patient, include_resolved=True)
                                         if a.type == "brady"], 60), worker.log_tail()
                # Everything read is committed within Faust's commit interval.
                assert wait_for(lambda: sum(scrape(worker.web_port)[1]["vitalstream_consumer_lag_messages"]
                                            .values()) == 0, 30), {k: v for k, v in scrape(worker.web_port)[1]
                                                                 ["vitalstream_consumer_lag_messages"].items() if v}
                # A window can still close after `settled` (the idle tick flushes the last
                # one); take a scrape in which the aggregator has read every published finding.
                scraped: list = []

                def findings_all_read() -> bool:
                    scraped[:] = [scrape(worker.web_port), worker.stats() or {}]
                    metrics = scraped[0][1]
                    published = sum(metrics["vitalstream_findings_published_total"].values())
                    return published == sum(metrics["vitalstream_findings_received_total"].values()) \
                        == sum(metrics["vitalstream_windows_total"].values()) == scraped[1].get("windows")

                assert wait_for(findings_all_read, 30), scraped
                (content_type, m), stats = scraped
                addresses = listening_addresses(worker.web_port)
            log = (tmp_path / "worker.log").read_text()
        finally:
            store.delete_prefix()

    assert content_type.startswith("text/plain; version=0.0.4")
    # Every message read counts once, valid or dead-lettered; the bad ones by reason.
    assert one(m, "vitalstream_chunks_total") == sent + len(bad)
    assert one(m, "vitalstream_dead_letters_total", reason="unknown_encoding") == 1
    assert one(m, "vitalstream_dead_letters_total", reason="key_mismatch") == 1
    assert sum(m["vitalstream_chunk_outcomes_total"].values()) == sent
    assert one(m, "vitalstream_chunk_outcomes_total", status="accepted") == sent
    # Windows: every one analysed, published, read by the aggregator and timed.
    windows = one(m, "vitalstream_windows_total")
    assert windows == stats["windows"] >= (DURATION_S - 10) // 2
    assert one(m, "vitalstream_findings_published_total") == windows
    assert one(m, "vitalstream_findings_received_total") == windows
    assert one(m, "vitalstream_sample_to_finding_seconds_count") == windows
    mean = one(m, "vitalstream_sample_to_finding_seconds_sum") / windows
    # Published at once, the windows were 0-100 s old when analysed: the mean lies between.
    assert 1 < mean < DURATION_S + 60, mean
    assert one(m, "vitalstream_sample_to_finding_seconds_bucket", le="600.0") == windows
    # One bradycardia alert raised, written once, with its latencies.
    assert one(m, "vitalstream_alert_changes_total", event="raised", type="brady", priority="medium") == 1
    raised = one(m, "vitalstream_finding_to_alert_seconds_count", event="raised")
    assert raised >= 1
    assert 0 <= one(m, "vitalstream_finding_to_alert_seconds_sum", event="raised") / raised < 30
    assert one(m, "vitalstream_sample_to_alert_seconds_count", event="raised") == raised
    # The batched models ran, each timed; the batches hold every window.
    for model in ("all", "beats", "rhythm"):
        assert one(m, "vitalstream_model_inference_seconds_count", model=model) >= 1, model
    assert one(m, "vitalstream_model_batch_windows_sum") == windows
    # Gauges: lag per assigned partition (drained), tables, patients.
    lag_topics = {dict(labels)["topic"] for labels in m["vitalstream_consumer_lag_messages"]}
    assert set(VITALS_TOPICS) <= lag_topics and "vitals.findings" in lag_topics
    assert one(m, "vitalstream_assigned_partitions") == len(m["vitalstream_consumer_lag_messages"])
    assert one(m, "vitalstream_table_keys", table="alert-state") >= 1
    assert one(m, "vitalstream_patients") == 1
    assert one(m, "vitalstream_held_messages") == 0
    assert one(m, "process_cpu_seconds_total") > 0
    # The web server listens on loopback only (not 0.0.0.0 / ::).
    assert addresses == {"0100007F"}, addresses
    # At info level the worker's log never names the patient.
    assert "Ready" in log or "ready" in log.lower()
    assert patient not in log
