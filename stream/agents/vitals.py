"""Vitals agent: sample chunks in, findings out (and bad messages to the dead-letter topic).

The loop takes a batch of raw messages per poll, so the models run once per batch for
every patient that completed a window, not once per window.
"""

from __future__ import annotations

import logging
import time

from faust.types import TP, EventT

from models.runtime import ModelRuntime
from stream.app import app, deadletter_topic, findings_topic, settings, vitals_topic
from stream.consumer_progress import ConsumerProgress
from stream.deadletter import DeadLetter
from stream.monitor import UnreadFn
from stream.pipeline import VitalsPipeline
from stream.schema import InvalidChunk, SampleChunk, Signal, decode_chunk
from stream.stats import worker_stats
from stream.window_analysis import WindowAnalysis

log = logging.getLogger(__name__)

pipeline = VitalsPipeline(
    ModelRuntime.load_default(), window_s=settings.window_s, hop_s=settings.hop_s, align_hold_s=settings.align_hold_s
)
progress = ConsumerProgress()


def decode_event(event: EventT) -> SampleChunk:
    """Decode and validate one message; the key must be the patient id (co-partitioning)."""
    chunk = decode_chunk(event.message.value)
    key = event.message.key
    if key is None or key.decode(errors="replace") != chunk.patient_id:
        raise InvalidChunk("key_mismatch", f"key {key!r} != patient_id {chunk.patient_id!r}")
    if event.message.topic != chunk.signal.topic:
        raise InvalidChunk("wrong_topic", f"{chunk.signal} chunk on {event.message.topic}")
    return chunk


async def dead_letter(event: EventT, exc: Exception) -> None:
    reason = exc.reason if isinstance(exc, InvalidChunk) else f"internal_error:{type(exc).__name__}"
    msg = event.message
    letter = DeadLetter.wrap(
        reason=reason,
        detail=str(exc),
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        original=msg.value,
        received_ms=int(time.time() * 1000),
    )
    worker_stats.dead_letters[reason] += 1
    await deadletter_topic.send(key=msg.key, value=letter.to_json())


@app.agent(vitals_topic)
async def process_vitals(stream) -> None:  # type: ignore[no-untyped-def]
    async for events in stream.take_events(settings.batch_max, within=settings.batch_within_s):
        windows: list[WindowAnalysis] = []
        for event in events:
            msg = event.message
            worker_stats.chunks_in += 1
            progress.advance(msg.tp, msg.offset, msg.timestamp)
            try:
                chunk = decode_event(event)
                progress.attach(chunk.patient_id, msg.tp)
                windows.extend(pipeline.push(chunk, msg.timestamp, unread_on(msg.partition)))
            except InvalidChunk as exc:
                await dead_letter(event, exc)
            except Exception as exc:
                log.exception("internal error on %s; patient state reset", msg.key)
                patient_id = msg.key.decode(errors="replace") if msg.key else ""
                pipeline.forget(patient_id)
                progress.forget(patient_id)
                await dead_letter(event, exc)
        await publish_findings(windows)


def unread_on(partition: int) -> UnreadFn:
    """``unread(signal, produced_s)`` for the patients of one partition number:
    co-partitioning puts a patient's signals on that partition of every vitals topic."""

    def unread(signal: Signal, produced_s: float) -> bool:
        return progress.unread_before(TP(signal.topic, partition), produced_s, _highwater)

    return unread


async def publish_findings(windows: list[WindowAnalysis]) -> None:
    if not windows:
        return
    try:
        findings = pipeline.assemble(windows)
    except Exception:
        # A model failure on valid input is a bug; count it loudly rather than stop
        # every patient on this worker.
        log.exception("model inference failed for %d windows; findings dropped", len(windows))
        worker_stats.dead_letters["inference_error"] += len(windows)
        return
    for finding in findings:
        await findings_topic.send(key=finding.patient_id.encode(), value=finding.to_json())


@app.timer(interval=1.0)
async def flush_quiet_patients() -> None:
    """Close the last window of patients whose devices stopped sending (see
    ``VitalsPipeline.flush_idle``); runs in the agent's event loop, between its polls."""
    if settings.flush_idle_s <= 0:
        return
    try:
        windows = pipeline.flush_idle(settings.flush_idle_s, caught_up=_caught_up)
    except Exception:
        log.exception("flushing quiet patients failed")
        return
    await publish_findings(windows)


def _caught_up(patient_id: str) -> bool:
    if progress.caught_up(patient_id, _highwater):
        return True
    worker_stats.idle_flushes_held += 1
    return False


def _highwater(tp: TP) -> int | None:
    """The partition's high-water mark from the consumer's last fetch; None when unknown
    (not fetched yet, or the partition was just revoked)."""
    try:
        mark = app.consumer.highwater(tp)
    except Exception:
        mark = None
    if not isinstance(mark, int):
        worker_stats.highwater_unknown += 1
        return None
    return mark
