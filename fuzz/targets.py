"""Every decoder that reads bytes from outside, with its contract, seeds and checks.

The contract (docs/fuzzing.md): for *any* input bytes a decoder returns a valid record or
raises its one documented exception (a ``ValueError`` subclass whose text is the
dead-letter reason); anything else (``TypeError``, ``KeyError``, ``AttributeError``,
``RecursionError``, ``OverflowError``, ``MemoryError``, ...) is a crash. A returned record
must also be *usable*: it survives a round trip through its own encoder and the pure stage
that consumes it in the worker (the alert state machine for aggregator inputs) accepts it
without raising.

Shared by the hypothesis tests (``tests/fuzz/``, in ``make test``) and the coverage-guided
atheris harness (``fuzz/run.py``, ``make fuzz``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from alerting.actions import CareAction, InvalidCareAction, Tick, decode_action_message, decode_alert_input
from alerting.aggregator import (
    PatientAlertState,
    process_action,
    process_device_alarm,
    process_finding,
    process_tick,
)
from stream.deadletter import DeadLetter, InvalidDeadLetter
from stream.device_alarm import DeviceAlarm, InvalidDeviceAlarm
from stream.findings import (
    AbpFindings,
    EcgFindings,
    InvalidFinding,
    PpgFindings,
    RespFindings,
    TrendFinding,
    VitalsFinding,
)
from stream.schema import InvalidChunk, SampleChunk, decode_chunk, encode_chunk, encode_chunk_json, make_chunk

# A fixed "now" so that a failing input reproduces whatever day it is replayed.
NOW_MS = 1_764_400_000_000


@dataclass(frozen=True)
class DecoderTarget:
    name: str
    decode: Callable[[bytes], object]
    error: type[ValueError]  # the one documented exception
    seeds: Callable[[], list[bytes]]
    check: Callable[[object], None]  # a decoded record is usable (raises if not)
    where: str  # the decoder, for the report


class ContractViolation(AssertionError):
    """A decoder crashed or returned something unusable for one input."""


def run_one(target: DecoderTarget, data: bytes) -> bool:
    """Decode ``data``; True if it was accepted, False if refused with the documented
    error. Raises :class:`ContractViolation` for anything else (the exception chained)."""
    try:
        record = target.decode(data)
    except target.error:
        return False
    except (Exception, RecursionError, MemoryError) as exc:
        raise ContractViolation(f"{target.name}: {type(exc).__name__}: {exc}"[:300]) from exc
    try:
        target.check(record)
    except Exception as exc:
        raise ContractViolation(f"{target.name}: decoded record unusable: {type(exc).__name__}: {exc}"[:300]) from exc
    return True


# ---------------------------------------------------------------- sample chunks


def _decode_chunk(data: bytes) -> SampleChunk:
    return decode_chunk(data, now_ms=NOW_MS)


def _check_chunk(record: object) -> None:
    assert isinstance(record, SampleChunk)
    for encoded in (encode_chunk(record), encode_chunk_json(record)):
        back = decode_chunk(encoded, now_ms=NOW_MS)
        assert (back.patient_id, back.device_id, back.signal, back.ts_ms, back.seq, back.units) == (
            record.patient_id, record.device_id, record.signal, record.ts_ms, record.seq, record.units)
        assert np.array_equal(back.samples, record.samples)
    record.patient_id.encode()  # the Kafka key of its findings


def _chunk_seeds(encode: Callable[[SampleChunk], bytes], n: int) -> Callable[[], list[bytes]]:
    def seeds() -> list[bytes]:
        t = np.arange(n) / 10.0
        return [
            encode(make_chunk("p1", "d1", "ecg", 250, NOW_MS - 60_000, 7, np.sin(t))),
            encode(make_chunk("bed-7", "mx-3", "abp", 125, NOW_MS - 1000, 2**40, 80 + 40 * np.abs(np.sin(t)))),
            encode(make_chunk("p2", "w-9", "resp", 25, NOW_MS - 5000, 0, np.cos(t))),
            encode(make_chunk("p2", "w-9", "ppg", 125, NOW_MS - 5000, 1, np.cos(t), units="au")),
            encode(make_chunk("p3", "d3", "ecg2", 500, NOW_MS, 3, -np.sin(t))),
        ]

    return seeds


# ---------------------------------------------------------------- findings


def sample_finding(t_ms: int = NOW_MS - 10_000, patient_id: str = "p1") -> VitalsFinding:
    """A finding with every part filled in (the fuzzers' seed)."""
    ecg = EcgFindings(quality=0.9, usable=True, lead_off=False, hr_bpm=72.0, n_beats=12, max_pause_s=1.0,
                      hr_min_5beats=66.0, hr_max_17beats=74.0, hr_max_5beats=76.0, sdnn_ms=40.0,
                      rmssd_ms=30.0, rr_irregularity=0.03, beat_counts={"N": 11, "V": 1}, v_run_length=1,
                      v_run_rate_bpm=None, rhythm="N", rhythm_probs={"N": 0.9, "A": 0.05, "O": 0.03, "~": 0.02},
                      vf_score=0.02, vf_seconds=0.0)
    return VitalsFinding(
        patient_id=patient_id, t_ms=t_ms, window_s=10.0, ecg=ecg, ecg2=replace(ecg, rhythm=None, rhythm_probs={}),
        ppg=PpgFindings(quality=0.8, usable=True, pulsatile=True, pulse_rate_bpm=71.0, max_pause_s=1.1,
                        irregularity=0.04, perfusion_index=2.0),
        resp=RespFindings(rate_bpm=15.0, source="resp", quality=0.7, usable=True, max_pause_s=5.0),
        abp=AbpFindings(quality=0.95, usable=True, pulsatile=True, pulse_rate_bpm=72.0, max_pause_s=1.0,
                        irregularity=0.03, systolic_mmhg=121.0, diastolic_mmhg=79.0, mean_mmhg=93.0),
        trends=(TrendFinding("hr_rising", "resting HR up 25 % over 2 h", 25.0, 72.0, 7200.0, "medium"),),
        news2=1, gaps=("ppg",), model_version="beats-1+rhythm-1",
    )


def _decode_finding(data: bytes) -> VitalsFinding:
    return VitalsFinding.from_json(data, now_ms=NOW_MS)


def _check_finding(record: object) -> None:
    assert isinstance(record, VitalsFinding)
    again = VitalsFinding.from_json(record.to_json(), now_ms=NOW_MS)
    assert again.to_json() == record.to_json()
    state, _ = process_finding(PatientAlertState.new(record.patient_id), record)
    process_finding(state, replace(record, t_ms=record.t_ms + 2000))
    PatientAlertState.from_json(state.to_json())
    record.patient_id.encode()


# ---------------------------------------------------------------- care actions and ticks


def _check_action(record: object) -> None:
    assert isinstance(record, CareAction | Tick)
    again = decode_action_message(record.to_json())
    assert again == record
    state = PatientAlertState.new(record.patient_id)
    if isinstance(record, Tick):
        process_tick(state, record.now_ms)
        finding = sample_finding(patient_id=record.patient_id) if _short(record.patient_id) else None
        if finding is not None:
            seen, _ = process_finding(state, finding)
            process_tick(seen, record.now_ms)
    else:
        process_action(state, record, NOW_MS)
        _ = record.snoozed_until_ms


def _short(patient_id: str) -> bool:
    return 0 < len(patient_id.encode()) <= 64 and bool(patient_id.strip())


def _action_seeds() -> list[bytes]:
    return [
        CareAction.ack("p1:asystole:1764399990000", "p1", "nurse.kim", NOW_MS).to_json(),
        CareAction.snooze("p1:tachy:1764399990000", "p1", "dr.ade", NOW_MS, 15).to_json(),
        Tick("p1", NOW_MS).to_json(),
    ]


# ---------------------------------------------------------------- bedside alarms


def _decode_alarm(data: bytes) -> DeviceAlarm:
    return DeviceAlarm.from_json(data, now_ms=NOW_MS)


def _check_alarm(record: object) -> None:
    assert isinstance(record, DeviceAlarm)
    assert DeviceAlarm.from_json(record.to_json(), now_ms=NOW_MS) == record
    state, _ = process_device_alarm(PatientAlertState.new(record.patient_id), record)
    if _short(record.patient_id):
        process_finding(state, sample_finding(t_ms=record.t_ms + 2000, patient_id=record.patient_id))
    process_tick(state, record.t_ms + 3_600_000)
    PatientAlertState.from_json(state.to_json())


def _alarm_seeds() -> list[bytes]:
    return [
        DeviceAlarm("bed-7", "vtach", NOW_MS - 30_000, "mx800-3", "V-Tach").to_json(),
        DeviceAlarm("bed-8", "asystole", NOW_MS - 1_000).to_json(),
    ]


# ---------------------------------------------------------------- dead letters


def _check_dead_letter(record: object) -> None:
    assert isinstance(record, DeadLetter)
    _ = record.original
    assert DeadLetter.from_json(record.to_json()) == record


def _dead_letter_seeds() -> list[bytes]:
    return [
        DeadLetter.wrap(reason="non_finite_samples", detail="", topic="vitals.ecg", partition=3, offset=1234,
                        key=b"p1", original=b"VS\x01\x01junk", received_ms=NOW_MS).to_json(),
        DeadLetter.wrap(reason="bad_alert_input", detail="InvalidFinding: t_ms", topic="vitals.findings",
                        partition=0, offset=0, key=None, original=b'{"x": 1}', received_ms=NOW_MS).to_json(),
    ]


# ---------------------------------------------------------------- the aggregator's inputs as one stream


def _decode_alert_input(data: bytes) -> VitalsFinding | CareAction:
    return decode_alert_input(data, now_ms=NOW_MS)


def _check_alert_input(record: object) -> None:
    if isinstance(record, VitalsFinding):
        _check_finding(record)
    else:
        _check_action(record)


TARGETS: dict[str, DecoderTarget] = {
    t.name: t
    for t in (
        DecoderTarget("chunk-binary", _decode_chunk, InvalidChunk, _chunk_seeds(encode_chunk, 40), _check_chunk,
                      "stream.schema.decode_chunk (binary)"),
        DecoderTarget("chunk-json", _decode_chunk, InvalidChunk, _chunk_seeds(encode_chunk_json, 8), _check_chunk,
                      "stream.schema.decode_chunk (JSON)"),
        DecoderTarget("finding", _decode_finding, InvalidFinding, lambda: [sample_finding().to_json()],
                      _check_finding, "stream.findings.VitalsFinding.from_json"),
        DecoderTarget("alert-action", decode_action_message, InvalidCareAction, _action_seeds, _check_action,
                      "alerting.actions.decode_action_message (care actions, ticks)"),
        DecoderTarget("device-alarm", _decode_alarm, InvalidDeviceAlarm, _alarm_seeds, _check_alarm,
                      "stream.device_alarm.DeviceAlarm.from_json"),
        DecoderTarget("dead-letter", DeadLetter.from_json, InvalidDeadLetter, _dead_letter_seeds,
                      _check_dead_letter, "stream.deadletter.DeadLetter.from_json"),
        DecoderTarget("alert-input", _decode_alert_input, ValueError,
                      lambda: [sample_finding().to_json(), *_action_seeds()[:2]], _check_alert_input,
                      "alerting.actions.decode_alert_input"),
    )
}


def json_seed_objects(target: DecoderTarget) -> list[object]:
    """The seeds of a JSON target, parsed (for structure-aware mutation)."""
    return [json.loads(s) for s in target.seeds() if s[:1] == b"{"]
