"""The sample message: one chunk (~1 s) of one signal from one device for one patient.

This module is the contract between gateways and the worker. It is declared once, with a
schema version, and every producer and consumer imports it; nothing re-parses dicts by hand.

Wire formats (both accepted by :func:`decode_chunk`):

* **Binary (preferred, compact)** — all integers and floats little-endian::

      offset  size  field
      0       2     magic  b"VS"
      2       1     schema version (uint8, currently 1)
      3       1     signal code (uint8: 1 = ecg, 2 = ppg, 3 = resp, 4 = abp, 5 = ecg2)
      4       4     sampling rate in Hz (float32)
      8       8     timestamp of the first sample, epoch milliseconds (int64)
      16      8     sequence number per (device, signal) (uint64)
      24      4     number of samples n (uint32)
      28      1+k   patient id: uint8 length k, then k bytes UTF-8
      ..      1+k   device id:  uint8 length k, then k bytes UTF-8
      ..      1+k   units:      uint8 length k, then k bytes UTF-8
      ..      4n    samples (float32)

  A 1 s ECG chunk at 250 Hz is 1,000 bytes of samples plus ~40 bytes of header, against
  ~4,500 bytes as JSON.

* **JSON** — ``{"schema_version": 1, "patient_id": "...", "device_id": "...",
  "signal": "ecg", "fs": 250.0, "ts_ms": 1700000000000, "seq": 7, "units": "mV",
  "samples": [0.01, ...]}``.

Validation rejects anything a worker cannot safely use, with a reason that travels to
the dead-letter topic beside the original bytes.
"""

from __future__ import annotations

import json
import math
import struct
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from stream.wire import NotJSON, parse_json

SCHEMA_VERSION = 1
MAGIC = b"VS"
_HEADER = struct.Struct("<2sBBfqQI")  # magic, version, signal, fs, ts_ms, seq, n


class Signal(StrEnum):
    ECG = "ecg"
    # A second ECG lead of the same patient (e.g. V when ``ecg`` is lead II). It is not
    # classified by the models; its beats corroborate the first lead's pauses and rates,
    # as bedside monitors judge asystole on several leads.
    ECG2 = "ecg2"
    PPG = "ppg"
    RESP = "resp"
    # Invasive arterial blood pressure (an arterial line, mmHg): ICU bedside monitors carry
    # it beside the ECG. It is a pulse waveform like the PPG, and the most trusted one.
    ABP = "abp"

    @property
    def topic(self) -> str:
        return f"vitals.{self.value}"


_SIGNAL_CODES: dict[Signal, int] = {Signal.ECG: 1, Signal.PPG: 2, Signal.RESP: 3, Signal.ABP: 4, Signal.ECG2: 5}
_CODE_SIGNALS = {code: sig for sig, code in _SIGNAL_CODES.items()}

# Plausible sampling rates per signal. ECG below 100 Hz cannot resolve a QRS complex
# (AHA recommends >= 150 Hz for diagnostic ECG; wearables go down to ~125 Hz); PPG and
# respiration are slow signals that gateways commonly decimate.
SAMPLING_RATE_RANGE_HZ: dict[Signal, tuple[float, float]] = {
    Signal.ECG: (100.0, 2000.0),
    Signal.ECG2: (100.0, 2000.0),
    Signal.PPG: (20.0, 1000.0),
    Signal.RESP: (4.0, 1000.0),
    Signal.ABP: (20.0, 1000.0),
}
DEFAULT_UNITS: dict[Signal, str] = {
    Signal.ECG: "mV", Signal.ECG2: "mV", Signal.PPG: "au", Signal.RESP: "au", Signal.ABP: "mmHg"
}
MAX_CHUNK_SECONDS = 10.0
MAX_ID_BYTES = 64
# Timestamps before 2000-01-01 are device clocks that were never set.
MIN_TIMESTAMP_MS = 946_684_800_000
MAX_FUTURE_SKEW_MS = 24 * 3600 * 1000
# Samples beyond this magnitude are encoder garbage whatever the units (mV, ADC counts).
MAX_ABS_SAMPLE = 1e7
# The binary encoding carries seq as uint64; a JSON chunk may not go beyond it either.
MAX_SEQ = 2**64 - 1


class InvalidChunk(ValueError):
    """A message that cannot be used; ``reason`` is short and machine-groupable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SampleChunk:
    patient_id: str
    device_id: str
    signal: Signal
    fs: float
    ts_ms: int
    seq: int
    samples: np.ndarray = field(repr=False)
    units: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def n(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_ms(self) -> float:
        return 1000.0 * self.n / self.fs

    @property
    def end_ms(self) -> float:
        """Timestamp one sample period after the last sample (start of the next chunk)."""
        return self.ts_ms + self.duration_ms

    def validated(self, now_ms: int | None = None) -> SampleChunk:
        validate_chunk(self, now_ms)
        return self


def make_chunk(
    patient_id: str,
    device_id: str,
    signal: Signal | str,
    fs: float,
    ts_ms: int,
    seq: int,
    samples: Any,
    units: str | None = None,
) -> SampleChunk:
    sig = Signal(signal)
    return SampleChunk(
        patient_id=patient_id,
        device_id=device_id,
        signal=sig,
        fs=float(fs),
        ts_ms=int(ts_ms),
        seq=int(seq),
        samples=np.asarray(samples, dtype=np.float32),
        units=DEFAULT_UNITS[sig] if units is None else units,
    )


def validate_chunk(chunk: SampleChunk, now_ms: int | None = None) -> None:
    """Raise :class:`InvalidChunk` unless the chunk is safe for the worker to use."""
    for name in ("patient_id", "device_id"):
        value = getattr(chunk, name)
        if not isinstance(value, str) or not value.strip():
            raise InvalidChunk(f"missing_{name}")
        if len(_utf8(value, name)) > MAX_ID_BYTES or any(c in value for c in "\n\r\t\0"):
            raise InvalidChunk(f"bad_{name}", repr(value[:80]))
    if not isinstance(chunk.units, str) or len(_utf8(chunk.units, "units")) > 255:
        raise InvalidChunk("bad_units", repr(chunk.units)[:80])
    if chunk.schema_version != SCHEMA_VERSION:
        raise InvalidChunk("unsupported_schema_version", str(chunk.schema_version))
    lo, hi = SAMPLING_RATE_RANGE_HZ[chunk.signal]
    if not (math.isfinite(chunk.fs) and lo <= chunk.fs <= hi):
        raise InvalidChunk("sampling_rate_out_of_range", f"{chunk.fs} Hz for {chunk.signal}")
    if chunk.samples.ndim != 1:
        raise InvalidChunk("samples_not_1d", str(chunk.samples.shape))
    if chunk.n == 0:
        raise InvalidChunk("empty_samples")
    if chunk.n > chunk.fs * MAX_CHUNK_SECONDS:
        raise InvalidChunk("chunk_too_long", f"{chunk.n} samples at {chunk.fs} Hz")
    if not np.isfinite(chunk.samples).all():
        raise InvalidChunk("non_finite_samples")
    if float(np.abs(chunk.samples).max()) > MAX_ABS_SAMPLE:
        raise InvalidChunk("sample_out_of_range")
    if chunk.signal is Signal.ABP and chunk.units.strip().lower() != "mmhg":
        # Pressures are compared with clinical limits (NEWS2 systolic bands): a kPa or
        # raw-ADC stream would read as profound hypotension.
        raise InvalidChunk("unsupported_units", f"{chunk.units!r} for abp (mmHg required)")
    if chunk.seq < 0:
        raise InvalidChunk("negative_seq", str(chunk.seq))
    if chunk.seq > MAX_SEQ:
        raise InvalidChunk("seq_out_of_range", str(chunk.seq)[:40])
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if chunk.ts_ms < MIN_TIMESTAMP_MS or chunk.ts_ms > now + MAX_FUTURE_SKEW_MS:
        raise InvalidChunk("timestamp_out_of_range", str(chunk.ts_ms))


def encode_chunk(chunk: SampleChunk) -> bytes:
    """Binary wire encoding (layout in the module docstring)."""
    ids = b"".join(
        _short_bytes(s) for s in (chunk.patient_id, chunk.device_id, chunk.units)
    )
    try:
        header = _HEADER.pack(
            MAGIC,
            chunk.schema_version,
            _SIGNAL_CODES[chunk.signal],
            chunk.fs,
            chunk.ts_ms,
            chunk.seq,
            chunk.n,
        )
    except struct.error as exc:
        raise InvalidChunk("unencodable", str(exc)) from None
    return header + ids + np.ascontiguousarray(chunk.samples, dtype="<f4").tobytes()


def encode_chunk_json(chunk: SampleChunk) -> bytes:
    return json.dumps(
        {
            "schema_version": chunk.schema_version,
            "patient_id": chunk.patient_id,
            "device_id": chunk.device_id,
            "signal": chunk.signal.value,
            "fs": chunk.fs,
            "ts_ms": chunk.ts_ms,
            "seq": chunk.seq,
            "units": chunk.units,
            "samples": [float(x) for x in chunk.samples],
        }
    ).encode()


def decode_chunk(data: bytes | None, now_ms: int | None = None) -> SampleChunk:
    """Decode binary or JSON bytes and validate; raises :class:`InvalidChunk`."""
    if not data:
        raise InvalidChunk("empty_message")
    if data[:2] == MAGIC:
        chunk = _decode_binary(data)
    elif data.lstrip()[:1] == b"{":
        chunk = _decode_json(data)
    else:
        raise InvalidChunk("unknown_encoding", repr(data[:16]))
    validate_chunk(chunk, now_ms)
    return chunk


def _short_bytes(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        raise InvalidChunk("field_too_long", text[:40])
    return bytes([len(raw)]) + raw


def _decode_binary(data: bytes) -> SampleChunk:
    if len(data) < _HEADER.size:
        raise InvalidChunk("truncated_header", f"{len(data)} bytes")
    _, version, code, fs, ts_ms, seq, n = _HEADER.unpack_from(data)
    if version != SCHEMA_VERSION:
        raise InvalidChunk("unsupported_schema_version", str(version))
    if code not in _CODE_SIGNALS:
        raise InvalidChunk("unknown_signal", f"code {code}")
    pos = _HEADER.size
    texts: list[str] = []
    for _ in range(3):
        if pos >= len(data):
            raise InvalidChunk("truncated_header")
        k = data[pos]
        raw = data[pos + 1 : pos + 1 + k]
        if len(raw) != k:
            raise InvalidChunk("truncated_header")
        try:
            texts.append(raw.decode())
        except UnicodeDecodeError as exc:
            raise InvalidChunk("bad_utf8", str(exc)) from None
        pos += 1 + k
    if len(data) - pos != 4 * n:
        raise InvalidChunk("sample_count_mismatch", f"header says {n}, body has {(len(data) - pos) / 4}")
    samples = np.frombuffer(data, dtype="<f4", count=n, offset=pos).astype(np.float32)
    return SampleChunk(
        patient_id=texts[0],
        device_id=texts[1],
        signal=_CODE_SIGNALS[code],
        fs=float(fs),
        ts_ms=int(ts_ms),
        seq=int(seq),
        samples=samples,
        units=texts[2],
        schema_version=version,
    )


def _decode_json(data: bytes) -> SampleChunk:
    try:
        obj = parse_json(data)
    except NotJSON as exc:
        raise InvalidChunk("bad_json", str(exc)) from None
    if not isinstance(obj, dict):
        raise InvalidChunk("bad_json", "not an object")
    missing = [k for k in ("patient_id", "device_id", "signal", "fs", "ts_ms", "seq", "samples") if k not in obj]
    if missing:
        raise InvalidChunk("missing_fields", ",".join(missing))
    if not isinstance(obj["signal"], str):
        raise InvalidChunk("unknown_signal", repr(obj["signal"])[:40])
    try:
        signal = Signal(obj["signal"])
    except ValueError:
        raise InvalidChunk("unknown_signal", repr(obj["signal"])[:40]) from None
    samples_obj = obj["samples"]
    # Numbers only: not strings numpy would parse, booleans or nested lists. null is a
    # missing sample (JSON has no NaN) and is refused below as non-finite.
    if not isinstance(samples_obj, list) or not all(type(x) in _JSON_SAMPLE_TYPES for x in samples_obj):
        raise InvalidChunk("bad_samples", "samples must be a list of numbers")
    try:
        samples = np.asarray(samples_obj, dtype=np.float64)
    except OverflowError:  # an integer beyond float range (JSON has no limit on digits)
        raise InvalidChunk("bad_samples", "a sample is beyond float range") from None
    try:
        fs = _as_float(obj["fs"], "fs")
        ts_ms = _as_int(obj["ts_ms"], "ts_ms")
        seq = _as_int(obj["seq"], "seq")
        version = _as_int(obj.get("schema_version", SCHEMA_VERSION), "schema_version")
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidChunk("bad_field_type", str(exc)[:120]) from None
    if not isinstance(obj["patient_id"], str) or not isinstance(obj["device_id"], str):
        raise InvalidChunk("bad_field_type", "patient_id and device_id must be strings")
    units = obj.get("units", DEFAULT_UNITS[signal])
    if not isinstance(units, str):
        raise InvalidChunk("bad_units", "units must be a string")
    with np.errstate(over="ignore"):  # beyond float32: inf, refused as non-finite below
        samples32 = samples.astype(np.float32)
    return SampleChunk(
        patient_id=obj["patient_id"],
        device_id=obj["device_id"],
        signal=signal,
        fs=fs,
        ts_ms=ts_ms,
        seq=seq,
        samples=samples32,
        units=units,
        schema_version=version,
    )


_JSON_SAMPLE_TYPES = frozenset({float, int, type(None)})


def _utf8(text: str, name: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        raise InvalidChunk(f"bad_{name}", "not encodable as UTF-8") from None


def _as_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{name} must be an integer")
    return int(value)
