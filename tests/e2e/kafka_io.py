"""Small Kafka helpers for end-to-end tests (raw producer/consumer, no worker code)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


def produce(bootstrap: str, messages: Iterable[tuple[str, bytes | None, bytes]]) -> None:
    """Send (topic, key, value) triples and wait until the broker has them."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for topic, key, value in messages:
                await producer.send(topic, key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def consume_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[tuple[bytes | None, bytes]]], bool],
    timeout_s: float,
    keep: Callable[[bytes | None, bytes], bool] = lambda k, v: True,
) -> list[tuple[bytes | None, bytes]]:
    """Read ``topic`` from the start until ``done(kept)`` or the timeout; return what was kept."""

    async def run() -> list[tuple[bytes | None, bytes]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
        )
        await consumer.start()
        kept: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline and not done(kept):
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    kept.extend((r.key, r.value) for r in records if keep(r.key, r.value))
        finally:
            await consumer.stop()
        return kept

    return asyncio.run(run())
