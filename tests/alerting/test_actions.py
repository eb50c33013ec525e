"""Care actions: deterministic ids, JSON round-trip, decoding the aggregator's input."""

from __future__ import annotations

import pytest

from alerting.actions import CareAction, decode_alert_input
from tests.alerting.conftest import finding


def test_ack_id_ignores_time_snooze_id_does_not() -> None:
    a1 = CareAction.ack("a-1", "p1", "nurse", 1000)
    a2 = CareAction.ack("a-1", "p1", "nurse", 2000)
    assert a1.action_id == a2.action_id
    assert CareAction.ack("a-1", "p1", "other", 1000).action_id != a1.action_id
    s1 = CareAction.snooze("a-1", "p1", "nurse", 1000, 5)
    s2 = CareAction.snooze("a-1", "p1", "nurse", 2000, 5)
    assert s1.action_id != s2.action_id
    assert s1.snoozed_until_ms == 1000 + 300_000


def test_json_round_trip_and_input_decoding() -> None:
    action = CareAction.snooze("a-1", "p1", "nurse", 1000, 2.5)
    assert CareAction.from_json(action.to_json()) == action
    assert decode_alert_input(action.to_json()) == action
    f = finding(3)
    assert decode_alert_input(f.to_json()) == f
    for junk in (b"not json", b"[1, 2]", b'{"care_action": 1, "kind": "ack"}'):
        with pytest.raises(ValueError):
            decode_alert_input(junk)


def test_invalid_actions_are_refused() -> None:
    with pytest.raises(ValueError):
        CareAction("delete", "a", "p", "n", 0)
    with pytest.raises(ValueError):
        CareAction.ack("a", "p", "", 0)
    with pytest.raises(ValueError):
        CareAction.snooze("a", "p", "n", 0, 0)
