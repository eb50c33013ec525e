"""The dashboard's configuration, from the one settings object (``stream.settings``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from alerting.store import DEFAULT_MAX_SNOOZE_MINUTES
from alerting.ward import DEFAULT_TREND_KEEP_S
from stream.connections import NO_REDIS_AUTH, KafkaSecurity, RedisSecurity
from stream.settings import Settings


@dataclass(frozen=True)
class DashboardConfig:
    redis_url: str
    redis_prefix: str = "vs"
    kafka_bootstrap: str = ""  # empty: acknowledgements reach Redis only (the page says so)
    users_file: str = ""
    session_idle_s: float = 900.0
    session_max_s: float = 12 * 3600.0
    secure_cookies: bool = False
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""
    oidc_role_claim: str = "roles"
    max_snooze_minutes: float = DEFAULT_MAX_SNOOZE_MINUTES
    trend_keep_h: float = DEFAULT_TREND_KEEP_S / 3600.0
    ward_name: str = "Ward"
    # Transport security of the Redis and Kafka clients (stream.connections).
    redis_security: RedisSecurity = NO_REDIS_AUTH
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)

    @classmethod
    def from_settings(cls, s: Settings, *, redis_url: str, kafka_bootstrap: str) -> DashboardConfig:
        return cls(
            redis_url=redis_url, redis_prefix=s.redis_prefix, kafka_bootstrap=kafka_bootstrap,
            users_file=s.dashboard_users, session_idle_s=s.dashboard_session_idle_s,
            session_max_s=s.dashboard_session_max_s, secure_cookies=s.dashboard_secure_cookies,
            oidc_issuer=s.oidc_issuer, oidc_audience=s.oidc_audience, oidc_jwks_url=s.oidc_jwks_url,
            oidc_role_claim=s.oidc_role_claim, trend_keep_h=s.trend_keep_s / 3600.0,
            redis_security=RedisSecurity.from_settings(s),
            kafka_security=KafkaSecurity.from_settings(s),
        )

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer)
