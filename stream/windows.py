"""Per-patient chunk ordering, gap marking and ring buffers for windowed analysis.

Gateways retry, networks reorder and devices drop out, so before any DSP runs the chunks of
each signal are put back in order here:

* sequence numbers are per (device, signal), +1 per chunk;
* a chunk whose (device, seq) was already seen is a **duplicate** and is dropped;
* a chunk that arrives ahead of a missing one is held; if the missing one turns up within
  the re-order horizon (3 s of signal) both are used in order (**reordered**); otherwise
  the hole is declared a **gap** and the held chunks are released;
* a chunk older than the horizon (its place was already declared a gap) is **late_dropped**;
* a jump in timestamps larger than a few samples is a gap too: missing samples become NaN
  in the ring buffers, never interpolated, so no analysis silently bridges them;
* a change of sampling rate or of device resets that signal's state (a new time grid).

Each signal lives on its own sample grid: sample ``i`` of the current segment was taken at
``t0_ms + 1000 i / fs``. Signals are aligned by converting window bounds to each grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from stream.schema import SampleChunk, Signal

REORDER_HORIZON_S = 3.0
# Timestamps are integer ms and device clocks jitter: a start within this tolerance of where
# the previous chunk ended is contiguous (one 40 ms tolerance = 10 samples at 250 Hz).
CONTIGUITY_TOLERANCE_MS = 40.0
SEEN_SEQ_MEMORY = 512


class ChunkStatus(StrEnum):
    ACCEPTED = "accepted"  # in order (or held ahead of a missing chunk)
    DUPLICATE = "duplicate"  # (device, seq) already seen: dropped
    LATE_DROPPED = "late_dropped"  # older than the re-order horizon: dropped
    REORDERED = "reordered"  # arrived late but within the horizon: used in order


@dataclass(frozen=True, slots=True)
class Released:
    """A chunk handed on for analysis, in order, placed on its signal's sample grid."""

    chunk: SampleChunk
    start_index: int  # index of its first sample on the signal's grid
    gap_samples: int = 0  # missing samples just before it (NaN in the buffers)
    reset: bool = False  # the signal's grid restarted here (fs or device change, clock jump)


@dataclass(slots=True)
class PushResult:
    status: ChunkStatus
    gap: bool = False  # this push declared a gap (missing seq or time jump) or a reset
    reset: bool = False
    released: list[Released] = field(default_factory=list)


class SignalSequencer:
    """Ordering and gap logic for one signal of one patient."""

    def __init__(self, signal: Signal, horizon_s: float = REORDER_HORIZON_S) -> None:
        self.signal = signal
        self.horizon_ms = horizon_s * 1000.0
        self.device_id: str | None = None
        self.fs: float | None = None
        self.t0_ms = 0.0  # time of sample 0 of the current grid
        self.next_seq = 0
        self.next_index = 0  # grid index the next in-order chunk should start at
        self.end_ms = 0.0  # time just after the last released sample
        self.seen: dict[int, int] = {}  # seq -> ts_ms of chunks used or held
        self.pending: dict[int, SampleChunk] = {}

    def push(self, chunk: SampleChunk) -> PushResult:
        same_source = chunk.device_id == self.device_id
        if self.fs is None or not same_source or not math.isclose(chunk.fs, self.fs):
            return self._restart(chunk)
        seq = chunk.seq
        if seq in self.seen or seq in self.pending:
            return PushResult(ChunkStatus.DUPLICATE)
        if seq < self.next_seq:
            if chunk.ts_ms >= self.end_ms - CONTIGUITY_TOLERANCE_MS:
                # Sequence went backwards while time moved on: the device restarted its counter.
                return self._restart(chunk, same_grid=True)
            return PushResult(ChunkStatus.LATE_DROPPED)
        if seq == self.next_seq:
            status = ChunkStatus.REORDERED if self.pending else ChunkStatus.ACCEPTED
            result = PushResult(status)
            self._release(chunk, result)
            self._drain(result)
            return result
        # Ahead of a missing chunk: hold it until the hole fills or the horizon passes.
        self.pending[seq] = chunk
        result = PushResult(ChunkStatus.ACCEPTED)
        self._give_up_waiting(result)
        return result

    def _restart(self, chunk: SampleChunk, same_grid: bool = False) -> PushResult:
        had_state = self.fs is not None
        result = PushResult(ChunkStatus.ACCEPTED, gap=had_state, reset=True)
        if same_grid and self.fs is not None:
            # Keep the grid (same device, same fs): only the counter restarted.
            self.next_seq = chunk.seq
            self.seen.clear()
            self.pending.clear()
            self._release(chunk, result)
            return result
        self.device_id = chunk.device_id
        self.fs = chunk.fs
        self.t0_ms = float(chunk.ts_ms)
        self.next_index = 0
        self.end_ms = float(chunk.ts_ms)
        self.next_seq = chunk.seq
        self.seen.clear()
        self.pending.clear()
        result.released.append(Released(chunk, 0, 0, reset=True))
        self._advance(chunk, 0)
        return result

    def _release(self, chunk: SampleChunk, result: PushResult) -> None:
        assert self.fs is not None
        start = round((chunk.ts_ms - self.t0_ms) * self.fs / 1000.0)
        delta_ms = (start - self.next_index) * 1000.0 / self.fs
        if abs(delta_ms) <= CONTIGUITY_TOLERANCE_MS:
            result.released.append(Released(chunk, self.next_index))
            self._advance(chunk, self.next_index)
        elif delta_ms > 0:
            gap = start - self.next_index
            result.gap = True
            result.released.append(Released(chunk, start, gap_samples=gap))
            self._advance(chunk, start)
        else:
            # The clock went backwards: new grid from this chunk on.
            result.gap = True
            result.reset = True
            self.t0_ms = float(chunk.ts_ms)
            result.released.append(Released(chunk, 0, reset=True))
            self._advance(chunk, 0)

    def _advance(self, chunk: SampleChunk, start: int) -> None:
        assert self.fs is not None
        self.next_index = start + chunk.n
        self.next_seq = chunk.seq + 1
        self.end_ms = self.t0_ms + self.next_index * 1000.0 / self.fs
        self.seen[chunk.seq] = chunk.ts_ms
        if len(self.seen) > SEEN_SEQ_MEMORY:
            for old in sorted(self.seen)[: len(self.seen) - SEEN_SEQ_MEMORY]:
                del self.seen[old]

    def _drain(self, result: PushResult) -> None:
        while self.next_seq in self.pending:
            self._release(self.pending.pop(self.next_seq), result)

    def _give_up_waiting(self, result: PushResult) -> None:
        """The held chunks span more than the horizon: the missing ones are a gap."""
        while self.pending and self._pending_span_ms() > self.horizon_ms:
            self._release_oldest(result)

    def release_held(self) -> PushResult:
        """Stop waiting for missing chunks (the stream went quiet): release what is held,
        the holes becoming gaps."""
        result = PushResult(ChunkStatus.ACCEPTED)
        while self.pending:
            self._release_oldest(result)
        return result

    def _release_oldest(self, result: PushResult) -> None:
        """Give up on the chunks missing before the oldest held one (a gap) and use it."""
        first = min(self.pending)
        if first != self.next_seq:
            result.gap = True
        self._release(self.pending.pop(first), result)
        self._drain(result)

    def _pending_span_ms(self) -> float:
        return max(c.end_ms for c in self.pending.values()) - self.end_ms


class RingBuffer:
    """The last ``capacity`` samples of one signal on its grid, NaN where data is missing."""

    __slots__ = ("capacity", "data", "end_index", "start_index")

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self.data = np.zeros(0)
        self.start_index = 0
        self.end_index = 0  # one past the last sample

    def reset(self, start_index: int = 0) -> None:
        self.data = np.zeros(0)
        self.start_index = self.end_index = start_index

    def write(self, start_index: int, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        gap = start_index - self.end_index
        if gap < 0 or gap >= self.capacity or self.data.size == 0:
            self.reset(start_index)
        parts = [self.data]
        if start_index > self.end_index:
            parts.append(np.full(start_index - self.end_index, np.nan))
        parts.append(values)
        data = np.concatenate(parts)
        self.end_index = start_index + values.size
        if data.size > self.capacity:
            data = data[-self.capacity :]
        self.data = data
        self.start_index = self.end_index - data.size

    def read(self, start_index: int, end_index: int) -> np.ndarray:
        """Samples [start_index, end_index); NaN where not held (missing or never seen)."""
        out = np.full(max(0, end_index - start_index), np.nan)
        lo = max(start_index, self.start_index)
        hi = min(end_index, self.end_index)
        if hi > lo:
            held = self.data[lo - self.start_index : hi - self.start_index]
            out[lo - start_index : hi - start_index] = held
        return out


@dataclass(slots=True)
class WindowSchedule:
    """Window ends on a fixed hop grid in event time; the first ends one window after data
    starts. Windows advance on the primary signal's time (ECG when present)."""

    window_s: float = 10.0
    hop_s: float = 2.0
    next_end_ms: float | None = None

    def start(self, first_sample_ms: float) -> None:
        if self.next_end_ms is None:
            self.next_end_ms = first_sample_ms + self.window_s * 1000.0

    def due(self, ready_until_ms: float) -> list[float]:
        """Window ends that the data now covers (advancing the schedule past them)."""
        if self.next_end_ms is None:
            return []
        ends: list[float] = []
        while self.next_end_ms <= ready_until_ms:
            ends.append(self.next_end_ms)
            self.next_end_ms += self.hop_s * 1000.0
        # After a long silence, skip to the present rather than emit a burst of empty windows.
        if len(ends) > math.ceil(self.window_s / self.hop_s):
            ends = ends[-math.ceil(self.window_s / self.hop_s) :]
        return ends
