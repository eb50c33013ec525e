"""The worker's Prometheus metrics (stream/metrics.py) from its own bookkeeping, without a
worker; tests/e2e/test_metrics.py scrapes a running one."""

from __future__ import annotations

from collections import Counter

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from stream.metrics import (
    MODEL_INFERENCE,
    SAMPLE_TO_FINDING,
    PartitionOffsets,
    TimedModelRuntime,
    WorkerCollector,
    WorkerReading,
    exposition,
    observe_findings,
)
from stream.stats import WorkerStats


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import generate_latest

    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_the_collector_reports_the_workers_own_counters() -> None:
    stats = WorkerStats(chunks_in=120, windows=40, findings_in=40, actions=2, device_alarms=1, bad_findings=3,
                        dead_letters=Counter({"unknown_encoding": 4, "key_mismatch": 1}),
                        alert_changes=Counter({("raised", "brady", "medium"): 1, ("resolved", "brady", "medium"): 1}),
                        device_alarm_verdicts=Counter({"suppressed": 1}))
    reading = WorkerReading(
        stats=stats, pipeline={"chunks": {"accepted": 110, "duplicate": 5}, "findings": 40, "gaps": 2},
        patients=3, held_messages=0, ticked_patients=3, rebalances=1,
        partitions=[PartitionOffsets("vitals.ecg", 0, 100, 90), PartitionOffsets("vitals.ecg", 1, 7, None),
                    PartitionOffsets("vitals.ppg", 0, None, None)],
        tables={"alert-state": 3, "trend-state": 2})
    registry = CollectorRegistry()
    registry.register(WorkerCollector(lambda: reading))
    got = _samples(registry)
    assert got[("vitalstream_chunks_total", ())] == 120
    assert got[("vitalstream_windows_total", ())] == 40
    assert got[("vitalstream_chunk_outcomes_total", (("status", "duplicate"),))] == 5
    assert got[("vitalstream_dead_letters_total", (("reason", "unknown_encoding"),))] == 4
    assert got[("vitalstream_dead_letters_total", (("reason", "bad_alert_input"),))] == 3
    raised = (("event", "raised"), ("priority", "medium"), ("type", "brady"))
    assert got[("vitalstream_alert_changes_total", raised)] == 1
    assert got[("vitalstream_device_alarm_decisions_total", (("verdict", "suppressed"),))] == 1
    # Lag: log end minus committed; nothing committed yet counts from 0; unknown ends are left out.
    assert got[("vitalstream_consumer_lag_messages", (("partition", "0"), ("topic", "vitals.ecg")))] == 10
    assert got[("vitalstream_consumer_lag_messages", (("partition", "1"), ("topic", "vitals.ecg")))] == 7
    assert ("vitalstream_consumer_lag_messages", (("partition", "0"), ("topic", "vitals.ppg"))) not in got
    assert got[("vitalstream_table_keys", (("table", "alert-state"),))] == 3
    assert got[("vitalstream_patients", ())] == 3 and got[("vitalstream_rebalances_total", ())] == 1
    # Read at each scrape: a later count shows without any other bookkeeping.
    stats.chunks_in += 5
    assert _samples(registry)[("vitalstream_chunks_total", ())] == 125


def test_latencies_never_go_negative_and_inference_is_timed() -> None:
    before = SAMPLE_TO_FINDING._sum.get()
    observe_findings([2_000_000, 1_000_000], now_s=1_500.0)  # one window end 500 s ahead of the clock
    assert SAMPLE_TO_FINDING._sum.get() - before == 500.0

    runtime = TimedModelRuntime.load_default()
    counted = MODEL_INFERENCE.labels("rhythm")._sum.get()
    runtime.predict_rhythm(np.zeros((2, 1, 2500), dtype=np.float32))
    assert MODEL_INFERENCE.labels("rhythm")._sum.get() > counted


def test_the_page_speaks_the_format_the_scraper_asks_for() -> None:
    body, content_type = exposition("")
    assert content_type.startswith("text/plain; version=0.0.4") and b"vitalstream_sample_to_finding_seconds" in body
    body, content_type = exposition("application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5")
    assert content_type.startswith("application/openmetrics-text") and body.rstrip().endswith(b"# EOF")
