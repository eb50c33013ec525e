"""Where the dashboard's data comes from: the Redis keys the worker writes.

* :class:`WardReader` reads (synchronous redis; the app runs it in a thread): the alert
  store (``alerting.store``), the ward's vitals and trends (``alerting.ward_store``) and the
  evidence strips (``alerting.evidence_store``), and shapes them with ``dashboard.views``.
* :class:`LiveFeed` follows the streams ``P:alerts`` (every applied alert change, with the
  alert's full hash) and ``P:vitals`` (every snapshot the worker writes) with one blocking
  ``XREAD`` and fans each change out to the connected browsers as a server-sent event. One
  read serves every browser: no browser polls. It remembers the open alerts and latest
  vitals per patient (loaded at start, then from the streams) to send whole tiles. If Redis
  goes away it reconnects and tells the browsers to reload the board (``resync``): changes
  made while it was away are then in the board they load.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from alerting.evidence_store import RedisEvidenceStore
from alerting.store import Alert, RedisAlertStore
from alerting.ward import VitalsSnapshot
from alerting.ward_store import RedisWardStore
from dashboard import views

log = logging.getLogger("dashboard.source")


def now_ms() -> int:
    return int(time.time() * 1000)


class WardReader:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.alerts = RedisAlertStore(client, prefix)
        self.ward = RedisWardStore(client, prefix)
        self.strips = RedisEvidenceStore(client, prefix)

    def snapshot_state(self) -> tuple[list[str], dict[str, tuple[VitalsSnapshot, int | None]], list[Alert]]:
        patients = self.ward.patients()
        open_alerts = self.alerts.list_alerts()
        latest = self.ward.latest(sorted(set(patients) | {a.patient_id for a in open_alerts}))
        return patients, latest, open_alerts

    def board(self) -> dict[str, Any]:
        patients, latest, open_alerts = self.snapshot_state()
        return views.board_view(patients, latest, open_alerts, now_ms())

    def alert_list(self, include_resolved: bool = False) -> list[dict[str, Any]]:
        alerts = self.alerts.list_alerts(include_resolved=include_resolved)
        return [views.alert_view(a) for a in views.sort_alerts(alerts)]

    def _aliases(self, alert_id: str) -> list[str]:
        return sorted(m.decode() for m in self.client.smembers(f"{self.prefix}:alert:{alert_id}:aliases"))

    def _alert_strip_id(self, alert: Alert) -> str | None:
        for ref in (alert.alert_id, *self._aliases(alert.alert_id)):
            if self.strips.exists("alert", ref):
                return ref
        return None

    def alert_detail(self, alert_id: str) -> dict[str, Any] | None:
        alert = self.alerts.get(alert_id)
        if alert is None:
            return None
        decisions = [views.device_alarm_view(d) for d in self.alerts.device_alarms(alert.patient_id)
                     if d.get("alert_id") == alert.alert_id]
        for d in decisions:
            d["has_strip"] = self.strips.exists("device-alarm", d["alarm_id"])
        return {"alert": views.alert_view(alert), "audit": views.audit_view(self.alerts.history(alert.alert_id)),
                "strip_ref": self._alert_strip_id(alert), "device_alarms": decisions}

    def alert_strip(self, alert_id: str) -> dict[str, Any] | None:
        alert = self.alerts.get(alert_id)
        ref = self._alert_strip_id(alert) if alert is not None else None
        strip = self.strips.get("alert", ref) if ref else None
        return views.strip_view(strip) if strip is not None else None

    def device_alarms(self, patient_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        rows = [views.device_alarm_view(d) for d in self.alerts.device_alarms(patient_id, limit)]
        return list(reversed(rows))  # newest first

    def device_alarm(self, alarm_id: str) -> dict[str, Any] | None:
        raw = self.client.hgetall(f"{self.prefix}:device-alarm:{alarm_id}")
        if not raw:
            return None
        decision = views.device_alarm_view({k.decode(): v.decode() for k, v in raw.items()})
        strip = self.strips.get("device-alarm", alarm_id)
        return {"decision": decision, "strip": views.strip_view(strip) if strip is not None else None}

    def patient(self, patient_id: str) -> dict[str, Any] | None:
        alerts = self.alerts.list_alerts(patient_id, include_resolved=True)
        latest = self.ward.latest([patient_id])
        if not alerts and patient_id not in latest:
            return None
        snap, written = latest.get(patient_id, (None, None))
        open_alerts = [a for a in alerts if a.is_open]
        history = sorted(alerts, key=lambda a: (a.raised_ms, a.alert_id), reverse=True)
        strips = [{"kind": k, "ref_id": r, "start_ms": s} for k, r, s in self.strips.of_patient(patient_id)]
        return {"tile": views.tile_view(patient_id, snap, written, open_alerts),
                "alerts": [views.alert_view(a) for a in history],
                "device_alarms": self.device_alarms(patient_id), "strips": strips[::-1]}

    def trends(self, patient_id: str, hours: float) -> dict[str, Any]:
        """The last ``hours`` of event time before the patient's newest trend point."""
        points = self.ward.trend(patient_id)
        if points:
            since = points[-1].t_ms - int(hours * 3_600_000)
            points = [p for p in points if p.t_ms >= since]
        return {"patient_id": patient_id, "hours": hours, **views.trend_view(points)}


def sse_frame(event: str, data: Any) -> bytes:
    """One server-sent event (``data`` as one line of JSON)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@dataclass
class FeedCounters:
    alert_entries: int = 0
    vitals_entries: int = 0
    frames_sent: int = 0
    subscribers_dropped: int = 0
    reconnects: int = 0


class LiveFeed:
    def __init__(self, client: aioredis.Redis, reader: WardReader, *, queue_size: int = 2000,
                 block_ms: int = 5000) -> None:
        self.client = client
        self.reader = reader
        self.alerts_stream = f"{reader.prefix}:alerts"
        self.vitals_stream = f"{reader.prefix}:vitals"
        self.queue_size = queue_size
        self.block_ms = block_ms
        self._subscribers: set[asyncio.Queue[bytes | None]] = set()
        self.open_by_patient: dict[str, dict[str, Alert]] = {}
        self.latest: dict[str, tuple[VitalsSnapshot, int | None]] = {}
        self.counters = FeedCounters()
        self.ready = asyncio.Event()
        self.stopping = False
        # Called with each batch after it was fanned out (the bench's server-side clock).
        self.on_batch: Callable[[int, int], None] | None = None

    # ------------------------------------------------------------------ subscribers
    def subscribe(self) -> asyncio.Queue[bytes | None]:
        q: asyncio.Queue[bytes | None] = asyncio.Queue(self.queue_size)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[bytes | None]) -> None:
        self._subscribers.discard(q)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def broadcast(self, frame: bytes) -> None:
        for q in list(self._subscribers):
            try:
                q.put_nowait(frame)
                self.counters.frames_sent += 1
            except asyncio.QueueFull:
                # A browser that cannot keep up is cut off; it reconnects and reloads the board.
                self._subscribers.discard(q)
                self.counters.subscribers_dropped += 1
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(None)

    # ------------------------------------------------------------------------ state
    async def load(self) -> None:
        _, latest, open_alerts = await asyncio.to_thread(self.reader.snapshot_state)
        self.latest = dict(latest)
        self.open_by_patient = {}
        for a in open_alerts:
            self.open_by_patient.setdefault(a.patient_id, {})[a.alert_id] = a

    def tile(self, patient_id: str) -> dict[str, Any]:
        snap, written = self.latest.get(patient_id, (None, None))
        return views.tile_view(patient_id, snap, written, list(self.open_by_patient.get(patient_id, {}).values()))

    def apply_alert(self, fields: dict[str, str]) -> bytes:
        fields = dict(fields)
        fields["last_event"] = fields.get("event", fields.get("last_event", ""))
        alert = Alert.from_redis(fields)
        mine = self.open_by_patient.setdefault(alert.patient_id, {})
        before = mine.get(alert.alert_id)
        if before is not None and before.version > alert.version:
            alert = before  # an older change read late: the newer one stays
        elif alert.is_open:
            mine[alert.alert_id] = alert
        else:
            mine.pop(alert.alert_id, None)
        if not mine:
            self.open_by_patient.pop(alert.patient_id, None)
        return sse_frame("alert", {"alert": views.alert_view(alert), "tile": self.tile(alert.patient_id)})

    def apply_vitals(self, entries: list[tuple[int, dict[str, str]]]) -> bytes | None:
        changed: dict[str, None] = {}
        for written_ms, fields in entries:
            try:
                snap = VitalsSnapshot.from_fields(fields)
            except (KeyError, ValueError, TypeError):
                continue
            before = self.latest.get(snap.patient_id)
            if before is not None and before[0].t_ms > snap.t_ms:
                continue
            self.latest[snap.patient_id] = (snap, written_ms)
            changed[snap.patient_id] = None
        if not changed:
            return None
        return sse_frame("tiles", [self.tile(pid) for pid in changed])

    # ------------------------------------------------------------------------- loop
    async def run(self) -> None:
        """Follow both streams until cancelled."""
        ids = {self.alerts_stream: "$", self.vitals_stream: "$"}
        backoff = 0.5
        first = True
        # Checked each round as well as on cancellation: redis-py finishes a command it was
        # cancelled in and may swallow the cancellation.
        while not self.stopping:
            try:
                if first or not self.ready.is_set():
                    # Stream positions before the state is read: nothing falls in between.
                    ids = {k: await self._last_id(k) for k in ids}
                    await self.load()
                    if not first:
                        self.broadcast(sse_frame("resync", {}))
                    first = False
                    self.ready.set()
                reply = await self.client.xread(ids, count=1000, block=self.block_ms)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                if self.stopping:
                    return  # shutting down (a cancelled read can surface as a timeout), not an outage
                self.ready.clear()
                self.counters.reconnects += 1
                log.warning("Redis unavailable for the live feed (%s); retrying in %.1f s",
                            type(exc).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(10.0, backoff * 2)
                continue
            alert_n = vitals_n = 0
            for stream, entries in reply or []:
                name = stream.decode() if isinstance(stream, bytes) else stream
                if not entries:
                    continue
                ids[name] = entries[-1][0].decode() if isinstance(entries[-1][0], bytes) else entries[-1][0]
                if name == self.alerts_stream:
                    for _, raw in entries:
                        if raw:
                            self.broadcast(self.apply_alert(_decode(raw)))
                            alert_n += 1
                else:
                    batch = [(_entry_ms(eid), _decode(raw)) for eid, raw in entries if raw]
                    frame = self.apply_vitals(batch)
                    if frame is not None:
                        self.broadcast(frame)
                    vitals_n += len(batch)
            self.counters.alert_entries += alert_n
            self.counters.vitals_entries += vitals_n
            if self.on_batch is not None and (alert_n or vitals_n):
                self.on_batch(alert_n, vitals_n)

    async def _last_id(self, stream: str) -> str:
        last = await self.client.xrevrange(stream, count=1)
        if not last:
            return "0-0"
        eid = last[0][0]
        return eid.decode() if isinstance(eid, bytes) else eid


def _decode(raw: dict[Any, Any]) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()}


def _entry_ms(entry_id: Any) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return int(text.split("-", 1)[0])
