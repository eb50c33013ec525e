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

CARE_ACTION_MARKER = "care_action"


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
        ActionKind(self.kind)
        if not self.by:
            raise ValueError("a care action needs the name of who took it")
        if self.kind == ActionKind.SNOOZE and (self.minutes is None or self.minutes <= 0):
            raise ValueError("snooze needs minutes > 0")
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
    def from_dict(cls, obj: dict[str, Any]) -> CareAction:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in known})

    @classmethod
    def from_json(cls, data: bytes | str) -> CareAction:
        return cls.from_dict(json.loads(data))


def decode_alert_input(data: bytes | str) -> VitalsFinding | CareAction:
    """Decode a message of the aggregator's input topics (``vitals.findings`` and
    ``vitals.alert-actions`` can be consumed as one stream). Raises ValueError on junk."""
    try:
        obj = json.loads(data)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    try:
        if obj.get(CARE_ACTION_MARKER):
            return CareAction.from_dict(obj)
        return VitalsFinding.from_dict(obj)
    except (TypeError, KeyError) as exc:
        raise ValueError(f"malformed alert input: {exc}") from None
