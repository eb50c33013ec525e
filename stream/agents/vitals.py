"""Vitals agent: sample chunks in, findings out (and bad messages to the dead-letter topic).

The loop takes a batch of raw messages per poll, so the models run once per batch for
every patient that completed a window, not once per window.
"""

from __future__ import annotations

import json
import logging
import time

from faust.types import TP

from models.trends import TrendTracker
from stream.agents import care_feed
from stream.agents.in_hand import InHandMessage
from stream.agents.recovery import recover_skipped
from stream.app import (
    KAFKA_BOOTSTRAP,
    KAFKA_SECURITY,
    app,
    commit_guard,
    deadletter_topic,
    findings_topic,
    patient_ref,
    settings,
    trend_state_table,
    vitals_topic,
)
from stream.awaiting_analysis import AwaitingAnalysis
from stream.consumer_progress import ConsumerProgress
from stream.metrics import TimedModelRuntime, observe_findings
from stream.monitor import UnreadFn
from stream.pipeline import VitalsPipeline
from stream.privacy import log_failure
from stream.schema import InvalidChunk, SampleChunk, Signal, decode_chunk
from stream.services import VITALS_TOPICS, group_start_offsets
from stream.stats import worker_stats
from stream.window_analysis import WindowAnalysis

log = logging.getLogger(__name__)

progress = ConsumerProgress()
# Messages whose chunks a patient's monitor holds back (see PatientMonitor): unfinished, so
# their offsets are not committed until the chunk was analysed. A worker that stops while
# holding them leaves them to be read again by the next owner.
held_messages: dict[int, InHandMessage] = {}
# Messages of chunks in their patient's monitor that no published finding covers yet:
# finished once one does (stream/awaiting_analysis.py says why).
awaiting = AwaitingAnalysis[InHandMessage]()
# A patient nothing arrived for in this long (wall clock) has had its idle flush: what it
# still awaits is acknowledged (see AwaitingAnalysis.quiet).
AWAIT_QUIET_S = settings.flush_idle_s + 5.0


def release_held(chunk: SampleChunk) -> None:
    """A held chunk entered its monitor: its message now waits for the window covering it."""
    message = held_messages.pop(id(chunk), None)
    if message is not None:
        awaiting.add(chunk.patient_id, chunk.end_ms, message, time.monotonic())
        worker_stats.held_messages_acked += 1


def ack_analysed(windows: list[WindowAnalysis]) -> None:
    """Finish the messages of the chunks these (published) windows covered."""
    through: dict[str, int] = {}
    for w in windows:
        through[w.patient_id] = max(through.get(w.patient_id, w.t_ms), w.t_ms)
    for patient_id, t_ms in through.items():
        for message in awaiting.analysed(patient_id, t_ms):
            message.finish()


class TableTrendStore:
    """Trend state in the changelogged ``trend-state`` table (see ``stream.app``). A copy
    that cannot be read or written costs the patient's trend history, never its findings:
    the errors are logged, not raised into the batch."""

    def load(self, patient_id: str) -> TrendTracker | None:
        try:
            saved = trend_state_table.get(patient_id.encode())
            return TrendTracker.from_dict(json.loads(saved)) if saved else None
        except Exception as exc:
            log_failure(log, exc, "unreadable trend state of %s; its trends restart", patient_ref(patient_id))
            return None

    def save(self, patient_id: str, tracker: TrendTracker) -> None:
        try:
            trend_state_table[patient_id.encode()] = json.dumps(tracker.to_dict()).encode()
        except Exception as exc:
            log_failure(log, exc, "could not save the trend state of %s", patient_ref(patient_id))

    def delete(self, patient_id: str) -> None:
        try:
            trend_state_table.pop(patient_id.encode(), None)
        except Exception as exc:
            log_failure(log, exc, "could not delete the trend state of %s", patient_ref(patient_id))


pipeline = VitalsPipeline(
    TimedModelRuntime.load_default(),
    window_s=settings.window_s,
    hop_s=settings.hop_s,
    align_hold_s=settings.align_hold_s,
    on_release=release_held,
    trend_store=TableTrendStore(),
)
pipeline.runtime.beat_observer = care_feed.record_beats  # beat marks of the dashboard's evidence strips


def decode_message(topic: str, key: bytes | None, value: bytes) -> SampleChunk:
    """Decode and validate one message; the key must be the patient id (co-partitioning)."""
    chunk = decode_chunk(value)
    if key is None or key.decode(errors="replace") != chunk.patient_id:
        raise InvalidChunk("key_mismatch", f"key {key!r} != patient_id {chunk.patient_id!r}")
    if topic != chunk.signal.topic:
        raise InvalidChunk("wrong_topic", f"{chunk.signal} chunk on {topic}")
    return chunk


async def dead_letter(message: InHandMessage, exc: Exception) -> None:
    """Set the message aside on the dead-letter topic, with the reason; the caller
    finishes it once the letter is sent."""
    reason = exc.reason if isinstance(exc, InvalidChunk) else f"internal_error:{type(exc).__name__}"
    worker_stats.dead_letters[reason] += 1
    await deadletter_topic.send(key=message.key, value=message.dead_letter(reason, str(exc)).to_json())


@app.agent(vitals_topic)
async def process_vitals(stream) -> None:  # type: ignore[no-untyped-def]
    async for events in stream.take_events(settings.batch_max, within=settings.batch_within_s):
        windows: list[WindowAnalysis] = []
        for event in events:
            message = InHandMessage.of_event(event)
            message.begin()
            skipped = progress.skipped_before(message.tp, message.offset)
            if skipped:
                for recovered in await recover_skipped(message.tp, skipped, message.generation):
                    windows.extend(await process_message(recovered))
            windows.extend(await process_message(message))
        await publish_findings(windows)
        ack_analysed(windows)


async def process_message(message: InHandMessage) -> list[WindowAnalysis]:
    """One sample message (begun in the commit account) into its patient's monitor,
    where it stays unfinished until a published window covers its chunk; bad input is
    dead-lettered and finished at once."""
    tp, key = message.tp, message.key
    worker_stats.chunks_in += 1
    progress.advance(tp, message.offset, message.timestamp_s)
    try:
        chunk = decode_message(tp.topic, key, message.value)
        care_feed.record_chunk(chunk)  # the dashboard's evidence strips
        if chunk.patient_id not in progress.partitions_of:
            # Every signal topic the patient could use, not only those read so far: a
            # worker on a backlog may not have reached the patient's PPG yet, and an
            # idle flush must not close windows without it.
            for signal in Signal:
                progress.attach(chunk.patient_id, TP(signal.topic, tp.partition))
        windows = pipeline.push(chunk, message.timestamp_s, unread_on(tp.partition))
        message.hold()
        if pipeline.holds(chunk):
            held_messages[id(chunk)] = message
        else:
            awaiting.add(chunk.patient_id, chunk.end_ms, message, time.monotonic())
        return windows
    except InvalidChunk as exc:
        await dead_letter(message, exc)
        message.finish()
    except Exception as exc:
        log_failure(log, exc, "internal error on %s; patient state reset, message dead-lettered", patient_ref(key))
        patient_id = key.decode(errors="replace") if key else ""
        # The patient's held chunks go with its state: dead-letter them too, so
        # nothing is dropped unseen.
        for held in pipeline.drop_held(patient_id):
            held_message = held_messages.pop(id(held), None)
            if held_message is not None:
                await dead_letter(held_message, exc)
                held_message.finish()
        # So do the chunks its monitor had not analysed yet.
        for waiting in awaiting.pop_patient(patient_id):
            await dead_letter(waiting, exc)
            waiting.finish()
        pipeline.forget(patient_id)
        progress.forget(patient_id)
        await dead_letter(message, exc)
        message.finish()
    return []


@app.on_partitions_revoked.connect
async def drop_held_of_revoked(app_, revoked, **kwargs) -> None:  # type: ignore[no-untyped-def]
    """Held chunks of revoked partitions are dropped unfinished: their offsets were not
    committed, so whoever owns the partitions next (this worker too: Faust seeks to the
    committed offsets after a rebalance) reads them again. Finishing them later would
    commit offsets of partitions this worker may no longer own."""
    moved = {tp for tp in revoked if tp.topic in VITALS_TOPICS}
    if not moved:
        return
    for patient_id in progress.patients_on(moved):
        pipeline.drop_held(patient_id)
    for key in [k for k, message in held_messages.items() if message.tp in moved]:
        message = held_messages.pop(key)
        # If the partitions come back to this worker, the patient's monitor lives on and
        # its idle flush must wait for these chunks: without the rewind the partition
        # counts as read to its end, the flush closes the windows they belong to, and they
        # arrive afterwards as late data (a gap).
        progress.rewind(message.tp, message.offset, message.timestamp_s)
    # Chunks not analysed yet go the same way: unfinished, their offsets uncommitted, read
    # again by the partitions' next owner.
    for message in awaiting.pop_where(lambda m: m.tp in moved):
        progress.rewind(message.tp, message.offset, message.timestamp_s)


@app.on_partitions_assigned.connect
async def on_new_assignment(app_, assigned, **kwargs) -> None:  # type: ignore[no-untyped-def]
    """``assigned`` is the whole new assignment."""
    progress.new_assignment()
    # Departed patients' copies may now be another worker's (and their patients back there).
    pipeline.departed.clear()
    kept = {tp for tp in assigned if tp.topic in VITALS_TOPICS}
    forget_patients_moved_away(kept)
    await learn_start_offsets(kept)


def forget_patients_moved_away(kept: set[TP]) -> None:
    """Patients whose vitals partitions this worker no longer owns are forgotten: their
    monitors, beat memory and trend trackers would otherwise stay in memory for good, and
    come back stale if the partition ever returned (windows scheduled from a time long
    past). Their held chunks were already dropped on revocation. Patients whose partitions
    stayed keep their state: Faust seeks back to the committed offsets and the monitors
    skip what they already have."""
    for patient_id in progress.patients_off(kept):
        awaiting.pop_patient(patient_id)  # (dropped unacknowledged on revocation already)
        pipeline.forget(patient_id)
        progress.forget(patient_id)
        worker_stats.patients_moved_away += 1


async def learn_start_offsets(kept: set[TP]) -> None:
    """Where reading of each vitals partition starts in this assignment (the group's
    committed offsets). A signal's first messages still on their way then hold the
    others back (``ConsumerProgress.unread_before``; without it, a worker starting on a
    busy stream closed the first windows of most patients without the signal read last),
    and a skip over the very first messages is noticed and read again
    (``ConsumerProgress.skipped_before``) rather than committed (``CommitGuard.starts_at``).
    Runs before the assignment's first message; if the broker does not answer, those
    partitions count as read and start wherever their first message is, as before."""
    if not kept:
        return
    generation = app.consumer_generation_id
    try:
        starts = await group_start_offsets(KAFKA_BOOTSTRAP, settings.app_id,
                                           [(tp.topic, tp.partition) for tp in sorted(kept)], security=KAFKA_SECURITY)
    except Exception as exc:
        log.warning("start offsets of %d partitions unknown (%r); they count as read", len(kept), exc)
        return
    for tp in kept:
        offset = starts.get((tp.topic, tp.partition))
        if offset is not None:
            progress.starts_at(tp, offset)
            commit_guard.starts_at(tp, offset, generation)


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
    except Exception as exc:
        # A model failure on valid input is a bug; count it loudly rather than stop
        # every patient on this worker.
        log_failure(log, exc, "model inference failed for %d windows; findings dropped", len(windows))
        worker_stats.dead_letters["inference_error"] += len(windows)
        return
    worker_stats.windows += len(windows)
    for finding in findings:
        await findings_topic.send(key=finding.patient_id.encode(), value=finding.to_json())
    observe_findings(f.t_ms for f in findings)


# Rebalances the idle flush has seen (Faust's app.rebalancing_count) and when the last ended.
rebalances_seen = {"count": 0, "at": 0.0}
# After a rebalance, the idle flush waits until the consumer knows the high-water mark of
# every vitals partition assigned to it (its first fetch), for at most this long.
REBALANCE_SETTLE_S = 30.0


@app.timer(interval=1.0)
async def flush_quiet_patients() -> None:
    """Close the last window of patients whose devices stopped sending (see
    ``VitalsPipeline.flush_idle``), and forget those gone for ``forget_idle_s``
    (``VitalsPipeline.forget_idle``); runs in the agent's event loop, between its polls."""
    if settings.flush_idle_s <= 0:
        return
    if app.rebalancing or app.rebalancing_count != rebalances_seen["count"] or _settling():
        # Nothing is read during a rebalance, and until the first fetch after it the worker
        # cannot tell what it has not read yet: that silence is the worker's, not the devices'.
        if app.rebalancing_count != rebalances_seen["count"]:
            rebalances_seen.update(count=app.rebalancing_count, at=time.monotonic())
        worker_stats.idle_flushes_held += len(pipeline.unflushed)
        pipeline.restart_idle_clocks()
        return
    try:
        windows = pipeline.flush_idle(settings.flush_idle_s, caught_up=_caught_up)
    except Exception as exc:
        log_failure(log, exc, "flushing quiet patients failed")
        return
    await publish_findings(windows)
    ack_analysed(windows)
    for message in awaiting.quiet(time.monotonic(), AWAIT_QUIET_S):
        message.finish()
    if settings.forget_idle_s > 0:
        gone = pipeline.forget_idle(settings.forget_idle_s, caught_up=lambda p: progress.caught_up(p, _highwater))
        for patient_id in gone:
            for message in awaiting.pop_patient(patient_id):
                message.finish()
            progress.forget(patient_id)
        pipeline.expire_departed_trends()


def _settling() -> bool:
    """Shortly after a rebalance, while some assigned vitals partition has no high-water mark."""
    if time.monotonic() - rebalances_seen["at"] > REBALANCE_SETTLE_S or app.consumer is None:
        return False
    return any(
        tp.topic in VITALS_TOPICS and not isinstance(app.consumer.highwater(tp), int)
        for tp in app.consumer.assignment()
    )


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
