"""The ward's latest vitals and trends in Redis (see :mod:`alerting.ward`).

Keys (``P`` = prefix):

* ``P:patient:<pid>:vitals``  hash, the latest :class:`~alerting.ward.VitalsSnapshot`; TTL ``keep_s``
* ``P:vitals``                stream of snapshots as written (the dashboard follows it), MAXLEN ~
* ``P:ward``                  zset patient id -> wall-clock ms of its latest snapshot (the board's
  patient list; members older than ``keep_s`` are pruned on read)
* ``P:patient:<pid>:trend``   zset of :class:`~alerting.ward.TrendPoint` JSON by point start
  (event ms), the points older than ``trend_keep_s`` before the newest trimmed on each write

The worker writes them in one pipelined round trip per flush (``stream.agents.care_feed``),
not one per finding: a patient's snapshot changes every hop (2 s), and the board needs
seconds, not milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import redis

from alerting.ward import DEFAULT_TREND_KEEP_S, TrendPoint, VitalsSnapshot

DEFAULT_VITALS_KEEP_S = 24 * 3600
DEFAULT_VITALS_STREAM_MAXLEN = 20_000


class RedisWardStore:
    def __init__(self, client: redis.Redis, prefix: str = "vs", *, keep_s: int = DEFAULT_VITALS_KEEP_S,
                 trend_keep_s: float = DEFAULT_TREND_KEEP_S,
                 stream_maxlen: int = DEFAULT_VITALS_STREAM_MAXLEN) -> None:
        if not prefix or ":" in prefix:
            raise ValueError("prefix must be non-empty and contain no ':'")
        self.client = client
        self.prefix = prefix
        self.keep_s = keep_s
        self.trend_keep_ms = int(trend_keep_s * 1000)
        self.stream_maxlen = stream_maxlen

    @property
    def stream_key(self) -> str:
        return f"{self.prefix}:vitals"

    @property
    def ward_key(self) -> str:
        return f"{self.prefix}:ward"

    def vitals_key(self, patient_id: str) -> str:
        return f"{self.prefix}:patient:{patient_id}:vitals"

    def trend_key(self, patient_id: str) -> str:
        return f"{self.prefix}:patient:{patient_id}:trend"

    # --------------------------------------------------------------------- writes

    def write(self, snapshots: Sequence[VitalsSnapshot], points: Iterable[tuple[str, TrendPoint]] = (),
              now_ms: int | None = None) -> None:
        """Latest snapshots and the patients' current trend points, one round trip. A
        point replaces the one with the same start (it is a running mean)."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        pipe = self.client.pipeline(transaction=False)
        for snap in snapshots:
            fields = snap.to_fields()
            key = self.vitals_key(snap.patient_id)
            pipe.hset(key, mapping={**fields, "written_ms": str(now)})
            pipe.expire(key, self.keep_s)
            pipe.xadd(self.stream_key, fields, maxlen=self.stream_maxlen, approximate=True)
            pipe.zadd(self.ward_key, {snap.patient_id: now})
        for patient_id, point in points:
            key = self.trend_key(patient_id)
            pipe.zremrangebyscore(key, point.t_ms, point.t_ms)
            pipe.zadd(key, {point.to_json(): point.t_ms})
            pipe.zremrangebyscore(key, "-inf", f"({point.t_ms - self.trend_keep_ms}")
            pipe.expire(key, int(self.trend_keep_ms / 1000) + 3600)
        pipe.execute()

    # ---------------------------------------------------------------------- reads

    def patients(self, now_ms: int | None = None) -> list[str]:
        """Patients with a snapshot within ``keep_s``, ordered by id."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        cutoff = now - self.keep_s * 1000
        self.client.zremrangebyscore(self.ward_key, "-inf", f"({cutoff}")
        ids = self.client.zrange(self.ward_key, 0, -1)
        return sorted(i.decode() if isinstance(i, bytes) else str(i) for i in ids)

    def latest(self, patient_ids: Sequence[str]) -> dict[str, tuple[VitalsSnapshot, int | None]]:
        """Each patient's latest snapshot and when it was written (wall ms), if any."""
        if not patient_ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for pid in patient_ids:
            pipe.hgetall(self.vitals_key(pid))
        out: dict[str, tuple[VitalsSnapshot, int | None]] = {}
        for pid, raw in zip(patient_ids, pipe.execute(), strict=True):
            if raw:
                written = raw.get(b"written_ms", raw.get("written_ms"))
                out[pid] = (VitalsSnapshot.from_fields(raw), int(written) if written else None)
        return out

    def trend(self, patient_id: str, since_ms: int | None = None) -> list[TrendPoint]:
        """The patient's trend points from ``since_ms`` (event time), oldest first."""
        low = "-inf" if since_ms is None else since_ms
        rows = self.client.zrangebyscore(self.trend_key(patient_id), low, "+inf")
        return [TrendPoint.from_json(r) for r in rows]
