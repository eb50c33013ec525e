"""The catalogue: shared vocabulary, priorities, and the JSON-serialisable configuration."""

from __future__ import annotations

import pytest

from alerting.catalogue import (
    CATALOGUE,
    DEFAULT_TYPE_SETTINGS,
    AlertConfig,
    AlertType,
    Priority,
    TypeSettings,
)
from stream.replay.scoring import HIGH_PRIORITY_TYPES, MEDIUM_PRIORITY_TYPES, TECHNICAL_TYPES


def test_types_match_the_shared_vocabulary() -> None:
    by_priority = {p: {str(t) for t, d in CATALOGUE.items() if d.priority is p} for p in Priority}
    assert by_priority[Priority.HIGH] == set(HIGH_PRIORITY_TYPES)
    assert by_priority[Priority.MEDIUM] == set(MEDIUM_PRIORITY_TYPES)
    assert by_priority[Priority.LOW] == set(TECHNICAL_TYPES)
    assert set(CATALOGUE) == set(DEFAULT_TYPE_SETTINGS) == set(AlertType)


def test_high_priority_types_latch_and_others_do_not() -> None:
    for d in CATALOGUE.values():
        assert d.latching == (d.priority is Priority.HIGH), d.type
        assert d.technical == (d.priority is Priority.LOW), d.type


def test_challenge_2015_thresholds() -> None:
    s = DEFAULT_TYPE_SETTINGS
    assert s[AlertType.ASYSTOLE].threshold == 4.0
    assert s[AlertType.VFIB].threshold == 4.0
    assert s[AlertType.VTACH].threshold == 5 and s[AlertType.VTACH].secondary_threshold == 100
    assert s[AlertType.EXTREME_BRADY].threshold == 40
    assert s[AlertType.EXTREME_TACHY].threshold == 140


def test_config_json_round_trip_with_patient_overrides() -> None:
    config = AlertConfig.from_dict({
        "escalate_after_s": 90,
        "types": {"tachy": {"threshold": 130, "corroboration": "downgrade"}},
        "patient_overrides": {"bed-7": {"brady": {"threshold": 42}, "budget_per_hour": 3}},
    })
    again = AlertConfig.from_json(config.to_json())
    assert again.to_dict() == config.to_dict()
    assert again.settings("tachy").threshold == 130
    default_k = DEFAULT_TYPE_SETTINGS[AlertType.TACHY].persistence_k
    assert again.settings("tachy").persistence_k == default_k
    bed7 = again.for_patient("bed-7")
    assert bed7.settings("brady").threshold == 42
    assert bed7.budget_per_hour == 3
    assert bed7.settings("tachy").threshold == 130
    assert again.for_patient("bed-8") is again
    assert again.for_patient("bed-7") is bed7  # cached


def test_config_rejects_unknown_names() -> None:
    with pytest.raises(ValueError):
        AlertConfig.from_dict({"types": {"tachycardia": {"threshold": 1}}})
    with pytest.raises(ValueError):
        AlertConfig.from_dict({"types": {"tachy": {"treshold": 1}}})
    with pytest.raises(ValueError):
        AlertConfig.from_dict({"patient_overrides": {"p": {"nope": {}}}})
    with pytest.raises(ValueError):
        TypeSettings.from_dict({"corroboration": "maybe"})
