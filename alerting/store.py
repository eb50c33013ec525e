"""Alerts in Redis: one atomic, idempotent Lua write per emission.

Key layout (``P`` = prefix, e.g. ``vs``; alerting/README.md has the full table):

* ``P:alert:<id>``                hash, the alert's current snapshot
* ``P:alert:<id>:audit``          list of JSON audit entries, one per applied change
* ``P:alert:<id>:applied``        set of applied emission ids (the idempotence record)
* ``P:alert:<id>:aliases``        set of duplicate episode ids merged into this alert
* ``P:alias:<id>``                string, duplicate id -> the alert it was merged into
* ``P:alerts``                    stream of every applied change (consumer groups), MAXLEN ~
* ``P:alerts:index``              zset of all alert ids by raised_ms
* ``P:alerts:open``               zset of open alert ids by raised_ms
* ``P:patient:<pid>:alerts``      zset of the patient's alert ids by raised_ms
* ``P:patient:<pid>:open``        hash alert type -> open alert id
* channel ``P:alerts:live``       pub/sub notification per applied change
* ``P:device-alarm:<alarm id>``   hash, one bedside-monitor alarm and what became of it
  (confirmed / suppressed / unverifiable, why, the alert that carries it)
* ``P:device-alarms``             stream of those decisions (audit of what was suppressed), MAXLEN ~
* ``P:patient:<pid>:device-alarms`` zset of the patient's decided alarm ids by alarm time

Why it is exactly-once: every emission id is deterministic (:mod:`alerting.episode`);
the script checks and records it in the same atomic step as the write. Replaying the
same findings therefore writes nothing new. If the worker lost its state and re-derives
an episode for a condition that already has an open alert of the same type under another
id, the script merges it into the open alert (alias) instead of raising a second one.

Care-team actions written here (:meth:`RedisAlertStore.ack`, :meth:`~RedisAlertStore.snooze`)
use the same emission ids as the worker's state machine produces when it later learns the
action, so the later one is a no-op; updates from the worker never undo an
acknowledgement or a snooze.

Only this module and :mod:`alerting.subscriber` import redis. The script touches keys
derived from the prefix, so it needs a single Redis (primary/replica or Sentinel), not a
Redis Cluster.

Least privilege: :func:`acl_rules` is the Redis ACL of an application user, the keys and
channels under the prefix and only the commands listed in :data:`STORE_COMMANDS` (Redis
checks the commands the Lua scripts call against it too); ``vitalstream services
redis-acl`` prints it for an ACL file (docs/security.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis

from alerting.actions import CareAction
from alerting.episode import AlertEmission, EmissionEvent, EpisodeState
from alerting.verification import DeviceAlarmDecision

DEFAULT_STREAM_MAXLEN = 100_000
DEFAULT_RESOLVED_TTL_S = 7 * 24 * 3600
# A snooze is a short, deliberate silence, not a way to switch an alarm off.
DEFAULT_MAX_SNOOZE_MINUTES = 120.0

_APPLY_LUA = r"""
local p = ARGV[1]
local e = cjson.decode(ARGV[2])
local maxlen = ARGV[3]
local ttl = tonumber(ARGV[4])
local partial = ARGV[5] == '1'

local tm = redis.call('TIME')
local wall = tm[1] .. string.format('%03d', math.floor(tonumber(tm[2]) / 1000))

local id = e.alert_id
local alias = redis.call('GET', p .. ':alias:' .. id)
if alias then id = alias end
local key = p .. ':alert:' .. id
local applied = key .. ':applied'
if redis.call('SISMEMBER', applied, e.emission_id) == 1 then return 0 end
local event = e.event
local cur = redis.call('HGET', key, 'state')
local open_key = p .. ':patient:' .. e.patient_id .. ':open'
local merged = ''
if not cur then
  if partial then return -1 end
  -- A second open alert of the same type for the same patient can only come from a
  -- worker that lost its state: merge it into the open one.
  local other = redis.call('HGET', open_key, e.type)
  if other and other ~= id then
    local okey = p .. ':alert:' .. other
    local ostate = redis.call('HGET', okey, 'state')
    if ostate and ostate ~= 'resolved' then
      redis.call('SET', p .. ':alias:' .. id, other)
      redis.call('SADD', okey .. ':aliases', id)
      merged = id
      id = other
      key = okey
      applied = key .. ':applied'
      cur = ostate
      if redis.call('SISMEMBER', applied, e.emission_id) == 1 then return 0 end
      if event == 'raised' then event = 'updated' end
    end
  end
end

local function ignore()
  redis.call('SADD', applied, e.emission_id)
  return 0
end
if cur == 'resolved' then return ignore() end
local human = (cur == 'acknowledged' or cur == 'snoozed')

local f = {}
local function put(name, value) f[#f + 1] = name; f[#f + 1] = value end
local state
if event == 'acknowledged' then
  if cur == 'acknowledged' then return ignore() end
  state = 'acknowledged'
  put('acked_by', e.actor ~= '' and e.actor or e.acked_by)
  put('acked_ms', wall)
  put('snoozed_until_ms', '')
elseif event == 'snoozed' then
  state = 'snoozed'
  put('snoozed_until_ms', e.snoozed_until_ms)
  put('snoozed_by', e.actor)
elseif event == 'unsnoozed' then
  if cur ~= 'snoozed' then return ignore() end
  state = e.state
  put('snoozed_until_ms', '')
elseif event == 'escalated' then
  if human then return ignore() end
  state = 'escalated'
  put('escalation_level', e.escalation_level)
else
  -- raised / updated / resolved: the worker's view of the condition
  state = e.state
  if event ~= 'resolved' then
    if human then state = cur elseif cur == 'escalated' then state = 'escalated' end
  end
  put('priority', e.priority)
  put('value', e.value)
  put('message', e.message)
  put('updated_ms', e.updated_ms)
  put('condition_active', e.condition_active == 'False' and '0' or '1')
  if event == 'resolved' then put('resolved_ms', e.resolved_ms) end
  local level = tonumber(redis.call('HGET', key, 'escalation_level') or '0') or 0
  if (tonumber(e.escalation_level) or 0) > level then
    put('escalation_level', e.escalation_level)
  end
end
if not cur then
  put('alert_id', id)
  put('patient_id', e.patient_id)
  put('type', e.type)
  put('onset_ms', e.onset_ms)
  put('raised_ms', e.raised_ms)
  put('created_wall_ms', wall)
  if event ~= 'raised' and event ~= 'updated' and event ~= 'resolved' then
    put('priority', e.priority); put('value', e.value); put('message', e.message)
    put('updated_ms', e.updated_ms)
  end
end
put('state', state)
put('last_event', event)
put('written_ms', wall)
redis.call('HSET', key, unpack(f))
redis.call('HINCRBY', key, 'version', 1)
redis.call('SADD', applied, e.emission_id)

local all = redis.call('HGETALL', key)
local entry = {'event', event, 'emission_id', e.emission_id}
for i = 1, #all do entry[#entry + 1] = all[i] end
redis.call('XADD', p .. ':alerts', 'MAXLEN', '~', maxlen, '*', unpack(entry))

local detail = e.detail
if merged ~= '' then detail = 'merged duplicate episode ' .. merged .. ': ' .. detail end
redis.call('RPUSH', key .. ':audit', cjson.encode({
  emission_id = e.emission_id, event = event, state = state, t_ms = e.updated_ms,
  written_ms = wall, by = e.actor, value = e.value, message = e.message, detail = detail,
  priority = redis.call('HGET', key, 'priority'),
  condition_active = redis.call('HGET', key, 'condition_active') ~= '0',
  escalation_level = redis.call('HGET', key, 'escalation_level') or '0'}))

local pid = redis.call('HGET', key, 'patient_id')
local atype = redis.call('HGET', key, 'type')
local raised = redis.call('HGET', key, 'raised_ms')
redis.call('ZADD', p .. ':alerts:index', raised, id)
redis.call('ZADD', p .. ':patient:' .. pid .. ':alerts', raised, id)
local pkey = p .. ':patient:' .. pid .. ':open'
if state == 'resolved' then
  redis.call('ZREM', p .. ':alerts:open', id)
  if redis.call('HGET', pkey, atype) == id then redis.call('HDEL', pkey, atype) end
  for _, a in ipairs(redis.call('SMEMBERS', key .. ':aliases')) do
    redis.call('EXPIRE', p .. ':alias:' .. a, ttl)
  end
  for _, k in ipairs({key, key .. ':audit', applied, key .. ':aliases'}) do
    redis.call('EXPIRE', k, ttl)
  end
else
  redis.call('ZADD', p .. ':alerts:open', raised, id)
  redis.call('HSET', pkey, atype, id)
end
redis.call('PUBLISH', p .. ':alerts:live', cjson.encode({
  alert_id = id, event = event, state = state, patient_id = pid, type = atype,
  priority = redis.call('HGET', key, 'priority'), message = redis.call('HGET', key, 'message')}))
return 1
"""


# One bedside alarm's decision: written once (the hash is the idempotence record), with its
# stream entry and index, in one atomic step. Confirmed alarms reach the care team as the
# alert named in alert_id, through _APPLY_LUA like any other alert.
_DECISION_LUA = r"""
local p = ARGV[1]
local d = cjson.decode(ARGV[2])
local key = p .. ':device-alarm:' .. d.alarm_id
if redis.call('EXISTS', key) == 1 then return 0 end
local f = {}
for k, v in pairs(d) do f[#f + 1] = k; f[#f + 1] = v end
redis.call('HSET', key, unpack(f))
redis.call('EXPIRE', key, tonumber(ARGV[4]))
redis.call('XADD', p .. ':device-alarms', 'MAXLEN', '~', ARGV[3], '*', unpack(f))
local idx = p .. ':patient:' .. d.patient_id .. ':device-alarms'
redis.call('ZADD', idx, d.t_ms, d.alarm_id)
redis.call('EXPIRE', idx, tonumber(ARGV[4]))
return 1
"""


def _int(v: str | None) -> int | None:
    return None if v is None or v == "" else int(v)


def _float(v: str | None) -> float | None:
    return None if v is None or v == "" else float(v)


def _str(v: str | None) -> str | None:
    return None if v is None or v == "" else v


def _decode(mapping: dict[Any, Any]) -> dict[str, str]:
    def s(x: Any) -> str:
        return x.decode() if isinstance(x, bytes) else str(x)

    return {s(k): s(v) for k, v in mapping.items()}


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert as stored. ``*_ms`` are event time (from the findings) except
    ``acked_ms``, ``created_wall_ms`` and ``written_ms``, which are Redis wall-clock time."""

    alert_id: str
    patient_id: str
    type: str
    priority: str
    state: str
    onset_ms: int
    raised_ms: int
    updated_ms: int
    resolved_ms: int | None
    value: float | None
    message: str
    escalation_level: int
    acked_by: str | None
    acked_ms: int | None = None
    snoozed_until_ms: int | None = None
    snoozed_by: str | None = None
    last_event: str = ""
    version: int = 0
    created_wall_ms: int | None = None
    written_ms: int | None = None
    # False once the condition ended while a latching alert still awaits acknowledgement.
    condition_active: bool = True

    @property
    def is_open(self) -> bool:
        return self.state != EpisodeState.RESOLVED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_redis(cls, mapping: dict[Any, Any]) -> Alert:
        m = _decode(mapping)
        return cls(
            alert_id=m["alert_id"],
            patient_id=m["patient_id"],
            type=m["type"],
            priority=m.get("priority", ""),
            state=m.get("state", ""),
            onset_ms=_int(m.get("onset_ms")) or 0,
            raised_ms=_int(m.get("raised_ms")) or 0,
            updated_ms=_int(m.get("updated_ms")) or 0,
            resolved_ms=_int(m.get("resolved_ms")),
            value=_float(m.get("value")),
            message=m.get("message", ""),
            escalation_level=_int(m.get("escalation_level")) or 0,
            acked_by=_str(m.get("acked_by")),
            acked_ms=_int(m.get("acked_ms")),
            snoozed_until_ms=_int(m.get("snoozed_until_ms")),
            snoozed_by=_str(m.get("snoozed_by")),
            last_event=m.get("last_event", ""),
            version=_int(m.get("version")) or 0,
            created_wall_ms=_int(m.get("created_wall_ms")),
            written_ms=_int(m.get("written_ms")),
            condition_active=m.get("condition_active", "1") != "0",
        )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    emission_id: str
    event: str
    state: str
    t_ms: int | None  # event time of the change (wall clock for care-team actions)
    written_ms: int  # Redis wall clock when it was written
    by: str | None
    value: float | None
    message: str
    detail: str
    priority: str
    escalation_level: int
    condition_active: bool = True  # the condition held after this change

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> AuditEntry:
        m = json.loads(data)
        return cls(
            emission_id=m.get("emission_id", ""),
            event=m.get("event", ""),
            state=m.get("state", ""),
            t_ms=_int(m.get("t_ms")),
            written_ms=_int(m.get("written_ms")) or 0,
            by=_str(m.get("by")),
            value=_float(m.get("value")),
            message=m.get("message", ""),
            detail=m.get("detail", ""),
            priority=m.get("priority") or "",
            escalation_level=_int(m.get("escalation_level")) or 0,
            condition_active=bool(m.get("condition_active", True)),
        )


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What a care-team action did: ``changed`` is False when it was already in effect
    (a repeated acknowledgement) or the alert is resolved; publish ``action`` to
    ``vitals.alert-actions`` either way so the worker's state machine agrees."""

    action: CareAction
    changed: bool
    alert: Alert


def _flat(emission: AlertEmission) -> str:
    """All values as strings ("" = None): Lua numbers are doubles and cjson would print
    epoch milliseconds in exponent notation."""
    return json.dumps({k: "" if v is None else str(v) for k, v in emission.to_dict().items()})


class RedisAlertStore:
    """The alert store. ``apply`` is what the worker calls with the aggregator's emissions."""

    def __init__(self, client: redis.Redis, prefix: str = "vs", *,
                 stream_maxlen: int = DEFAULT_STREAM_MAXLEN,
                 resolved_ttl_s: int = DEFAULT_RESOLVED_TTL_S,
                 max_snooze_minutes: float = DEFAULT_MAX_SNOOZE_MINUTES) -> None:
        if not prefix or ":" in prefix:
            raise ValueError("prefix must be non-empty and contain no ':'")
        self.client = client
        self.prefix = prefix
        self.stream_maxlen = stream_maxlen
        self.resolved_ttl_s = resolved_ttl_s
        self.max_snooze_minutes = max_snooze_minutes
        self._apply_script = client.register_script(_APPLY_LUA)
        self._decision_script = client.register_script(_DECISION_LUA)

    # ----------------------------------------------------------------- key names

    @property
    def stream_key(self) -> str:
        return f"{self.prefix}:alerts"

    @property
    def channel(self) -> str:
        return f"{self.prefix}:alerts:live"

    def alert_key(self, alert_id: str) -> str:
        return f"{self.prefix}:alert:{alert_id}"

    # --------------------------------------------------------------------- writes

    def apply(self, emissions: Sequence[AlertEmission | DeviceAlarmDecision]) -> int:
        """Write emissions in order, each as one atomic script call, pipelined into one
        round trip. Returns how many changed something (already-applied ones: 0)."""
        return sum(self.apply_each(emissions))

    def apply_each(self, emissions: Sequence[AlertEmission | DeviceAlarmDecision]) -> list[bool]:
        """:meth:`apply`, saying for each emission whether it changed something (False:
        applied before, e.g. redelivered after a worker crash)."""
        if not emissions:
            return []
        pipe = self.client.pipeline(transaction=False)
        for emission in emissions:
            if isinstance(emission, DeviceAlarmDecision):
                fields = {k: "" if v is None else str(v) for k, v in emission.to_dict().items()}
                self._decision_script(keys=[], args=[self.prefix, json.dumps(fields), self.stream_maxlen,
                                                     self.resolved_ttl_s], client=pipe)
            else:
                self._run(emission, partial=False, client=pipe)
        return [int(r) == 1 for r in pipe.execute()]

    def _run(self, emission: AlertEmission, *, partial: bool, client: Any = None) -> Any:
        args = [self.prefix, _flat(emission), self.stream_maxlen, self.resolved_ttl_s,
                "1" if partial else "0"]
        return self._apply_script(keys=[], args=args, client=client)

    def _act(self, action: CareAction) -> ActionOutcome | None:
        alert = self.get(action.alert_id)
        if alert is None:
            return None
        action = CareAction(action.kind, alert.alert_id, alert.patient_id, action.by,
                            action.issued_ms, action.minutes, action.action_id)
        event = (EmissionEvent.ACKNOWLEDGED if action.kind == "ack" else EmissionEvent.SNOOZED)
        detail = (f"acknowledged by {action.by}" if action.kind == "ack"
                  else f"snoozed by {action.by} for {action.minutes:g} min")
        emission = AlertEmission(
            emission_id=f"{alert.alert_id}:{event.value}:{action.action_id}",
            event=event.value, alert_id=alert.alert_id, patient_id=alert.patient_id,
            type=alert.type, priority=alert.priority, state=alert.state,
            onset_ms=alert.onset_ms, raised_ms=alert.raised_ms, updated_ms=action.issued_ms,
            resolved_ms=None, value=alert.value, message=alert.message,
            escalation_level=alert.escalation_level, acked_by=alert.acked_by,
            snoozed_until_ms=action.snoozed_until_ms, actor=action.by, detail=detail)
        result = int(self._run(emission, partial=True))
        after = self.get(alert.alert_id) or alert
        return ActionOutcome(action, result == 1, after)

    def ack(self, alert_id: str, by: str, *, now_ms: int | None = None) -> ActionOutcome | None:
        """Acknowledge (idempotent, audited). None if the alert does not exist."""
        alert = self.get(alert_id)
        if alert is None:
            return None
        issued = now_ms if now_ms is not None else int(time.time() * 1000)
        return self._act(CareAction.ack(alert.alert_id, alert.patient_id, by, issued))

    def snooze(self, alert_id: str, minutes: float, by: str, *,
               now_ms: int | None = None) -> ActionOutcome | None:
        """Silence an open alert for ``minutes`` (audited; the same action applied twice is
        one). None if the alert does not exist."""
        if not 0 < minutes <= self.max_snooze_minutes:
            raise ValueError(f"snooze minutes must be in (0, {self.max_snooze_minutes:g}]")
        alert = self.get(alert_id)
        if alert is None:
            return None
        issued = now_ms if now_ms is not None else int(time.time() * 1000)
        return self._act(CareAction.snooze(alert.alert_id, alert.patient_id, by, issued, minutes))

    def apply_action(self, action: CareAction) -> ActionOutcome | None:
        """Apply a CareAction built elsewhere (e.g. received from another tool)."""
        return self._act(action)

    # ---------------------------------------------------------------------- reads

    def _resolve_alias(self, alert_id: str) -> str:
        target = self.client.get(f"{self.prefix}:alias:{alert_id}")
        if target is None:
            return alert_id
        return target.decode() if isinstance(target, bytes) else str(target)

    def get(self, alert_id: str) -> Alert | None:
        raw = self.client.hgetall(self.alert_key(self._resolve_alias(alert_id)))
        return Alert.from_redis(raw) if raw else None

    def list_alerts(self, patient_id: str | None = None, include_resolved: bool = False,
                    priority: str | None = None) -> list[Alert]:
        """Alerts ordered by raise time (then id). Open ones only unless include_resolved."""
        if patient_id is not None:
            index = f"{self.prefix}:patient:{patient_id}:alerts"
        elif include_resolved:
            index = f"{self.prefix}:alerts:index"
        else:
            index = f"{self.prefix}:alerts:open"
        ids = [i.decode() if isinstance(i, bytes) else str(i)
               for i in self.client.zrange(index, 0, -1)]
        alerts = self._load(ids, index)
        out = [a for a in alerts
               if (include_resolved or a.is_open) and (priority is None or a.priority == priority)]
        return sorted(out, key=lambda a: (a.raised_ms, a.alert_id))

    def _load(self, ids: Iterable[str], index: str) -> list[Alert]:
        ids = list(ids)
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for alert_id in ids:
            pipe.hgetall(self.alert_key(alert_id))
        alerts: list[Alert] = []
        expired: list[str] = []
        for alert_id, raw in zip(ids, pipe.execute(), strict=True):
            if raw:
                alerts.append(Alert.from_redis(raw))
            else:
                expired.append(alert_id)  # resolved and past its retention
        if expired:
            self.client.zrem(index, *expired)
        return alerts

    def device_alarms(self, patient_id: str | None = None, limit: int = 1000) -> list[dict[str, str]]:
        """Decided bedside-monitor alarms, oldest first: one patient's (by alarm time), or
        the newest ``limit`` of all (the decisions stream)."""
        if patient_id is not None:
            ids = self.client.zrange(f"{self.prefix}:patient:{patient_id}:device-alarms", -limit, -1)
            pipe = self.client.pipeline(transaction=False)
            for alarm_id in ids:
                name = alarm_id.decode() if isinstance(alarm_id, bytes) else alarm_id
                pipe.hgetall(f"{self.prefix}:device-alarm:{name}")
            return [_decode(h) for h in pipe.execute() if h]
        entries = self.client.xrevrange(f"{self.prefix}:device-alarms", count=limit)
        return [_decode(fields) for _, fields in reversed(entries)]

    def history(self, alert_id: str) -> list[AuditEntry]:
        key = self.alert_key(self._resolve_alias(alert_id)) + ":audit"
        return [AuditEntry.from_json(x) for x in self.client.lrange(key, 0, -1)]

    # ------------------------------------------------------------------ housekeeping

    def delete_prefix(self) -> int:
        """Delete every key under this prefix (validation runs, tests). Returns the count."""
        deleted = 0
        batch: list[Any] = []
        for key in self.client.scan_iter(match=f"{self.prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(self.client.unlink(*batch))
                batch = []
        if batch:
            deleted += int(self.client.unlink(*batch))
        return deleted


# Every command the store and the subscriber send, directly or from the Lua scripts (Redis
# checks those against the caller's ACL too): what an application's Redis user needs.
STORE_COMMANDS = (
    # redis-py loads a script once and then calls it by its hash.
    "evalsha", "script|load", "script|exists",
    # inside the scripts
    "time", "get", "set", "exists", "expire", "hget", "hset", "hincrby", "hgetall", "hdel",
    "sadd", "sismember", "smembers", "rpush", "zadd", "zrem", "xadd", "publish",
    # reads: lists, histories, device-alarm decisions
    "zrange", "lrange", "xrevrange",
    # AlertSubscriber (a consumer group on the stream) and P:alerts:live followers
    "xgroup|create", "xreadgroup", "xack", "subscribe",
    # connection set-up: health checks, a database number in the URL (redis-py's CLIENT
    # SETINFO may be refused: it ignores that, and Redis 7.0 does not know the command)
    "ping", "select",
)
# RedisAlertStore.delete_prefix (validation runs, tests): SCAN lists key names outside the
# prefix too, so only a housekeeping user gets it.
HOUSEKEEPING_COMMANDS = ("scan", "unlink")


def acl_rules(prefix: str, password_sha256: str, *, housekeeping: bool = False) -> list[str]:
    """ACL rules (``ACL SETUSER <user> <rules...>``, or an ACL file's ``user <name> <rules>``
    line) for an application user of the store under ``prefix``: the prefix's keys and
    pub/sub channels, the store's commands, nothing else. ``password_sha256`` is the hex
    SHA-256 of the password, so the rules never hold it in clear."""
    if not prefix or ":" in prefix:
        raise ValueError("prefix must be non-empty and contain no ':'")
    if len(password_sha256) != 64 or any(c not in "0123456789abcdef" for c in password_sha256):
        raise ValueError("password_sha256 must be 64 lower-case hex digits")
    commands = STORE_COMMANDS + (HOUSEKEEPING_COMMANDS if housekeeping else ())
    return ["reset", "on", f"#{password_sha256}", f"~{prefix}:*", f"&{prefix}:*", "-@all",
            *(f"+{c}" for c in commands)]
