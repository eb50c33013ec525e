"""Bad messages land in the dead-letter topic with a reason while good ones keep flowing."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest

from stream.deadletter import DeadLetter
from stream.findings import VitalsFinding
from stream.schema import encode_chunk, encode_chunk_json, make_chunk
from tests.e2e.kafka_io import consume_until, produce

pytestmark = pytest.mark.e2e


def synthetic_ecg(seconds: int, fs: int = 250, hr_bpm: float = 72.0) -> np.ndarray:
    import neurokit2 as nk

    return nk.ecg_simulate(duration=seconds, sampling_rate=fs, heart_rate=hr_bpm, noise=0.01, random_state=1)


def test_bad_messages_are_dead_lettered_and_good_ones_flow(pipeline) -> None:  # type: ignore[no-untyped-def]
    good = f"good-{uuid.uuid4().hex[:6]}"
    bad = f"bad-{uuid.uuid4().hex[:6]}"
    start = int(time.time() * 1000) - 60_000
    ecg = synthetic_ecg(30)
    messages: list[tuple[str, bytes | None, bytes]] = []
    garbage = [
        (bad.encode(), b"\x00\x01 not a chunk", "unknown_encoding"),
        (bad.encode(), b'{"patient_id": "x"', "bad_json"),
        (bad.encode(), encode_chunk_json(make_chunk(bad, "d", "ecg", 250, start, 0, [0.0]))
         .replace(b"[0.0]", b"[NaN]"), "non_finite_samples"),
        (bad.encode(), encode_chunk(make_chunk(bad, "d", "ecg", 20, start, 1, np.zeros(20))),
         "sampling_rate_out_of_range"),
        (b"someone-else", encode_chunk(make_chunk(bad, "d", "ecg", 250, start, 2, np.zeros(250))),
         "key_mismatch"),
    ]
    for i in range(30):
        # Bad messages interleaved with the good patient's stream, on the same topic.
        if i < len(garbage):
            key, value, _ = garbage[i]
            messages.append(("vitals.ecg", key, value))
        chunk = make_chunk(good, "dev1", "ecg", 250, start + 1000 * i, i, ecg[250 * i : 250 * (i + 1)])
        messages.append(("vitals.ecg", good.encode(), encode_chunk(chunk)))
    produce(pipeline.endpoints.kafka_bootstrap, messages)

    letters = consume_until(
        pipeline.endpoints.kafka_bootstrap,
        "vitals.deadletter",
        done=lambda kept: len(kept) >= len(garbage),
        timeout_s=60,
        keep=lambda k, v: bad in v.decode(errors="replace") or k in (bad.encode(), b"someone-else"),
    )
    decoded = [DeadLetter.from_json(v) for _, v in letters]
    assert sorted(d.reason for d in decoded) == sorted(r for _, _, r in garbage)
    originals = {d.original for d in decoded}
    assert {v for _, v, _ in garbage} == originals  # nothing lost: the original bytes travel
    assert all(d.topic == "vitals.ecg" and d.offset >= 0 for d in decoded)

    findings = consume_until(
        pipeline.endpoints.kafka_bootstrap,
        "vitals.findings",
        done=lambda kept: len(kept) >= 5,
        timeout_s=60,
        keep=lambda k, v: k == good.encode(),
    )
    assert len(findings) >= 5, pipeline.worker.log_tail()
    hrs = [VitalsFinding.from_json(v).ecg.hr_bpm for _, v in findings]
    assert all(h is not None and 65 <= h <= 80 for h in hrs), hrs
    stats = pipeline.worker.stats()
    assert stats is not None
    assert sum(stats["dead_letters"].values()) >= len(garbage)
    # Every message read counts, valid or dead-lettered (the replay paces itself on it).
    assert stats["chunks_in"] >= len(messages)
    json.dumps(stats)
