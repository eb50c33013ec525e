"""Aggregator agent: findings and care actions in, de-duplicated alerts out to Redis.

Per patient, the alert state machine's state lives in the changelog-backed table
``alert-state``. Order matters for exactly-once effect on Redis: emissions are applied to
Redis first (idempotent: deterministic emission ids, one Lua call each), then the state is
saved. A crash in between re-delivers the message, recomputes the same emissions and the
store ignores them; a lost table update (seen on Tansu across kill -9) replays findings
into an older state, and the store merges the re-raised episode into the open alert.

Time-driven transitions (escalation, snooze expiry, device silent) need an event context
to write the table, so a timer publishes one tick per owned patient to the actions topic,
keyed like everything else by patient id; the agent handles ticks like any other input.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import NamedTuple

import redis
from aiokafka.partitioner import murmur2

from alerting.actions import Tick, decode_action_message
from alerting.aggregator import (
    Emission,
    PatientAlertState,
    process_action,
    process_device_alarm,
    process_finding,
    process_tick,
)
from alerting.catalogue import AlertConfig
from alerting.store import RedisAlertStore
from alerting.verification import DeviceAlarmDecision
from stream.agents import care_feed
from stream.agents.in_hand import InHandMessage
from stream.agents.recovery import recover_skipped
from stream.app import (
    actions_topic,
    alert_input_topic,
    alert_state_table,
    app,
    deadletter_topic,
    settings,
)
from stream.connections import RedisSecurity, redis_client
from stream.consumer_progress import ConsumerProgress
from stream.device_alarm import DEVICE_ALARMS_TOPIC, DeviceAlarm
from stream.findings import VitalsFinding
from stream.metrics import observe_alert_write
from stream.privacy import log_failure
from stream.services import FINDINGS_TOPIC
from stream.stats import worker_stats

log = logging.getLogger(__name__)

REDIS_TIMEOUT_S = 10.0
# Backoff of the alert writes while Redis is unreachable: they are retried until Redis
# answers, never dropped (see _apply_with_retry).
REDIS_RETRY_MAX_S = 5.0

alert_config = (
    AlertConfig.from_json(Path(settings.alert_config).read_text()) if settings.alert_config else AlertConfig()
)
# Timeouts: a Redis that hangs (not only one that refuses connections) must surface as an
# error the write retries on, not block the aggregator forever.
store = RedisAlertStore(
    redis_client(settings.redis_url, RedisSecurity.from_settings(settings),
                 socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S),
    prefix=settings.redis_prefix,
)

# Event-time clock per patient: the newest finding's t_ms and the wall time it arrived.
# Ticks advance it by the wall time elapsed since, so "device silent" and escalation work
# live, while a replay at any speed keeps its own timeline.
_clock: dict[str, tuple[int, float]] = {}


def start_clock(patient_id: str, t_ms: int) -> None:
    """Tick ``patient_id`` from event time ``t_ms``, reached now."""
    _clock[patient_id] = (t_ms, time.monotonic())


def event_now_ms(patient_id: str) -> int | None:
    seen = _clock.get(patient_id)
    if seen is None:
        return None
    t_ms, wall = seen
    return t_ms + int((time.monotonic() - wall) * 1000)


def encode_tick(patient_id: str, now_ms: int) -> bytes:
    return Tick(patient_id, now_ms).to_json()


class Applied(NamedTuple):
    state: PatientAlertState
    emissions: list[Emission]
    # Event time of the finding the emissions answer (the end of its window), for the
    # latency metrics; None for other inputs.
    window_end_ms: int | None = None


def apply_input(state: PatientAlertState, topic: str, value: bytes) -> Applied:
    """Route one message to the state machine; raises ValueError for input it cannot use."""
    if topic == DEVICE_ALARMS_TOPIC:
        alarm = DeviceAlarm.from_json(value)  # InvalidDeviceAlarm is a ValueError
        if alarm.patient_id != state.patient_id:
            raise ValueError(f"device alarm for {alarm.patient_id!r} keyed as {state.patient_id!r}")
        worker_stats.device_alarms += 1
        return Applied(*process_device_alarm(state, alarm, alert_config))
    if topic == FINDINGS_TOPIC:
        finding = VitalsFinding.from_json(value)
        if finding.patient_id != state.patient_id:
            raise ValueError(f"finding for {finding.patient_id!r} keyed as {state.patient_id!r}")
        worker_stats.findings_in += 1
        newest = _clock.get(finding.patient_id)
        if newest is None or finding.t_ms >= newest[0]:
            start_clock(finding.patient_id, finding.t_ms)
        applied = Applied(*process_finding(state, finding, alert_config), window_end_ms=finding.t_ms)
        care_feed.observe_finding(finding)  # the dashboard's ward board and trends
        return applied
    message = decode_action_message(value)  # InvalidCareAction is a ValueError
    if isinstance(message, Tick):
        if message.patient_id != state.patient_id:
            raise ValueError(f"tick for {message.patient_id!r} keyed as {state.patient_id!r}")
        return Applied(*process_tick(state, message.now_ms, alert_config))
    action = message
    worker_stats.actions += 1
    now = event_now_ms(state.patient_id) or action.issued_ms
    return Applied(*process_action(state, action, now))


def ticked_patients() -> int:
    """Patients on the tick clock (a gauge on /metrics)."""
    return len(_clock)


# Offsets the aggregator has read per partition since its last assignment: a care team's
# acknowledgement skipped by the consumer would be lost for good (see
# ConsumerProgress.skipped_before and stream.agents.recovery).
input_offsets = ConsumerProgress()


@app.on_partitions_assigned.connect
async def restart_offset_tracking(app_, assigned, **kwargs) -> None:  # type: ignore[no-untyped-def]
    input_offsets.new_assignment()
    _clock_from_table["until"] = time.monotonic() + CLOCK_FROM_TABLE_S
    _table_values_seen.clear()


@app.agent(alert_input_topic)
async def aggregate_alerts(stream) -> None:  # type: ignore[no-untyped-def]
    async for event in stream.events():
        # Its partition's commit waits for it (and for what it reveals was skipped):
        # stream/commit_guard.py.
        message = InHandMessage.of_event(event)
        message.begin()
        skipped = input_offsets.skipped_before(message.tp, message.offset)
        if skipped:
            # Handled inside this event's context: the table writes go to its partition,
            # the same as the skipped messages' (same topic partition).
            for recovered in await recover_skipped(message.tp, skipped, message.generation):
                await handle(recovered)
                recovered.finish()
        await handle(message)
        message.finish()


async def handle(message: InHandMessage) -> None:
    """One input message; its Kafka timestamp feeds the latency metrics."""
    tp, key, value = message.tp, message.key, message.value
    patient_id = key.decode(errors="replace") if key else ""
    try:
        if not patient_id:
            raise ValueError("message without a patient id key")
        saved = alert_state_table.get(key)
        state = PatientAlertState.from_json(saved) if saved else PatientAlertState.new(patient_id)
        new_state, emissions, window_end_ms = apply_input(state, tp.topic, value)
    except ValueError as exc:
        # The decoders raise only ValueError subclasses (stream.wire), with the reason.
        worker_stats.bad_findings += 1
        await _dead_letter(message, "bad_alert_input", f"{type(exc).__name__}: {exc}")
        return
    except Exception as exc:
        # A bug on valid-looking input: one message is set aside (with the error), the
        # agent and every other patient carry on. Redis errors are not caught here: the
        # write below retries them.
        log.exception("internal error on an alert input of %s; dead-lettered", patient_id)
        await _dead_letter(message, f"internal_error:{type(exc).__name__}", str(exc))
        return
    if emissions:
        # Redis first, then the table: see the module docstring. A Redis outage raises
        # here and the agent retries the message rather than drop an alert.
        applied = await _apply_with_retry(emissions)
        worker_stats.emissions += len(emissions)
        count_writes(emissions, applied, message.timestamp_s if tp.topic == FINDINGS_TOPIC else None, window_end_ms)
        await care_feed.capture_evidence(emissions)  # the dashboard's evidence strips
    if new_state is not state:
        alert_state_table[key] = new_state.to_json()
    if not new_state.awaits_time():
        # A departed device with its device_silent alert raised: ticks would change nothing
        # (its next finding puts it back), and the clock must not grow with every patient.
        _clock.pop(patient_id, None)
    elif patient_id not in _clock and new_state.last_t_ms is not None:
        # Off the clock but awaiting time again (e.g. its device_silent alert was snoozed):
        # ticked from now on, as after an assignment (clock_patients_from_table).
        start_clock(patient_id, new_state.last_t_ms)


def count_writes(emissions: list[Emission], applied: list[bool], finding_produced_s: float | None,
                 window_end_ms: int | None) -> None:
    """Alert changes and alarm decisions Redis took (not those it had already: a redelivery
    after a crash is counted once), and how long the finding took to become an alert."""
    now_s = time.time()
    for emission, changed in zip(emissions, applied, strict=True):
        if not changed:
            continue
        if isinstance(emission, DeviceAlarmDecision):
            worker_stats.device_alarm_verdicts[emission.verdict.value] += 1
            continue
        worker_stats.alert_changes[(emission.event, emission.type, emission.priority)] += 1
        if finding_produced_s is not None:
            observe_alert_write(emission.event, finding_produced_s, window_end_ms, now_s)


async def _dead_letter(message: InHandMessage, reason: str, detail: str) -> None:
    worker_stats.dead_letters[reason] += 1
    await deadletter_topic.send(key=message.key, value=message.dead_letter(reason, detail).to_json())


async def _apply_with_retry(emissions: list[Emission]) -> list[bool]:
    """Write to Redis, retrying for as long as Redis is unreachable. The message is not
    acknowledged meanwhile, so its offset is not committed: the alerts wait (the consumer
    lag shows it) rather than be dropped, and a worker that dies meanwhile leaves them to
    the next owner. (A bounded retry used to raise out of the agent after ~2 min, which
    stopped the aggregator for good.) The writes are idempotent, so one that reached
    Redis before the connection broke is not applied twice. Returns, per emission, whether
    it changed something (a redelivery changes nothing)."""
    attempt = 0
    down_since = time.monotonic()
    while True:
        try:
            applied = await asyncio.to_thread(store.apply_each, emissions)
            if attempt:
                worker_stats.redis_retries += attempt
                log.warning("Redis back after %.1f s; %d alert write(s) applied", time.monotonic() - down_since,
                            len(emissions))
            return applied
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            attempt += 1
            log.warning("Redis unavailable for %.1f s (%s); retrying alert write (attempt %d)",
                        time.monotonic() - down_since, type(exc).__name__, attempt)
            await asyncio.sleep(min(REDIS_RETRY_MAX_S, 0.2 * 2 ** min(attempt - 1, 10)))


# After each assignment, ticks outside the table's recovery add this worker's patients
# that no finding brings back (see clock_patients_from_table), for this long: the recovery
# may start after the first tick, and adding is idempotent.
CLOCK_FROM_TABLE_S = 60.0
_clock_from_table = {"until": 0.0}
# Table values already judged since the assignment (by identity): the repeated scans parse
# only what changed, not every departed patient's state every tick.
_table_values_seen: dict[bytes, bytes] = {}


def clock_patients_from_table() -> int:
    """Patients of this worker's findings partitions whose alert state still awaits time
    (``PatientAlertState.awaits_time``) but that are not ticked: after a restart or a
    rebalance only findings put a patient on the clock, and a device that had already
    fallen silent sends none, so it would never get its ``device_silent`` alert, nor its
    open alerts their escalation. Their clock starts now from their last finding's time:
    the silence is counted from the assignment, late rather than never."""
    owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == FINDINGS_TOPIC}
    added = 0
    for key, saved in list(alert_state_table.items()):
        patient_id = key.decode(errors="replace")
        if (patient_id in _clock or _table_values_seen.get(key) is saved
                or (murmur2(key) & 0x7FFFFFFF) % settings.partitions not in owned):
            continue
        _table_values_seen[key] = saved
        state = PatientAlertState.from_json(saved)
        if state.awaits_time() and state.last_t_ms is not None:
            start_clock(patient_id, state.last_t_ms)
            added += 1
    return added


@app.timer(interval=settings.tick_interval_s if settings.tick_interval_s > 0 else 3600.0)
async def tick_patients() -> None:
    if settings.tick_interval_s <= 0:
        return
    if time.monotonic() < _clock_from_table["until"] and not (app.rebalancing or app.in_recovery):
        try:
            worker_stats.clocks_from_table += clock_patients_from_table()
        except Exception as exc:
            log_failure(log, exc, "could not read the alert-state table to resume ticks")
    elif time.monotonic() >= _clock_from_table["until"]:
        _table_values_seen.clear()
    for patient_id in list(_clock):
        now = event_now_ms(patient_id)
        if now is not None:
            await actions_topic.send(key=patient_id.encode(), value=encode_tick(patient_id, now))


@app.on_partitions_revoked.connect
async def forget_clocks(app_, revoked, **kwargs) -> None:  # type: ignore[no-untyped-def]
    # Patients may have moved to another worker; those still ours reappear with their next
    # finding (every hop), so ticks resume within seconds.
    _clock.clear()
