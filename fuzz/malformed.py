"""A flood of malformed messages of every kind, on every topic the worker reads, each with
the dead-letter reason the worker must give it.

Used by the end-to-end test that mixes 10,000 of them into a valid stream
(tests/e2e/test_malformed_flood.py) and by the benchmark of what they cost
(bench/bench_deadletter.py). Deterministic given the seed.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from alerting.actions import CareAction, Tick
from fuzz.targets import sample_finding
from stream.device_alarm import DEVICE_ALARMS_TOPIC, DeviceAlarm
from stream.schema import encode_chunk, encode_chunk_json, make_chunk
from stream.services import ACTIONS_TOPIC, FINDINGS_TOPIC

AGGREGATOR_REASON = "bad_alert_input"  # every refused aggregator input (detail says why)


@dataclass(frozen=True)
class Malformed:
    kind: str
    topic: str
    key: bytes | None
    value: bytes
    reason: str  # the dead-letter reason expected


def _chunk(patient: str, signal: str, ts_ms: int, seq: int, n: int = 250, fs: float = 250.0) -> object:
    fs = {"ppg": 125.0, "resp": 25.0}.get(signal, fs)
    return make_chunk(patient, f"dev-{patient}", signal, fs, ts_ms, seq, np.sin(np.arange(min(n, int(fs))) / 7))


def malformed_messages(patients: list[str], count: int, ts_ms: int, seed: int = 0) -> list[Malformed]:
    """``count`` malformed messages cycling through every kind below. ``patients`` are
    the valid stream's patients: most bad messages carry their keys, so they land on the
    same partitions (and the same monitors' doorsteps) as the valid data. ``ts_ms`` is a
    plausible event time (the valid stream's)."""
    rng = random.Random(seed)

    def key() -> bytes:
        return rng.choice(patients).encode()

    def other() -> bytes:
        return f"intruder-{rng.randrange(1000)}".encode()

    def seq() -> int:
        # Far from the valid stream's sequence numbers, so no bad message can shadow a
        # valid chunk as a "duplicate".
        return 10**9 + rng.randrange(10**9)

    def valid_binary(patient: str, signal: str = "ecg") -> bytes:
        return encode_chunk(_chunk(patient, signal, ts_ms + rng.randrange(60_000), seq()))  # type: ignore[arg-type]

    def finding_obj(patient: str) -> dict:
        return json.loads(sample_finding(t_ms=ts_ms + rng.randrange(60_000), patient_id=patient).to_json())

    def garbage() -> Malformed:
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        body = b"\x00" + body if body[:1] in (b"{", b"V", b" ") else body
        return Malformed("garbage_bytes", "vitals.ecg", key(), body, "unknown_encoding")

    def empty() -> Malformed:
        return Malformed("empty", rng.choice(["vitals.ppg", "vitals.resp"]), key(), b"", "empty_message")

    def truncated() -> Malformed:
        data = valid_binary(key().decode())
        return Malformed("truncated_binary", "vitals.ecg", None, data[: rng.randrange(3, 27)], "truncated_header")

    def truncated_body() -> Malformed:
        p = key()
        data = valid_binary(p.decode())
        return Malformed("truncated_samples", "vitals.ecg", p, data[: -rng.randrange(1, 400)],
                         "sample_count_mismatch")

    def wrong_magic() -> Malformed:
        p = key()
        data = valid_binary(p.decode())
        return Malformed("wrong_magic", "vitals.ecg", p, b"SV" + data[2:], "unknown_encoding")

    def oversized_length() -> Malformed:
        p = key()
        data = bytearray(valid_binary(p.decode()))
        struct.pack_into("<I", data, 24, rng.choice([2**32 - 1, 10**9, 250_001]))
        return Malformed("oversized_length", "vitals.ecg", p, bytes(data), "sample_count_mismatch")

    def oversized_id() -> Malformed:
        p = key()
        data = bytearray(valid_binary(p.decode()))
        data[28] = 255  # patient id length beyond the message
        return Malformed("oversized_id_length", "vitals.ecg", p, bytes(data[:200]), "truncated_header")

    def wrong_version() -> Malformed:
        p = key()
        data = bytearray(valid_binary(p.decode()))
        data[2] = rng.choice([0, 2, 255])
        return Malformed("wrong_schema_version", "vitals.ecg", p, bytes(data), "unsupported_schema_version")

    def wrong_version_json() -> Malformed:
        p = key()
        obj = json.loads(encode_chunk_json(_chunk(p.decode(), "resp", ts_ms, seq())))  # type: ignore[arg-type]
        obj["schema_version"] = rng.choice([0, 2, 99])
        return Malformed("wrong_schema_version_json", "vitals.resp", p, json.dumps(obj).encode(),
                         "unsupported_schema_version")

    def bad_json() -> Malformed:
        p = key()
        text = encode_chunk_json(_chunk(p.decode(), "ppg", ts_ms, seq()))  # type: ignore[arg-type]
        cut = text[: rng.randrange(1, len(text) - 1)]
        return Malformed("bad_json", "vitals.ppg", p, cut, "bad_json")

    def deep_json() -> Malformed:
        return Malformed("deeply_nested_json", "vitals.ppg", key(), b'{"samples": ' + b"[" * 3000 + b"]" * 3000 + b"}",
                         "bad_json")

    def wrong_key() -> Malformed:
        p = key()
        return Malformed("wrong_key", "vitals.ecg", other(), valid_binary(p.decode()), "key_mismatch")

    def no_key() -> Malformed:
        return Malformed("no_key", "vitals.ecg", None, valid_binary(key().decode()), "key_mismatch")

    def wrong_topic() -> Malformed:
        p = key()
        return Malformed("wrong_topic", "vitals.ppg", p, valid_binary(p.decode(), "ecg"), "wrong_topic")

    def nan_samples() -> Malformed:
        p = key()
        c = _chunk(p.decode(), "ecg", ts_ms, seq())
        samples = c.samples.copy()  # type: ignore[attr-defined]
        samples[rng.randrange(samples.size)] = rng.choice([np.nan, np.inf, -np.inf])
        c = make_chunk(p.decode(), f"dev-{p.decode()}", "ecg", 250, ts_ms, seq(), samples)
        return Malformed("nan_samples", "vitals.ecg", p, encode_chunk(c), "non_finite_samples")

    def nan_samples_json() -> Malformed:
        p = key()
        obj = json.loads(encode_chunk_json(_chunk(p.decode(), "resp", ts_ms, seq())))  # type: ignore[arg-type]
        obj["samples"][0] = None
        return Malformed("null_samples_json", "vitals.resp", p, json.dumps(obj).encode(), "non_finite_samples")

    def bad_rate() -> Malformed:
        p = key()
        c = make_chunk(p.decode(), "d", "ecg", rng.choice([10.0, 5000.0]), ts_ms, seq(), np.zeros(5))
        return Malformed("sampling_rate_out_of_range", "vitals.ecg", p, encode_chunk(c), "sampling_rate_out_of_range")

    def bad_time() -> Malformed:
        p = key()
        c = make_chunk(p.decode(), "d", "ecg", 250, rng.choice([0, 10**15]), seq(), np.zeros(250))
        return Malformed("timestamp_out_of_range", "vitals.ecg", p, encode_chunk(c), "timestamp_out_of_range")

    def huge_json_number() -> Malformed:
        p = key()
        obj = json.loads(encode_chunk_json(_chunk(p.decode(), "ppg", ts_ms, seq())))  # type: ignore[arg-type]
        obj["fs"] = 10**400
        return Malformed("huge_json_number", "vitals.ppg", p, json.dumps(obj).encode(), "bad_field_type")

    # ---- the aggregator's topics: all refused as bad_alert_input (the detail says why)

    def finding_garbage() -> Malformed:
        body = b"\xff" + bytes(rng.randrange(256) for _ in range(40))
        return Malformed("finding_not_json", FINDINGS_TOPIC, key(), body, AGGREGATOR_REASON)

    def finding_wrong_types() -> Malformed:
        p = key()
        obj = finding_obj(p.decode())
        field_, value = rng.choice([("t_ms", "soon"), ("ecg", [1]), ("window_s", None), ("trends", [{"x": 1}]),
                                    ("patient_id", 7), ("hr_bpm", 10**400)])
        if field_ == "hr_bpm":
            obj["ecg"]["hr_bpm"] = value
        else:
            obj[field_] = value
        return Malformed("finding_wrong_types", FINDINGS_TOPIC, p, json.dumps(obj).encode(), AGGREGATOR_REASON)

    def finding_future() -> Malformed:
        p = key()
        obj = finding_obj(p.decode())
        obj["t_ms"] = ts_ms + 365 * 24 * 3600 * 1000
        return Malformed("finding_far_future", FINDINGS_TOPIC, p, json.dumps(obj).encode(), AGGREGATOR_REASON)

    def finding_wrong_key() -> Malformed:
        obj = finding_obj(key().decode())
        return Malformed("finding_wrong_key", FINDINGS_TOPIC, other(), json.dumps(obj).encode(), AGGREGATOR_REASON)

    def finding_version() -> Malformed:
        p = key()
        obj = finding_obj(p.decode())
        obj["schema_version"] = 2
        return Malformed("finding_wrong_schema_version", FINDINGS_TOPIC, p, json.dumps(obj).encode(),
                         AGGREGATOR_REASON)

    def action_bad() -> Malformed:
        p = key()
        obj = json.loads(CareAction.ack(f"{p.decode()}:asystole:1", p.decode(), "nurse", ts_ms).to_json())
        field_, value = rng.choice([("kind", "delete"), ("by", ""), ("issued_ms", "now"), ("alert_id", None),
                                    ("minutes", 10**400)])
        if field_ == "minutes":
            obj["kind"] = "snooze"
        obj[field_] = value
        return Malformed("care_action_malformed", ACTIONS_TOPIC, p, json.dumps(obj).encode(), AGGREGATOR_REASON)

    def tick_bad() -> Malformed:
        p = key()
        value = rng.choice([b'{"tick": Infinity, "patient_id": "%s"}' % p, b'{"tick": "x", "patient_id": "%s"}' % p,
                            Tick("someone-else", ts_ms).to_json()])
        return Malformed("tick_malformed", ACTIONS_TOPIC, p, value, AGGREGATOR_REASON)

    def alarm_bad() -> Malformed:
        p = key()
        obj = json.loads(DeviceAlarm(p.decode(), "vtach", ts_ms, "mx", "VT").to_json())
        field_, value = rng.choice([("alarm_type", "sneeze"), ("t_ms", -1), ("t_ms", ts_ms + 10**12),
                                    ("schema_version", 3), ("volume", 11), ("patient_id", "other-bed")])
        obj[field_] = value
        return Malformed("device_alarm_malformed", DEVICE_ALARMS_TOPIC, p, json.dumps(obj).encode(),
                         AGGREGATOR_REASON)

    def alarm_not_json() -> Malformed:
        return Malformed("device_alarm_not_json", DEVICE_ALARMS_TOPIC, key(), b"VT ALARM bed 7", AGGREGATOR_REASON)

    def no_key_aggregator() -> Malformed:
        obj = finding_obj(key().decode())
        return Malformed("finding_no_key", FINDINGS_TOPIC, None, json.dumps(obj).encode(), AGGREGATOR_REASON)

    kinds: list[Callable[[], Malformed]] = [
        garbage, empty, truncated, truncated_body, wrong_magic, oversized_length, oversized_id, wrong_version,
        wrong_version_json, bad_json, deep_json, wrong_key, no_key, wrong_topic, nan_samples, nan_samples_json,
        bad_rate, bad_time, huge_json_number, finding_garbage, finding_wrong_types, finding_future,
        finding_wrong_key, finding_version, action_bad, tick_bad, alarm_bad, alarm_not_json, no_key_aggregator,
    ]
    return [kinds[i % len(kinds)]() for i in range(count)]
