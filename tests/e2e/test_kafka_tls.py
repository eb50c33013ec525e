"""Every Kafka client of the project over TLS with client certificates: topic creation, the
gateway's producer, the recovery consumer, the group-offset lookup and the Faust worker
itself, configured only through the KAFKA_SECURITY_PROTOCOL / KAFKA_SSL_* settings.

Tansu 0.6.0, the broker that runs here, cannot serve TLS itself (its ``--cert`` and
``--key`` options are declared as conflicting, so a key can never be given; see
docs/security.md), so the test puts a TLS terminator in front of it, as a load balancer or
stunnel would: it requires a client certificate from the test's CA and forwards the
decrypted Kafka protocol to the broker, which advertises only the terminator's address.
Every connection a client makes after bootstrapping therefore goes through TLS too; the
terminator counts them. A plaintext client, one trusting another CA and one without a
certificate are all refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

from stream.connections import PLAINTEXT, KafkaSecurity
from stream.findings import VitalsFinding
from stream.gateway import GatewayPublisher
from stream.schema import encode_chunk, make_chunk
from stream.services import (
    FINDINGS_TOPIC,
    create_topics,
    fetch_offsets,
    free_port,
    group_start_offsets,
    port_open,
    tansu_binary,
)
from stream.worker_process import WorkerProcess
from tests.e2e.conftest import PARTITIONS, pipeline_env
from tests.e2e.test_deadletter import synthetic_ecg
from tests.tls_pki import Pki, make_pki

pytestmark = pytest.mark.e2e


@dataclass
class TlsTerminator:
    """TLS in front of a plain broker; needs a client certificate signed by ``pki``'s CA."""

    pki: Pki
    backend_port: int
    port: int = field(default_factory=free_port)
    handshakes: int = 0
    refused: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    def start(self) -> TlsTerminator:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.server_cert), str(self.pki.server_key))
        context.verify_mode = ssl.CERT_REQUIRED
        ready = threading.Event()

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            with contextlib.suppress(Exception):
                writer.close()

        async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
            self.handshakes += 1
            try:
                broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.backend_port)
            except OSError:
                client_w.close()
                return
            await asyncio.gather(pipe(client_r, broker_w), pipe(broker_r, client_w))

        def on_error(loop: asyncio.AbstractEventLoop, ctx: dict[str, object]) -> None:
            self.refused += 1  # failed handshakes surface here; they are the point

        async def serve() -> None:
            asyncio.get_running_loop().set_exception_handler(on_error)
            server = await asyncio.start_server(handle, "127.0.0.1", self.port, ssl=context)
            ready.set()
            async with server:
                await server.serve_forever()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            with contextlib.suppress(asyncio.CancelledError):
                self._loop.run_until_complete(serve())

        self._thread = threading.Thread(target=run, daemon=True, name="tls-terminator")
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            for task in asyncio.all_tasks(self._loop):
                self._loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(10)


@dataclass(frozen=True)
class TlsKafka:
    bootstrap: str
    security: KafkaSecurity
    terminator: TlsTerminator
    pki: Pki


@pytest.fixture(scope="module")
def tls_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsKafka]:
    folder = tmp_path_factory.mktemp("tls-kafka")
    pki = make_pki(folder / "pki")
    backend = free_port()
    terminator = TlsTerminator(pki, backend).start()
    # The broker advertises the terminator: clients come back through TLS after bootstrap.
    log = open(folder / "tansu.log", "wb")  # noqa: SIM115 - closed below
    broker = subprocess.Popen(
        [tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{backend}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{terminator.port}", "--storage-engine", "memory://tansu/"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", backend):
            assert broker.poll() is None and time.monotonic() < deadline, (folder / "tansu.log").read_text()
            time.sleep(0.1)
        security = KafkaSecurity("SSL", str(pki.ca_cert), str(pki.client_cert), str(pki.client_key))
        yield TlsKafka(f"127.0.0.1:{terminator.port}", security, terminator, pki)
    finally:
        broker.terminate()
        broker.wait(10)
        log.close()
        terminator.stop()


def _refused(bootstrap: str, security: KafkaSecurity) -> bool:
    async def probe() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, **security.client_kwargs())
        try:
            await admin.start()
            await admin.list_topics()
        finally:
            await admin.close()

    try:
        asyncio.run(asyncio.wait_for(probe(), 10))
    except Exception:
        return True
    return False


def test_clients_that_do_not_meet_the_tls_settings_are_refused(tls_kafka: TlsKafka) -> None:
    pki = tls_kafka.pki
    assert _refused(tls_kafka.bootstrap, PLAINTEXT)
    assert _refused(tls_kafka.bootstrap, KafkaSecurity("SSL", str(pki.other_ca_cert), str(pki.client_cert),
                                                        str(pki.client_key)))
    assert _refused(tls_kafka.bootstrap, KafkaSecurity("SSL", str(pki.ca_cert)))  # no client certificate
    assert not _refused(tls_kafka.bootstrap, tls_kafka.security)


def test_admin_gateway_and_consumers_work_through_tls(tls_kafka: TlsKafka) -> None:
    bootstrap, security = tls_kafka.bootstrap, tls_kafka.security
    create_topics(bootstrap, PARTITIONS, security=security)
    patient = f"tls-{uuid.uuid4().hex[:6]}"
    start = int(time.time() * 1000) - 60_000
    chunks = [make_chunk(patient, "dev1", "ecg", 250, start + 1000 * i, i, np.zeros(250)) for i in range(5)]

    async def publish() -> int:
        async with GatewayPublisher(bootstrap, security=security, enable_idempotence=False) as publisher:
            await publisher.publish_many(chunks)
            await publisher.flush()
            return publisher.stats.sent

    assert asyncio.run(publish()) == 5
    found = asyncio.run(fetch_offsets(bootstrap, "vitals.ecg", partition_of(patient), range(0, 5), timeout_s=10,
                                      security=security))
    assert [r.value for r in found] == [encode_chunk(c) for c in chunks]
    starts = asyncio.run(group_start_offsets(bootstrap, f"g-{patient}", [("vitals.ecg", partition_of(patient))],
                                             security=security))
    assert starts == {("vitals.ecg", partition_of(patient)): 0}


def partition_of(patient: str) -> int:
    """The producer's default partitioner (murmur2 of the key), as the topics are keyed."""
    return (murmur2(patient.encode()) & 0x7FFFFFFF) % PARTITIONS


def test_the_worker_runs_through_tls(tls_kafka: TlsKafka, services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The Faust worker's consumer, producer, table changelogs and side clients, all from the
    environment's settings: it joins, reads the ECG and publishes findings."""
    bootstrap, pki = tls_kafka.bootstrap, tls_kafka.pki
    create_topics(bootstrap, PARTITIONS, security=tls_kafka.security)
    tag = uuid.uuid4().hex[:6]
    env = {
        **pipeline_env(services, tmp_path, f"tls{tag}"),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CA_LOCATION": str(pki.ca_cert),
        "KAFKA_SSL_CERTIFICATE_LOCATION": str(pki.client_cert),
        "KAFKA_SSL_KEY_LOCATION": str(pki.client_key),
    }
    before = tls_kafka.terminator.handshakes
    with WorkerProcess(env, tmp_path / "worker.log", name="worker-tls") as worker:
        worker.wait_ready(150)
        patient = f"tlsw-{tag}"
        start = int(time.time() * 1000) - 40_000
        ecg = synthetic_ecg(30)
        chunks = [make_chunk(patient, "dev1", "ecg", 250, start + 1000 * i, i, ecg[250 * i:250 * (i + 1)])
                  for i in range(30)]

        async def publish() -> None:
            async with GatewayPublisher(bootstrap, security=tls_kafka.security, enable_idempotence=False) as pub:
                await pub.publish_many(chunks)

        asyncio.run(publish())
        findings: list[VitalsFinding] = []
        deadline = time.monotonic() + 90
        while len(findings) < 5 and time.monotonic() < deadline:
            records = asyncio.run(fetch_offsets(bootstrap, FINDINGS_TOPIC, partition_of(patient), range(0, 1000),
                                                timeout_s=1, security=tls_kafka.security))
            findings = [f for f in (VitalsFinding.from_json(r.value) for r in records) if f.patient_id == patient]
            time.sleep(1)
        assert len(findings) >= 5, worker.log_tail()
        assert all(f.ecg is not None and f.ecg.hr_bpm is not None and 60 <= f.ecg.hr_bpm <= 85 for f in findings)
        stats = worker.stats() or {}
        assert stats.get("chunks_in", 0) >= 30 and not stats.get("dead_letters"), stats
    # The worker's consumer, producer and side clients all connected through the terminator.
    assert tls_kafka.terminator.handshakes - before >= 3
