"""What the worker writes for the care team's dashboard besides the alerts themselves.

* **Evidence strips** (:mod:`stream.evidence`): the vitals agent hands every valid chunk and
  every analysed window's beats (with their classes) to an :class:`~stream.evidence.EvidenceRecorder`; when the
  aggregator raises a high-priority alert or decides a bedside alarm, the 10 s it was decided
  on is cut from it and stored in Redis (``alerting.evidence_store``). Both agents run in this
  process on co-partitioned data (a patient's vitals and findings partitions are assigned
  together), so the recorder is plain memory shared by the two loops, no topic in between.
* **Latest vitals and trends** (:mod:`alerting.ward`): the aggregator hands every finding
  over; a timer writes the newest snapshot of each patient that changed, and its running
  trend point, to Redis in one round trip per ``VITALSTREAM_VITALS_FLUSH_S``.

The agents call four functions (``record_chunk``, ``record_beats`` through the model
runtime's ``beat_observer``, ``observe_finding``, ``capture_evidence``); none raises into
their loops: the dashboard's feed must never cost a finding or an alert. Failures are
counted on ``/stats/`` and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np
import redis

from alerting.catalogue import HIGH_PRIORITY_TYPES, Priority
from alerting.episode import AlertEmission, EmissionEvent
from alerting.evidence_store import RedisEvidenceStore
from alerting.verification import DeviceAlarmDecision
from alerting.ward import TrendPoint, TrendSampler, VitalsSnapshot
from alerting.ward_store import RedisWardStore
from stream.app import app, settings
from stream.connections import RedisSecurity, redis_client
from stream.evidence import EvidenceRecorder, EvidenceStrip
from stream.findings import VitalsFinding
from stream.schema import SampleChunk
from stream.stats import worker_stats

log = logging.getLogger(__name__)

recorder = EvidenceRecorder(settings.strip_buffer_s)
_client = redis_client(settings.redis_url, RedisSecurity.from_settings(settings))
evidence_store = RedisEvidenceStore(_client, settings.redis_prefix, ttl_s=settings.strip_ttl_s)
ward_store = RedisWardStore(_client, settings.redis_prefix, trend_keep_s=settings.trend_keep_s)
sampler = TrendSampler(settings.trend_point_s)

# Written by the next flush: the newest snapshot per patient, and every trend point touched
# since the last flush (a backlog can complete several of a patient's points in one second).
_pending: dict[str, VitalsSnapshot] = {}
_points: dict[tuple[str, int], TrendPoint] = {}
# Wall-clock seconds after which a patient's trend sampler is dropped (no finding since).
SAMPLER_IDLE_S = 1800.0
_last_finding: dict[str, float] = {}


# ----------------------------------------------------------------- vitals agent side

def record_chunk(chunk: SampleChunk) -> None:
    try:
        recorder.record_chunk(chunk)
    except Exception:
        worker_stats.care_feed_errors += 1
        log.exception("evidence recorder failed on a chunk; strips of this patient may be missing")


def record_beats(patient_id: str, times_ms: np.ndarray, classes: list[str | None]) -> None:
    """The beats of one analysed window and their classes (``ModelRuntime.beat_observer``:
    called inside the batched model pass, before the beat memory is pruned)."""
    try:
        recorder.record_beats(patient_id, np.asarray(times_ms, dtype=np.float64).tolist(), classes)
    except Exception:
        worker_stats.care_feed_errors += 1
        log.exception("evidence recorder failed on the beats of a window")


# ------------------------------------------------------------------- aggregator side

def observe_finding(finding: VitalsFinding) -> None:
    try:
        snap = VitalsSnapshot.from_finding(finding)
        before = _pending.get(snap.patient_id)
        if before is None or snap.t_ms >= before.t_ms:
            _pending[snap.patient_id] = snap
        point = sampler.observe(snap)
        if point is not None:
            _points[(snap.patient_id, point.t_ms)] = point
        _last_finding[snap.patient_id] = asyncio.get_running_loop().time()
    except Exception:
        worker_stats.care_feed_errors += 1
        log.exception("could not take the ward snapshot of a finding")


def wants_strip(emission: object) -> bool:
    """Every bedside-alarm decision, and every raised alert of a high-priority type (also
    one the corroboration rule downgraded: its strip shows why)."""
    if isinstance(emission, DeviceAlarmDecision):
        return True
    return (isinstance(emission, AlertEmission) and emission.event == EmissionEvent.RAISED
            and (emission.priority == Priority.HIGH or emission.type in HIGH_PRIORITY_TYPES))


def cut_strips(emissions: Sequence[object]) -> tuple[list[EvidenceStrip], int]:
    """(strips, how many wanted one but the samples were no longer there)."""
    strips: list[EvidenceStrip] = []
    unavailable = 0
    for e in emissions:
        if not wants_strip(e):
            continue
        strip: EvidenceStrip | None
        if isinstance(e, DeviceAlarmDecision):
            reason = e.reason + (f"; {e.note}" if e.note else "")
            # The 10 s before the alarm: what the verification judged (VERIFY_LOOKBACK_S).
            strip = recorder.strip(e.alarm.patient_id, e.alarm.t_ms, kind="device-alarm", ref_id=e.alarm.alarm_id,
                                   title=e.alarm.label or e.alarm.alarm_type, verdict=e.verdict.value, reason=reason)
        else:
            assert isinstance(e, AlertEmission)
            # The window whose finding raised it ends at raised_ms.
            strip = recorder.strip(e.patient_id, e.raised_ms, kind="alert", ref_id=e.alert_id, title=e.type,
                                   reason=e.message)
        if strip is None:
            unavailable += 1
        else:
            strips.append(strip)
    return strips, unavailable


def _put_all(strips: list[EvidenceStrip]) -> int:
    return sum(1 for s in strips if evidence_store.put(s))


async def capture_evidence(emissions: Sequence[object]) -> None:
    """After the emissions were written: store the strips they call for."""
    try:
        strips, unavailable = cut_strips(emissions)
        worker_stats.strips_unavailable += unavailable
        if strips:
            worker_stats.strips_written += await asyncio.to_thread(_put_all, strips)
    except Exception:
        worker_stats.care_feed_errors += 1
        log.exception("could not store the evidence strips of %d emissions", len(emissions))


@app.timer(interval=settings.vitals_flush_s)
async def flush_ward_vitals() -> None:
    if not _pending and not _points:
        return
    snaps = list(_pending.values())
    points = [(pid, point) for (pid, _), point in _points.items()]
    _pending.clear()
    _points.clear()
    try:
        await asyncio.to_thread(ward_store.write, snaps, points)
        worker_stats.vitals_snapshots_written += len(snaps)
    except redis.RedisError as exc:
        # Kept for the next flush unless a newer one arrived meanwhile.
        for snap in snaps:
            _pending.setdefault(snap.patient_id, snap)
        for pid, point in points:
            _points.setdefault((pid, point.t_ms), point)
        worker_stats.care_feed_errors += 1
        log.warning("could not write the ward's vitals to Redis (%s); retrying", exc)


@app.timer(interval=60.0)
async def forget_idle_patients() -> None:
    """Bounded memory: patients without data leave the recorder and the trend sampler."""
    recorder.forget_idle(settings.strip_buffer_s + 120.0)
    cutoff = asyncio.get_running_loop().time() - SAMPLER_IDLE_S
    for pid in [p for p, t in _last_finding.items() if t <= cutoff]:
        del _last_finding[pid]
        sampler.forget(pid)
    worker_stats.evidence_patients = len(recorder.patients)
    worker_stats.evidence_bytes = recorder.memory_bytes()
