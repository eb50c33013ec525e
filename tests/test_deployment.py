"""docker-compose.yml cannot run here (no Docker engine); check its services and wiring."""

from __future__ import annotations

from pathlib import Path

import yaml

from stream.settings import REPO_ROOT, Settings

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_services_and_images() -> None:
    services = COMPOSE["services"]
    assert {"kafka", "redis", "topic-init", "worker", "simulator"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["redis"]["image"] == "redis:7"


def test_kafka_runs_in_kraft_mode_without_auto_created_topics() -> None:
    env = COMPOSE["services"]["kafka"]["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"]
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]).lower() == "false"


def test_redis_persists_with_append_only_file() -> None:
    command = COMPOSE["services"]["redis"]["command"]
    assert "--appendonly" in command and command[command.index("--appendonly") + 1] == "yes"


def test_worker_is_scalable_and_wired_to_kafka_and_redis() -> None:
    worker = COMPOSE["services"]["worker"]
    assert worker["command"] == ["vitalstream", "worker"]
    # --scale needs no fixed container name and no host port.
    assert "container_name" not in worker and "ports" not in worker
    env = worker["environment"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    assert int(env["VITALSTREAM_PARTITIONS"]) >= 4
    settings = Settings.from_env({k: str(v) for k, v in env.items()})
    assert settings.partitions == int(env["VITALSTREAM_PARTITIONS"])
    assert worker["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"


def test_topics_are_created_before_anything_produces() -> None:
    services = COMPOSE["services"]
    assert services["topic-init"]["command"] == ["vitalstream", "services", "up"]
    assert services["topic-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["simulator"]["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
    assert services["simulator"]["command"][:2] == ["vitalstream", "simulate"]


def test_image_installs_pinned_cpu_torch_first() -> None:
    dockerfile = COMPOSE["services"]["worker"]["build"]["dockerfile_inline"]
    lines = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert "torch==2.13.0" in lines[0] and "cpu" in lines[0]
    assert Path(REPO_ROOT / "pyproject.toml").read_text().count('"torch==2.13.0"') == 1
