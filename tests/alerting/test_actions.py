"""Care actions: deterministic ids, JSON round-trip, decoding the aggregator's input."""

from __future__ import annotations

import json

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


def test_ticks_round_trip_on_the_actions_topic() -> None:
    from alerting.actions import Tick, decode_action_message

    tick = Tick("p1", 1_764_400_000_000)
    assert json.loads(tick.to_json()) == {"tick": 1_764_400_000_000, "patient_id": "p1"}
    assert decode_action_message(tick.to_json()) == tick
    action = CareAction.ack("a-1", "p1", "nurse", 1000)
    assert decode_action_message(action.to_json()) == action


# Crashes the fuzzers found (docs/fuzzing.md): each escaped the aggregator's dead-letter
# path (TypeError, AttributeError, OverflowError, RecursionError) or was accepted with a
# type that failed later in the state machine.
@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b'{"patient_id": "p1"}', "missing field"),  # TypeError: CareAction() arguments
        (b"null", "JSON object"),  # AttributeError: None.items
        (b'"xxxx"', "JSON object"),
        (b'{"tick": Infinity, "patient_id": "p1"}', "tick"),  # OverflowError: int(inf)
        (b'{"tick": 1e300, "patient_id": "p1"}', "tick"),
        (b'{"tick": "soon", "patient_id": "p1"}', "tick"),
        (b'{"tick": 1764400000000}', "patient_id"),
        # TypeError: str + int in action_id_for
        (b'{"kind": "snooze", "alert_id": 1, "patient_id": "p1", "by": "n", "issued_ms": 5, "minutes": 5}',
         "alert_id"),
        (b'{"kind": "ack", "alert_id": "a", "patient_id": "p1", "by": "n", "issued_ms": "ecg"}', "issued_ms"),
        (b'{"kind": ["ack"], "alert_id": "a", "patient_id": "p1", "by": "n", "issued_ms": 5}', "kind"),
        # OverflowError: round(inf) in snoozed_until_ms; a 10**40-minute snooze silences forever
        (b'{"kind": "snooze", "alert_id": "a", "patient_id": "p1", "by": "n", "issued_ms": 5, "minutes": 1e400}',
         "minutes"),
        (b'{"kind": "snooze", "alert_id": "a", "patient_id": "p1", "by": "n", "issued_ms": 5, "minutes": '
         + b"7" * 300 + b"}", "minutes"),
        (b'{"kind": "ack", "alert_id": "a", "patient_id": "p1", "by": "n", "issued_ms": 5, "minutes": 3}', "minutes"),
        (b'{"kind": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),  # RecursionError
    ],
)
def test_malformed_action_messages_raise_invalid_care_action(data: bytes, match: str) -> None:
    from alerting.actions import InvalidCareAction, decode_action_message

    with pytest.raises(InvalidCareAction, match=match):
        decode_action_message(data)
