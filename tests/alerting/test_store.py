"""The Redis store against a real Redis: atomic, idempotent, audited."""

from __future__ import annotations

import json
import time

import pytest
import redis

from alerting.actions import CareAction
from alerting.aggregator import process_action
from alerting.episode import AlertEmission, Observed, raise_episode, transition
from alerting.store import RedisAlertStore
from tests.alerting.conftest import T0, ecg, finding
from tests.alerting.test_aggregator import asystole_windows, run


def snapshot(store: RedisAlertStore) -> dict[str, object]:
    """Everything observable, without the wall-clock write times."""
    alerts = []
    for a in store.list_alerts(include_resolved=True):
        d = a.to_dict()
        for wall in ("acked_ms", "created_wall_ms", "written_ms"):
            d.pop(wall)
        alerts.append(d)
    histories = {a["alert_id"]: [(h.emission_id, h.event, h.state, h.detail)
                                 for h in store.history(str(a["alert_id"]))] for a in alerts}
    return {"alerts": alerts, "histories": histories,
            "stream": store.client.xlen(store.stream_key)}


def scenario() -> list[AlertEmission]:
    """Two patients: an asystole (latched, then over) and a sustained tachycardia that resolves."""
    _, out1 = run([*asystole_windows(0, 3), *[finding(3 + i) for i in range(5)]])
    _, out2 = run([finding(i, patient="p2", ecg=ecg(hr_bpm=128.0)) for i in range(6)]
                  + [finding(6 + i, patient="p2") for i in range(3)])
    return out1 + out2


def test_apply_twice_changes_nothing(store: RedisAlertStore) -> None:
    emissions = scenario()
    assert store.apply(emissions) == len(emissions)
    first = snapshot(store)
    assert store.apply(emissions) == 0
    assert store.apply(list(reversed(emissions))) == 0
    assert snapshot(store) == first
    alerts = store.list_alerts(include_resolved=True)
    assert [(a.patient_id, a.type, a.state) for a in alerts] == [
        ("p1", "asystole", "raised"), ("p2", "tachy", "resolved")]
    tachy = alerts[1]
    assert tachy.resolved_ms == T0 + 8 * 2000 and tachy.version == 2
    assert store.list_alerts() == [alerts[0]]  # open only by default


def test_condition_state_is_kept_with_the_latched_alert_and_its_audit(store: RedisAlertStore) -> None:
    store.apply(scenario())
    asystole = store.list_alerts(patient_id="p1")[0]
    assert asystole.state == "raised" and asystole.condition_active is False  # latched, awaiting ack
    flags = [(h.event, h.condition_active) for h in store.history(asystole.alert_id)]
    assert flags[0] == ("raised", True) and flags[-1] == ("updated", False)
    tachy = store.list_alerts(patient_id="p2", include_resolved=True)[0]
    assert tachy.condition_active is False and tachy.state == "resolved"


def test_alert_fields_and_wall_clock(store: RedisAlertStore) -> None:
    before = int(time.time() * 1000) - 5
    store.apply(scenario())
    a = store.list_alerts(patient_id="p1")[0]
    assert a.onset_ms == T0 and a.raised_ms == T0  # event time, from the findings
    assert a.value == 5.0 and a.priority == "high" and a.escalation_level == 0
    assert a.acked_by is None and a.resolved_ms is None
    assert a.created_wall_ms is not None and a.created_wall_ms >= before  # Redis clock
    assert store.get(a.alert_id) == a
    assert store.get("nope") is None


def test_list_filters(store: RedisAlertStore) -> None:
    store.apply(scenario())
    assert [a.type for a in store.list_alerts(patient_id="p2", include_resolved=True)] == ["tachy"]
    assert store.list_alerts(patient_id="p2") == []
    medium = store.list_alerts(include_resolved=True, priority="medium")
    assert [a.type for a in medium] == ["tachy"]
    assert store.list_alerts(priority="low") == []


def test_ack_snooze_audited_and_idempotent(store: RedisAlertStore) -> None:
    store.apply(scenario())
    alert = store.list_alerts(patient_id="p1")[0]
    first = store.ack(alert.alert_id, "nurse.kim")
    assert first is not None and first.changed and first.alert.state == "acknowledged"
    assert first.alert.acked_by == "nurse.kim" and first.alert.acked_ms is not None
    again = store.ack(alert.alert_id, "nurse.kim")
    other = store.ack(alert.alert_id, "dr.lee")
    assert again is not None and not again.changed
    assert other is not None and not other.changed and other.alert.acked_by == "nurse.kim"
    snoozed = store.snooze(alert.alert_id, 5, "dr.lee", now_ms=T0 + 10_000)
    assert snoozed is not None and snoozed.changed
    assert snoozed.alert.state == "snoozed" and snoozed.alert.snoozed_until_ms == T0 + 310_000
    assert store.apply_action(snoozed.action) is not None  # the same action again: no-op
    history = store.history(alert.alert_id)
    assert [(h.event, h.by) for h in history][-2:] == [("acknowledged", "nurse.kim"),
                                                      ("snoozed", "dr.lee")]
    assert store.ack("nope", "x") is None and store.snooze("nope", 1, "x") is None
    with pytest.raises(ValueError):
        store.snooze(alert.alert_id, 24 * 60, "dr.lee")


def test_worker_updates_never_undo_an_acknowledgement(store: RedisAlertStore) -> None:
    state, out = run(asystole_windows(0, 1))
    store.apply(out)
    alert_id = out[0].alert_id
    outcome = store.ack(alert_id, "nurse")
    assert outcome is not None
    # The worker has not learned the ack yet: it keeps updating and escalating.
    state, out = run(asystole_windows(1, 61, pause=9.0), state)
    assert {e.event for e in out} == {"updated", "escalated"}
    store.apply(out)
    a = store.get(alert_id)
    assert a is not None and a.state == "acknowledged" and a.escalation_level == 0
    assert a.value == 9.0  # the clinical value still updates
    # Now the worker learns the same action: its emission id matches, nothing is written twice.
    state, out = process_action(state, outcome.action, T0 + 200_000)
    assert [e.event for e in out] == ["acknowledged"]
    audit_len = len(store.history(alert_id))
    assert store.apply(out) == 0
    assert len(store.history(alert_id)) == audit_len
    # The condition ends: resolved, removed from the open index, retention set.
    state, out = run([finding(100 + i) for i in range(2)], state)
    assert [e.event for e in out] == ["resolved"]
    store.apply(out)
    a = store.get(alert_id)
    assert a is not None and a.state == "resolved"
    assert store.list_alerts() == []
    assert 0 < store.client.ttl(store.alert_key(alert_id)) <= store.resolved_ttl_s
    assert store.client.ttl(store.alert_key(alert_id) + ":audit") > 0


def test_duplicate_episode_after_state_loss_is_merged(store: RedisAlertStore) -> None:
    """A worker that lost its state re-raises an ongoing condition under another onset."""
    _state, out = run(asystole_windows(0, 3))
    store.apply(out)
    original = out[0].alert_id
    fresh, out2 = run(asystole_windows(10, 3, pause=12.0))  # new state, later onset
    assert out2[0].alert_id != original
    assert store.apply(out2) >= 1
    alerts = store.list_alerts(include_resolved=True)
    assert [a.alert_id for a in alerts] == [original]
    assert alerts[0].value == 12.0
    assert store.get(out2[0].alert_id) == alerts[0]  # the duplicate id is an alias
    assert "merged duplicate episode" in store.history(original)[-1].detail
    # Resolving the duplicate episode resolves the alert.
    fresh, out3 = process_action(fresh, CareAction.ack(out2[0].alert_id, "p1", "n", T0), T0)
    fresh, out4 = run([finding(20 + i) for i in range(3)], fresh)
    store.apply(out3 + out4)
    final = store.get(original)
    assert final is not None and final.state == "resolved"


def test_update_for_an_unknown_alert_creates_it(store: RedisAlertStore) -> None:
    """E.g. the raise expired from Redis or was written under an older prefix."""
    ep, _ = raise_episode(patient_id="p9", alert_type="lead_off", priority="low",
                          latching=False, onset_ms=T0, now_ms=T0, value=1.0, message="off")
    _, out = transition(ep, Observed(T0 + 2000, 2.0, "still off", "low"), T0 + 2000)
    assert store.apply(out) == 1
    a = store.get(ep.alert_id)
    assert a is not None and (a.type, a.state, a.value, a.raised_ms) == ("lead_off", "raised",
                                                                        2.0, T0)


def test_stream_entries_and_pubsub(store: RedisAlertStore, redis_client: redis.Redis) -> None:
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(store.channel)
    small = RedisAlertStore(redis_client, store.prefix, stream_maxlen=10)
    emissions = scenario()
    small.apply(emissions)
    messages = []
    deadline = time.monotonic() + 2
    while len(messages) < len(emissions) and time.monotonic() < deadline:
        m = pubsub.get_message(timeout=0.2)
        if m:
            messages.append(json.loads(m["data"]))
    pubsub.close()
    assert [m["event"] for m in messages] == [e.event for e in emissions]
    entries = redis_client.xrange(store.stream_key)
    assert entries[0][1][b"event"] == b"raised"
    assert entries[0][1][b"alert_id"] == emissions[0].alert_id.encode()


def test_delete_prefix_removes_everything(store: RedisAlertStore,
                                          redis_client: redis.Redis) -> None:
    store.apply(scenario())
    keys = list(redis_client.scan_iter(match=f"{store.prefix}:*"))
    assert len(keys) > 5
    assert store.delete_prefix() == len(keys)
    assert list(redis_client.scan_iter(match=f"{store.prefix}:*")) == []
