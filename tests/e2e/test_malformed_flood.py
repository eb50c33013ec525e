"""10,000 malformed messages of every kind (fuzz/malformed.py), on every topic the worker
reads, mixed into the valid stream of a few patients: the worker stays up, every bad
message is dead-lettered once with its reason, and every valid patient gets all its
findings. (What the bad messages cost in throughput: bench/bench_deadletter.py.)

On a broker of its own: a worker of the session's pipeline would dead-letter the same
messages in its own group, and the dead-letter count would not be this test's."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from collections import Counter

import pytest

from fuzz.malformed import malformed_messages
from stream.deadletter import DeadLetter
from stream.findings import InvalidFinding, VitalsFinding
from stream.gateway import chunk_signals, merge_by_time
from stream.schema import Signal, encode_chunk
from stream.services import DEADLETTER_TOPIC, FINDINGS_TOPIC, create_topics, embedded_services
from stream.simulator import PatientScenario, device_id_for
from stream.worker_process import WorkerProcess
from tests.e2e.conftest import PARTITIONS, pipeline_env
from tests.e2e.kafka_io import consume_until, produce
from tests.e2e.publish import simulate
from tests.e2e.test_alerts_flow import wait_for

pytestmark = pytest.mark.e2e

BAD = 10_000
PATIENTS = 3
DURATION_S = 60


def test_ten_thousand_malformed_messages_are_dead_lettered_and_valid_patients_flow(services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with embedded_services(tmp_path / "services", env={"REDIS_URL": services.redis_url}) as private:
        create_topics(private.kafka_bootstrap, PARTITIONS)
        tag = uuid.uuid4().hex[:6]
        recordings = simulate([PatientScenario(f"flood{i}-{tag}", (), duration_s=DURATION_S) for i in range(PATIENTS)])
        patients = [r.patient_id for r in recordings]
        valid = [
            (c.signal.topic, c.patient_id.encode(), encode_chunk(c))
            for c in merge_by_time(*(
                chunk_signals(r.patient_id, device_id_for(r.patient_id),
                              {Signal(k): v for k, v in r.signal_arrays().items()}, r.start_ms)
                for r in recordings))
        ]
        bad = malformed_messages(patients, BAD, recordings[0].start_ms, seed=7)
        # Interleaved at random, the valid stream keeping its own order.
        slots = sorted(random.Random(3).sample(range(len(valid) + BAD), BAD))
        messages, bad_iter, valid_iter = [], iter(bad), iter(valid)
        slot_set = set(slots)
        for i in range(len(valid) + BAD):
            m = next(bad_iter) if i in slot_set else None
            messages.append((m.topic, m.key, m.value) if m is not None else next(valid_iter))

        env = pipeline_env(private, tmp_path, f"flood{tag}")
        with WorkerProcess(env, tmp_path / "worker.log", name="worker-flood") as worker:
            worker.wait_ready(150)
            produce(private.kafka_bootstrap, messages)
            letters = consume_until(private.kafka_bootstrap, DEADLETTER_TOPIC, lambda kept: len(kept) >= BAD,
                                    timeout_s=240)
            # Every window of every valid patient: 10 s windows every 2 s over 60 s.
            windows = len(range(10, DURATION_S + 1, 2))

            def findings_of(kept: list[tuple[bytes | None, bytes]]) -> dict[str, set[int]]:
                out: dict[str, set[int]] = {}
                for _k, v in kept:
                    try:
                        f = VitalsFinding.from_json(v)
                    except InvalidFinding:
                        continue  # one of the malformed findings, not the worker's
                    out.setdefault(f.patient_id, set()).add(f.t_ms)
                return out

            kept = consume_until(private.kafka_bootstrap, FINDINGS_TOPIC,
                                 lambda k: all(len(findings_of(k).get(p, ())) >= windows for p in patients),
                                 timeout_s=120, keep=lambda k, _v: k is not None and k.decode() in patients)
            wait_for(lambda: False, 3)  # anything more (a second copy of a dead letter) would show now
            letters = consume_until(private.kafka_bootstrap, DEADLETTER_TOPIC, lambda kept: False, timeout_s=5)
            alive = worker.proc is not None and worker.proc.poll() is None
            stats = worker.stats() or {}
            log = worker.log_tail()

    assert alive, log
    decoded = [DeadLetter.from_json(v) for _, v in letters]
    assert len(decoded) == BAD, (len(decoded), json.dumps(stats))
    assert all(d.reason and d.detail for d in decoded)
    assert Counter(d.reason for d in decoded) == Counter(m.reason for m in bad)
    # Nothing lost: the original bytes of every bad message travel with its letter.
    assert Counter(d.original for d in decoded) == Counter(m.value for m in bad)
    assert not [r for r in stats.get("dead_letters", {}) if r.startswith("internal_error")], stats
    findings = findings_of(kept)
    for patient in patients:
        got = sorted(findings.get(patient, ()))
        assert len(got) >= windows, (patient, len(got), json.dumps(stats))
        # No hole in the valid patients' findings (one finding per 2 s hop).
        assert all(b - a == 2000 for a, b in itertools.pairwise(got)), (patient, got)
