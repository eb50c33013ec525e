"""Care-team actions (acknowledge, snooze) as messages. Pure.

The care team's tool writes an action to Redis at once (``RedisAlertStore.ack/snooze``, so
everyone sees it) and publishes the same :class:`CareAction` to ``vitals.alert-actions``
(key = patient id) so the worker's state machine learns it (``process_action``). Both
paths produce the same emission id (``<alert>:acknowledged:<action_id>``), so whichever
reaches Redis second is a no-op.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

from stream.findings import VitalsFinding
from stream.wire import NotJSON, check_epoch_ms, load_json_object, parse_json

CARE_ACTION_MARKER = "care_action"
TICK_MARKER = "tick"
# Names (alert ids, who acted) longer than this are not a care-team tool's.
MAX_NAME_CHARS = 200
# A snooze is minutes; anything beyond a day is a broken tool, not a decision (the store
# caps what the care-team commands allow far lower, RedisAlertStore.max_snooze_minutes).
MAX_SNOOZE_MINUTES_ON_THE_WIRE = 24 * 60.0


class InvalidCareAction(ValueError):
    """A message of ``vitals.alert-actions`` the aggregator cannot use (a care action or a
    tick); the text is the dead-letter detail."""


class ActionKind(StrEnum):
    ACK = "ack"
    SNOOZE = "snooze"


def action_id_for(kind: str, alert_id: str, by: str, issued_ms: int,
                  minutes: float | None) -> str:
    """Deterministic. An acknowledgement's id ignores the time: acknowledging the same alert
    twice (a retried command) is one action. A snooze's id includes it: snoozing again
    later is a new decision that extends the snooze."""
    parts = [kind, alert_id, by]
    if kind == ActionKind.SNOOZE:
        parts += [str(issued_ms), f"{minutes:g}"]
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class CareAction:
    kind: str  # "ack" | "snooze"
    alert_id: str
    patient_id: str
    by: str
    issued_ms: int  # wall clock of the care-team tool (epoch ms)
    minutes: float | None = None  # snooze duration
    action_id: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in tuple(ActionKind):
            raise InvalidCareAction(f"kind must be one of {', '.join(ActionKind)}, got {self.kind!r:.40}")
        for name in ("alert_id", "patient_id", "by", "action_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > MAX_NAME_CHARS:
                raise InvalidCareAction(f"{name} must be a string of at most {MAX_NAME_CHARS} characters")
        if not self.by:
            raise InvalidCareAction("a care action needs the name of who took it")
        check_epoch_ms(self.issued_ms, "issued_ms", InvalidCareAction)
        if self.kind == ActionKind.SNOOZE:
            minutes = self.minutes
            # (Comparisons only: math.isfinite would overflow on a huge JSON integer.)
            if (isinstance(minutes, bool) or not isinstance(minutes, int | float)
                    or not 0 < minutes <= MAX_SNOOZE_MINUTES_ON_THE_WIRE):
                raise InvalidCareAction(
                    f"snooze needs minutes in (0, {MAX_SNOOZE_MINUTES_ON_THE_WIRE:g}], got {minutes!r:.40}")
        elif self.minutes is not None:
            raise InvalidCareAction("only a snooze has minutes")
        if not self.action_id:
            object.__setattr__(self, "action_id", action_id_for(
                self.kind, self.alert_id, self.by, self.issued_ms, self.minutes))

    @classmethod
    def ack(cls, alert_id: str, patient_id: str, by: str, issued_ms: int) -> CareAction:
        return cls(ActionKind.ACK.value, alert_id, patient_id, by, issued_ms)

    @classmethod
    def snooze(cls, alert_id: str, patient_id: str, by: str, issued_ms: int,
               minutes: float) -> CareAction:
        return cls(ActionKind.SNOOZE.value, alert_id, patient_id, by, issued_ms, minutes)

    @property
    def snoozed_until_ms(self) -> int | None:
        if self.minutes is None:
            return None
        return self.issued_ms + round(self.minutes * 60_000)

    def to_dict(self) -> dict[str, Any]:
        return {CARE_ACTION_MARKER: 1, **asdict(self)}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, obj: Any) -> CareAction:
        """Raises :class:`InvalidCareAction` for anything but a care action's fields."""
        if not isinstance(obj, dict):
            raise InvalidCareAction(f"a care action must be a JSON object, got {type(obj).__name__}")
        known = {f.name for f in fields(cls)}
        missing = sorted({"kind", "alert_id", "patient_id", "by", "issued_ms"} - set(obj))
        if missing:
            raise InvalidCareAction(f"care action: missing field(s) {', '.join(missing)}")
        return cls(**{k: v for k, v in obj.items() if k in known})

    @classmethod
    def from_json(cls, data: bytes | str) -> CareAction:
        return cls.from_dict(load_json_object(data, InvalidCareAction, "care action"))


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passing for one patient (``process_tick``): the worker's own timer publishes one
    per owned patient to ``vitals.alert-actions``, so the transition runs in the patient's
    event context (see ``stream.agents.aggregator``). ``now_ms`` is event time."""

    patient_id: str
    now_ms: int

    def __post_init__(self) -> None:
        if not isinstance(self.patient_id, str) or not 0 < len(self.patient_id) <= MAX_NAME_CHARS:
            raise InvalidCareAction(f"tick: patient_id must be a string of 1-{MAX_NAME_CHARS} characters")
        check_epoch_ms(self.now_ms, "tick", InvalidCareAction)

    def to_json(self) -> bytes:
        return json.dumps({TICK_MARKER: self.now_ms, "patient_id": self.patient_id}).encode()


def decode_action_message(data: bytes | str) -> CareAction | Tick:
    """Decode a message of ``vitals.alert-actions``: a care action or a tick. Raises
    :class:`InvalidCareAction` (a ValueError) for anything else."""
    obj = load_json_object(data, InvalidCareAction, "alert-actions message")
    if TICK_MARKER in obj:
        return Tick(obj.get("patient_id"), obj[TICK_MARKER])  # type: ignore[arg-type]
    return CareAction.from_dict(obj)


def decode_alert_input(data: bytes | str, now_ms: int | None = None) -> VitalsFinding | CareAction:
    """Decode a message of the aggregator's input topics (``vitals.findings`` and
    ``vitals.alert-actions`` can be consumed as one stream). Raises ValueError on junk
    (:class:`InvalidCareAction` or :class:`~stream.findings.InvalidFinding`)."""
    try:
        obj = parse_json(data)
    except NotJSON as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    if obj.get(CARE_ACTION_MARKER):
        return CareAction.from_dict(obj)
    return VitalsFinding.from_wire(obj, now_ms)
