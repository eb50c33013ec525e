"""Prometheus metrics of a worker, served on its web port at ``/metrics`` (docs/metrics.md).

Counters and gauges are not kept twice: :class:`WorkerCollector` reads the worker's own
bookkeeping (:class:`~stream.stats.WorkerStats`, the pipeline's counters, the consumer's
offsets, the tables) at each scrape. Only what those cannot give is recorded here, as
histograms observed where it happens: latencies and model inference time.

Latencies compare two clocks, so each is defined by what it subtracts:

* ``vitalstream_sample_to_finding_seconds``: the wall clock when the worker hands a finding
  to its producer, minus the event time of the window's end (``finding.t_ms``: the
  timestamp of the last sample the window covers, from the device's clock). It holds the
  device's chunking (a chunk leaves the gateway when its last sample is taken), transport,
  the wait for the filters' look-ahead and the next hop, batching and the models. It
  assumes device and worker clocks agree (NTP); data replayed from the past measures its
  own age, not the pipeline.
* ``vitalstream_finding_to_alert_seconds{event}``: the wall clock when Redis has the alert
  change, minus the finding message's Kafka timestamp (the wall clock of the worker that
  produced it): the findings topic and the aggregator, clock skew between workers aside.
* ``vitalstream_sample_to_alert_seconds{event}``: the same Redis write time minus the
  deciding finding's window end (event time): the end-to-end figure a clinician sees,
  with the first definition's caveats.

Negative differences (a device clock ahead of the worker's) are counted as 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from models.runtime import ModelOutputs, ModelRuntime
from stream.stats import WorkerStats
from stream.window_analysis import WindowAnalysis

# One registry per worker process (not prometheus_client's global one, which other
# libraries may also fill).
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Seconds. A window ends every hop (2 s) and needs look-ahead: a few seconds is normal,
# tens of seconds is a worker behind its input.
SAMPLE_LATENCY_BUCKETS = (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 60, 120, 300, 600)
ALERT_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

SAMPLE_TO_FINDING = Histogram(
    "vitalstream_sample_to_finding_seconds",
    "Wall time a finding is published minus the event time of its window's last sample.",
    buckets=SAMPLE_LATENCY_BUCKETS, registry=REGISTRY)
FINDING_TO_ALERT = Histogram(
    "vitalstream_finding_to_alert_seconds",
    "Wall time an alert change is in Redis minus the Kafka timestamp of the finding that caused it.",
    ["event"], buckets=ALERT_LATENCY_BUCKETS, registry=REGISTRY)
SAMPLE_TO_ALERT = Histogram(
    "vitalstream_sample_to_alert_seconds",
    "Wall time an alert change is in Redis minus the event time of the deciding window's last sample.",
    ["event"], buckets=SAMPLE_LATENCY_BUCKETS, registry=REGISTRY)
MODEL_INFERENCE = Histogram(
    "vitalstream_model_inference_seconds",
    "Duration of one batched model call: beats (beat CNN), rhythm (rhythm CNN), all (every model "
    "and the S expert for one batch of windows).",
    ["model"], buckets=INFERENCE_BUCKETS, registry=REGISTRY)
MODEL_BATCH_WINDOWS = Histogram(
    "vitalstream_model_batch_windows", "Windows analysed together in one batched model call.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=REGISTRY)


def since(t_s: float, now_s: float) -> float:
    return max(0.0, now_s - t_s)


def observe_findings(window_ends_ms: Iterable[int], now_s: float | None = None) -> None:
    now_s = time.time() if now_s is None else now_s
    for t_ms in window_ends_ms:
        SAMPLE_TO_FINDING.observe(since(t_ms / 1000.0, now_s))


def observe_alert_write(event: str, finding_produced_s: float | None, window_end_ms: int | None,
                        now_s: float | None = None) -> None:
    now_s = time.time() if now_s is None else now_s
    if finding_produced_s is not None:
        FINDING_TO_ALERT.labels(event).observe(since(finding_produced_s, now_s))
    if window_end_ms is not None:
        SAMPLE_TO_ALERT.labels(event).observe(since(window_end_ms / 1000.0, now_s))


@contextmanager
def _timed(model: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        MODEL_INFERENCE.labels(model).observe(time.perf_counter() - started)


class TimedModelRuntime(ModelRuntime):
    """The model runtime, timing each batched call (``load_default`` builds this class)."""

    def predict_beats(self, segments: Any, rr: Any) -> Any:
        with _timed("beats"):
            return super().predict_beats(segments, rr)

    def predict_rhythm(self, x: Any, rr: Any = None) -> Any:
        with _timed("rhythm"):
            return super().predict_rhythm(x, rr)

    def analyse(self, windows: Sequence[WindowAnalysis]) -> list[ModelOutputs]:
        MODEL_BATCH_WINDOWS.observe(len(windows))
        with _timed("all"):
            return super().analyse(windows)


@dataclass(frozen=True)
class PartitionOffsets:
    topic: str
    partition: int
    highwater: int | None  # the broker's log end at the consumer's last fetch
    committed: int | None  # the group's committed offset: the next message to process


@dataclass
class WorkerReading:
    """What a scrape reports, read from the worker's live objects (see stream.agents.monitoring)."""

    stats: WorkerStats
    pipeline: dict[str, Any]  # PipelineCounters.as_dict()
    patients: int
    held_messages: int
    ticked_patients: int
    rebalances: int
    partitions: list[PartitionOffsets] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)


class WorkerCollector(Collector):
    """Counters and gauges of one worker, from its own bookkeeping at each scrape."""

    def __init__(self, read: Callable[[], WorkerReading]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        r = self.read()
        s = r.stats
        yield _counter("vitalstream_chunks", "Sample messages read (valid or dead-lettered).", s.chunks_in)
        outcomes = CounterMetricFamily("vitalstream_chunk_outcomes",
                                       "Valid chunks by what the per-patient windows did with them.",
                                       labels=["status"])
        for status, n in sorted(r.pipeline.get("chunks", {}).items()):
            outcomes.add_metric([status], n)
        yield outcomes
        yield _counter("vitalstream_windows", "Windows analysed (one finding each).", s.windows)
        yield _counter("vitalstream_findings_published", "Findings the vitals agent published.",
                       r.pipeline.get("findings", 0))
        yield _counter("vitalstream_findings_received", "Findings the aggregator read.", s.findings_in)
        yield _counter("vitalstream_signal_gaps", "Gaps found in the signals (missing or late data).",
                       r.pipeline.get("gaps", 0))
        dead = CounterMetricFamily("vitalstream_dead_letters", "Messages sent to the dead-letter topic, by reason.",
                                   labels=["reason"])
        reasons = dict(s.dead_letters)
        if s.bad_findings:
            reasons["bad_alert_input"] = reasons.get("bad_alert_input", 0) + s.bad_findings
        for reason, n in sorted(reasons.items()):
            dead.add_metric([reason], n)
        yield dead
        alerts = CounterMetricFamily("vitalstream_alert_changes",
                                     "Alert changes written to Redis (raised, escalated, resolved, ...), "
                                     "by event, alert type and priority.", labels=["event", "type", "priority"])
        for (event, alert_type, priority), n in sorted(s.alert_changes.items()):
            alerts.add_metric([event, alert_type, priority], n)
        yield alerts
        yield _counter("vitalstream_device_alarms", "Bedside-monitor alarms read.", s.device_alarms)
        verdicts = CounterMetricFamily("vitalstream_device_alarm_decisions",
                                       "Bedside-monitor alarm decisions written to Redis, by verdict.",
                                       labels=["verdict"])
        for verdict, n in sorted(s.device_alarm_verdicts.items()):
            verdicts.add_metric([verdict], n)
        yield verdicts
        yield _counter("vitalstream_care_actions", "Acknowledgements and snoozes read.", s.actions)
        yield _counter("vitalstream_transport_recovered_messages",
                       "Messages the consumer skipped and the worker read again from the broker.",
                       s.transport_recovered)
        yield _counter("vitalstream_transport_lost_messages",
                       "Skipped messages that could not be read again (gaps in the patients' data).",
                       s.transport_skipped)
        yield _counter("vitalstream_idle_flushes_held",
                       "Idle flushes postponed because the patient's data still waited in Kafka.",
                       s.idle_flushes_held)
        yield _counter("vitalstream_rebalances", "Consumer-group rebalances this worker went through.",
                       r.rebalances)
        lag = GaugeMetricFamily("vitalstream_consumer_lag_messages",
                                "Messages of an assigned partition not yet committed by the group "
                                "(log end at the last fetch minus the committed offset).",
                                labels=["topic", "partition"])
        for p in sorted(r.partitions, key=lambda p: (p.topic, p.partition)):
            if p.highwater is not None:
                lag.add_metric([p.topic, str(p.partition)], max(0, p.highwater - (p.committed or 0)))
        yield lag
        yield GaugeMetricFamily("vitalstream_assigned_partitions",
                                "Partitions of the consumed topics assigned to this worker.", value=len(r.partitions))
        tables = GaugeMetricFamily("vitalstream_table_keys", "Keys in this worker's copy of each table.",
                                   labels=["table"])
        for name, n in sorted(r.tables.items()):
            tables.add_metric([name], n)
        yield tables
        yield GaugeMetricFamily("vitalstream_patients", "Patients with a live monitor on this worker.",
                                value=r.patients)
        yield GaugeMetricFamily("vitalstream_ticked_patients",
                                "Patients on the aggregator's clock (escalation, device-silent ticks).",
                                value=r.ticked_patients)
        yield GaugeMetricFamily("vitalstream_held_messages",
                                "Messages held back for a lagging signal topic (offsets not yet committable).",
                                value=r.held_messages)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def exposition(accept: str = "") -> tuple[bytes, str]:
    """Every metric of this worker, and its content type: the format the scraper's Accept
    header asks for (OpenMetrics for Prometheus when it offers it), else Prometheus's text
    format 0.0.4, which every scraper reads."""
    encode, content_type = choose_encoder(accept)
    return encode(REGISTRY), content_type
