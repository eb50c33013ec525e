"""Acknowledge and snooze: the one path every care-team tool takes (`vitalstream alerts
ack|snooze`, the dashboard's buttons).

1. Redis first (:meth:`RedisAlertStore.ack` / :meth:`~RedisAlertStore.snooze`): atomic,
   audited with the user's name, visible to every screen at once.
2. Then the same :class:`~alerting.actions.CareAction` to ``vitals.alert-actions`` (key =
   patient id), so the worker's state machine learns it and stops escalating. Both carry
   the same emission id, so whichever reaches Redis second changes nothing.

If the broker cannot be reached, Redis keeps the change and the result says the worker was
not told (the tool shows it); the next acknowledgement of the same alert is a new try.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from alerting.actions import ActionKind, CareAction
from alerting.store import ActionOutcome, RedisAlertStore
from stream.connections import KafkaSecurity


class ActionPublisher(Protocol):
    async def send(self, action: CareAction) -> None: ...


class KafkaActionPublisher:
    """A producer for ``vitals.alert-actions``; start once, send many (the dashboard), or
    use as ``async with`` for one action (the CLI)."""

    def __init__(self, bootstrap: str, timeout_s: float = 15.0, security: KafkaSecurity | None = None) -> None:
        """``security``: the transport security every Kafka client of the project uses."""
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self.security = security or KafkaSecurity()
        self._producer = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                    request_timeout_ms=int(self.timeout_s * 1000), **self.security.client_kwargs())
        await asyncio.wait_for(producer.start(), timeout=self.timeout_s)
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def send(self, action: CareAction) -> None:
        from stream.services import ACTIONS_TOPIC

        if self._producer is None:
            await self.start()
        assert self._producer is not None
        await asyncio.wait_for(
            self._producer.send_and_wait(ACTIONS_TOPIC, action.to_json(), key=action.patient_id.encode()),
            timeout=self.timeout_s)

    async def __aenter__(self) -> KafkaActionPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@dataclass(frozen=True, slots=True)
class CareActionResult:
    outcome: ActionOutcome
    published: bool  # the worker was told (vitals.alert-actions)
    publish_error: str = ""  # why not, when it was not


def apply_care_action(store: RedisAlertStore, kind: str, alert_id: str, by: str,
                      minutes: float | None = None) -> ActionOutcome | None:
    """Step 1, the Redis write. None if there is no such alert; ValueError for a snooze
    outside (0, max] minutes or an unknown kind."""
    if not by:
        raise ValueError("a care action needs the name of who took it")
    if ActionKind(kind) is ActionKind.ACK:
        return store.ack(alert_id, by)
    if minutes is None:
        raise ValueError("snooze needs minutes")
    return store.snooze(alert_id, minutes, by)


async def take_care_action(store: RedisAlertStore, publisher: ActionPublisher | None, kind: str,
                           alert_id: str, by: str, minutes: float | None = None) -> CareActionResult | None:
    """Both steps. ``publisher`` None: no broker configured (Redis only, said in the result)."""
    outcome = await asyncio.to_thread(apply_care_action, store, kind, alert_id, by, minutes)
    if outcome is None:
        return None
    if publisher is None:
        return CareActionResult(outcome, False, "no Kafka broker configured")
    try:
        await publisher.send(outcome.action)
    except Exception as exc:  # Redis already has it; the caller says so
        return CareActionResult(outcome, False, f"{type(exc).__name__}: {exc}")
    return CareActionResult(outcome, True)
