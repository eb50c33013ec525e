"""One typed settings object, read from environment variables.

Standard names where they exist (``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL``; the Kafka
security settings are librdkafka's property names, upper case with ``KAFKA_`` in front
and dots as underscores; the Redis ones follow redis.conf's ``tls-*`` directives),
everything else ``VITALSTREAM_``-prefixed. Secrets (passwords, the pseudonym key) can also
come from a file named by ``<NAME>_FILE`` (the Docker/Kubernetes secrets convention), so
they need not sit in the environment. Functions receive what they need as arguments; only
the CLI and the Faust app call :meth:`Settings.from_env`.

docs/security.md describes the security settings, docs/metrics.md the metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# A pseudonym key shorter than this is guessable; `openssl rand -hex 32` gives 64 characters.
PSEUDONYM_KEY_MIN_CHARS = 32

# Fields read from standard (not VITALSTREAM_-prefixed) variables.
STANDARD_NAMES = {
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "kafka_security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "kafka_ssl_ca_location": "KAFKA_SSL_CA_LOCATION",
    "kafka_ssl_certificate_location": "KAFKA_SSL_CERTIFICATE_LOCATION",
    "kafka_ssl_key_location": "KAFKA_SSL_KEY_LOCATION",
    "kafka_ssl_key_password": "KAFKA_SSL_KEY_PASSWORD",
    "kafka_ssl_endpoint_identification_algorithm": "KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM",
    "kafka_sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "kafka_sasl_username": "KAFKA_SASL_USERNAME",
    "kafka_sasl_password": "KAFKA_SASL_PASSWORD",
    "redis_url": "REDIS_URL",
    "redis_username": "REDIS_USERNAME",
    "redis_password": "REDIS_PASSWORD",
    "redis_tls_ca_cert_file": "REDIS_TLS_CA_CERT_FILE",
    "redis_tls_cert_file": "REDIS_TLS_CERT_FILE",
    "redis_tls_key_file": "REDIS_TLS_KEY_FILE",
}
# Secrets: kept out of repr() (and so out of logs and tracebacks), and readable from a file
# named by <NAME>_FILE.
SECRET_FIELDS = frozenset({"kafka_ssl_key_password", "kafka_sasl_password", "redis_password", "pseudonym_key"})


def env_name(field_name: str) -> str:
    """The environment variable a Settings field is read from."""
    return STANDARD_NAMES.get(field_name, f"VITALSTREAM_{field_name.upper()}")


@dataclass(frozen=True)
class Settings:
    # Empty means "start the embedded broker / Redis" (see stream.services).
    kafka_bootstrap_servers: str = ""
    redis_url: str = ""
    # Redis key prefix; validation runs use a fresh one and delete it afterwards.
    redis_prefix: str = "vs"
    app_id: str = "vitalstream"
    # Partitions of the vitals topics, the findings topic and the aggregator's table
    # changelog: co-partitioned so one worker sees all of a patient's signals. It caps the
    # number of workers that can share the load.
    partitions: int = 8
    replication_factor: int = 1
    window_s: float = 10.0
    hop_s: float = 2.0
    # Faust's defaults replace a crashed member only after ~85 s; 10 s session timeout
    # gives ~25 s on Tansu while still tolerating GC pauses.
    broker_session_timeout_s: float = 10.0
    # Largest batch of messages a worker processes (and batches into one model call) per poll.
    batch_max: int = 512
    batch_within_s: float = 0.25
    # Threads of torch's intra-op pool in a worker. One: a worker is one Python thread, the
    # models' batches are small, and a second OpenMP thread spinning on a core the broker,
    # Redis or another worker needs made the rhythm CNN 15x slower per window on the 2-core
    # test machine (outputs identical; docs/capacity.md). Scale with workers, not threads.
    torch_threads: int = 1
    # Wall-clock seconds without a chunk after which a patient's last window is closed
    # with the data there is (no look-ahead); 0 disables it.
    flush_idle_s: float = 3.0
    # Wall-clock seconds without a chunk after which a worker forgets a patient (its device
    # left: discharge, transfer), after saving its trend state; 0 keeps every patient.
    forget_idle_s: float = 1800.0
    # Event-time seconds of one signal a patient's monitor holds back while another of its
    # signal topics is read less far (a worker catching up on a backlog reads each topic at
    # its own pace); beyond it the lagging signal counts as a gap. Memory: about 2 KB per
    # held second of a 250 Hz signal.
    align_hold_s: float = 300.0
    # Wall-clock period of the aggregator's ticks (escalation, snooze expiry, device
    # silent); 0 disables them. Validation replays leave them on: the scorers ignore the
    # technical alerts they raise when a record ends.
    tick_interval_s: float = 5.0
    # Optional JSON file with an alerting.catalogue.AlertConfig (thresholds, per-patient overrides).
    alert_config: str = ""
    # The worker's web server (/stats/, /metrics): loopback unless an operator opens it
    # (e.g. 0.0.0.0 in a container, for Prometheus to scrape). It shows patient counts and
    # partitions, never patient ids, but has no authentication.
    worker_web_port: int = 6066
    worker_web_host: str = "127.0.0.1"
    state_dir: str = str(REPO_ROOT / ".vitalstream")
    data_dir: str = str(REPO_ROOT.parent / "shared" / "data")
    log_level: str = "info"
    # Kafka transport security, for every client (worker, gateway, admin, replay, tools);
    # see stream.connections.KafkaSecurity. PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_ssl_ca_location: str = ""  # PEM CA bundle; empty = the system's trusted CAs
    kafka_ssl_certificate_location: str = ""  # client certificate (PEM) for mutual TLS
    kafka_ssl_key_location: str = ""  # its private key (PEM)
    kafka_ssl_key_password: str = field(default="", repr=False)
    # "https" checks that the broker's certificate names the host connected to; "none"
    # skips that (the chain is still verified), for brokers reached by an unlisted name.
    kafka_ssl_endpoint_identification_algorithm: str = "https"
    kafka_sasl_mechanism: str = ""  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    # Redis ACL user and TLS (a rediss:// URL); see stream.connections.RedisSecurity.
    redis_username: str = ""
    redis_password: str = field(default="", repr=False)
    redis_tls_ca_cert_file: str = ""  # empty = the system's trusted CAs
    redis_tls_cert_file: str = ""  # client certificate, when Redis requires one (tls-auth-clients)
    redis_tls_key_file: str = ""
    # Secret key of the gateway's patient-id pseudonyms (HMAC-SHA256, stream.pseudonym);
    # empty = patient ids travel as the devices send them.
    pseudonym_key: str = field(default="", repr=False)
    # Evidence strips (stream.evidence): seconds of each signal the worker keeps per patient
    # at display rate to cut strips from, and how long a stored strip lives in Redis.
    strip_buffer_s: float = 60.0
    strip_ttl_s: int = 7 * 24 * 3600
    # The ward board's feed (stream.agents.care_feed): how often the worker writes the
    # patients' latest vitals to Redis, the length of one trend point and how much trend
    # history is kept (event time).
    vitals_flush_s: float = 1.0
    trend_point_s: float = 60.0
    trend_keep_s: float = 12 * 3600.0
    # The dashboard (`vitalstream dashboard`, dashboard/README.md).
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8080
    dashboard_users: str = ""  # TOML users file (`vitalstream dashboard hash-password`)
    dashboard_session_idle_s: float = 900.0  # a session ends after this long unused...
    dashboard_session_max_s: float = 12 * 3600.0  # ...and this long after login in any case
    dashboard_secure_cookies: bool = False  # set when served over HTTPS (behind a proxy)
    # OIDC/OAuth2 bearer tokens (optional): issuer, audience, JWKS URL, and the claim that
    # carries the role (viewer / nurse / admin, or a list of them).
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""
    oidc_role_claim: str = "roles"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        for f in fields(cls):
            name = env_name(f.name)
            raw = _read_value(env, name, secret=f.name in SECRET_FIELDS)
            if raw is None:
                continue
            try:
                if f.type in ("int", int):
                    values[f.name] = int(raw)
                elif f.type in ("float", float):
                    values[f.name] = float(raw)
                elif f.type in ("bool", bool):
                    if raw.strip().lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off", ""):
                        raise ValueError(raw)
                    values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
                else:
                    values[f.name] = raw
            except ValueError:
                raise ValueError(f"{name}={'***' if f.name in SECRET_FIELDS else repr(raw)} "
                                 f"is not a valid {f.type}") from None
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        if self.partitions < 1:
            raise ValueError("VITALSTREAM_PARTITIONS must be >= 1")
        if not 0 < self.hop_s <= self.window_s:
            raise ValueError("need 0 < VITALSTREAM_HOP_S <= VITALSTREAM_WINDOW_S")
        if self.flush_idle_s < 0:
            raise ValueError("VITALSTREAM_FLUSH_IDLE_S must be >= 0")
        if self.forget_idle_s < 0:
            raise ValueError("VITALSTREAM_FORGET_IDLE_S must be >= 0")
        if self.align_hold_s < 0:
            raise ValueError("VITALSTREAM_ALIGN_HOLD_S must be >= 0")
        if self.strip_buffer_s < 10.0:
            raise ValueError("VITALSTREAM_STRIP_BUFFER_S must be >= 10 (one strip)")
        if self.strip_ttl_s <= 0:
            raise ValueError("VITALSTREAM_STRIP_TTL_S must be > 0")
        if self.vitals_flush_s <= 0 or self.trend_point_s <= 0 or self.trend_keep_s <= 0:
            raise ValueError("VITALSTREAM_VITALS_FLUSH_S, _TREND_POINT_S and _TREND_KEEP_S must be > 0")
        if self.dashboard_session_idle_s <= 0 or self.dashboard_session_max_s <= 0:
            raise ValueError("VITALSTREAM_DASHBOARD_SESSION_IDLE_S and _MAX_S must be > 0")
        if not 0 < self.dashboard_port < 65536:
            raise ValueError("VITALSTREAM_DASHBOARD_PORT must be a TCP port")
        if not self.redis_prefix or ":" in self.redis_prefix:
            raise ValueError("VITALSTREAM_REDIS_PREFIX must be non-empty and contain no ':'")
        if not 0 <= self.worker_web_port <= 65535:
            raise ValueError("VITALSTREAM_WORKER_WEB_PORT must be a TCP port (0-65535)")
        if not self.worker_web_host.strip():
            raise ValueError("VITALSTREAM_WORKER_WEB_HOST must name an address to bind (e.g. 127.0.0.1)")
        if self.pseudonym_key and len(self.pseudonym_key) < PSEUDONYM_KEY_MIN_CHARS:
            raise ValueError(f"VITALSTREAM_PSEUDONYM_KEY must have at least {PSEUDONYM_KEY_MIN_CHARS} "
                             "characters (e.g. `openssl rand -hex 32`)")
        self._check_kafka_security()
        self._check_redis_security()

    def _check_kafka_security(self) -> None:
        protocol = self.kafka_security_protocol
        if protocol not in KAFKA_SECURITY_PROTOCOLS:
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL={protocol!r}: use one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}")
        sasl = protocol.startswith("SASL_")
        tls = protocol.endswith("SSL")
        if sasl:
            if self.kafka_sasl_mechanism not in KAFKA_SASL_MECHANISMS:
                raise ValueError(f"KAFKA_SASL_MECHANISM={self.kafka_sasl_mechanism!r}: {protocol} needs one of "
                                 f"{', '.join(KAFKA_SASL_MECHANISMS)}")
            if not self.kafka_sasl_username or not self.kafka_sasl_password:
                raise ValueError(f"{protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD "
                                 "(or KAFKA_SASL_PASSWORD_FILE)")
            if protocol == "SASL_PLAINTEXT" and self.kafka_sasl_mechanism == "PLAIN":
                # PLAIN sends the password itself; without TLS anyone on the path reads it.
                raise ValueError("SASL mechanism PLAIN over SASL_PLAINTEXT sends the password in clear: "
                                 "use KAFKA_SECURITY_PROTOCOL=SASL_SSL (or a SCRAM mechanism)")
        elif self.kafka_sasl_mechanism or self.kafka_sasl_username or self.kafka_sasl_password:
            raise ValueError(f"KAFKA_SASL_* is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL "
                             "(use SASL_SSL)")
        tls_files = (self.kafka_ssl_ca_location, self.kafka_ssl_certificate_location, self.kafka_ssl_key_location)
        if not tls and any(tls_files):
            raise ValueError(f"KAFKA_SSL_* files are set but KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS "
                             "(use SSL or SASL_SSL)")
        if bool(self.kafka_ssl_certificate_location) != bool(self.kafka_ssl_key_location):
            raise ValueError("KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION go together (mutual TLS)")
        if self.kafka_ssl_endpoint_identification_algorithm not in ("https", "none", ""):
            raise ValueError("KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM must be 'https' or 'none'")

    def _check_redis_security(self) -> None:
        tls_files = (self.redis_tls_ca_cert_file, self.redis_tls_cert_file, self.redis_tls_key_file)
        if any(tls_files) and self.redis_url and not self.redis_url.startswith("rediss://"):
            raise ValueError("REDIS_TLS_* files are set but REDIS_URL is not a rediss:// (TLS) URL")
        if bool(self.redis_tls_cert_file) != bool(self.redis_tls_key_file):
            raise ValueError("REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together")
        if self.redis_username and not self.redis_password:
            raise ValueError("REDIS_USERNAME needs REDIS_PASSWORD (or REDIS_PASSWORD_FILE)")


def _read_value(env: dict[str, str], name: str, *, secret: bool) -> str | None:
    """The variable's value; for a secret also from the file ``<NAME>_FILE`` names (one
    trailing newline dropped, as editors and ``echo`` leave one)."""
    if name in env:
        return env[name]
    path = env.get(f"{name}_FILE") if secret else None
    if not path:
        return None
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"{name}_FILE={path!r} cannot be read: {exc.strerror}") from None
    return text[:-1] if text.endswith("\n") else text
