"""Kafka TLS / SASL and Redis ACL / TLS client configuration (stream/connections.py), the
settings behind it, and a check that every client in the code base is built through it.

The broker available here (Tansu 0.6.0) cannot run SASL with users or TLS (see
docs/security.md); tests/stream/test_kafka_tls.py runs real clients through TLS anyway,
with a TLS terminator in front of it.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from stream.connections import KafkaSecurity, RedisSecurity, redact_url
from stream.settings import REPO_ROOT, Settings
from tests.tls_pki import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def sasl_ssl_env(pki: Pki, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9093,kafka-2:9093",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SSL_CA_LOCATION": str(pki.ca_cert),
        "KAFKA_SSL_CERTIFICATE_LOCATION": str(pki.client_cert),
        "KAFKA_SSL_KEY_LOCATION": str(pki.client_key),
        "KAFKA_SASL_MECHANISM": mechanism,
        "KAFKA_SASL_USERNAME": "vitalstream",
        "KAFKA_SASL_PASSWORD": "s3cret-pw",
    }


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    security = KafkaSecurity.from_settings(Settings.from_env({}))
    assert security.client_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert security.faust_credentials() is None
    assert security.ssl_context() is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_settings_become_aiokafka_options(pki: Pki, mechanism: str) -> None:
    security = KafkaSecurity.from_settings(Settings.from_env(sasl_ssl_env(pki, mechanism)))
    kwargs = security.client_kwargs()
    context = kwargs.pop("ssl_context")
    assert kwargs == {"security_protocol": "SASL_SSL", "sasl_mechanism": mechanism,
                      "sasl_plain_username": "vitalstream", "sasl_plain_password": "s3cret-pw"}
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    # Only our CA is trusted (not the system's), so a broker certificate from elsewhere fails.
    assert [dict(x[0] for x in ca["subject"])["commonName"] for ca in context.get_ca_certs()] == [
        "vitalstream test CA"]


def test_the_password_never_shows_in_repr(pki: Pki) -> None:
    env = {**sasl_ssl_env(pki), "REDIS_URL": "rediss://r:6380/0", "REDIS_USERNAME": "app",
           "REDIS_PASSWORD": "redis-pw-123", "VITALSTREAM_PSEUDONYM_KEY": "k" * 40}
    settings = Settings.from_env(env)
    shown = repr(settings) + repr(KafkaSecurity.from_settings(settings)) + repr(RedisSecurity.from_settings(settings))
    for secret in ("s3cret-pw", "redis-pw-123", "k" * 40):
        assert secret not in shown


def test_secrets_can_come_from_files(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "kafka-pw").write_text("from-a-file\n")
    (tmp_path / "key").write_text("p" * 64 + "\n")
    env = {k: v for k, v in sasl_ssl_env(pki).items() if k != "KAFKA_SASL_PASSWORD"}
    env.update(KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "kafka-pw"),
               VITALSTREAM_PSEUDONYM_KEY_FILE=str(tmp_path / "key"))
    settings = Settings.from_env(env)
    assert settings.kafka_sasl_password == "from-a-file"  # one trailing newline dropped
    assert settings.pseudonym_key == "p" * 64
    with pytest.raises(ValueError, match=r"KAFKA_SASL_PASSWORD_FILE=.* cannot be read"):
        Settings.from_env({**env, "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "missing")})


def test_tls_only_with_client_certificate(pki: Pki) -> None:
    security = KafkaSecurity.from_settings(Settings.from_env({
        "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_LOCATION": str(pki.ca_cert),
        "KAFKA_SSL_CERTIFICATE_LOCATION": str(pki.client_cert), "KAFKA_SSL_KEY_LOCATION": str(pki.client_key),
        "KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM": "none"}))
    kwargs = security.client_kwargs()
    assert kwargs["security_protocol"] == "SSL" and "sasl_mechanism" not in kwargs
    assert kwargs["ssl_context"].check_hostname is False  # chain still verified
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_a_key_that_does_not_match_the_certificate_fails_at_start(pki: Pki) -> None:
    security = KafkaSecurity("SSL", str(pki.ca_cert), str(pki.client_cert), str(pki.server_key))
    with pytest.raises(ssl.SSLError):
        security.client_kwargs()


def test_aiokafka_accepts_the_options_for_every_client_kind(pki: Pki) -> None:
    """The real client classes validate their security options when constructed."""
    for protocol, extra in [("SSL", {}), ("SASL_SSL", {"KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                                                       "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}),
                            ("SASL_PLAINTEXT", {"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                                                "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"})]:
        env = {"KAFKA_SECURITY_PROTOCOL": protocol, **extra}
        if protocol.endswith("SSL"):
            env["KAFKA_SSL_CA_LOCATION"] = str(pki.ca_cert)
        kwargs = KafkaSecurity.from_settings(Settings.from_env(env)).client_kwargs()

        async def build(kw: dict[str, object] = kwargs) -> list[str]:
            producer = AIOKafkaProducer(bootstrap_servers="k:9093", **kw)
            consumer = AIOKafkaConsumer(bootstrap_servers="k:9093", **kw)
            admin = AIOKafkaAdminClient(bootstrap_servers="k:9093", **kw)
            seen = [producer.client._security_protocol, consumer._client._security_protocol,
                    admin._client._security_protocol]
            await producer.stop()
            await consumer.stop()
            await admin.close()
            return seen

        assert asyncio.run(build()) == [protocol] * 3


def test_faust_gets_the_same_connection_options(pki: Pki) -> None:
    """What Faust's own clients (consumer, producer, topic creation) will be given."""
    for env in (sasl_ssl_env(pki), {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_LOCATION": str(pki.ca_cert)},
                {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                 "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}):
        security = KafkaSecurity.from_settings(Settings.from_env(env))
        ours = security.client_kwargs()
        faust_kwargs = {k: v for k, v in credentials_to_aiokafka_auth(security.faust_credentials()).items()
                        if v is not None}
        assert {k: v for k, v in faust_kwargs.items() if k != "ssl_context"} == {
            k: v for k, v in ours.items() if k != "ssl_context"}
        assert ("ssl_context" in faust_kwargs) == ("ssl_context" in ours)


def test_the_worker_app_is_built_with_the_security_settings_and_a_loopback_web_server(pki: Pki) -> None:
    """stream.app reads the settings at import: checked in a fresh interpreter."""
    probe = ("import json; from stream.app import app; c = app.conf; "
             "print(json.dumps({'brokers': [str(u) for u in c.broker], 'creds': type(c.broker_credentials).__name__, "
             "'mech': c.broker_credentials.mechanism.value, 'user': c.broker_credentials.username, "
             "'tls': c.broker_credentials.ssl_context is not None, 'bind': c.web_bind, 'port': c.web_port}))")
    env = {**os.environ, **sasl_ssl_env(pki), "VITALSTREAM_WORKER_WEB_PORT": "16123"}
    env.pop("VITALSTREAM_WORKER_WEB_HOST", None)
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120,
                         cwd=REPO_ROOT, check=True)
    conf = json.loads(out.stdout.strip().splitlines()[-1])
    assert conf == {"brokers": ["kafka://kafka-1:9093", "kafka://kafka-2:9093"], "creds": "SASLCredentials",
                    "mech": "SCRAM-SHA-512", "user": "vitalstream", "tls": True, "bind": "127.0.0.1",
                    "port": 16123}
    opened = subprocess.run([sys.executable, "-c", "from stream.app import app; print(app.conf.web_bind)"],
                            env={**env, "VITALSTREAM_WORKER_WEB_HOST": "0.0.0.0"}, capture_output=True, text=True,
                            timeout=120, cwd=REPO_ROOT, check=True)
    assert opened.stdout.strip().splitlines()[-1] == "0.0.0.0"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "use one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"},
         "KAFKA_SASL_MECHANISM=''"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"}, "needs one of PLAIN"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN"}, "needs KAFKA_SASL_USERNAME"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u",
          "KAFKA_SASL_PASSWORD": "p"}, "sends the password in clear"),
        ({"KAFKA_SASL_USERNAME": "u"}, "does not use SASL"),
        ({"KAFKA_SSL_CA_LOCATION": "/ca.pem"}, "does not use TLS"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTIFICATE_LOCATION": "/c.pem"}, "go together"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM": "off"}, "'https' or 'none'"),
        ({"REDIS_URL": "redis://r:6379/0", "REDIS_TLS_CA_CERT_FILE": "/ca.pem"}, "not a rediss://"),
        ({"REDIS_URL": "rediss://r:6379/0", "REDIS_TLS_CERT_FILE": "/c.pem"}, "go together"),
        ({"REDIS_USERNAME": "app"}, "REDIS_USERNAME needs REDIS_PASSWORD"),
        ({"VITALSTREAM_PSEUDONYM_KEY": "short"}, "at least 32 characters"),
        ({"VITALSTREAM_WORKER_WEB_HOST": " "}, "WORKER_WEB_HOST"),
    ],
)
def test_inconsistent_security_settings_are_explained(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_redis_options_for_tls_and_an_acl_user(pki: Pki) -> None:
    security = RedisSecurity("app", "pw", str(pki.ca_cert), str(pki.client_cert), str(pki.client_key))
    kwargs = security.client_kwargs("rediss://redis:6380/0")
    assert kwargs == {"username": "app", "password": "pw", "ssl_cert_reqs": "required", "ssl_check_hostname": True,
                      "ssl_min_version": ssl.TLSVersion.TLSv1_2, "ssl_ca_certs": str(pki.ca_cert),
                      "ssl_certfile": str(pki.client_cert), "ssl_keyfile": str(pki.client_key)}
    assert RedisSecurity("app", "pw").client_kwargs("redis://r:6379/0") == {"username": "app", "password": "pw"}
    with pytest.raises(ValueError, match="not rediss://"):
        security.client_kwargs("redis://redis:6379/0")


def test_urls_are_shown_without_their_password() -> None:
    assert redact_url("rediss://app:s3cret@redis:6380/0") == "rediss://app:***@redis:6380/0"
    assert redact_url("redis://:s3cret@redis/1") == "redis://:***@redis/1"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


# ------------------------------------------------------------------ every client, one way

KAFKA_CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient"}
SOURCES = [*sorted((REPO_ROOT / "stream").rglob("*.py")), *sorted((REPO_ROOT / "alerting").rglob("*.py")),
           *sorted((REPO_ROOT / "models").rglob("*.py")), *sorted((REPO_ROOT / "bench").rglob("*.py")),
           REPO_ROOT / "tests" / "e2e" / "kafka_io.py"]
# The embedded broker's readiness probe talks to the plain broker this process just started;
# the fault campaign runs on embedded services it starts itself (plain TCP).
EMBEDDED_ONLY = {("stream/services.py", "wait_kafka_ready"), ("stream/faults/campaign.py", "_read_async")}


def _calls(path: Path) -> list[tuple[str, ast.Call, tuple[str, ...]]]:
    """(called name, call, enclosing function names outermost first) for every call."""
    found: list[tuple[str, ast.Call, tuple[str, ...]]] = []

    def visit(node: ast.AST, scope: tuple[str, ...]) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            scope = (*scope, node.name)
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            found.append((name, node, scope))
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(ast.parse(path.read_text()), ())
    return found


def test_every_kafka_client_takes_the_security_options() -> None:
    missing = []
    for path in SOURCES:
        rel = str(path.relative_to(REPO_ROOT))
        for name, call, func in _calls(path):
            if name not in KAFKA_CLIENTS or any((rel, f) in EMBEDDED_ONLY for f in func):
                continue
            spread = [kw.value for kw in call.keywords if kw.arg is None]
            if not any(isinstance(v, ast.Call) and getattr(v.func, "attr", "") == "client_kwargs" for v in spread):
                missing.append(f"{rel}:{call.lineno} {name}")
    assert not missing, f"Kafka clients built without KafkaSecurity.client_kwargs(): {missing}"


def test_every_redis_client_comes_from_redis_client() -> None:
    direct = []
    for path in SOURCES:
        rel = str(path.relative_to(REPO_ROOT))
        if rel == "stream/connections.py":
            continue
        for _, call, _scope in _calls(path):
            target = ast.unparse(call.func)
            if target in ("redis.Redis", "redis.Redis.from_url", "redis.from_url", "Redis", "StrictRedis"):
                direct.append(f"{rel}:{call.lineno} {target}")
    assert not direct, f"Redis clients built outside stream.connections.redis_client: {direct}"
