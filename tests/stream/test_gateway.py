from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.gateway import (
    DeviceStream,
    GatewayPublisher,
    PublishError,
    chunk_signals,
    publish_paced,
)
from stream.schema import InvalidChunk, SampleChunk, Signal, decode_chunk, make_chunk
from stream.sources import SourceError, load_source, parse_column_map

START_MS = 1_700_000_000_000


def _all_chunks(stream: DeviceStream, pieces: list[np.ndarray]) -> list[SampleChunk]:
    out = []
    for piece in pieces:
        out.extend(stream.feed(piece))
    return out + stream.flush()


def _key(chunks: list[SampleChunk]) -> list[tuple[int, int, bytes]]:
    return [(c.ts_ms, c.seq, c.samples.tobytes()) for c in chunks]


def test_chunks_sequence_numbers_and_timestamps() -> None:
    stream = DeviceStream("p1", "d1", "ecg", 250.0, START_MS, chunk_s=1.0, start_seq=7)
    chunks = stream.feed(np.arange(625, dtype=np.float32))
    assert [(c.seq, c.ts_ms, c.n) for c in chunks] == [
        (7, START_MS, 250),
        (8, START_MS + 1000, 250),
    ]
    tail = stream.flush()
    assert [(c.seq, c.ts_ms, c.n) for c in tail] == [(9, START_MS + 2000, 125)]
    assert stream.flush() == []
    assert chunks[1].samples[0] == 250
    assert all(c.units == "mV" and c.signal is Signal.ECG for c in chunks)


def test_timestamps_do_not_drift_at_awkward_rates() -> None:
    # 0.5 s at 125 Hz is 62.5 samples: chunks are 62 samples and the timestamps come
    # from the sample count, not from adding a rounded chunk duration.
    stream = DeviceStream("p1", "d1", "ppg", 125.0, START_MS, chunk_s=0.5)
    chunks = _all_chunks(stream, [np.zeros(125 * 3600, dtype=np.float32)])
    last = chunks[-1]
    index = 62 * (len(chunks) - 1)
    assert last.ts_ms == START_MS + round(1000 * index / 125)
    assert abs(chunks[-1].end_ms - (START_MS + 3600 * 1000)) < 1


def test_gap_splits_chunks_and_keeps_true_timestamps() -> None:
    x = np.arange(1000, dtype=np.float32)
    x[300:420] = np.nan  # 0.48 s gap inside the second chunk
    stream = DeviceStream("p1", "d1", "ecg", 250.0, START_MS)
    chunks = _all_chunks(stream, [x])
    assert [(c.seq, c.ts_ms, c.n) for c in chunks] == [
        (0, START_MS, 250),
        (1, START_MS + 1000, 50),
        (2, START_MS + 1680, 80),
        (3, START_MS + 2000, 250),
        (4, START_MS + 3000, 250),
    ]
    assert all(np.isfinite(c.samples).all() for c in chunks)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=25),
    gaps=st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 300)), max_size=3),
    fs=st.sampled_from([25.0, 125.0, 250.0, 360.0]),
    chunk_s=st.sampled_from([0.5, 1.0, 2.0]),
)
def test_any_feed_sizes_give_the_same_chunks(
    sizes: list[int], gaps: list[tuple[int, int]], fs: float, chunk_s: float
) -> None:
    total = sum(sizes)
    x = np.sin(np.arange(total, dtype=np.float32) / 7).astype(np.float32)
    for start, length in gaps:
        x[start : start + length] = np.nan
    pieces = np.split(x, np.cumsum(sizes)[:-1])
    whole = _all_chunks(DeviceStream("p", "d", "resp", fs, START_MS, chunk_s), [x])
    fed = _all_chunks(DeviceStream("p", "d", "resp", fs, START_MS, chunk_s), pieces)
    assert _key(fed) == _key(whole)
    assert [c.seq for c in whole] == list(range(len(whole)))
    sent = np.concatenate([c.samples for c in whole]) if whole else np.zeros(0)
    np.testing.assert_array_equal(sent, x[np.isfinite(x)])
    n = max(1, round(chunk_s * fs))
    for c in whole:
        assert c.n <= n
        first = round((c.ts_ms - START_MS) * fs / 1000)
        assert c.ts_ms == START_MS + round(1000 * first / fs)


def test_chunk_signals_merges_by_end_time() -> None:
    channels = {
        Signal.ECG: (np.zeros(2500, np.float32), 250.0),
        Signal.RESP: (np.zeros(250, np.float32), 25.0),
    }
    chunks = chunk_signals("p", "d", channels, START_MS)
    assert len(chunks) == 20
    assert [c.end_ms for c in chunks] == sorted(c.end_ms for c in chunks)


# ---------------------------------------------------------------- publisher (fake producer)


class FakeProducer:
    """Stands in for AIOKafkaProducer: deliveries fail per a script of exceptions."""

    def __init__(self, failures: list[BaseException | None]) -> None:
        self.failures = failures
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def flush(self) -> None: ...

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        self.sent.append((topic, value, key))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failure = self.failures.pop(0) if self.failures else None
        if failure is None:
            future.set_result(None)
        else:
            future.set_exception(failure)
        return future


def _publisher(failures: list[BaseException | None]) -> tuple[GatewayPublisher, FakeProducer]:
    publisher = GatewayPublisher("unused:9092", retry_backoff_s=0.001, retries=2)
    fake = FakeProducer(failures)
    publisher._make_producer = lambda idempotent: fake  # type: ignore[method-assign]
    return publisher, fake


def _chunk(seq: int = 0, patient: str = "p1") -> SampleChunk:
    return make_chunk(patient, "d1", "ppg", 125.0, START_MS + 1000 * seq, seq, np.ones(125))


def test_publish_encodes_topic_key_and_retries_with_the_same_seq() -> None:
    from aiokafka.errors import KafkaConnectionError

    async def run() -> tuple[GatewayPublisher, FakeProducer]:
        publisher, fake = _publisher([KafkaConnectionError("down"), None, None])
        async with publisher:
            await publisher.publish(_chunk(0))
            await publisher.publish(_chunk(1))
        return publisher, fake

    publisher, fake = asyncio.run(run())
    assert (
        publisher.stats.sent == 2 and publisher.stats.retried == 1 and publisher.stats.failed == 0
    )
    topics = {t for t, _, _ in fake.sent}
    assert topics == {"vitals.ppg"}
    assert {k for _, _, k in fake.sent} == {b"p1"}
    seqs = [decode_chunk(v).seq for _, v, _ in fake.sent]
    assert sorted(seqs) == [0, 0, 1]


def test_permanent_failure_and_exhausted_retries_raise_on_flush() -> None:
    from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

    async def run(failures: list[BaseException | None]) -> GatewayPublisher:
        publisher, _ = _publisher(failures)
        await publisher.start()
        await publisher.publish(_chunk(0))
        with pytest.raises(PublishError):
            await publisher.flush()
        await publisher.stop()
        return publisher

    permanent = asyncio.run(run([MessageSizeTooLargeError()]))
    assert permanent.stats.failed == 1 and permanent.stats.retried == 0
    transient = asyncio.run(run([KafkaConnectionError("down")] * 5))
    assert transient.stats.failed == 1 and transient.stats.retried == 2


def test_invalid_chunks_are_refused_before_sending() -> None:
    async def run() -> tuple[GatewayPublisher, FakeProducer]:
        publisher, fake = _publisher([])
        async with publisher:
            bad = make_chunk("p1", "d1", "ecg", 250.0, START_MS, 0, [np.nan])
            with pytest.raises(InvalidChunk) as info:
                await publisher.publish(bad)
            assert info.value.reason == "non_finite_samples"
        return publisher, fake

    publisher, fake = asyncio.run(run())
    assert publisher.stats.invalid == 1 and fake.sent == []


def test_json_encoding() -> None:
    async def run() -> FakeProducer:
        publisher, fake = _publisher([])
        publisher.encoding = "json"
        async with publisher:
            await publisher.publish(_chunk(3))
        return fake

    fake = asyncio.run(run())
    assert fake.sent[0][1].startswith(b"{")
    assert decode_chunk(fake.sent[0][1]).seq == 3


class RecordingPublisher:
    def __init__(self) -> None:
        self.times: list[tuple[float, SampleChunk]] = []
        self.flushed = False

    async def publish(self, chunk: SampleChunk) -> None:
        self.times.append((time.monotonic(), chunk))

    async def flush(self) -> None:
        self.flushed = True


def test_publish_paced_follows_event_time() -> None:
    streams = [
        DeviceStream(f"p{i}", "d", "resp", 25.0, START_MS + 100 * i, chunk_s=0.5) for i in range(3)
    ]
    chunks = sorted(
        (c for s in streams for c in s.feed(np.zeros(100, np.float32))), key=lambda c: c.end_ms
    )
    publisher = RecordingPublisher()
    start = time.monotonic()
    stats = asyncio.run(publish_paced(publisher, chunks, speed=10.0))
    assert publisher.flushed and stats.chunks == len(chunks) == 24
    assert [c for _, c in publisher.times] == chunks
    for sent_at, chunk in publisher.times:
        due = (chunk.end_ms - chunks[0].ts_ms) / 1000 / 10.0
        assert sent_at - start >= due - 0.01
        assert sent_at - start <= due + 0.25
    fast = asyncio.run(publish_paced(RecordingPublisher(), chunks, speed=None))
    assert fast.wall_s < 0.2 and fast.event_s == pytest.approx(4.04)


def test_publish_paced_accepts_async_iterables() -> None:
    chunks = [_chunk(i) for i in range(5)]

    async def produce():
        for c in chunks:
            yield c

    publisher = RecordingPublisher()
    stats = asyncio.run(publish_paced(publisher, produce(), speed=0))
    assert stats.chunks == 5 and [c for _, c in publisher.times] == chunks


# ---------------------------------------------------------------- sources


def test_csv_with_time_column(tmp_path: Path) -> None:
    t = np.arange(500) / 125
    path = tmp_path / "rec.csv"
    lines = ["Time [s], PLETH, RESP, II"]
    lines += [f"{a:.3f},{np.sin(a):.4f},{np.cos(a):.4f},{0.1 * a:.4f}" for a in t]
    path.write_text("\n".join(lines) + "\n")
    source = load_source(path)
    assert set(source.channels) == {Signal.ECG, Signal.PPG, Signal.RESP}
    ppg, fs = source.channels[Signal.PPG]
    assert fs == 125.0 and len(ppg) == 500
    assert source.channel_names[Signal.PPG] == "PLETH"
    assert source.duration_s == pytest.approx(4.0)


def test_csv_with_explicit_mapping_and_fs(tmp_path: Path) -> None:
    path = tmp_path / "dev.csv"
    rows = ["index,chest,finger"] + [f"{i},{i % 7},{i % 5}" for i in range(300)]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(SourceError, match="--fs"):
        load_source(path)
    source = load_source(path, fs=50.0, columns=parse_column_map(["chest=resp", "finger=ppg"]))
    assert source.channels[Signal.RESP][1] == 50.0
    assert source.channels[Signal.PPG][0][:5].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(SourceError):
        parse_column_map(["chest:resp"])


def test_wfdb_record_prefers_lead_ii(tmp_path: Path) -> None:
    import wfdb

    fs = 250
    t = np.arange(fs * 6) / fs
    beat = np.exp(-0.5 * ((t % 0.8 - 0.4) / 0.012) ** 2)
    signals = np.column_stack(
        [beat * 0.8, beat, np.sin(2 * np.pi * 1.2 * t), np.sin(2 * np.pi * 0.25 * t)]
    )
    wfdb.wrsamp(
        "rec1",
        fs=fs,
        units=["mV", "mV", "NU", "Ohm"],
        sig_name=["V", "II", "PLETH", "RESP"],
        p_signal=signals,
        fmt=["16"] * 4,
        write_dir=str(tmp_path),
    )
    source = load_source(tmp_path / "rec1.hea")
    assert source.channel_names == {
        Signal.ECG: "II", Signal.ECG2: "V", Signal.PPG: "PLETH", Signal.RESP: "RESP"}
    ecg, fs_ecg = source.channels[Signal.ECG]
    assert fs_ecg == 250.0 and len(ecg) == 1500
    np.testing.assert_allclose(ecg, signals[:, 1], atol=1e-3)
    np.testing.assert_allclose(source.channels[Signal.ECG2][0], signals[:, 0], atol=1e-3)
    chunks = chunk_signals("p", "d", source.channels, START_MS)
    assert len(chunks) == 24  # 6 s of four signals


def test_cli_simulate_writes_recordings(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from stream.cli.main import app
    from stream.simulator import load_simulated

    out = tmp_path / "sim"
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--patients",
            "2",
            "--duration",
            "30",
            "--no-publish",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    recordings = load_simulated(out)
    assert [r.patient_id for r in recordings] == ["sim-001", "sim-002"]
    assert len(recordings[1].ecg) == 30 * 250
    assert (out / "truth.jsonl").exists()


# ---------------------------------------------------------------- real broker


@pytest.mark.e2e
def test_round_trip_through_the_broker(services: Any) -> None:
    from aiokafka import AIOKafkaConsumer

    from stream.services import create_topics

    create_topics(services.kafka_bootstrap, 4)
    patient = f"gw-{time.time_ns()}"
    stream = DeviceStream(patient, "d1", "ecg", 250.0, int(time.time() * 1000) - 10_000)
    sent = stream.feed(np.sin(np.arange(2500) / 9).astype(np.float32))

    async def run() -> tuple[GatewayPublisher, list[SampleChunk]]:
        async with GatewayPublisher(services.kafka_bootstrap) as publisher:
            await publish_paced(publisher, sent, speed=None)
        consumer = AIOKafkaConsumer(
            "vitals.ecg",
            bootstrap_servers=services.kafka_bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        got: list[SampleChunk] = []
        deadline = time.monotonic() + 20
        try:
            while len(got) < len(sent) and time.monotonic() < deadline:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    for m in messages:
                        if m.key == patient.encode():
                            got.append(decode_chunk(m.value))
        finally:
            await consumer.stop()
        return publisher, got

    publisher, got = asyncio.run(run())
    assert publisher.stats.sent == 10 and publisher.stats.failed == 0
    assert _key(sorted(got, key=lambda c: c.seq)) == _key(sent)


@pytest.mark.e2e
def test_cli_publish_csv_to_the_broker(services: Any, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from stream.cli.main import app

    path = tmp_path / "tiny.csv"
    rows = ["time,ecg,pleth"] + [
        f"{i / 250:.3f},{np.sin(i / 9):.4f},{np.cos(i / 30):.4f}" for i in range(1000)
    ]
    path.write_text("\n".join(rows) + "\n")
    result = CliRunner().invoke(
        app,
        [
            "publish",
            str(path),
            "--patient",
            f"csv-{time.time_ns()}",
            "--speed",
            "0",
            "--bootstrap",
            services.kafka_bootstrap,
            "--json",
        ],
        env={"VITALSTREAM_PARTITIONS": "4"},
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["chunks_total"] == 8  # 4 s of ECG and of PPG at 250 Hz
    assert summary["publisher"]["sent"] == 8 and summary["publisher"]["failed"] == 0
