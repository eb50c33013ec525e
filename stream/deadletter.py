"""Dead-letter envelope: the original bytes, where they came from and why they were refused.

Nothing a gateway sends is lost: an invalid message is wrapped and published to
``vitals.deadletter`` so it can be inspected, fixed and re-published.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from stream.wire import check_fields, load_json_object


class InvalidDeadLetter(ValueError):
    """Bytes of ``vitals.deadletter`` that are not an envelope this module wrote."""


@dataclass(frozen=True)
class DeadLetter:
    reason: str  # machine-groupable, e.g. "non_finite_samples"
    detail: str
    topic: str
    partition: int
    offset: int
    key: str | None
    original_b64: str
    received_ms: int

    @classmethod
    def wrap(
        cls,
        *,
        reason: str,
        detail: str,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        original: bytes | None,
        received_ms: int,
    ) -> DeadLetter:
        return cls(
            reason=reason,
            detail=detail[:500],
            topic=topic,
            partition=partition,
            offset=offset,
            key=key.decode(errors="replace") if key is not None else None,
            original_b64=base64.b64encode(original or b"").decode(),
            received_ms=received_ms,
        )

    @property
    def original(self) -> bytes:
        return base64.b64decode(self.original_b64)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> DeadLetter:
        """Decode an envelope (tools that inspect or re-publish dead letters); raises
        :class:`InvalidDeadLetter` for anything else. Unknown fields are ignored (a newer
        writer's additions)."""
        obj: dict[str, Any] = load_json_object(data, InvalidDeadLetter, "dead letter")
        check_fields(cls, obj, InvalidDeadLetter)
        try:
            base64.b64decode(obj["original_b64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidDeadLetter(f"original_b64 is not base64: {exc}") from None
        return cls(**{k: obj[k] for k in _FIELDS})


_FIELDS = tuple(f.name for f in fields(DeadLetter))
