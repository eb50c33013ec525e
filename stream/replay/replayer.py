"""Turn recordings into sample chunks and publish them through the gateway SDK.

Every record becomes one patient (``<prefix><record>``) with one device per record.
Chunks are ~1 s, cut at whole-chunk offsets from the record start, stamped with
``base_ms + round(1000 * first_sample_index / fs)`` so each record's relative timing is
reproduced to the millisecond. All records share one ``base_ms`` per run and are merged
in event-time order, so many patients stream concurrently, as on a ward.

Gaps (NaN runs the loader left, see ``records.fill_short_gaps``) are not sent: the
chunks on either side keep their true timestamps and consecutive sequence numbers, which
is what the pipeline sees when a device drops samples.

Chunks are built with :func:`stream.schema.make_chunk` (the wire contract) rather than
``gateway.DeviceStream`` because a device stream only produces contiguous samples and
the replay must skip gaps without restarting the per-device sequence numbers.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from stream.connections import PLAINTEXT, KafkaSecurity
from stream.device_alarm import DeviceAlarm
from stream.privacy import Pseudonymizer
from stream.replay.records import Recording, nan_runs
from stream.replay.scoring import CHALLENGE2015_ALERT_TYPES
from stream.schema import MIN_TIMESTAMP_MS, SampleChunk, Signal, make_chunk

DEFAULT_CHUNK_S = 1.0
# Windows are cut at multiples of the hop in event time; a base on a whole 10 s keeps
# window ends at the same record-relative seconds (e.g. exactly at the 300 s alarm).
BASE_ALIGN_MS = 10_000
# Chunks handed to the publisher at once when they are already due.
MAX_BATCH = 500


class ChunkPublisher(Protocol):
    async def publish(self, chunk: SampleChunk) -> Any: ...

    async def flush(self) -> Any: ...


def choose_base_ms(recordings: Sequence[Recording], now_ms: int | None = None) -> int:
    """One epoch base for the run: every timestamp lands in the past and after 2000-01-01."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    longest_ms = math.ceil(max((r.duration_s for r in recordings), default=0.0) * 1000)
    base = now - longest_ms - 60_000
    base -= base % BASE_ALIGN_MS
    if base < MIN_TIMESTAMP_MS:
        raise ValueError("recordings too long to replay with valid timestamps")
    return base


def device_id_for(recording: Recording) -> str:
    return f"replay-{recording.name}"[:64]


def record_chunks(
    recording: Recording,
    base_ms: int,
    chunk_s: float = DEFAULT_CHUNK_S,
    end_s: float | None = None,
) -> list[SampleChunk]:
    """All chunks of one record, in time order per signal (signals interleaved by time)."""
    per_signal = [
        list(_signal_chunks(recording, sig, x, fs, base_ms, chunk_s, end_s))
        for sig, (x, fs) in recording.channels.items()
    ]
    return list(heapq.merge(*per_signal, key=lambda c: c.ts_ms))


def _signal_chunks(
    recording: Recording,
    signal: Signal,
    x: np.ndarray,
    fs: float,
    base_ms: int,
    chunk_s: float,
    end_s: float | None,
) -> Iterator[SampleChunk]:
    n_total = len(x) if end_s is None else min(len(x), math.ceil(end_s * fs))
    step = max(1, round(chunk_s * fs))
    seq = 0
    device = device_id_for(recording)
    for start in range(0, n_total, step):
        stop = min(n_total, start + step)
        block = x[start:stop]
        runs = nan_runs(block)
        if not runs:
            pieces = [(start, stop)]
        else:
            # Finite sub-runs between the NaN runs.
            pieces = []
            cursor = 0
            for a, b in runs:
                if a > cursor:
                    pieces.append((start + cursor, start + a))
                cursor = b
            if cursor < len(block):
                pieces.append((start + cursor, stop))
        for a, b in pieces:
            yield make_chunk(
                recording.patient_id,
                device,
                signal,
                fs,
                base_ms + round(1000.0 * a / fs),
                seq,
                x[a:b],
            )
            seq += 1


def record_device_alarms(recording: Recording, base_ms: int, end_s: float | None = None) -> list[DeviceAlarm]:
    """The alarms the record's bedside monitor raised (CinC 2015 ``ALARMS``), as the
    gateway would forward them, on the replay's clock. Their true/false labels stay in the
    annotations: the pipeline is not told."""
    return [
        DeviceAlarm(recording.patient_id, CHALLENGE2015_ALERT_TYPES[a.alarm_type],
                    base_ms + round(1000.0 * a.time_s), device_id_for(recording), a.alarm_type)
        for a in recording.annotations.alarms
        if a.alarm_type in CHALLENGE2015_ALERT_TYPES and (end_s is None or a.time_s <= end_s)
    ]


def merge_records(chunk_lists: Sequence[list[SampleChunk]]) -> list[SampleChunk]:
    """Interleave several records' chunks by event time (stable within a record)."""
    return list(heapq.merge(*chunk_lists, key=lambda c: c.ts_ms))


@dataclass
class ReplayStats:
    records: int = 0
    patients: list[str] = field(default_factory=list)
    chunks_total: int = 0
    chunks_sent: int = 0
    samples_sent: int = 0
    signal_seconds_sent: float = 0.0  # sum over signals and records
    record_seconds: float = 0.0  # sum of record durations replayed
    wall_s: float = 0.0
    interrupted: bool = False
    base_ms: int = 0
    per_signal_chunks: dict[str, int] = field(default_factory=dict)
    first_ts_ms: int | None = None
    last_end_ms: float | None = None

    @property
    def event_seconds_sent(self) -> float:
        """Event time covered by what was sent (all records together)."""
        if self.first_ts_ms is None or self.last_end_ms is None:
            return 0.0
        return (self.last_end_ms - self.first_ts_ms) / 1000.0

    def add(self, chunk: SampleChunk) -> None:
        if self.first_ts_ms is None:
            self.first_ts_ms = chunk.ts_ms
        self.last_end_ms = max(self.last_end_ms or 0.0, chunk.end_ms)
        self.chunks_sent += 1
        self.samples_sent += chunk.n
        self.signal_seconds_sent += chunk.n / chunk.fs
        key = chunk.signal.value
        self.per_signal_chunks[key] = self.per_signal_chunks.get(key, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        wall = max(self.wall_s, 1e-9)
        return {
            "records": self.records,
            "chunks_total": self.chunks_total,
            "chunks_sent": self.chunks_sent,
            "samples_sent": self.samples_sent,
            "signal_seconds_sent": round(self.signal_seconds_sent, 1),
            "record_seconds": round(self.record_seconds, 1),
            "wall_s": round(self.wall_s, 2),
            "chunks_per_s": round(self.chunks_sent / wall, 1),
            "samples_per_s": round(self.samples_sent / wall, 1),
            "event_seconds_sent": round(self.event_seconds_sent, 1),
            # Event time advanced per wall second: 1 = real time.
            "times_real_time": round(self.event_seconds_sent / wall, 2),
            "per_signal_chunks": dict(sorted(self.per_signal_chunks.items())),
            "interrupted": self.interrupted,
            "base_ms": self.base_ms,
        }


async def publish_chunks(
    publisher: ChunkPublisher,
    chunks: Sequence[SampleChunk],
    stats: ReplayStats,
    *,
    speed: float | None = None,
    progress: Callable[[int], None] | None = None,
    throttle: Callable[[int], Awaitable[None]] | None = None,
    throttle_every_s: float = 20.0,
) -> ReplayStats:
    """Publish in event-time order.

    ``speed`` None or 0 = as fast as possible; otherwise event time advances ``speed``
    times faster than wall time. ``throttle`` (awaited with the current event time each
    time event time advances ``throttle_every_s``) lets a caller hold back until the
    pipeline keeps up.
    """
    start_wall = time.monotonic()
    if not chunks:
        return stats
    t0 = chunks[0].ts_ms
    next_throttle = t0 + throttle_every_s * 1000 if throttle is not None else math.inf

    def due(chunk: SampleChunk) -> float:
        return start_wall + (chunk.ts_ms - t0) / 1000.0 / speed if speed else start_wall

    many = getattr(publisher, "publish_many", None)
    n = len(chunks)
    i = 0
    try:
        while i < n:
            delay = due(chunks[i]) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if throttle is not None and chunks[i].ts_ms >= next_throttle:
                await throttle(chunks[i].ts_ms)
                next_throttle = chunks[i].ts_ms + throttle_every_s * 1000
            # Everything already due (and before the next throttle point) goes as one batch.
            now = time.monotonic()
            j = i + 1
            while j < n and j - i < MAX_BATCH and chunks[j].ts_ms < next_throttle and due(chunks[j]) <= now:
                j += 1
            batch = chunks[i:j]
            if many is not None and len(batch) > 1:
                await many(batch)
            else:
                for chunk in batch:
                    await publisher.publish(chunk)
            for chunk in batch:
                stats.add(chunk)
            i = j
            if progress is not None:
                progress(stats.chunks_sent)
        await publisher.flush()
    except asyncio.CancelledError:
        stats.interrupted = True
        raise
    finally:
        stats.wall_s += time.monotonic() - start_wall
    return stats


def prepare_replay(
    recordings: Sequence[Recording],
    *,
    base_ms: int | None = None,
    chunk_s: float = DEFAULT_CHUNK_S,
    end_s: float | Callable[[Recording], float | None] | None = None,
) -> tuple[list[SampleChunk], ReplayStats]:
    """All chunks of all records merged by event time, plus a stats object to fill."""
    base = choose_base_ms(recordings) if base_ms is None else base_ms
    lists = []
    record_seconds = 0.0
    for rec in recordings:
        stop = end_s(rec) if callable(end_s) else end_s
        lists.append(record_chunks(rec, base, chunk_s, stop))
        record_seconds += rec.duration_s if stop is None else min(rec.duration_s, stop)
    chunks = merge_records(lists)
    stats = ReplayStats(
        records=len(recordings),
        patients=[r.patient_id for r in recordings],
        chunks_total=len(chunks),
        record_seconds=record_seconds,
        base_ms=base,
    )
    return chunks, stats


async def replay_to_kafka(
    bootstrap: str,
    chunks: Sequence[SampleChunk],
    stats: ReplayStats,
    *,
    speed: float | None = None,
    progress: Callable[[int], None] | None = None,
    throttle: Callable[[int], Awaitable[None]] | None = None,
    throttle_every_s: float = 20.0,
    security: KafkaSecurity = PLAINTEXT,
    pseudonymizer: Pseudonymizer | None = None,
) -> ReplayStats:
    """Publish through ``stream.gateway.GatewayPublisher`` (TLS / SASL per ``security``;
    patient ids replaced by their pseudonyms when given a ``pseudonymizer``)."""
    from stream.gateway import GatewayPublisher

    async with GatewayPublisher(bootstrap, security=security, pseudonymizer=pseudonymizer) as publisher:
        return await publish_chunks(
            publisher,
            chunks,
            stats,
            speed=speed,
            progress=progress,
            throttle=throttle,
            throttle_every_s=throttle_every_s,
        )
