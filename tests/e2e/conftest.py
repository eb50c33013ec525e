"""End-to-end fixtures: one worker against the session's broker and Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from stream.services import Endpoints, create_topics
from stream.worker_process import WorkerProcess
from tests.e2e.kafka_io import kafka_security, redis_for

PARTITIONS = 4


@dataclass
class Pipeline:
    endpoints: Endpoints
    env: dict[str, str]
    prefix: str
    app_id: str
    redis: redis.Redis
    worker: WorkerProcess


def pipeline_env(endpoints: Endpoints, state_dir: Path, tag: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap,
        "REDIS_URL": endpoints.redis_url,
        "VITALSTREAM_APP_ID": f"vs-{tag}",
        "VITALSTREAM_REDIS_PREFIX": f"e2e{tag}",
        "VITALSTREAM_PARTITIONS": str(PARTITIONS),
        "VITALSTREAM_STATE_DIR": str(state_dir),
        "VITALSTREAM_LOG_LEVEL": "warn",
    }


@pytest.fixture(scope="session")
def pipeline(services: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tag = uuid.uuid4().hex[:8]
    state_dir = tmp_path_factory.mktemp("worker")
    env = pipeline_env(services, state_dir, tag)
    create_topics(services.kafka_bootstrap, PARTITIONS, security=kafka_security(services.kafka_bootstrap))
    client = redis_for(services.redis_url, decode_responses=False)
    with WorkerProcess(env, state_dir / "worker.log") as worker:
        worker.wait_ready(120)
        yield Pipeline(services, env, env["VITALSTREAM_REDIS_PREFIX"], env["VITALSTREAM_APP_ID"], client, worker)
    for key in client.scan_iter(match=f"{env['VITALSTREAM_REDIS_PREFIX']}:*", count=1000):
        client.delete(key)
