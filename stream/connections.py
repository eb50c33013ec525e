"""How every client reaches Kafka and Redis: TLS, SASL and Redis ACL users, in one place.

Each Kafka client in the project (the Faust worker, the gateway's producer, topic
administration, replay and validation consumers, the care-team tool's producer) takes
its connection options from :meth:`KafkaSecurity.client_kwargs` (aiokafka) or
:meth:`KafkaSecurity.faust_credentials` (Faust), both built from the one
:class:`~stream.settings.Settings`; every Redis client comes from :func:`redis_client`.
tests/stream/test_connections.py checks that no module builds a client any other way.

docs/security.md lists the settings and the compose file's SASL_SSL set-up.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import faust
    import redis

    from stream.settings import Settings


@dataclass(frozen=True)
class KafkaSecurity:
    """Transport security of a Kafka client (validated by :meth:`Settings.check`).

    ``protocol`` is Kafka's ``security.protocol``: PLAINTEXT, SSL (TLS, optionally with a
    client certificate), SASL_PLAINTEXT or SASL_SSL (a SASL user over plain TCP or TLS).
    SASL mechanisms: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512."""

    protocol: str = "PLAINTEXT"
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    key_password: str = field(default="", repr=False)
    check_hostname: bool = True
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        return cls(
            protocol=settings.kafka_security_protocol,
            ca_file=settings.kafka_ssl_ca_location,
            cert_file=settings.kafka_ssl_certificate_location,
            key_file=settings.kafka_ssl_key_location,
            key_password=settings.kafka_ssl_key_password,
            check_hostname=settings.kafka_ssl_endpoint_identification_algorithm != "none",
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=settings.kafka_sasl_password,
        )

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context: the broker's chain verified against ``ca_file`` (or the
        system's CAs), its host name checked unless switched off, TLS 1.2 at least, and
        the client certificate loaded for mutual TLS. Files that cannot be read raise
        here, at start, rather than at the first connection."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = self.check_hostname
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file, password=self.key_password or None)
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and
        ``AIOKafkaAdminClient`` (aiokafka uses the ``sasl_plain_*`` names for SCRAM too)."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        context = self.ssl_context()
        if context is not None:
            kwargs["ssl_context"] = context
        if self.uses_sasl:
            kwargs.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        return kwargs

    def faust_credentials(self) -> faust.auth.Credentials | None:
        """Faust's ``broker_credentials`` for the same connection (its consumer, producer
        and topic creation all use them); None for PLAINTEXT."""
        import faust

        if self.uses_sasl:
            return faust.SASLCredentials(username=self.sasl_username, password=self.sasl_password,
                                         mechanism=self.sasl_mechanism, ssl_context=self.ssl_context())
        if self.uses_tls:
            return faust.SSLCredentials(self.ssl_context())
        return None


PLAINTEXT = KafkaSecurity()


@dataclass(frozen=True)
class RedisSecurity:
    """A Redis ACL user and the TLS files for a ``rediss://`` URL. The user and password
    may be in the URL instead (``rediss://user:password@host:6380/0``); these settings
    keep the password out of it."""

    username: str = ""
    password: str = field(default="", repr=False)
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisSecurity:
        return cls(settings.redis_username, settings.redis_password, settings.redis_tls_ca_cert_file,
                   settings.redis_tls_cert_file, settings.redis_tls_key_file)

    def client_kwargs(self, url: str) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis.from_url(url, ...)``."""
        kwargs: dict[str, Any] = {}
        if self.username:
            kwargs["username"] = self.username
        if self.password:
            kwargs["password"] = self.password
        if url.startswith("rediss://"):
            # Verify the server's chain and name (redis-py's defaults vary by version).
            kwargs.update(ssl_cert_reqs="required", ssl_check_hostname=True,
                          ssl_min_version=ssl.TLSVersion.TLSv1_2)
            if self.ca_file:
                kwargs["ssl_ca_certs"] = self.ca_file
            if self.cert_file:
                kwargs.update(ssl_certfile=self.cert_file, ssl_keyfile=self.key_file)
        elif self.ca_file or self.cert_file:
            raise ValueError("Redis TLS files are configured but the URL is not rediss:// (TLS)")
        return kwargs


NO_REDIS_AUTH = RedisSecurity()


def redis_client(url: str, security: RedisSecurity = NO_REDIS_AUTH, **kwargs: Any) -> redis.Redis:
    """The one way the project opens Redis: ``url`` plus the ACL user and TLS options."""
    import redis

    return redis.Redis.from_url(url, **security.client_kwargs(url), **kwargs)


def async_redis_client(url: str, security: RedisSecurity = NO_REDIS_AUTH, **kwargs: Any) -> Any:
    """The asyncio twin of :func:`redis_client` (the dashboard's live feed)."""
    from redis import asyncio as aioredis

    return aioredis.Redis.from_url(url, **security.client_kwargs(url), **kwargs)


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))
