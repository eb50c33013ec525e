"""Small Kafka and Redis helpers for end-to-end tests (raw producer/consumer, no worker code).

The session's services may be the environment's (``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL``,
tests/conftest.py): the helpers then connect with the environment's TLS / SASL / ACL
settings, as the worker does; the embedded services the tests start speak plain TCP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.connections import NO_REDIS_AUTH, PLAINTEXT, KafkaSecurity, RedisSecurity, redis_client
from stream.settings import Settings

_ENV = Settings.from_env()


def kafka_security(bootstrap: str) -> KafkaSecurity:
    """The security settings of ``bootstrap``: the environment's for its broker, else none."""
    return KafkaSecurity.from_settings(_ENV) if bootstrap == _ENV.kafka_bootstrap_servers else PLAINTEXT


def redis_for(url: str, **kwargs: Any) -> redis.Redis:
    """A client of ``url``, with the environment's ACL user and TLS files for its Redis."""
    security = RedisSecurity.from_settings(_ENV) if url == _ENV.redis_url else NO_REDIS_AUTH
    return redis_client(url, security, **kwargs)


def produce(bootstrap: str, messages: Iterable[tuple[str, bytes | None, bytes]]) -> None:
    """Send (topic, key, value) triples and wait until the broker has them."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                    **kafka_security(bootstrap).client_kwargs())
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
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
            **kafka_security(bootstrap).client_kwargs(),
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
