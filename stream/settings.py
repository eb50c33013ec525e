"""One typed settings object, read from environment variables.

Standard names where they exist (``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL``), everything
else ``VITALSTREAM_``-prefixed. Functions receive what they need as arguments; only the
CLI and the Faust app call :meth:`Settings.from_env`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    # silent); 0 disables them (validation replays score clinical alerts only).
    tick_interval_s: float = 5.0
    # Optional JSON file with an alerting.catalogue.AlertConfig (thresholds, per-patient overrides).
    alert_config: str = ""
    worker_web_port: int = 6066
    state_dir: str = str(REPO_ROOT / ".vitalstream")
    data_dir: str = str(REPO_ROOT.parent / "shared" / "data")
    log_level: str = "info"
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
        standard = {"kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS", "redis_url": "REDIS_URL"}
        for f in fields(cls):
            name = standard.get(f.name, f"VITALSTREAM_{f.name.upper()}")
            if name not in env:
                continue
            raw = env[name]
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
                raise ValueError(f"{name}={raw!r} is not a valid {f.type}") from None
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
