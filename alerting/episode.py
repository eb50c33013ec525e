"""One alert episode and its state machine. Pure: no I/O, no clock.

States: ``raised`` -> (``escalated``)* -> ``acknowledged`` / ``snoozed`` -> ``resolved``.
Every transition is ``transition(episode, event, now_ms) -> (episode, emissions)``; the
emissions are what the store writes (:class:`AlertEmission`, one atomic write each).

Exactly-once: an episode's id is a hash of (patient, type, onset time of the first
finding that met the criterion), and every emission's id names the episode, the event and
what caused it (the finding time, the care action id, the escalation level). Reprocessing
the same findings -- after a redelivery, or after the worker lost its state and rebuilt it
from older findings -- therefore yields the same ids, and the store ignores ids it has
already applied.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, fields, replace
from enum import StrEnum
from typing import Any


class EpisodeState(StrEnum):
    RAISED = "raised"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"


OPEN_STATES = (EpisodeState.RAISED, EpisodeState.ESCALATED, EpisodeState.ACKNOWLEDGED,
               EpisodeState.SNOOZED)


class EmissionEvent(StrEnum):
    RAISED = "raised"
    UPDATED = "updated"
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    UNSNOOZED = "unsnoozed"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


def episode_id(patient_id: str, alert_type: str, onset_ms: int) -> str:
    """Deterministic alert id: the same onset finding always names the same alert."""
    digest = hashlib.sha1(f"{patient_id}\x1f{alert_type}\x1f{onset_ms}".encode()).hexdigest()
    return f"{alert_type}-{digest[:12]}"


@dataclass(frozen=True, slots=True)
class AlertEpisode:
    alert_id: str
    patient_id: str
    type: str
    priority: str  # the definition's priority, or medium when downgraded by corroboration
    state: str
    latching: bool
    onset_ms: int  # event time of the first window that met the criterion
    raised_ms: int  # event time at which persistence was satisfied
    updated_ms: int  # event time of the last emitted change
    value: float | None = None  # value at the last emitted change
    message: str = ""
    resolved_ms: int | None = None
    escalation_level: int = 0
    escalated_ms: int | None = None  # when the escalation clock last (re)started or fired
    acked_by: str | None = None
    acked_ms: int | None = None
    snoozed_until_ms: int | None = None
    snooze_action_id: str | None = None
    # False once the condition has cleared; a latching episode then waits for an ack.
    condition_active: bool = True

    @property
    def is_open(self) -> bool:
        return self.state != EpisodeState.RESOLVED

    def to_dict(self) -> dict[str, Any]:
        """Compact: fields at their default are left out (the state lives in a Faust table)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.default is MISSING or value != f.default:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> AlertEpisode:
        return cls(**obj)


@dataclass(frozen=True, slots=True)
class AlertEmission:
    """One change to one alert, with the full snapshot after it. ``emission_id`` is
    deterministic; the store applies each id at most once."""

    emission_id: str
    event: str
    alert_id: str
    patient_id: str
    type: str
    priority: str
    state: str
    onset_ms: int
    raised_ms: int
    updated_ms: int  # event time of this change
    resolved_ms: int | None
    value: float | None
    message: str
    escalation_level: int
    acked_by: str | None
    snoozed_until_ms: int | None
    # The condition still holds (False: it ended and a latching alert awaits an ack).
    condition_active: bool = True
    actor: str | None = None  # who caused it: a care-team member for ack/snooze
    detail: str = ""  # one line for the audit trail: why this emission happened

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> AlertEmission:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in known})

    @classmethod
    def from_json(cls, data: bytes | str) -> AlertEmission:
        return cls.from_dict(json.loads(data))


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Observed:
    """The criterion held in a window (``trigger_ms`` = that finding's t_ms)."""

    trigger_ms: int
    value: float | None
    message: str
    priority: str  # possibly downgraded for this window


@dataclass(frozen=True, slots=True)
class ConditionCleared:
    """Enough consecutive normal windows: the condition is over."""

    trigger_ms: int
    message: str


@dataclass(frozen=True, slots=True)
class Acknowledge:
    action_id: str
    by: str
    issued_ms: int


@dataclass(frozen=True, slots=True)
class Snooze:
    action_id: str
    by: str
    until_ms: int


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed (event time): escalation and snooze expiry."""

    escalate_after_s: float | None
    escalation_repeat_s: float
    max_escalation_level: int


@dataclass(frozen=True, slots=True)
class Resolve:
    """Resolve regardless of latching (a technical alert whose cause went away, e.g. data
    arrived again for device_silent)."""

    trigger_ms: int
    message: str


EpisodeInput = Observed | ConditionCleared | Acknowledge | Snooze | Tick | Resolve


# ------------------------------------------------------------------------ transitions


def _emit(ep: AlertEpisode, event: EmissionEvent, key: str | int | None, now_ms: int,
          *, actor: str | None = None, detail: str = "") -> AlertEmission:
    suffix = "" if key is None else f":{key}"
    return AlertEmission(
        emission_id=f"{ep.alert_id}:{event.value}{suffix}",
        event=event.value,
        alert_id=ep.alert_id,
        patient_id=ep.patient_id,
        type=ep.type,
        priority=ep.priority,
        state=ep.state,
        onset_ms=ep.onset_ms,
        raised_ms=ep.raised_ms,
        updated_ms=now_ms,
        resolved_ms=ep.resolved_ms,
        value=ep.value,
        message=ep.message,
        escalation_level=ep.escalation_level,
        acked_by=ep.acked_by,
        snoozed_until_ms=ep.snoozed_until_ms,
        condition_active=ep.condition_active,
        actor=actor,
        detail=detail or ep.message,
    )


def raise_episode(
    *,
    patient_id: str,
    alert_type: str,
    priority: str,
    latching: bool,
    onset_ms: int,
    now_ms: int,
    value: float | None,
    message: str,
) -> tuple[AlertEpisode, list[AlertEmission]]:
    """A new episode (persistence satisfied at ``now_ms``); emits ``raised``."""
    ep = AlertEpisode(
        alert_id=episode_id(patient_id, alert_type, onset_ms),
        patient_id=patient_id,
        type=alert_type,
        priority=priority,
        state=EpisodeState.RAISED.value,
        latching=latching,
        onset_ms=onset_ms,
        raised_ms=now_ms,
        updated_ms=now_ms,
        value=value,
        message=message,
        escalated_ms=now_ms,
    )
    return ep, [_emit(ep, EmissionEvent.RAISED, None, now_ms)]


def _worse(new: float | None, old: float | None, min_change: float, lower_is_worse: bool) -> bool:
    if new is None:
        return False
    if old is None:
        return True
    if lower_is_worse:
        return new < old - abs(old) * min_change
    return new > old + abs(old) * min_change


def transition(
    ep: AlertEpisode,
    event: EpisodeInput,
    now_ms: int,
    *,
    update_min_change: float = 0.1,
    lower_is_worse: bool = False,
) -> tuple[AlertEpisode, list[AlertEmission]]:
    """Apply one input to an open episode. A resolved episode ignores everything."""
    if not ep.is_open:
        return ep, []
    if isinstance(event, Observed):
        return _observed(ep, event, update_min_change, lower_is_worse)
    if isinstance(event, ConditionCleared):
        return _cleared(ep, event)
    if isinstance(event, Resolve):
        done = replace(ep, state=EpisodeState.RESOLVED.value, resolved_ms=event.trigger_ms,
                       updated_ms=event.trigger_ms, condition_active=False, message=event.message)
        return done, [_emit(done, EmissionEvent.RESOLVED, None, event.trigger_ms)]
    if isinstance(event, Acknowledge):
        return _acknowledge(ep, event, now_ms)
    if isinstance(event, Snooze):
        return _snooze(ep, event, now_ms)
    if isinstance(event, Tick):
        return _tick(ep, event, now_ms)
    raise TypeError(f"unknown episode input {event!r}")


def _observed(ep: AlertEpisode, ev: Observed, min_change: float,
              lower_is_worse: bool) -> tuple[AlertEpisode, list[AlertEmission]]:
    recurred = not ep.condition_active
    reprioritised = ev.priority != ep.priority
    worse = _worse(ev.value, ep.value, min_change, lower_is_worse)
    if not (recurred or reprioritised or worse):
        return ep, []
    if recurred:
        detail = f"recurred: {ev.message}"
    elif reprioritised:
        detail = f"priority {ep.priority} -> {ev.priority}: {ev.message}"
    else:
        detail = f"worsened: {ev.message}"
    new = replace(ep, value=ev.value, message=ev.message, priority=ev.priority,
                  updated_ms=ev.trigger_ms, condition_active=True)
    return new, [_emit(new, EmissionEvent.UPDATED, ev.trigger_ms, ev.trigger_ms, detail=detail)]


def _cleared(ep: AlertEpisode, ev: ConditionCleared) -> tuple[AlertEpisode, list[AlertEmission]]:
    if not ep.condition_active:
        return ep, []
    if not ep.latching or ep.state == EpisodeState.ACKNOWLEDGED:
        done = replace(ep, state=EpisodeState.RESOLVED.value, resolved_ms=ev.trigger_ms,
                       updated_ms=ev.trigger_ms, condition_active=False,
                       message=f"{ev.message} (was: {ep.message})")
        return done, [_emit(done, EmissionEvent.RESOLVED, None, ev.trigger_ms)]
    # Latching: the condition ended but nobody has acknowledged it yet; it stays raised.
    new = replace(ep, condition_active=False, updated_ms=ev.trigger_ms,
                  message=f"{ep.message}; condition ended, awaiting acknowledgement")
    return new, [_emit(new, EmissionEvent.UPDATED, ev.trigger_ms, ev.trigger_ms,
                       detail=f"condition ended ({ev.message}); latched until acknowledged")]


def _acknowledge(ep: AlertEpisode, ev: Acknowledge,
                 now_ms: int) -> tuple[AlertEpisode, list[AlertEmission]]:
    if ep.state == EpisodeState.ACKNOWLEDGED:
        return ep, []
    detail = f"acknowledged by {ev.by}"
    acked = replace(ep, state=EpisodeState.ACKNOWLEDGED.value, acked_by=ev.by,
                    acked_ms=ev.issued_ms, snoozed_until_ms=None)
    emissions = [_emit(acked, EmissionEvent.ACKNOWLEDGED, ev.action_id, now_ms, actor=ev.by,
                       detail=detail)]
    if ep.condition_active:
        return acked, emissions
    # Latched alert whose condition is already over: the acknowledgement closes it.
    done = replace(acked, state=EpisodeState.RESOLVED.value, resolved_ms=now_ms)
    emissions.append(_emit(done, EmissionEvent.RESOLVED, None, now_ms,
                           detail="resolved: the condition had ended and is now acknowledged"))
    return done, emissions


def _snooze(ep: AlertEpisode, ev: Snooze, now_ms: int) -> tuple[AlertEpisode, list[AlertEmission]]:
    if ep.snooze_action_id == ev.action_id or ev.until_ms <= now_ms:
        return ep, []
    new = replace(ep, state=EpisodeState.SNOOZED.value, snoozed_until_ms=ev.until_ms,
                  snooze_action_id=ev.action_id)
    return new, [_emit(new, EmissionEvent.SNOOZED, ev.action_id, now_ms, actor=ev.by,
                       detail=f"snoozed by {ev.by} until {ev.until_ms}")]


def _tick(ep: AlertEpisode, ev: Tick, now_ms: int) -> tuple[AlertEpisode, list[AlertEmission]]:
    if ep.state == EpisodeState.SNOOZED:
        if ep.snoozed_until_ms is None or now_ms < ep.snoozed_until_ms:
            return ep, []
        back = EpisodeState.ACKNOWLEDGED if ep.acked_by else EpisodeState.RAISED
        # The escalation clock restarts: the snooze was a deliberate human decision.
        new = replace(ep, state=back.value, snoozed_until_ms=None, escalated_ms=now_ms)
        return new, [_emit(new, EmissionEvent.UNSNOOZED, ep.snooze_action_id, now_ms,
                           detail=f"snooze expired; {back.value} again: {ep.message}")]
    if ev.escalate_after_s is None or ep.state not in (EpisodeState.RAISED,
                                                       EpisodeState.ESCALATED):
        return ep, []
    if ep.escalation_level >= ev.max_escalation_level:
        return ep, []
    wait_s = ev.escalate_after_s if ep.escalation_level == 0 else ev.escalation_repeat_s
    since = ep.escalated_ms if ep.escalated_ms is not None else ep.raised_ms
    if now_ms - since < wait_s * 1000:
        return ep, []
    level = ep.escalation_level + 1
    new = replace(ep, state=EpisodeState.ESCALATED.value, escalation_level=level,
                  escalated_ms=now_ms)
    unacked_s = (now_ms - ep.raised_ms) / 1000
    return new, [_emit(new, EmissionEvent.ESCALATED, level, now_ms,
                       detail=f"escalated to level {level}: unacknowledged for {unacked_s:.0f} s")]
