"""The device-alarm message: an arrhythmia alarm the bedside monitor raised itself.

ICU bedside monitors run their own arrhythmia analysis and alarm on it; a gateway that
can read those alarms (HL7 / vendor export) forwards each one to ``vitals.device-alarms``,
keyed by patient id like the samples. The aggregator does not pass them on blindly: it
checks each against the pipeline's own measurements of the same seconds and forwards only
the alarms they do not contradict (``alerting/verification.py``). This is the job the
PhysioNet/CinC Challenge 2015 set ("reducing false arrhythmia alarms in the ICU").

JSON: ``{"schema_version": 1, "patient_id": "bed-7", "device_id": "mx800-3",
"alarm_type": "vtach", "t_ms": 1700000300000, "label": "V-Tach"}``. ``alarm_type`` is one of
the catalogue's life-threatening types (the gateway maps the vendor's alarm names);
``t_ms`` is the event time at which the monitor raised it, on the samples' clock.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from stream.schema import MAX_FUTURE_SKEW_MS, MIN_TIMESTAMP_MS
from stream.wire import NotJSON, parse_json

DEVICE_ALARM_SCHEMA_VERSION = 1
# Keyed by patient id and co-partitioned with the findings, like every aggregator input.
DEVICE_ALARMS_TOPIC = "vitals.device-alarms"
# The alarms a bedside monitor raises that the pipeline can verify: the high-priority
# arrhythmia types of the alert catalogue (CinC 2015's five).
VERIFIABLE_ALARM_TYPES = ("asystole", "vfib", "vtach", "extreme_brady", "extreme_tachy")
_MAX_TEXT = 200


class InvalidDeviceAlarm(ValueError):
    """A device-alarm message the aggregator cannot use; the text is the dead-letter reason."""


@dataclass(frozen=True, slots=True)
class DeviceAlarm:
    patient_id: str
    alarm_type: str
    t_ms: int
    device_id: str = ""
    label: str = ""  # the monitor's own name for it, shown to the care team
    schema_version: int = DEVICE_ALARM_SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.patient_id, str) or not 1 <= len(self.patient_id) <= _MAX_TEXT:
            raise InvalidDeviceAlarm("patient_id must be a string of 1-200 characters")
        if not isinstance(self.alarm_type, str) or self.alarm_type not in VERIFIABLE_ALARM_TYPES:
            raise InvalidDeviceAlarm(
                f"alarm_type {self.alarm_type!r} is not one of {', '.join(VERIFIABLE_ALARM_TYPES)}")
        if isinstance(self.t_ms, bool) or not isinstance(self.t_ms, int) or self.t_ms < 0:
            raise InvalidDeviceAlarm(f"t_ms must be a non-negative integer (epoch ms), got {self.t_ms!r}")
        for name in ("device_id", "label"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > _MAX_TEXT:
                raise InvalidDeviceAlarm(f"{name} must be a string of at most 200 characters")
        if self.schema_version != DEVICE_ALARM_SCHEMA_VERSION:
            raise InvalidDeviceAlarm(f"unsupported device-alarm schema_version {self.schema_version!r}")

    @property
    def alarm_id(self) -> str:
        """Deterministic: a redelivered alarm has the same id and is decided once."""
        return f"{self.patient_id}:{self.alarm_type}:{self.t_ms}"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str, now_ms: int | None = None) -> DeviceAlarm:
        """Decode a device-alarms message: a valid alarm, or :class:`InvalidDeviceAlarm`.
        Its time must be one a sample could carry (``stream.schema``): an alarm far in the
        future would wait for a finding that never comes, and stay in the patient's state."""
        try:
            obj = parse_json(data)
        except NotJSON as exc:
            raise InvalidDeviceAlarm(f"not JSON: {exc}") from None
        alarm = cls.from_dict(obj)
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if not MIN_TIMESTAMP_MS <= alarm.t_ms <= now + MAX_FUTURE_SKEW_MS:
            raise InvalidDeviceAlarm(f"t_ms {alarm.t_ms} is out of range (epoch ms, 2000-01-01 to now + 24 h)")
        return alarm

    @classmethod
    def from_dict(cls, obj: Any) -> DeviceAlarm:
        if not isinstance(obj, dict):
            raise InvalidDeviceAlarm("a device alarm must be a JSON object")
        unknown = set(obj) - {"patient_id", "alarm_type", "t_ms", "device_id", "label", "schema_version"}
        if unknown:
            raise InvalidDeviceAlarm(f"unknown field(s) {sorted(unknown)}")
        missing = {"patient_id", "alarm_type", "t_ms", "schema_version"} - set(obj)
        if missing:
            raise InvalidDeviceAlarm(f"missing field(s) {sorted(missing)}")
        return cls(**obj)
