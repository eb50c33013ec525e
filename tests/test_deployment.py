"""docker-compose.yml cannot run here (no Docker engine); check its services and wiring,
the secured connections it configures, and the monitoring files it mounts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream.settings import REPO_ROOT, Settings

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
DEPLOY = REPO_ROOT / "deploy"
KAFKA_PROPERTIES = dict(
    line.split("=", 1) for line in (DEPLOY / "kafka" / "server.properties").read_text().splitlines()
    if line and not line.startswith("#"))


def settings_of(service: str, tmp_path: Path) -> Settings:
    """The service's settings as its container reads them, secret files stood in for."""
    env = {k: str(v) for k, v in COMPOSE["services"][service]["environment"].items()}
    for name, value in list(env.items()):
        if name.endswith("_FILE"):
            stand_in = tmp_path / Path(value).name
            stand_in.write_text("x" * 64 + "\n")
            env[name] = str(stand_in)
    return Settings.from_env(env)


def test_services_and_images() -> None:
    services = COMPOSE["services"]
    assert {"kafka", "redis", "redis-acl", "topic-init", "worker", "simulator"} <= set(services)
    assert {"prometheus", "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["redis"]["image"] == "redis:7"
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")


def test_kafka_runs_in_kraft_mode_without_auto_created_topics() -> None:
    assert set(KAFKA_PROPERTIES["process.roles"].split(",")) == {"broker", "controller"}
    assert "zookeeper.connect" not in KAFKA_PROPERTIES
    assert KAFKA_PROPERTIES["auto.create.topics.enable"] == "false"
    assert COMPOSE["services"]["kafka"]["entrypoint"] == ["/etc/kafka/vitalstream/start.sh"]


def test_kafka_clients_can_only_connect_with_sasl_ssl() -> None:
    listeners = dict(item.split("://") for item in KAFKA_PROPERTIES["listeners"].split(","))
    protocols = dict(item.split(":") for item in KAFKA_PROPERTIES["listener.security.protocol.map"].split(","))
    # Reachable from other containers: SASL_SSL only; the plaintext ones are the container's loopback.
    for name, address in listeners.items():
        if protocols[name] != "SASL_SSL":
            assert address.startswith("127.0.0.1:"), (name, address)
    assert KAFKA_PROPERTIES["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert "password=\"@KAFKA_ADMIN_PASSWORD@\"" in KAFKA_PROPERTIES[
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]  # filled from the secret at start
    start = (DEPLOY / "kafka" / "start.sh").read_text()
    assert "--add-scram \"SCRAM-SHA-512=[name=vitalstream" in start
    assert (DEPLOY / "kafka" / "start.sh").stat().st_mode & 0o111


def test_every_vitalstream_container_connects_with_tls_and_its_own_users(tmp_path: Path) -> None:
    for service in ("topic-init", "worker", "simulator", "redis-acl"):
        settings = settings_of(service, tmp_path)
        assert settings.kafka_bootstrap_servers == "kafka:9093"
        assert settings.kafka_security_protocol == "SASL_SSL" and settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
        assert settings.kafka_sasl_username == "vitalstream" and settings.kafka_sasl_password
        assert settings.redis_url.startswith("rediss://redis:6379")
        assert settings.redis_username == "vitalstream" and settings.redis_password
        assert settings.pseudonym_key  # the simulator (a gateway) sends pseudonyms


def test_redis_speaks_tls_only_with_an_acl_file_and_persists() -> None:
    redis = COMPOSE["services"]["redis"]
    command = redis["command"]
    option = {command[i]: command[i + 1] for i in range(1, len(command) - 1) if command[i].startswith("--")}
    assert option["--port"] == "0" and option["--tls-port"] == "6379"  # no plaintext listener
    assert option["--aclfile"] == "/acl/users.acl"
    assert option["--appendonly"] == "yes"
    assert redis["ports"] == ["127.0.0.1:6379:6379"]
    acl = COMPOSE["services"]["redis-acl"]["command"][-1]
    assert "vitalstream services redis-acl --user vitalstream" in acl and "user default off" in acl


def test_worker_is_scalable_and_scraped_but_not_published() -> None:
    worker = COMPOSE["services"]["worker"]
    assert worker["command"] == ["vitalstream", "worker"]
    # --scale needs no fixed container name and no host port.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["environment"]["VITALSTREAM_WORKER_WEB_HOST"] == "0.0.0.0"
    assert int(worker["environment"]["VITALSTREAM_PARTITIONS"]) >= 4
    assert worker["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["metrics_path"] == "/metrics"
    assert scrape["dns_sd_configs"][0]["names"] == ["worker"] and scrape["dns_sd_configs"][0]["port"] == 6066
    assert Settings().worker_web_port == 6066
    for service in ("prometheus", "grafana"):
        assert all(p.startswith("127.0.0.1:") for p in COMPOSE["services"][service]["ports"])


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


@pytest.mark.skipif(shutil.which("openssl") is None, reason="make-secrets.sh needs openssl")
def test_make_secrets_creates_every_file_the_compose_file_mounts(tmp_path: Path) -> None:
    script = tmp_path / "make-secrets.sh"
    shutil.copy(DEPLOY / "make-secrets.sh", script)
    subprocess.run(["sh", str(script)], check=True, capture_output=True, timeout=60)
    made = {p.name for p in (tmp_path / "secrets").iterdir()}
    wanted = {Path(s["file"]).name for s in COMPOSE["secrets"].values()}
    assert wanted <= made, wanted - made
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "secrets" / "ca.crt"),
                             str(tmp_path / "secrets" / "kafka.crt"), str(tmp_path / "secrets" / "redis.crt")],
                            capture_output=True, text=True, check=True)
    assert verify.stdout.count(": OK") == 2


def test_the_dashboard_uses_only_metrics_the_worker_exports() -> None:
    from stream.metrics import REGISTRY, WorkerCollector, WorkerReading
    from stream.stats import WorkerStats

    provisioning = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "vitalstream.yml").read_text())
    assert provisioning["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "prometheus"
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "vitalstream.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    used = {m for e in exprs for m in re.findall(r"\b((?:vitalstream|process)_[a-z0-9_]+)", e)}
    collector = CollectorRegistry()
    collector.register(WorkerCollector(lambda: WorkerReading(WorkerStats(), {}, 0, 0, 0, 0)))
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    exported = {family.name + suffix for registry in (collector, REGISTRY) for family in registry.collect()
                for suffix in suffixes.get(family.type, ("",))}
    assert used - exported == set(), used - exported
    for family in ("vitalstream_consumer_lag_messages", "vitalstream_chunks_total", "vitalstream_windows_total",
                   "vitalstream_sample_to_finding_seconds_bucket", "vitalstream_finding_to_alert_seconds_bucket",
                   "vitalstream_dead_letters_total", "vitalstream_alert_changes_total",
                   "vitalstream_model_inference_seconds_bucket", "vitalstream_table_keys"):
        assert family in used, family
