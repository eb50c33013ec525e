"""Evidence strips: the waveform an alert or a bedside-alarm decision was made on. Pure.

A care team deciding whether an alarm is real looks at the ECG strip first (the bedside
monitor's "alarm recording"). The worker keeps, per patient, the last ``buffer_s`` seconds
of every signal at a display rate (:class:`EvidenceRecorder`, fed each valid chunk and each
analysed window's beats) and, when the aggregator raises a high-priority alert or decides a
bedside alarm, cuts the 10 s it was decided on into a compact :class:`EvidenceStrip` that
is stored in Redis (``alerting.evidence_store``) and drawn by the dashboard.

Size. Each signal is block-averaged on the way in to at most its display rate (ECG 125 Hz,
PPG/ABP 62.5 Hz, respiration 25 Hz; a boxcar over the ``k`` input samples of a block is the
anti-alias filter, chunk-invariant because a partial block is carried to the next chunk),
kept as float32. When cut, ECG is band-passed 0.5-40 Hz (the monitoring-mode bandwidth,
IEC 60601-2-27) and PPG 0.5-8 Hz, both zero-phase; the arterial pressure stays in mmHg and
respiration is only de-meaned. Each trace is then quantised to 8 bits over its own range
(255 = no data): 254 levels over a 3 mV QRS is ~12 uV a step, finer than a screen pixel.
A 10 s strip of a ward patient (ECG 250 Hz, PPG 125 Hz, respiration 25 Hz) is 2,125 bytes
of samples and 2.8 KB stored with its metadata; an ICU bed (two ECG leads, ABP, PPG,
respiration) 4,000 bytes of samples, 5.0 KB stored (``EvidenceStrip.size_bytes``, measured
in tests/stream/test_evidence.py); the beat marks add ~10 bytes a beat.

Memory of the recorder: display-rate float32 for ``buffer_s`` (default 60 s), ~51 KB per
ward patient and ~96 KB per ICU bed. Why 60 s: the aggregator reads a finding after the
vitals agent has moved on by whatever event time the worker processed meanwhile, a few
seconds live; a worker catching up on a backlog can be further ahead, and then the strip's
samples are gone and no strip is written (counted, never guessed).
"""

from __future__ import annotations

import json
import math
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.dsp.filters import bandpass_sos, filtfilt_sos
from stream.schema import SampleChunk, Signal

STRIP_SCHEMA_VERSION = 1
# The alarm-recording length: CinC 2015 judged each alarm on the 10 s before it, and the
# verification does the same (alerting.verification.VERIFY_LOOKBACK_S).
STRIP_S = 10.0
DEFAULT_BUFFER_S = 60.0
# Highest display rate per signal; the kept rate is fs / ceil(fs / max).
DISPLAY_MAX_FS: dict[Signal, float] = {
    Signal.ECG: 125.0,
    Signal.ECG2: 125.0,
    Signal.PPG: 64.0,
    Signal.ABP: 64.0,
    Signal.RESP: 25.0,
}
# Drawing order on the page.
TRACE_ORDER = (Signal.ECG, Signal.ECG2, Signal.ABP, Signal.PPG, Signal.RESP)
MISSING = 255
_LEVELS = 254  # codes 0..254 carry values
# Seconds of signal before the strip that the zero-phase filters may look at, so the strip
# does not start with the filter's edge transient.
_FILTER_MARGIN_S = 2.0
# The same beat seen by two overlapping windows (R position jitter of the detector).
_BEAT_MATCH_MS = 40.0


class _SignalRing:
    """The last ``buffer_s`` of one signal at its display rate, on a grid of block times."""

    __slots__ = ("block_end_ms", "cap", "carry", "data", "fs", "fs_in", "k", "next_in_ms", "t0_ms",
                 "units", "written")

    def __init__(self, fs_in: float, max_fs: float, buffer_s: float, start_ms: float, units: str) -> None:
        self.fs_in = fs_in
        self.k = max(1, math.ceil(fs_in / max_fs - 1e-9))
        self.fs = fs_in / self.k
        self.cap = max(1, math.ceil(buffer_s * self.fs))
        self.data = np.full(self.cap, np.nan, dtype=np.float32)
        self.t0_ms = start_ms  # event time of the first input sample of grid block 0
        self.written = 0  # blocks written since t0 (the ring holds the last ``cap``)
        self.carry = np.zeros(0, dtype=np.float64)  # input samples of the unfinished block
        self.next_in_ms = start_ms  # event time the next input sample should have
        self.units = units
        self.block_end_ms = start_ms

    def push(self, ts_ms: float, x: np.ndarray) -> bool:
        """Append a chunk; False if it does not fit the grid (the caller starts afresh)."""
        period = 1000.0 / self.fs_in
        offset = (ts_ms - self.next_in_ms) / period
        if offset < -0.5:
            # A repeat (gateways retry) or an overlap: keep only what is new.
            skip = round(-offset)
            if skip >= x.size:
                return True
            x = x[skip:]
        elif offset > 0.5:
            missing = round(offset)
            if missing > self.cap * self.k:
                return False  # a gap longer than the buffer: nothing to keep across it
            x = np.concatenate([np.full(missing, np.nan), x])
        self.next_in_ms += x.size * period
        merged = np.concatenate([self.carry, np.asarray(x, dtype=np.float64)])
        blocks = merged.size // self.k
        self.carry = merged[blocks * self.k:]
        if blocks:
            # A block with any missing input sample is missing (mean of NaN is NaN).
            values = merged[: blocks * self.k].reshape(blocks, self.k).mean(axis=1).astype(np.float32)
            if blocks >= self.cap:
                values = values[-self.cap:]
                start = self.written + blocks - self.cap
            else:
                start = self.written
            idx = np.arange(start, start + values.size) % self.cap
            self.data[idx] = values
            self.written += blocks
        return True

    def block_ms(self, j: float) -> float:
        """Event time of block ``j``: the middle of its input samples."""
        return self.t0_ms + (j * self.k + (self.k - 1) / 2.0) * 1000.0 / self.fs_in

    def cut(self, start_ms: float, end_ms: float) -> tuple[float, np.ndarray]:
        """(time of the first returned block, values) for the blocks in [start, end); NaN
        where the ring has no data (before it, overwritten, or a gap)."""
        step = 1000.0 * self.k / self.fs_in
        j0 = math.ceil((start_ms - self.block_ms(0)) / step - 1e-9)
        j1 = math.ceil((end_ms - self.block_ms(0)) / step - 1e-9)
        n = max(0, j1 - j0)
        out = np.full(n, np.nan, dtype=np.float32)
        lo, hi = max(j0, self.written - self.cap, 0), min(j1, self.written)
        if hi > lo:
            out[lo - j0: hi - j0] = self.data[np.arange(lo, hi) % self.cap]
        return self.block_ms(j0), out


@dataclass
class _PatientEvidence:
    rings: dict[Signal, _SignalRing] = field(default_factory=dict)
    beat_ms: list[float] = field(default_factory=list)  # sorted
    beat_class: list[str] = field(default_factory=list)  # "" = not classified (yet)
    seen_at: float = 0.0  # wall clock of the newest chunk


@dataclass(frozen=True, slots=True)
class StripTrace:
    """One signal of a strip: ``codes`` are 8-bit levels (255 = no data) standing for
    ``offset + code * scale`` in ``units``; sample ``i`` is at ``t0_ms + i * 1000 / fs``."""

    signal: str
    fs: float
    t0_ms: float
    units: str
    offset: float
    scale: float
    codes: bytes
    filtered: str = ""  # the display filter applied, said on the page

    def values(self) -> np.ndarray:
        codes = np.frombuffer(self.codes, dtype=np.uint8)
        out = self.offset + codes.astype(np.float64) * self.scale
        out[codes == MISSING] = np.nan
        return out

    @property
    def coverage(self) -> float:
        """Fraction of the trace with data."""
        if not self.codes:
            return 0.0
        return 1.0 - self.codes.count(MISSING) / len(self.codes)

    def meta(self) -> dict[str, Any]:
        return {"signal": self.signal, "fs": self.fs, "t0_ms": round(self.t0_ms, 2), "units": self.units,
                "offset": self.offset, "scale": self.scale, "n": len(self.codes), "filtered": self.filtered}


def quantise(values: np.ndarray) -> tuple[float, float, bytes]:
    """(offset, scale, codes): 8-bit levels over the finite values' range; NaN -> 255."""
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.any():
        return 0.0, 1.0, bytes([MISSING]) * x.size
    lo, hi = float(x[finite].min()), float(x[finite].max())
    scale = (hi - lo) / _LEVELS if hi > lo else 1.0
    codes = np.full(x.size, MISSING, dtype=np.uint8)
    codes[finite] = np.clip(np.rint((x[finite] - lo) / scale), 0, _LEVELS).astype(np.uint8)
    return lo, scale, codes.tobytes()


@dataclass(frozen=True, slots=True)
class EvidenceStrip:
    """The waveform behind one alert (``kind`` "alert", ``ref_id`` the alert id) or one
    bedside-alarm decision (``kind`` "device-alarm", ``ref_id`` the alarm id).
    ``beats``: (event time ms, AAMI class or "" when not classified) of the first ECG lead."""

    kind: str
    ref_id: str
    patient_id: str
    start_ms: int
    end_ms: int
    title: str
    traces: tuple[StripTrace, ...]
    beats: tuple[tuple[int, str], ...] = ()
    verdict: str = ""  # device alarms: confirmed / suppressed / unverifiable
    reason: str = ""  # why (the decision's reason, or the alert's message)
    schema_version: int = STRIP_SCHEMA_VERSION

    def meta(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version, "kind": self.kind, "ref_id": self.ref_id,
            "patient_id": self.patient_id, "start_ms": self.start_ms, "end_ms": self.end_ms,
            "title": self.title, "verdict": self.verdict, "reason": self.reason,
            "traces": [t.meta() for t in self.traces],
            "beats": [[t - self.start_ms, c] for t, c in self.beats],
        }

    def to_redis(self) -> dict[str, bytes]:
        """Hash fields: ``meta`` (JSON) and one ``trace:<signal>`` of raw codes each."""
        fields = {"meta": json.dumps(self.meta(), separators=(",", ":")).encode()}
        for t in self.traces:
            fields[f"trace:{t.signal}"] = t.codes
        return fields

    @property
    def size_bytes(self) -> int:
        return sum(len(k) + len(v) for k, v in self.to_redis().items())

    @classmethod
    def from_redis(cls, mapping: Mapping[Any, Any]) -> EvidenceStrip:
        """Raises ValueError on a hash this version cannot read."""
        raw = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in mapping.items()}
        if "meta" not in raw:
            raise ValueError("strip has no meta field")
        meta = json.loads(raw["meta"])
        if meta.get("schema_version") != STRIP_SCHEMA_VERSION:
            raise ValueError(f"unsupported strip schema_version {meta.get('schema_version')!r}")
        traces = []
        for t in meta["traces"]:
            codes = raw.get(f"trace:{t['signal']}", b"")
            codes = codes.encode("latin-1") if isinstance(codes, str) else bytes(codes)
            if len(codes) != t["n"]:
                raise ValueError(f"trace {t['signal']} has {len(codes)} samples, meta says {t['n']}")
            traces.append(StripTrace(t["signal"], float(t["fs"]), float(t["t0_ms"]), t["units"],
                                     float(t["offset"]), float(t["scale"]), codes, t.get("filtered", "")))
        start = int(meta["start_ms"])
        return cls(kind=meta["kind"], ref_id=meta["ref_id"], patient_id=meta["patient_id"], start_ms=start,
                   end_ms=int(meta["end_ms"]), title=meta.get("title", ""), traces=tuple(traces),
                   beats=tuple((start + int(dt), str(c)) for dt, c in meta.get("beats", [])),
                   verdict=meta.get("verdict", ""), reason=meta.get("reason", ""))


def _display_filter(signal: Signal, fs: float, x: np.ndarray) -> tuple[np.ndarray, str]:
    """Zero-phase display filter of a cut (with its margin); NaN gaps are bridged for the
    filter and put back afterwards."""
    if signal in (Signal.ECG, Signal.ECG2):
        band = (0.5, 40.0)
    elif signal is Signal.PPG:
        band = (0.5, 8.0)
    elif signal is Signal.RESP:
        finite = np.isfinite(x)
        return (x - np.nanmean(x) if finite.any() else x), "de-meaned"
    else:
        return x, ""
    finite = np.isfinite(x)
    if finite.sum() < max(16, int(fs)):
        return x, ""
    idx = np.arange(x.size)
    bridged = np.interp(idx, idx[finite], x[finite])
    y = filtfilt_sos(bandpass_sos(fs, *band), bridged)
    y[~finite] = np.nan
    high = min(band[1], 0.45 * fs)
    return y, f"{band[0]:g}-{high:g} Hz"


class EvidenceRecorder:
    """Per patient, the last ``buffer_s`` of every signal at display rate, and the beats the
    models classified; cuts strips on demand. Not thread-safe (one worker event loop)."""

    def __init__(self, buffer_s: float = DEFAULT_BUFFER_S, clock: Callable[[], float] = time.monotonic) -> None:
        if buffer_s < STRIP_S:
            raise ValueError(f"the evidence buffer must hold at least one strip ({STRIP_S:g} s)")
        self.buffer_s = buffer_s
        self.clock = clock
        self.patients: dict[str, _PatientEvidence] = {}

    def record_chunk(self, chunk: SampleChunk) -> None:
        """A valid chunk, as the worker read it (duplicates and overlaps are skipped)."""
        p = self.patients.get(chunk.patient_id)
        if p is None:
            p = self.patients[chunk.patient_id] = _PatientEvidence()
        p.seen_at = self.clock()
        ring = p.rings.get(chunk.signal)
        if ring is not None and ring.fs_in == chunk.fs and ring.push(chunk.ts_ms, chunk.samples):
            return
        if ring is not None and chunk.end_ms <= ring.next_in_ms:
            return  # an old chunk at another rate: nothing to learn
        ring = _SignalRing(chunk.fs, DISPLAY_MAX_FS[chunk.signal], self.buffer_s, chunk.ts_ms, chunk.units)
        ring.push(chunk.ts_ms, chunk.samples)
        p.rings[chunk.signal] = ring

    def record_beats(self, patient_id: str, times_ms: Sequence[float], classes: Sequence[str | None]) -> None:
        """Beats of one analysed window (first ECG lead), with their classes where known; a
        beat already recorded from an overlapping window gets its class once it has one."""
        p = self.patients.get(patient_id)
        if p is None:
            return
        for t, cls in zip(times_ms, classes, strict=True):
            i = bisect_left(p.beat_ms, t)
            near = [j for j in (i - 1, i) if 0 <= j < len(p.beat_ms) and abs(p.beat_ms[j] - t) <= _BEAT_MATCH_MS]
            if near:
                j = near[0]
                if cls and not p.beat_class[j]:
                    p.beat_class[j] = cls
                continue
            p.beat_ms.insert(i, float(t))
            p.beat_class.insert(i, cls or "")
        if p.beat_ms:
            cutoff = p.beat_ms[-1] - self.buffer_s * 1000.0
            drop = bisect_left(p.beat_ms, cutoff)
            if drop:
                del p.beat_ms[:drop]
                del p.beat_class[:drop]

    def strip(self, patient_id: str, end_ms: int, *, kind: str, ref_id: str, title: str,
              verdict: str = "", reason: str = "", length_s: float = STRIP_S) -> EvidenceStrip | None:
        """The ``length_s`` before ``end_ms``; None when no signal has data there (the
        samples left the buffer, or the patient is unknown here)."""
        p = self.patients.get(patient_id)
        if p is None:
            return None
        start_ms = int(end_ms - length_s * 1000)
        traces = []
        for signal in TRACE_ORDER:
            ring = p.rings.get(signal)
            if ring is None:
                continue
            t0, x = ring.cut(start_ms - _FILTER_MARGIN_S * 1000, end_ms)
            if not np.isfinite(x).any():
                continue
            y, how = _display_filter(signal, ring.fs, x.astype(np.float64))
            skip = max(0, x.size - math.ceil(length_s * ring.fs - 1e-9))
            y = y[skip:]
            if not np.isfinite(y).any():
                continue
            offset, scale, codes = quantise(y)
            traces.append(StripTrace(signal.value, ring.fs, t0 + skip * 1000.0 / ring.fs, ring.units,
                                     offset, scale, codes, how))
        if not traces:
            return None
        lo, hi = bisect_left(p.beat_ms, start_ms), bisect_left(p.beat_ms, end_ms)
        beats = tuple((round(p.beat_ms[i]), p.beat_class[i]) for i in range(lo, hi))
        return EvidenceStrip(kind, ref_id, patient_id, start_ms, int(end_ms), title, tuple(traces), beats,
                             verdict, reason)

    def forget(self, patient_id: str) -> None:
        self.patients.pop(patient_id, None)

    def forget_idle(self, idle_s: float) -> list[str]:
        """Drop patients without a chunk for ``idle_s`` wall-clock seconds (device gone, or
        the partition moved to another worker): the recorder's memory follows the ward."""
        cutoff = self.clock() - idle_s
        gone = [pid for pid, p in self.patients.items() if p.seen_at <= cutoff]
        for pid in gone:
            del self.patients[pid]
        return gone

    def memory_bytes(self) -> int:
        """Sample memory held (rings only), for /stats/."""
        return sum(r.data.nbytes for p in self.patients.values() for r in p.rings.values())
