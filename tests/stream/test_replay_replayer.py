from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from stream.replay.records import Recording
from stream.replay.replayer import (
    choose_base_ms,
    prepare_replay,
    publish_chunks,
    record_chunks,
)
from stream.schema import MIN_TIMESTAMP_MS, SampleChunk, Signal, decode_chunk, encode_chunk


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[float, SampleChunk]] = []
        self.flushed = 0

    async def publish(self, chunk: SampleChunk) -> None:
        self.sent.append((time.monotonic(), chunk))

    async def flush(self) -> None:
        self.flushed += 1


def recording(name: str, seconds: float, fs_ecg: float = 250.0, fs_ppg: float = 125.0) -> Recording:
    ecg = np.sin(np.arange(int(seconds * fs_ecg)) / 10).astype(np.float32)
    ppg = np.cos(np.arange(int(seconds * fs_ppg)) / 10).astype(np.float32)
    return Recording(name, f"p-{name}", {Signal.ECG: (ecg, fs_ecg), Signal.PPG: (ppg, fs_ppg)})


def test_base_is_valid_aligned_and_in_the_past() -> None:
    now = 1_800_000_123_456
    base = choose_base_ms([recording("a", 30), recording("b", 300)], now_ms=now)
    assert base % 10_000 == 0
    assert base >= MIN_TIMESTAMP_MS
    assert base + 300_000 <= now


def test_chunks_reproduce_relative_times_and_samples() -> None:
    rec = recording("a", 10.5, fs_ecg=360.0)
    base = 1_700_000_000_000
    chunks = record_chunks(rec, base)
    ecg = [c for c in chunks if c.signal == Signal.ECG]
    assert [c.seq for c in ecg] == list(range(11))
    assert [c.ts_ms - base for c in ecg] == [1000 * i for i in range(11)]
    assert ecg[-1].n == 180  # the last half second
    np.testing.assert_array_equal(np.concatenate([c.samples for c in ecg]), rec.channels[Signal.ECG][0])
    assert all(c.patient_id == "p-a" and c.device_id == "replay-a" for c in chunks)
    # Interleaved by event time across signals.
    assert [c.ts_ms for c in chunks] == sorted(c.ts_ms for c in chunks)
    # Valid on the wire.
    decoded = decode_chunk(encode_chunk(ecg[3]), now_ms=base + 60_000)
    assert decoded.ts_ms == ecg[3].ts_ms and decoded.seq == 3


def test_fractional_sampling_rate_timestamps_stay_exact() -> None:
    fs = 128.0
    x = np.zeros(int(5 * fs), dtype=np.float32)
    rec = Recording("f", "p-f", {Signal.RESP: (x, fs)})
    chunks = record_chunks(rec, 1_700_000_000_000, chunk_s=0.7)
    for c in chunks:
        first_index = round((c.ts_ms - 1_700_000_000_000) * fs / 1000)
        assert abs((c.ts_ms - 1_700_000_000_000) - 1000 * first_index / fs) <= 0.5


def test_gaps_are_not_sent_and_seq_stays_consecutive() -> None:
    fs = 100.0
    x = np.arange(500, dtype=np.float32)
    x[150:320] = np.nan  # 1.7 s gap starting mid-chunk
    rec = Recording("g", "p-g", {Signal.ECG: (x, fs)})
    base = 1_700_000_000_000
    chunks = record_chunks(rec, base)
    assert all(np.isfinite(c.samples).all() for c in chunks)
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    starts = [(c.ts_ms - base, c.n) for c in chunks]
    assert starts == [(0, 100), (1000, 50), (3200, 80), (4000, 100)]
    assert sum(c.n for c in chunks) == 500 - 170


def test_end_s_truncates_like_the_challenge_rule() -> None:
    rec = recording("c", 330)
    chunks, stats = prepare_replay([rec], base_ms=1_700_000_000_000, end_s=lambda r: 302.0)
    last = max(c.end_ms for c in chunks)
    assert last - 1_700_000_000_000 == pytest.approx(302_000)
    assert stats.record_seconds == pytest.approx(302.0)
    assert stats.chunks_total == len(chunks)


def test_many_records_merge_in_event_time_with_one_base() -> None:
    recs = [recording("a", 20), recording("b", 5), recording("c", 12)]
    chunks, stats = prepare_replay(recs, base_ms=1_700_000_000_000)
    assert {c.patient_id for c in chunks} == {"p-a", "p-b", "p-c"}
    assert [c.ts_ms for c in chunks] == sorted(c.ts_ms for c in chunks)
    assert min(c.ts_ms for c in chunks if c.patient_id == "p-b") == 1_700_000_000_000
    assert stats.records == 3


def test_publish_as_fast_as_possible_counts_everything() -> None:
    recs = [recording("a", 10), recording("b", 10)]
    chunks, stats = prepare_replay(recs)
    pub = FakePublisher()
    seen: list[int] = []
    asyncio.run(publish_chunks(pub, chunks, stats, speed=None, progress=seen.append))
    assert [c for _, c in pub.sent] == chunks
    assert pub.flushed == 1
    summary = stats.as_dict()
    assert summary["chunks_sent"] == len(chunks)
    assert summary["samples_sent"] == 2 * 10 * (250 + 125)
    assert summary["signal_seconds_sent"] == pytest.approx(40.0)
    assert summary["record_seconds"] == pytest.approx(20.0)
    assert seen[-1] == len(chunks)


def test_paced_publish_follows_event_time() -> None:
    rec = recording("a", 4)
    chunks, stats = prepare_replay([rec])
    pub = FakePublisher()
    start = time.monotonic()
    asyncio.run(publish_chunks(pub, chunks, stats, speed=20.0))
    # 3 s of event time between the first and the last chunk at 20x = 0.15 s of wall time.
    elapsed = pub.sent[-1][0] - start
    assert 0.13 <= elapsed < 1.0
    summary = stats.as_dict()
    assert summary["event_seconds_sent"] == pytest.approx(4.0)
    assert 4.0 < summary["times_real_time"] <= 30.0


def test_throttle_is_awaited_as_event_time_advances() -> None:
    rec = recording("a", 60)
    chunks, stats = prepare_replay([rec])
    calls: list[int] = []

    async def throttle(event_ms: int) -> None:
        calls.append(event_ms)

    asyncio.run(publish_chunks(FakePublisher(), chunks, stats, throttle=throttle, throttle_every_s=20.0))
    assert len(calls) == 2
    assert calls[0] - chunks[0].ts_ms == 20_000


def test_batches_go_through_publish_many_when_available() -> None:
    class ManyPublisher(FakePublisher):
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[int] = []

        async def publish_many(self, chunks: list[SampleChunk]) -> None:
            self.batches.append(len(chunks))
            for c in chunks:
                await self.publish(c)

    chunks, stats = prepare_replay([recording("a", 300), recording("b", 300)])
    pub = ManyPublisher()
    asyncio.run(publish_chunks(pub, chunks, stats, speed=None))
    assert [c for _, c in pub.sent] == chunks
    assert max(pub.batches) == 500
    assert stats.chunks_sent == len(chunks)
