"""Faust pass-through: the vitals topics read by a Faust agent that does nothing with them.

Run by bench/bench_capacity.py as a worker subprocess, on the broker the capacity run
filled: ``python bench/faust_passthrough.py worker -l warning``, with
``PASSTHROUGH_BOOTSTRAP``, ``PASSTHROUGH_TARGET`` (messages to read) and
``PASSTHROUGH_OUT`` (a JSON file) in the environment. With ``PASSTHROUGH_TARGET=0`` it
reads live and never stops, rewriting ``PASSTHROUGH_OUT`` with its count every second
(bench/bench_capacity_floor.py: what a Faust consumer that does nothing costs live). The app has the worker's settings
that shape consumption (raw serializers, one agent on the five vitals topics, batches of
``VITALSTREAM_BATCH_MAX`` taken with ``take_events``, offsets acknowledged per event), so
the pipeline's rate over this one is what our own per-message work costs, and this rate
over raw aiokafka is what Faust costs.
"""

from __future__ import annotations

import json
import os
import time

import faust

from stream.services import VITALS_TOPICS

BOOTSTRAP = os.environ["PASSTHROUGH_BOOTSTRAP"]
TARGET = int(os.environ["PASSTHROUGH_TARGET"])
OUT = os.environ["PASSTHROUGH_OUT"]
PARTITIONS = int(os.environ.get("VITALSTREAM_PARTITIONS", "8"))
BATCH_MAX = int(os.environ.get("VITALSTREAM_BATCH_MAX", "512"))
BATCH_WITHIN_S = float(os.environ.get("VITALSTREAM_BATCH_WITHIN_S", "0.25"))

app = faust.App(
    f"passthrough-{os.getpid()}",
    broker=f"kafka://{BOOTSTRAP}",
    store="memory://",
    autodiscover=False,
    key_serializer="raw",
    value_serializer="raw",
    topic_disable_leader=True,
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
    stream_wait_empty=False,
    datadir=os.environ.get("PASSTHROUGH_DATADIR", "/tmp/passthrough-faust"),
)
topic = app.topic(*VITALS_TOPICS, partitions=PARTITIONS)
seen = {"n": 0, "first": 0.0, "bytes": 0}


@app.agent(topic)
async def passthrough(stream) -> None:  # type: ignore[no-untyped-def]
    async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
        if not seen["n"]:
            seen["first"] = time.monotonic()
        for event in events:
            seen["n"] += 1
            seen["bytes"] += len(event.message.value or b"")
        if TARGET and seen["n"] >= TARGET:
            elapsed = time.monotonic() - seen["first"]
            with open(OUT, "w") as f:
                json.dump({"messages": seen["n"], "seconds": elapsed, "bytes": seen["bytes"]}, f)
            os._exit(0)  # the measurement is taken; no graceful leave needed


if not TARGET:

    @app.timer(1.0)
    async def report_count() -> None:
        tmp = f"{OUT}.tmp"
        with open(tmp, "w") as f:
            json.dump({"messages": seen["n"], "bytes": seen["bytes"], "wall": time.time()}, f)
        os.replace(tmp, OUT)  # the bench never reads half a file


if __name__ == "__main__":
    app.main()
