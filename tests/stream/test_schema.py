from __future__ import annotations

import contextlib
import json
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.schema import (
    MAGIC,
    InvalidChunk,
    Signal,
    decode_chunk,
    encode_chunk,
    encode_chunk_json,
    make_chunk,
)

NOW = 1_760_000_000_000


def chunk(**overrides: object):
    args = {
        "patient_id": "p1",
        "device_id": "d1",
        "signal": "ecg",
        "fs": 250,
        "ts_ms": NOW,
        "seq": 3,
        "samples": np.sin(np.arange(250) / 10),
    }
    args.update(overrides)
    return make_chunk(**args)  # type: ignore[arg-type]


def test_binary_round_trip_is_exact_and_compact() -> None:
    c = chunk()
    data = encode_chunk(c)
    assert data[:2] == MAGIC
    assert len(data) == 28 + 3 + 2 + 2 + 2 + 4 * 250  # header + 3 short strings + samples
    back = decode_chunk(data, now_ms=NOW)
    assert (back.patient_id, back.device_id, back.signal, back.fs, back.ts_ms, back.seq, back.units) == (
        "p1", "d1", Signal.ECG, 250.0, NOW, 3, "mV")
    np.testing.assert_array_equal(back.samples, c.samples)


def test_json_is_accepted_too() -> None:
    back = decode_chunk(encode_chunk_json(chunk(signal="ppg", fs=125)), now_ms=NOW)
    assert back.signal is Signal.PPG and back.fs == 125.0 and back.n == 250


def test_arterial_pressure_travels_in_mmhg() -> None:
    c = chunk(signal="abp", fs=125, samples=80 + 40 * np.abs(np.sin(np.arange(125) / 20)))
    assert c.units == "mmHg"
    for data in (encode_chunk(c), encode_chunk_json(c)):
        back = decode_chunk(data, now_ms=NOW)
        assert back.signal is Signal.ABP and back.units == "mmHg"
        np.testing.assert_array_equal(back.samples, c.samples)
    assert Signal.ABP.topic == "vitals.abp"


def test_second_ecg_lead_has_its_own_code_and_topic() -> None:
    c = chunk(signal="ecg2")
    back = decode_chunk(encode_chunk(c), now_ms=NOW)
    assert back.signal is Signal.ECG2 and back.units == "mV"
    assert encode_chunk(c)[3] == 5 and Signal.ECG2.topic == "vitals.ecg2"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"signal": "abp", "fs": 125, "units": "kPa"}, "unsupported_units"),
        ({"fs": 50}, "sampling_rate_out_of_range"),
        ({"signal": "resp", "fs": 2}, "sampling_rate_out_of_range"),
        ({"samples": np.array([1.0, np.nan])}, "non_finite_samples"),
        ({"samples": np.array([], dtype=np.float32)}, "empty_samples"),
        ({"samples": np.zeros(250 * 11)}, "chunk_too_long"),
        ({"ts_ms": 123}, "timestamp_out_of_range"),
        ({"ts_ms": NOW + 3 * 24 * 3600 * 1000}, "timestamp_out_of_range"),
        ({"patient_id": ""}, "missing_patient_id"),
        ({"seq": -1}, "negative_seq"),
    ],
)
def test_invalid_chunks_are_rejected_with_a_reason(overrides: dict, reason: str) -> None:
    with pytest.raises(InvalidChunk) as err:
        decode_chunk(encode_chunk_json(chunk(**overrides)), now_ms=NOW)
    assert err.value.reason == reason
    with pytest.raises(InvalidChunk):
        decode_chunk(encode_chunk(chunk(**overrides)), now_ms=NOW)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty_message"),
        (b"hello", "unknown_encoding"),
        (b"VS\x01", "truncated_header"),
        (b"{not json", "bad_json"),
        (b'{"patient_id": "p"}', "missing_fields"),
        (json.dumps({"patient_id": "p", "device_id": "d", "signal": "eeg", "fs": 250, "ts_ms": NOW,
                     "seq": 1, "samples": [0.0]}).encode(), "unknown_signal"),
        (json.dumps({"patient_id": "p", "device_id": "d", "signal": "ecg", "fs": 250, "ts_ms": NOW,
                     "seq": 1, "samples": "abc"}).encode(), "bad_samples"),
        (json.dumps({"patient_id": "p", "device_id": "d", "signal": "ecg", "fs": 250, "ts_ms": NOW,
                     "seq": 1.5, "samples": [0.0]}).encode(), "bad_field_type"),
    ],
)
def test_malformed_bytes_get_a_clear_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidChunk) as err:
        decode_chunk(data, now_ms=NOW)
    assert err.value.reason == reason


def test_sample_count_must_match_header() -> None:
    data = encode_chunk(chunk())
    with pytest.raises(InvalidChunk) as err:
        decode_chunk(data[:-4], now_ms=NOW)
    assert err.value.reason == "sample_count_mismatch"


def test_unknown_signal_code_in_binary() -> None:
    data = bytearray(encode_chunk(chunk()))
    struct.pack_into("<B", data, 3, 9)
    with pytest.raises(InvalidChunk) as err:
        decode_chunk(bytes(data), now_ms=NOW)
    assert err.value.reason == "unknown_signal"


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_invalid_chunk(data: bytes) -> None:
    with contextlib.suppress(InvalidChunk):
        decode_chunk(data, now_ms=NOW)


@given(st.binary(min_size=1, max_size=64))
def test_corrupted_binary_never_raises_anything_but_invalid_chunk(noise: bytes) -> None:
    data = bytearray(encode_chunk(chunk()))
    for i, b in enumerate(noise):
        data[(i * 37) % len(data)] ^= b
    with contextlib.suppress(InvalidChunk):
        decode_chunk(bytes(data), now_ms=NOW)


def _json_chunk(**changes: object) -> bytes:
    obj = json.loads(encode_chunk_json(chunk()))
    obj.update(changes)
    return json.dumps(obj).encode()


# Crashes the fuzzers found (fuzz/, docs/fuzzing.md): each raised something other than
# InvalidChunk, which the worker treated as an internal error and reset the patient named
# by the message's key.
@pytest.mark.parametrize(
    ("data", "reason"),
    [
        # OverflowError: an integer beyond float range
        (_json_chunk(fs=10**400), "bad_field_type"),
        # RecursionError from json.loads
        (b'{"samples": ' + b"[" * 5000 + b"]" * 5000 + b"}", "bad_json"),
        # ValueError (not InvalidChunk): Python refuses integers of more than 4,300 digits
        (b'{"fs": ' + b"7" * 5000 + b"}", "bad_json"),
        # UnicodeEncodeError: a lone surrogate is valid JSON but no UTF-8 (the findings' Kafka key)
        (b'{"patient_id": "p\\ud800"}', "bad_json"),
        # numpy parses strings as numbers, and booleans as 0/1
        (_json_chunk(samples=["1.5", "2.5"]), "bad_samples"),
        (_json_chunk(samples=[True, False]), "bad_samples"),
        (_json_chunk(samples=[[1.0, 2.0]]), "bad_samples"),
        (_json_chunk(samples=[10**400]), "bad_samples"),
        (_json_chunk(fs="250"), "bad_field_type"),
        (_json_chunk(signal=["ecg"]), "unknown_signal"),
        (_json_chunk(units={"mV": 1}), "bad_units"),
        # The binary encoding's seq is a uint64: a JSON chunk beyond it cannot be re-encoded
        (_json_chunk(seq=2**64), "seq_out_of_range"),
        # A missing sample (JSON has no NaN) is a gap in the data, refused as such
        (_json_chunk(samples=[0.1, None, 0.2]), "non_finite_samples"),
    ],
)
def test_fuzzer_findings_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidChunk) as err:
        decode_chunk(data, now_ms=NOW)
    assert err.value.reason == reason


def test_samples_beyond_float32_are_refused_as_non_finite() -> None:
    with pytest.raises(InvalidChunk) as err:
        decode_chunk(_json_chunk(samples=[1e300]), now_ms=NOW)
    assert err.value.reason == "non_finite_samples"
