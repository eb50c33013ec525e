"""Operational view of a worker: counters on ``/stats/`` (JSON) and ``/metrics``
(Prometheus), and in the log every minute."""

from __future__ import annotations

import logging

from faust.web import Request, Response, View

from stream.agents.aggregator import ticked_patients
from stream.agents.vitals import awaiting, held_messages, pipeline
from stream.app import alert_state_table, app, commit_guard, trend_state_table
from stream.device_alarm import DEVICE_ALARMS_TOPIC
from stream.metrics import REGISTRY, PartitionOffsets, WorkerCollector, WorkerReading, exposition
from stream.services import ACTIONS_TOPIC, FINDINGS_TOPIC, VITALS_TOPICS
from stream.stats import worker_stats

# The topics the agents consume and commit. The tables' changelog partitions are assigned
# too, but are not committed (a table is restored from its changelog's log end), so a lag
# on them would mean nothing.
CONSUMED_TOPICS = frozenset({*VITALS_TOPICS, FINDINGS_TOPIC, ACTIONS_TOPIC, DEVICE_ALARMS_TOPIC})

log = logging.getLogger(__name__)


def snapshot() -> dict[str, object]:
    assignment = app.consumer.assignment() if app.consumer else set()
    return {
        "assigned": bool(assignment),
        # A rebalance in progress (the fault campaign kills workers during one).
        "rebalancing": bool(app.rebalancing),
        "partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in assignment),
        "patients": len(pipeline.monitors),
        "pipeline": pipeline.counters.as_dict(),
        "held_messages": len(held_messages),  # not yet acknowledged: their offsets wait
        # In their monitor, not yet covered by a published window: not acknowledged either.
        "awaiting_analysis": len(awaiting),
        # Taken by an agent and not finished, over the assigned partitions: each holds its
        # partition's commit back (stream/commit_guard.py).
        "messages_in_hand": sum(commit_guard.in_hand(tp) for tp in assignment),
        **worker_stats.as_dict(),
    }


def partition_offsets() -> list[PartitionOffsets]:
    """Log end and committed offset of each assigned partition of the consumed topics, as
    the consumer last saw them (no broker round trip: a scrape must not wait on Kafka).
    The committed offsets are Faust's own record of its commits
    (``Consumer._committed_offset``)."""
    consumer = app.consumer
    if consumer is None:
        return []
    committed = getattr(consumer, "_committed_offset", {})
    offsets = []
    for tp in consumer.assignment():
        if tp.topic not in CONSUMED_TOPICS:
            continue
        try:
            highwater = consumer.highwater(tp)
        except Exception:
            highwater = None
        mark = committed.get(tp)
        offsets.append(PartitionOffsets(tp.topic, tp.partition, highwater if isinstance(highwater, int) else None,
                                        mark if isinstance(mark, int) else None))
    return offsets


def reading() -> WorkerReading:
    return WorkerReading(
        stats=worker_stats,
        pipeline=pipeline.counters.as_dict(),
        patients=len(pipeline.monitors),
        held_messages=len(held_messages),
        ticked_patients=ticked_patients(),
        rebalances=app.rebalancing_count,
        partitions=partition_offsets(),
        # This worker's copies: its active partitions and the standby ones it keeps.
        tables={"alert-state": len(alert_state_table), "trend-state": len(trend_state_table)},
    )


REGISTRY.register(WorkerCollector(reading))


@app.page("/stats/")
class StatsView(View):
    async def get(self, request: Request) -> Response:
        return self.json(snapshot())


@app.page("/metrics")
class MetricsView(View):
    """Prometheus's text exposition format (docs/metrics.md lists the metrics)."""

    async def get(self, request: Request) -> Response:
        body, content_type = exposition(request.headers.get("Accept", ""))
        return self.bytes(body, headers={"Content-Type": content_type})


@app.timer(interval=60.0)
async def log_stats() -> None:
    log.info("vitalstream stats: %s", snapshot())
