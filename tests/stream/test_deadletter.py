"""The dead-letter envelope (``stream/deadletter.py``)."""

from __future__ import annotations

import json

import pytest

from stream.deadletter import DeadLetter, InvalidDeadLetter


def letter() -> DeadLetter:
    return DeadLetter.wrap(reason="non_finite_samples", detail="x" * 600, topic="vitals.ecg", partition=2,
                           offset=99, key=b"p\xff1", original=b"VS\x01\x00\xff", received_ms=1_764_400_000_000)


def test_wrap_keeps_the_original_bytes_and_round_trips() -> None:
    d = letter()
    assert d.original == b"VS\x01\x00\xff" and len(d.detail) == 500 and d.key == "p\ufffd1"
    assert DeadLetter.from_json(d.to_json()) == d


# Crashes the fuzzers found: TypeError from cls(**obj) and from base64 of a non-string,
# RecursionError from json.loads.
@pytest.mark.parametrize(
    "change",
    [
        {"reason": ...},
        {"partition": "2"},
        {"offset": 1.5},
        {"key": 7},
        {"original_b64": 12},
        {"original_b64": "not base64!"},
        {"original_b64": "é"},
        {"received_ms": None},
    ],
)
def test_malformed_envelopes_raise_invalid_dead_letter(change: dict) -> None:
    obj = json.loads(letter().to_json())
    for k, v in change.items():
        if v is ...:
            del obj[k]
        else:
            obj[k] = v
    with pytest.raises(InvalidDeadLetter):
        DeadLetter.from_json(json.dumps(obj).encode())


@pytest.mark.parametrize("data", [b"", b"[]", b"null", b'{"reason": ' + b"[" * 5000 + b"]" * 5000 + b"}", b"\xff\xfe"])
def test_non_envelopes_raise_invalid_dead_letter(data: bytes) -> None:
    with pytest.raises(InvalidDeadLetter):
        DeadLetter.from_json(data)
