"""Care-team applications follow alerts through a Redis stream consumer group.

Each application (a ward display, a pager gateway, the CLI's ``alerts tail``) uses its own
group name, so each sees every change once; several consumers of one group share the load.
Entries are acknowledged (XACK) after they were returned by :meth:`AlertSubscriber.poll`;
entries a crashed consumer had read but not acknowledged are re-read first when a consumer
of the same name starts again.

    sub = AlertSubscriber(redis.Redis(), prefix="vs", group="ward-7", consumer="display-1",
                          priorities={"high"})
    for alert in sub.follow(timeout_s=60):
        print(alert.priority, alert.type, alert.patient_id, alert.message)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis

from alerting.episode import EmissionEvent, EpisodeState
from alerting.store import Alert


class AlertSubscriber:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "vs",
        group: str = "care-team",
        consumer: str = "consumer-1",
        *,
        priorities: Iterable[str] | None = None,
        from_start: bool = False,
        include_snoozed_updates: bool = False,
    ) -> None:
        """``from_start``: a new group reads the retained stream from its beginning instead
        of only changes made after it was created. Updates to snoozed alerts are skipped
        unless ``include_snoozed_updates`` (that is what snoozing means)."""
        self.client = client
        self.stream = f"{prefix}:alerts"
        self.group = group
        self.consumer = consumer
        self.priorities = frozenset(priorities) if priorities else None
        self.include_snoozed_updates = include_snoozed_updates
        self._pending_checked = False
        try:
            client.xgroup_create(self.stream, group, id="0" if from_start else "$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _wanted(self, fields: dict[str, str]) -> bool:
        if self.priorities is not None and fields.get("priority") not in self.priorities:
            return False
        return not (
            not self.include_snoozed_updates
            and fields.get("state") == EpisodeState.SNOOZED
            and fields.get("event") == EmissionEvent.UPDATED
        )

    def poll(self, block_ms: int = 1000, count: int = 100) -> list[Alert]:
        """New alert changes for this group (waits up to ``block_ms`` for the first one).
        Each returned :class:`Alert` is the snapshot right after the change; its
        ``last_event`` says what changed (raised, updated, acknowledged, escalated, ...)."""
        if not self._pending_checked:
            # Our own entries delivered before a crash but never acknowledged come first.
            entries = self._read("0", count, None)
            if len(entries) < count:
                self._pending_checked = True
            if entries:
                return self._handle(entries)
        return self._handle(self._read(">", count, block_ms))

    def _read(self, start: str, count: int, block_ms: int | None) -> list[tuple[Any, Any]]:
        reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: start},
                                       count=count, block=block_ms)
        if not reply:
            return []
        _, entries = reply[0]
        return list(entries)

    def _handle(self, entries: list[tuple[Any, Any]]) -> list[Alert]:
        alerts: list[Alert] = []
        for _, raw in entries:
            if not raw:  # trimmed from the stream (MAXLEN) while pending
                continue
            fields = {(k.decode() if isinstance(k, bytes) else k):
                      (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()}
            if self._wanted(fields):
                fields["last_event"] = fields.get("event", fields.get("last_event", ""))
                alerts.append(Alert.from_redis(fields))
        if entries:
            self.client.xack(self.stream, self.group, *[eid for eid, _ in entries])
        return alerts

    def follow(self, timeout_s: float | None = None, block_ms: int = 1000) -> Iterator[Alert]:
        """Yield alert changes as they arrive, until ``timeout_s`` (None: forever)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while deadline is None or time.monotonic() < deadline:
            wait = block_ms
            if deadline is not None:
                wait = max(1, min(block_ms, int((deadline - time.monotonic()) * 1000)))
            yield from self.poll(block_ms=wait)

    def __iter__(self) -> Iterator[Alert]:
        return self.follow()
