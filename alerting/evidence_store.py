"""Evidence strips in Redis (see :mod:`stream.evidence` for what a strip is).

Keys (``P`` = prefix):

* ``P:strip:alert:<alert id>``          hash: ``meta`` (JSON) + ``trace:<signal>`` (8-bit codes)
* ``P:strip:device-alarm:<alarm id>``   the same, for one bedside-alarm decision
* ``P:patient:<pid>:strips``            zset ``<kind>:<ref id>`` by strip start (event ms)

Written once (the first write wins: a redelivered finding raises the same alert again, and
its strip must not be replaced by one cut later from another part of the buffer), with a
TTL (``VITALSTREAM_STRIP_TTL_S``, default 7 days like a resolved alert). A strip is 2-5 KB,
and only high-priority alerts and bedside alarms get one.
"""

from __future__ import annotations

from typing import Any

import redis

from stream.evidence import EvidenceStrip

DEFAULT_STRIP_TTL_S = 7 * 24 * 3600
STRIP_KINDS = ("alert", "device-alarm")

_PUT_LUA = r"""
local key = KEYS[1]
if redis.call('EXISTS', key) == 1 then return 0 end
local ttl = tonumber(ARGV[1])
for i = 4, #ARGV, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', key, ttl)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ttl)
return 1
"""


class RedisEvidenceStore:
    def __init__(self, client: redis.Redis, prefix: str = "vs", *, ttl_s: int = DEFAULT_STRIP_TTL_S) -> None:
        if not prefix or ":" in prefix:
            raise ValueError("prefix must be non-empty and contain no ':'")
        if ttl_s <= 0:
            raise ValueError("strip TTL must be > 0 s")
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._put = client.register_script(_PUT_LUA)

    def key(self, kind: str, ref_id: str) -> str:
        if kind not in STRIP_KINDS:
            raise ValueError(f"strip kind must be one of {STRIP_KINDS}")
        return f"{self.prefix}:strip:{kind}:{ref_id}"

    def index_key(self, patient_id: str) -> str:
        return f"{self.prefix}:patient:{patient_id}:strips"

    def put(self, strip: EvidenceStrip) -> bool:
        """Store a strip unless one is already stored for it; True if written."""
        args: list[Any] = [self.ttl_s, strip.start_ms, f"{strip.kind}:{strip.ref_id}"]
        for name, value in strip.to_redis().items():
            args += [name, value]
        keys = [self.key(strip.kind, strip.ref_id), self.index_key(strip.patient_id)]
        return int(self._put(keys=keys, args=args)) == 1

    def get(self, kind: str, ref_id: str) -> EvidenceStrip | None:
        raw = self.client.hgetall(self.key(kind, ref_id))
        return EvidenceStrip.from_redis(raw) if raw else None

    def exists(self, kind: str, ref_id: str) -> bool:
        return bool(self.client.exists(self.key(kind, ref_id)))

    def of_patient(self, patient_id: str, limit: int = 100) -> list[tuple[str, str, int]]:
        """(kind, ref id, start ms) of the patient's newest strips, oldest first; entries
        whose strip expired are pruned."""
        index = self.index_key(patient_id)
        rows = self.client.zrange(index, -limit, -1, withscores=True)
        out: list[tuple[str, str, int]] = []
        gone = []
        pipe = self.client.pipeline(transaction=False)
        names = []
        for member, score in rows:
            name = member.decode() if isinstance(member, bytes) else str(member)
            kind, _, ref = name.partition(":")
            names.append((name, kind, ref, int(score)))
            pipe.exists(f"{self.prefix}:strip:{name}")
        for (name, kind, ref, start), alive in zip(names, pipe.execute(), strict=True):
            if alive:
                out.append((kind, ref, start))
            else:
                gone.append(name)
        if gone:
            self.client.zrem(index, *gone)
        return out
