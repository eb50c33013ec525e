"""Operational view of a worker: counters on ``/stats/`` and in the log every minute."""

from __future__ import annotations

import logging

from faust.web import Request, Response, View

from stream.agents.vitals import awaiting, held_events, pipeline
from stream.app import app
from stream.stats import worker_stats

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
        "held_messages": len(held_events),  # not yet acknowledged: their offsets wait
        # In their monitor, not yet covered by a published window: not acknowledged either.
        "awaiting_analysis": len(awaiting),
        **worker_stats.as_dict(),
    }


@app.page("/stats/")
class StatsView(View):
    async def get(self, request: Request) -> Response:
        return self.json(snapshot())


@app.timer(interval=60.0)
async def log_stats() -> None:
    log.info("vitalstream stats: %s", snapshot())
