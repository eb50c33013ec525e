"""Gateway SDK: cut device samples into chunks and publish them to Kafka.

* :class:`DeviceStream` (pure) turns a device's sample stream into ~1 s
  :class:`~stream.schema.SampleChunk` objects with idempotent sequence numbers and
  drift-free timestamps (computed from sample counts, never from a wall clock).
* :class:`GatewayPublisher` publishes chunks with aiokafka: binary (or JSON) encoding from
  :mod:`stream.schema`, topic ``vitals.<signal>``, key = patient id so one patient's
  signals share a partition number across the co-partitioned topics. A chunk that fails
  with a transient error is re-sent with the same sequence number, so the worker's
  per-(device, signal) de-duplication drops any copy that did get through. With a
  pseudonymizer (``VITALSTREAM_PSEUDONYM_KEY``, :mod:`stream.privacy`) the patient id is
  replaced by its keyed pseudonym before anything leaves the gateway; its log lines never
  name a patient.
* :func:`publish_paced` sends chunks from many device streams in event-time order, in
  real time, ``speed`` times faster, or as fast as possible.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import time
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from stream.connections import PLAINTEXT, KafkaSecurity
from stream.device_alarm import DEVICE_ALARMS_TOPIC, DeviceAlarm
from stream.privacy import Pseudonymizer
from stream.schema import (
    InvalidChunk,
    SampleChunk,
    Signal,
    encode_chunk,
    encode_chunk_json,
    make_chunk,
    validate_chunk,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_BYTES = 1 << 20
# Delivery futures kept in flight before publish() waits for some to complete: bounds
# memory when the broker is slower than the devices.
MAX_IN_FLIGHT = 5000
START_TIMEOUT_S = 15.0


class PublishError(RuntimeError):
    """Chunks could not be delivered after all retries (or failed permanently)."""


# ---------------------------------------------------------------- chunking (pure)


class DeviceStream:
    """Chunker for one (patient, device, signal) stream.

    Chunk boundaries sit at whole multiples of ``chunk_s`` from the stream start, so the
    chunks do not depend on how the samples were fed. Non-finite samples (NaN) are a gap
    in the acquisition: the samples before the gap are sent as a short chunk, no chunk
    covers the gap, and later chunks keep their true timestamps. Sequence numbers rise by
    one per chunk emitted.
    """

    def __init__(
        self,
        patient_id: str,
        device_id: str,
        signal: Signal | str,
        fs: float,
        start_ms: int,
        chunk_s: float = 1.0,
        units: str | None = None,
        start_seq: int = 0,
    ) -> None:
        if fs <= 0 or chunk_s <= 0:
            raise ValueError("fs and chunk_s must be positive")
        self.patient_id = patient_id
        self.device_id = device_id
        self.signal = Signal(signal)
        self.fs = float(fs)
        self.start_ms = int(start_ms)
        self.chunk_n = max(1, round(chunk_s * self.fs))
        self.units = units
        self.next_seq = int(start_seq)
        self.samples_seen = 0  # samples fed so far (including gaps)
        self._pending = np.zeros(0, dtype=np.float32)
        self._pending_start = 0  # sample index of _pending[0]

    def timestamp_ms(self, sample_index: int) -> int:
        return self.start_ms + round(1000.0 * sample_index / self.fs)

    def feed(self, samples: Any) -> list[SampleChunk]:
        """Add samples; returns the chunks completed by them."""
        x = np.asarray(samples, dtype=np.float32).ravel()
        out: list[SampleChunk] = []
        pos = 0
        while pos < x.size:
            index = self.samples_seen + pos
            boundary = (index // self.chunk_n + 1) * self.chunk_n
            take = min(x.size - pos, boundary - index)
            piece = x[pos : pos + take]
            finite = np.isfinite(piece)
            if finite.all():
                self._append(piece, index)
            else:
                for a, b in _finite_runs(finite):
                    if self._pending.size and self._pending_start + self._pending.size != index + a:
                        out.extend(self._emit_pending())
                    self._append(piece[a:b], index + a)
                if not finite[-1]:
                    # The device stopped delivering: send what came before the gap now.
                    out.extend(self._emit_pending())
            pos += take
            if index + take == boundary:
                out.extend(self._emit_pending())
        self.samples_seen += x.size
        return out

    def flush(self) -> list[SampleChunk]:
        """Emit the partial chunk (at the end of a stream)."""
        return self._emit_pending()

    def _append(self, piece: np.ndarray, index: int) -> None:
        if self._pending.size == 0:
            self._pending_start = index
            self._pending = piece.copy()
        else:
            self._pending = np.concatenate([self._pending, piece])

    def _emit_pending(self) -> list[SampleChunk]:
        if self._pending.size == 0:
            return []
        chunk = make_chunk(
            self.patient_id,
            self.device_id,
            self.signal,
            self.fs,
            self.timestamp_ms(self._pending_start),
            self.next_seq,
            self._pending,
            self.units,
        )
        self.next_seq += 1
        self._pending = np.zeros(0, dtype=np.float32)
        return [chunk]


def _finite_runs(finite: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) ranges of consecutive True values."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], finite.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def chunk_signals(
    patient_id: str,
    device_id: str,
    channels: dict[Signal, tuple[np.ndarray, float]],
    start_ms: int,
    chunk_s: float = 1.0,
) -> list[SampleChunk]:
    """All chunks of a recording (one device, several signals) in event-time order."""
    per_signal = []
    for sig, (x, fs) in channels.items():
        stream = DeviceStream(patient_id, device_id, sig, fs, start_ms, chunk_s)
        per_signal.append([*stream.feed(x), *stream.flush()])
    return list(heapq.merge(*per_signal, key=lambda c: c.end_ms))


# ---------------------------------------------------------------- publishing


@dataclass
class PublisherStats:
    sent: int = 0  # acknowledged by the broker
    retried: int = 0  # re-sends after transient errors
    failed: int = 0  # gave up (permanent error or retries exhausted)
    invalid: int = 0  # rejected before sending (InvalidChunk)
    bytes_sent: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "retried": self.retried,
            "failed": self.failed,
            "invalid": self.invalid,
            "bytes_sent": self.bytes_sent,
        }


@contextlib.contextmanager
def _quiet_logger(name: str, enabled: bool) -> Iterator[None]:
    """Silence a logger while probing a broker feature whose absence is handled."""
    logger = logging.getLogger(name)
    previous = logger.level
    if enabled:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _retriable(exc: BaseException) -> bool:
    from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError | asyncio.TimeoutError | OSError):
        return True
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


class GatewayPublisher:
    """Async Kafka publisher for sample chunks (use as ``async with``).

    ``security``: TLS / SASL of the producer (:class:`stream.connections.KafkaSecurity`);
    ``pseudonymizer``: replaces each patient id before it is sent (chunks and alarms)."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        security: KafkaSecurity = PLAINTEXT,
        pseudonymizer: Pseudonymizer | None = None,
        client_id: str = "vitalstream-gateway",
        linger_ms: int = 20,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        retries: int = 5,
        retry_backoff_s: float = 0.2,
        encoding: Literal["binary", "json"] = "binary",
        enable_idempotence: bool | None = None,
        request_timeout_ms: int = 30_000,
    ) -> None:
        if encoding not in ("binary", "json"):
            raise ValueError("encoding must be 'binary' or 'json'")
        self.bootstrap_servers = bootstrap_servers
        self.security = security
        self.pseudonymizer = pseudonymizer
        self.client_id = client_id
        self.linger_ms = linger_ms
        self.max_batch_bytes = max_batch_bytes
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self.encoding = encoding
        # None: try the idempotent producer and fall back when the broker lacks it.
        self.enable_idempotence = enable_idempotence
        self.idempotent = False
        self.request_timeout_ms = request_timeout_ms
        self.stats = PublisherStats()
        self._producer: Any = None
        self._in_flight: list[tuple[asyncio.Future[Any], SampleChunk, bytes, int]] = []
        self._errors: list[str] = []

    async def __aenter__(self) -> GatewayPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(flush=exc[0] is None)

    def _make_producer(self, idempotent: bool) -> Any:
        from aiokafka import AIOKafkaProducer

        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            acks="all",
            linger_ms=self.linger_ms,
            max_batch_size=self.max_batch_bytes,
            max_request_size=max(self.max_batch_bytes, 1 << 20),
            enable_idempotence=idempotent,
            request_timeout_ms=self.request_timeout_ms,
            retry_backoff_ms=round(self.retry_backoff_s * 1000),
            **self.security.client_kwargs(),
        )

    async def start(self) -> None:
        if self._producer is not None:
            return
        attempts = [True, False] if self.enable_idempotence is None else [self.enable_idempotence]
        last: BaseException | None = None
        for idempotent in attempts:
            producer = self._make_producer(idempotent)
            try:
                # An idempotent producer asks for a producer id at start and retries
                # forever on a broker without InitProducerId: bound the wait.
                with _quiet_logger(
                    "aiokafka.producer.sender", enabled=idempotent and len(attempts) > 1
                ):
                    await asyncio.wait_for(producer.start(), timeout=START_TIMEOUT_S)
            except Exception as exc:
                last = exc
                with contextlib.suppress(Exception):
                    await producer.stop()
                log.info("producer start (idempotent=%s) failed: %s", idempotent, exc)
                continue
            self._producer = producer
            self.idempotent = idempotent
            return
        raise PublishError(f"cannot connect to Kafka at {self.bootstrap_servers}: {last}")

    async def stop(self, flush: bool = True) -> None:
        if self._producer is None:
            return
        try:
            if flush:
                await self.flush()
        finally:
            producer, self._producer = self._producer, None
            await producer.stop()

    def _encode(self, chunk: SampleChunk) -> bytes:
        return encode_chunk(chunk) if self.encoding == "binary" else encode_chunk_json(chunk)

    async def publish(self, chunk: SampleChunk) -> None:
        """Validate, encode and hand to the producer; delivery is confirmed by :meth:`flush`."""
        if self._producer is None:
            raise RuntimeError("GatewayPublisher.start() was not called")
        if self.pseudonymizer is not None:
            chunk = replace(chunk, patient_id=self.pseudonymizer(chunk.patient_id))
        try:
            validate_chunk(chunk)
            value = self._encode(chunk)
        except InvalidChunk:
            self.stats.invalid += 1
            raise
        await self._send(chunk, value, attempt=0)
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            await self._settle(wait_all=False)

    async def publish_many(self, chunks: Iterable[SampleChunk]) -> None:
        for chunk in chunks:
            await self.publish(chunk)

    async def publish_device_alarm(self, alarm: DeviceAlarm) -> None:
        """Forward one alarm the bedside monitor raised; returns once the broker has it.
        Rare and urgent, so sent on its own and confirmed, with the same retries as chunks."""
        if self._producer is None:
            raise RuntimeError("GatewayPublisher.start() was not called")
        if self.pseudonymizer is not None:
            alarm = replace(alarm, patient_id=self.pseudonymizer(alarm.patient_id))
        for attempt in range(self.retries + 1):
            try:
                await self._producer.send_and_wait(DEVICE_ALARMS_TOPIC, value=alarm.to_json(),
                                                   key=alarm.patient_id.encode())
                return
            except Exception as exc:
                if attempt >= self.retries or not _retriable(exc):
                    raise PublishError(f"device alarm {alarm.alarm_type} at {alarm.t_ms} from device "
                                       f"{alarm.device_id or '?'} not delivered: {exc}") from exc
                await asyncio.sleep(self.retry_backoff_s * 2**attempt)

    async def _send(self, chunk: SampleChunk, value: bytes, attempt: int) -> None:
        while True:
            try:
                future = await self._producer.send(
                    chunk.signal.topic, value=value, key=chunk.patient_id.encode()
                )
            except Exception as exc:
                if not _retriable(exc) or attempt >= self.retries:
                    self._fail(chunk, exc)
                    return
                attempt += 1
                self.stats.retried += 1
                await asyncio.sleep(self.retry_backoff_s * 2 ** (attempt - 1))
                continue
            self._in_flight.append((future, chunk, value, attempt))
            return

    def _fail(self, chunk: SampleChunk, exc: BaseException) -> None:
        self.stats.failed += 1
        # Device and sequence number identify the chunk; the patient is not named in logs.
        message = (
            f"{chunk.signal.topic} device {chunk.device_id} seq {chunk.seq}: "
            f"{type(exc).__name__}: {exc}"
        )
        log.warning("giving up on chunk %s", message)
        if len(self._errors) < 20:
            self._errors.append(message)

    async def _settle(self, wait_all: bool) -> None:
        """Account for delivered chunks; re-send the ones that failed transiently."""
        while self._in_flight:
            if wait_all:
                await asyncio.wait([f for f, *_ in self._in_flight])
            else:
                # Wait for the oldest half so publish() keeps the pipeline full.
                oldest = self._in_flight[: len(self._in_flight) // 2 or 1]
                await asyncio.wait([f for f, *_ in oldest])
            still: list[tuple[asyncio.Future[Any], SampleChunk, bytes, int]] = []
            resend: list[tuple[SampleChunk, bytes, int]] = []
            for future, chunk, value, attempt in self._in_flight:
                if not future.done():
                    still.append((future, chunk, value, attempt))
                    continue
                exc = future.exception()
                if exc is None:
                    self.stats.sent += 1
                    self.stats.bytes_sent += len(value)
                elif _retriable(exc) and attempt < self.retries:
                    resend.append((chunk, value, attempt + 1))
                else:
                    self._fail(chunk, exc)
            self._in_flight = still
            if resend:
                self.stats.retried += len(resend)
                await asyncio.sleep(self.retry_backoff_s * 2 ** (min(a for *_, a in resend) - 1))
                for chunk, value, attempt in resend:
                    await self._send(chunk, value, attempt)
            if not wait_all:
                return

    async def flush(self) -> None:
        """Wait until every chunk handed over so far is acknowledged or given up on.

        Raises :class:`PublishError` when any chunk failed since the last flush.
        """
        if self._producer is None:
            return
        await self._producer.flush()
        await self._settle(wait_all=True)
        if self._errors:
            errors, self._errors = self._errors, []
            raise PublishError(f"{self.stats.failed} chunk(s) not delivered; first: {errors[0]}")


# ---------------------------------------------------------------- pacing


@dataclass
class PacingStats:
    chunks: int = 0
    samples: int = 0
    first_ts_ms: int | None = None
    last_end_ms: float | None = None
    wall_s: float = 0.0
    max_lag_s: float = 0.0  # how far behind schedule the sender fell
    interrupted: bool = False

    @property
    def event_s(self) -> float:
        if self.first_ts_ms is None or self.last_end_ms is None:
            return 0.0
        return (self.last_end_ms - self.first_ts_ms) / 1000.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "chunks": self.chunks,
            "samples": self.samples,
            "event_s": round(self.event_s, 3),
            "wall_s": round(self.wall_s, 3),
            "times_real_time": round(self.event_s / self.wall_s, 2) if self.wall_s > 0 else None,
            "max_lag_s": round(self.max_lag_s, 3),
            "interrupted": self.interrupted,
        }


async def _aiter(chunks: AsyncIterable[SampleChunk] | Iterable[SampleChunk]) -> Any:
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk


async def publish_paced(
    publisher: Any,
    chunks_by_time: AsyncIterable[SampleChunk] | Iterable[SampleChunk],
    speed: float | None,
    progress: Callable[[PacingStats], None] | None = None,
    *,
    max_batch: int = 500,
    stats: PacingStats | None = None,
) -> PacingStats:
    """Publish chunks (in event-time order) as a device would, then flush.

    A chunk is due when the samples in it have all been acquired: at its ``end_ms``,
    measured from the first chunk's ``ts_ms``, with event time running ``speed`` times
    faster than wall time (1 = real time). ``speed`` None or 0 = as fast as possible.
    Chunks already due go to the publisher together (``publish_many`` when it has one).
    Pass ``stats`` to keep the counts when the task is cancelled.
    """
    stats = PacingStats() if stats is None else stats
    start_wall = time.monotonic()
    many = getattr(publisher, "publish_many", None)
    batch: list[SampleChunk] = []

    async def send(items: Sequence[SampleChunk]) -> None:
        if many is not None and len(items) > 1:
            await many(items)
        else:
            for c in items:
                await publisher.publish(c)
        for c in items:
            stats.chunks += 1
            stats.samples += c.n
            stats.last_end_ms = max(stats.last_end_ms or c.end_ms, c.end_ms)
        if progress is not None:
            progress(stats)

    try:
        async for chunk in _aiter(chunks_by_time):
            if stats.first_ts_ms is None:
                stats.first_ts_ms = chunk.ts_ms
            if speed:
                due = start_wall + (chunk.end_ms - stats.first_ts_ms) / 1000.0 / speed
                delay = due - time.monotonic()
                if delay > 0:
                    if batch:
                        await send(batch)
                        batch = []
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                else:
                    stats.max_lag_s = max(stats.max_lag_s, -delay)
            batch.append(chunk)
            if len(batch) >= max_batch:
                await send(batch)
                batch = []
        if batch:
            await send(batch)
            batch = []
        await publisher.flush()
    except asyncio.CancelledError:
        stats.interrupted = True
        raise
    finally:
        stats.wall_s = time.monotonic() - start_wall
    return stats


def merge_by_time(*streams: Iterable[SampleChunk]) -> Iterable[SampleChunk]:
    """Merge chunk streams that are each in time order into one, by chunk end time."""
    return heapq.merge(*streams, key=lambda c: c.end_ms)


def now_ms() -> int:
    return int(time.time() * 1000)


def aligned_now_ms(step_ms: int = 1000) -> int:
    t = now_ms()
    return t - t % step_ms


def chunk_count(n_samples: int, fs: float, chunk_s: float = 1.0) -> int:
    return math.ceil(n_samples / max(1, round(chunk_s * fs)))


async def publish_device_alarms(bootstrap_servers: str, alarms: Sequence[DeviceAlarm], *,
                                security: KafkaSecurity = PLAINTEXT,
                                pseudonymizer: Pseudonymizer | None = None) -> int:
    """Forward bedside-monitor alarms (replay, tools); returns how many were delivered."""
    if not alarms:
        return 0
    async with GatewayPublisher(bootstrap_servers, security=security, pseudonymizer=pseudonymizer) as publisher:
        for alarm in alarms:
            await publisher.publish_device_alarm(alarm)
    return len(alarms)
