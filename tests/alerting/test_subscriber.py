"""Care-team subscription through a Redis stream consumer group."""

from __future__ import annotations

import redis

from alerting.store import RedisAlertStore
from alerting.subscriber import AlertSubscriber
from tests.alerting.test_store import scenario


def test_group_sees_new_changes_once_with_priority_filter(store: RedisAlertStore,
                                                          redis_client: redis.Redis) -> None:
    store.apply(scenario()[:1])  # before the group exists: not delivered to it
    everything = AlertSubscriber(redis_client, store.prefix, "ward", "display-1")
    high_only = AlertSubscriber(redis_client, store.prefix, "pager", "p-1", priorities={"high"})
    store.apply(scenario())
    got = everything.poll(block_ms=100)
    assert [(a.type, a.last_event) for a in got] == [
        ("asystole", "updated"), ("tachy", "raised"), ("tachy", "resolved")]
    assert everything.poll(block_ms=10) == []  # acknowledged: not delivered again
    assert [a.type for a in high_only.poll(block_ms=100)] == ["asystole"]


def test_from_start_and_crash_recovery(store: RedisAlertStore,
                                       redis_client: redis.Redis) -> None:
    store.apply(scenario())
    n = redis_client.xlen(store.stream_key)
    sub = AlertSubscriber(redis_client, store.prefix, "late", "c1", from_start=True)
    # A consumer that read but crashed before acknowledging:
    redis_client.xreadgroup("late", "c1", {store.stream_key: ">"}, count=2)
    again = AlertSubscriber(redis_client, store.prefix, "late", "c1")
    first = again.poll(block_ms=10)
    assert len(first) == 2  # the two pending entries come back first
    rest = again.poll(block_ms=10)
    assert len(first) + len(rest) == n
    assert sub.poll(block_ms=10) == []


def test_snoozed_updates_are_not_pushed(store: RedisAlertStore,
                                        redis_client: redis.Redis) -> None:
    from tests.alerting.test_aggregator import asystole_windows, run

    state, out = run(asystole_windows(0, 1))
    store.apply(out)
    store.snooze(out[0].alert_id, 10, "dr")
    sub = AlertSubscriber(redis_client, store.prefix, "ward", "d1")
    _, out = run(asystole_windows(1, 3, pause=9.0), state)
    store.apply(out)
    assert sub.poll(block_ms=10) == []
    loud = AlertSubscriber(redis_client, store.prefix, "audit", "a1", from_start=True,
                           include_snoozed_updates=True)
    assert [a.last_event for a in loud.poll(block_ms=10)] == ["raised", "snoozed", "updated"]


def test_follow_stops_at_timeout(store: RedisAlertStore, redis_client: redis.Redis) -> None:
    sub = AlertSubscriber(redis_client, store.prefix, "g", "c")
    assert list(sub.follow(timeout_s=0.2, block_ms=50)) == []
