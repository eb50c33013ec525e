"""Chunk ordering, duplicates, gaps, late drops, resets and ring buffers."""

from __future__ import annotations

import numpy as np

from stream.schema import Signal, make_chunk
from stream.windows import ChunkStatus, RingBuffer, SignalSequencer, WindowSchedule

T0 = 1_700_000_000_000
FS = 250.0


def chunk(
    seq: int, fs: float = FS, device: str = "d1", ts: int | None = None, n: int | None = None
):
    n = int(fs) if n is None else n
    ts = T0 + 1000 * seq if ts is None else ts
    return make_chunk("p1", device, "ecg", fs, ts, seq, np.full(n, float(seq)))


def released_seqs(seqr: SignalSequencer, chunks) -> tuple[list[int], list]:
    out, results = [], []
    for c in chunks:
        r = seqr.push(c)
        results.append(r)
        out.extend(rel.chunk.seq for rel in r.released)
    return out, results


def test_in_order_chunks_are_accepted_and_contiguous() -> None:
    s = SignalSequencer(Signal.ECG)
    seqs, results = released_seqs(s, [chunk(i) for i in range(5)])
    assert seqs == [0, 1, 2, 3, 4]
    assert all(r.status is ChunkStatus.ACCEPTED and not r.gap for r in results[1:])
    starts = [rel.start_index for r in results for rel in r.released]
    assert starts == [0, 250, 500, 750, 1000]


def test_duplicate_is_dropped_and_reported() -> None:
    s = SignalSequencer(Signal.ECG)
    released_seqs(s, [chunk(0), chunk(1)])
    r = s.push(chunk(1))
    assert r.status is ChunkStatus.DUPLICATE and not r.released
    # the same seq from another retry while it is still held out of order
    s.push(chunk(3))
    assert s.push(chunk(3)).status is ChunkStatus.DUPLICATE


def test_out_of_order_within_horizon_is_reordered() -> None:
    s = SignalSequencer(Signal.ECG)
    seqs, results = released_seqs(s, [chunk(0), chunk(2), chunk(3), chunk(1), chunk(4)])
    assert seqs == [0, 1, 2, 3, 4]
    assert results[1].status is ChunkStatus.ACCEPTED and not results[1].released  # held
    assert results[3].status is ChunkStatus.REORDERED
    assert not any(r.gap for r in results)


def test_missing_chunk_becomes_gap_after_horizon_and_late_copy_dropped() -> None:
    s = SignalSequencer(Signal.ECG, horizon_s=3.0)
    seqs, results = released_seqs(s, [chunk(i) for i in (0, 2, 3, 4, 5)])
    # seq 1 never came: once the held chunks span > 3 s the hole is declared a gap.
    assert seqs == [0, 2, 3, 4, 5]
    gap_results = [r for r in results if r.gap]
    assert len(gap_results) == 1
    gap_rel = [rel for r in results for rel in r.released if rel.gap_samples]
    assert gap_rel[0].chunk.seq == 2 and gap_rel[0].gap_samples == 250
    late = s.push(chunk(1))
    assert late.status is ChunkStatus.LATE_DROPPED and not late.released


def test_time_jump_is_a_gap_even_with_consecutive_seq() -> None:
    s = SignalSequencer(Signal.ECG)
    s.push(chunk(0))
    r = s.push(chunk(1, ts=T0 + 5000))
    assert r.gap and r.released[0].gap_samples == 4 * 250
    # jitter of a few ms is not a gap
    r2 = s.push(chunk(2, ts=T0 + 6003))
    assert not r2.gap and r2.released[0].start_index == 6 * 250


def test_sampling_rate_change_resets() -> None:
    s = SignalSequencer(Signal.ECG)
    s.push(chunk(0))
    r = s.push(chunk(1, fs=500.0))
    assert r.reset and r.gap and r.released[0].reset and r.released[0].start_index == 0
    assert s.fs == 500.0
    r2 = s.push(chunk(2, fs=500.0))
    assert not r2.gap and r2.released[0].start_index == 500


def test_device_change_resets() -> None:
    s = SignalSequencer(Signal.ECG)
    s.push(chunk(0))
    r = s.push(chunk(0, device="d2", ts=T0 + 1000))
    assert r.reset and r.status is ChunkStatus.ACCEPTED


def test_counter_restart_with_time_moving_on_is_not_late() -> None:
    s = SignalSequencer(Signal.ECG)
    released_seqs(s, [chunk(i) for i in range(10, 13)])
    r = s.push(chunk(0, ts=T0 + 13_000))
    assert r.status is ChunkStatus.ACCEPTED and r.released


def test_ring_buffer_marks_missing_as_nan_and_wraps() -> None:
    rb = RingBuffer(10)
    rb.write(0, np.arange(4.0))
    rb.write(6, np.array([6.0, 7.0]))
    got = rb.read(0, 8)
    assert np.isnan(got[4:6]).all() and got[7] == 7.0
    rb.write(8, np.arange(8.0, 14.0))
    assert rb.start_index == 4 and rb.end_index == 14
    assert np.isnan(rb.read(0, 4)).all()
    np.testing.assert_array_equal(rb.read(10, 14), [10, 11, 12, 13])


def test_schedule_hops_and_skips_after_silence() -> None:
    sch = WindowSchedule(10.0, 2.0)
    sch.start(0.0)
    assert sch.due(9_999) == []
    assert sch.due(14_000) == [10_000, 12_000, 14_000]
    ends = sch.due(200_000)
    assert ends[-1] == 200_000 and len(ends) == 5
