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
        if not self.redis_prefix or ":" in self.redis_prefix:
            raise ValueError("VITALSTREAM_REDIS_PREFIX must be non-empty and contain no ':'")
