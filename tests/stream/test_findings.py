"""The findings message: what the aggregator accepts from ``vitals.findings``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from alerting.aggregator import PatientAlertState, process_finding
from fuzz.targets import NOW_MS, sample_finding
from stream.findings import InvalidFinding, VitalsFinding


def finding_json(**changes: Any) -> bytes:
    obj = json.loads(sample_finding().to_json())
    for path, value in changes.items():
        parent = obj
        *inner, last = path.split("__")
        for key in inner:
            parent = parent[key]
        if value is ...:
            del parent[last]
        else:
            parent[last] = value
    return json.dumps(obj).encode()


def test_round_trip() -> None:
    f = sample_finding()
    assert VitalsFinding.from_json(f.to_json(), now_ms=NOW_MS) == f


def test_fields_added_by_a_newer_writer_are_ignored() -> None:
    data = finding_json(extra_field=1, ecg__new_measure=2.0, trends=[{**json.loads(
        sample_finding().to_json())["trends"][0], "confidence": 0.9}])
    assert VitalsFinding.from_json(data, now_ms=NOW_MS).trends[0].kind == "hr_rising"


# Crashes the fuzzers found (docs/fuzzing.md): each escaped the aggregator's dead-letter
# path as TypeError, AttributeError, OverflowError or RecursionError, or poisoned the state.
@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b'{"rr": "", "schema_version": 1}', "missing field"),  # TypeError from cls(**obj)
        (finding_json(resp=[0]), "resp must be an object"),  # AttributeError: list.items
        (b"1e+308", "must be a JSON object"),  # AttributeError: float.get
        (finding_json(ecg__hr_bpm=10**400), "ecg.hr_bpm"),  # OverflowError in process_finding
        (finding_json(ecg__hr_bpm="72"), "ecg.hr_bpm"),  # TypeError on a comparison
        (finding_json(ecg__beat_counts={"N": 1.5}), "beat_counts"),
        (finding_json(ecg__n_beats=2**64), "ecg.n_beats"),
        (finding_json(trends=[{"kind": "x"}]), "missing field"),  # TypeError: TrendFinding()
        (finding_json(gaps="ppg"), "gaps"),
        (b'{"patient_id": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),  # RecursionError
        (b'{"t_ms": ' + b"7" * 5000 + b"}", "not JSON"),  # ValueError: int digit limit
        (finding_json(patient_id="p\ud800"), "lone surrogate"),  # UnicodeEncodeError as a Kafka key
        (finding_json(patient_id=""), "patient_id"),
        (finding_json(t_ms="1764399990000"), "t_ms"),
        (finding_json(schema_version=2), "schema_version"),
    ],
)
def test_malformed_findings_raise_invalid_finding(data: bytes, match: str) -> None:
    with pytest.raises(InvalidFinding, match=match):
        VitalsFinding.from_json(data, now_ms=NOW_MS)


def test_a_finding_from_the_far_future_is_refused() -> None:
    """Accepted, it would make every real finding of the patient look stale (process_finding
    ignores findings not newer than the last): one message would mute a patient."""
    future = finding_json(t_ms=NOW_MS + 30 * 24 * 3600 * 1000)
    with pytest.raises(InvalidFinding, match="t_ms"):
        VitalsFinding.from_json(future, now_ms=NOW_MS)
    state, _ = process_finding(PatientAlertState.new("p1"), sample_finding(t_ms=NOW_MS - 4000))
    assert state.last_t_ms == NOW_MS - 4000
    with pytest.raises(InvalidFinding, match="t_ms"):
        VitalsFinding.from_json(finding_json(t_ms=1000), now_ms=NOW_MS)


def test_non_finite_measurements_stay_readable() -> None:
    """NaN is what Python's json writes for a float NaN: a worker's finding carrying one
    must not be dead-lettered."""
    data = sample_finding().to_json().replace(b'"sdnn_ms":40.0', b'"sdnn_ms":NaN')
    assert b"NaN" in data
    f = VitalsFinding.from_json(data, now_ms=NOW_MS)
    assert f.ecg is not None and f.ecg.sdnn_ms != f.ecg.sdnn_ms
    process_finding(PatientAlertState.new("p1"), f)
