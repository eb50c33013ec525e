"""Decoding helpers for untrusted messages (``stream/wire.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from stream.wire import NotJSON, check_fields, load_json_object, parse_json


class Bad(ValueError):
    pass


@dataclass
class Inner:
    rate: float | None
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Outer:
    name: str
    at_ms: int
    inner: Inner | None = None
    tags: tuple[str, ...] = ()
    many: tuple[Inner, ...] = ()


def test_valid_objects_pass_and_unknown_fields_are_left_alone() -> None:
    check_fields(Outer, {"name": "a", "at_ms": 5, "inner": {"rate": 1, "counts": {"N": 2}}, "tags": ["x"],
                         "many": [{"rate": None}], "future": {"anything": True}}, Bad)


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({"at_ms": 5}, "missing field"),
        ({"name": 1, "at_ms": 5}, "name must be a string"),
        ({"name": "a", "at_ms": True}, "at_ms must be a 64-bit integer"),
        ({"name": "a", "at_ms": 2**63}, "at_ms"),
        ({"name": "a", "at_ms": 1.0}, "at_ms"),
        ({"name": "a", "at_ms": 5, "inner": []}, "inner must be an object"),
        ({"name": "a", "at_ms": 5, "inner": {"rate": "1"}}, "inner.rate must be a number or null"),
        ({"name": "a", "at_ms": 5, "inner": {"rate": 10**400}}, "inner.rate"),
        ({"name": "a", "at_ms": 5, "inner": {"rate": 1, "counts": {"N": 1.5}}}, "counts"),
        ({"name": "a", "at_ms": 5, "tags": "abc"}, "tags must be a list of a string"),
        ({"name": "a", "at_ms": 5, "many": [{"counts": {}}]}, r"many\[0\]: missing field"),
    ],
)
def test_wrong_fields_name_the_field(obj: dict, match: str) -> None:
    with pytest.raises(Bad, match=match):
        check_fields(Outer, obj, Bad)


@pytest.mark.parametrize(
    "data", [b"[" * 3000 + b"]" * 3000, b"9" * 5000, b"\xff\xfe\x00", b'"\\udc00"', b'{"\\ud800": 1}', b"", 5]
)
def test_parse_json_raises_only_not_json(data: object) -> None:
    with pytest.raises(NotJSON):
        parse_json(data)  # type: ignore[arg-type]


def test_surrogate_pairs_are_fine_and_objects_are_required() -> None:
    assert parse_json(b'"\\ud83d\\ude00"') == "\U0001f600"
    with pytest.raises(Bad, match="JSON object"):
        load_json_object(b"[1]", Bad, "thing")
