"""What malformed messages cost: per message in the decoders, and in a worker's throughput.

Run: ``python bench/bench_deadletter.py [--patients 12] [--duration 120] [--bad 10000] [--skip-worker]``

1. In process: microseconds to decode and refuse one malformed message of each kind
   (fuzz/malformed.py) and wrap it in its dead-letter envelope, against decoding one valid
   1 s chunk.
2. A real worker (embedded broker and Redis, started here): a backlog of ``--patients``
   simulated patients x ``--duration`` s is published, then a worker starts and reads it
   to the end; timed from the worker's assignment until its counters (``/stats/``) show
   every message read and every finding aggregated. Then the same on a fresh broker with
   ``--bad`` malformed messages mixed in. Prints both rates and the cost per bad message.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import timeit
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alerting.actions import decode_action_message
from fuzz.malformed import Malformed, malformed_messages
from stream.deadletter import DeadLetter
from stream.device_alarm import DEVICE_ALARMS_TOPIC, DeviceAlarm
from stream.findings import VitalsFinding
from stream.gateway import chunk_signals, merge_by_time
from stream.schema import InvalidChunk, Signal, decode_chunk, encode_chunk
from stream.services import ACTIONS_TOPIC, FINDINGS_TOPIC, VITALS_TOPICS, create_topics, embedded_services
from stream.simulator import PatientScenario, device_id_for, simulate_patient
from stream.worker_process import WorkerProcess

PARTITIONS = 4


def refuse(m: Malformed) -> bytes:
    """What the worker does with one bad message, without Kafka: decode, fail, wrap."""
    try:
        if m.topic in VITALS_TOPICS:
            decode_chunk(m.value)
        elif m.topic == FINDINGS_TOPIC:
            VitalsFinding.from_json(m.value)
        elif m.topic == ACTIONS_TOPIC:
            decode_action_message(m.value)
        elif m.topic == DEVICE_ALARMS_TOPIC:
            DeviceAlarm.from_json(m.value)
        reason = "refused_later"  # key or topic checks (not modelled here)
    except InvalidChunk as exc:
        reason = exc.reason
    except ValueError as exc:
        reason = type(exc).__name__
    return DeadLetter.wrap(reason=reason, detail="", topic=m.topic, partition=0, offset=0, key=m.key,
                           original=m.value, received_ms=0).to_json()


def in_process(bad: list[Malformed], valid_chunk: bytes) -> None:
    by_kind: dict[str, list[Malformed]] = defaultdict(list)
    for m in bad:
        by_kind[m.kind].append(m)
    valid_us = timeit.timeit(lambda: decode_chunk(valid_chunk), number=2000) / 2000 * 1e6
    print(f"in process: decoding one valid 1 s ECG chunk (binary): {valid_us:.1f} us")
    print(f"{'malformed kind':32s} {'us each':>8s}  (decode + refuse + dead-letter envelope)")
    total = 0.0
    for kind, items in sorted(by_kind.items()):
        n = max(200, 2000 // len(items))
        us = timeit.timeit(lambda items=items: [refuse(m) for m in items], number=n // len(items) or 1)
        us = us / ((n // len(items) or 1) * len(items)) * 1e6
        total += us * len(items)
        print(f"{kind:32s} {us:8.1f}")
    print(f"{'mean over the mix':32s} {total / len(bad):8.1f}")


def worker_run(messages: list[tuple[str, bytes | None, bytes]], vitals: int, findings: int, bad: int,
               workdir: Path, label: str) -> float:
    from tests.e2e.kafka_io import produce

    with embedded_services(workdir / f"svc-{label}", env={}) as endpoints:
        create_topics(endpoints.kafka_bootstrap, PARTITIONS)
        produce(endpoints.kafka_bootstrap, messages)
        env = {"KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap, "REDIS_URL": endpoints.redis_url,
               "VITALSTREAM_APP_ID": f"bench-{label}", "VITALSTREAM_REDIS_PREFIX": f"bench{label}",
               "VITALSTREAM_PARTITIONS": str(PARTITIONS), "VITALSTREAM_STATE_DIR": str(workdir / label),
               "VITALSTREAM_LOG_LEVEL": "warn", "VITALSTREAM_TICK_INTERVAL_S": "0"}
        with WorkerProcess(env, workdir / f"{label}.log", name=f"worker-{label}") as worker:
            worker.wait_ready(180)
            started = time.monotonic()
            while True:
                stats = worker.stats() or {}
                dead = sum(int(v) for v in dict(stats.get("dead_letters", {})).values())  # type: ignore[call-overload]
                if (int(stats.get("chunks_in", 0)) >= vitals and int(stats.get("findings_in", 0)) >= findings  # type: ignore[call-overload]
                        and dead >= bad):
                    break
                if time.monotonic() - started > 600:
                    raise SystemExit(f"{label}: not through after 600 s: {json.dumps(stats)}\n{worker.log_tail()}")
                time.sleep(0.1)
            return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=12)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--bad", type=int, default=10_000)
    parser.add_argument("--skip-worker", action="store_true", help="only the in-process part")
    args = parser.parse_args()

    start_ms = int(time.time() * 1000) - 3_600_000
    recordings = [simulate_patient(PatientScenario(f"bench-{i}", (), duration_s=args.duration), seed=i,
                                   start_ms=start_ms) for i in range(args.patients)]
    chunks = list(merge_by_time(*(
        chunk_signals(r.patient_id, device_id_for(r.patient_id), {Signal(k): v for k, v in r.signal_arrays().items()},
                      r.start_ms) for r in recordings)))
    valid = [(c.signal.topic, c.patient_id.encode(), encode_chunk(c)) for c in chunks]
    bad = malformed_messages([r.patient_id for r in recordings], args.bad, start_ms, seed=1)
    in_process(bad, valid[0][2])
    if args.skip_worker:
        return

    windows = len(range(10, int(args.duration) + 1, 2))
    findings = args.patients * windows
    slots = set(random.Random(2).sample(range(len(valid) + len(bad)), len(bad)))
    mixed, bad_iter, valid_iter = [], iter(bad), iter(valid)
    for i in range(len(valid) + len(bad)):
        m = next(bad_iter) if i in slots else None
        mixed.append((m.topic, m.key, m.value) if m is not None else next(valid_iter))
    bad_vitals = sum(1 for m in bad if m.topic in VITALS_TOPICS)
    with tempfile.TemporaryDirectory(prefix="bench-deadletter-") as tmp:
        work = Path(tmp)
        clean_s = worker_run(valid, len(valid), findings, 0, work, "clean")
        mixed_s = worker_run(mixed, len(valid) + bad_vitals, findings, len(bad), work, "mixed")
    print(f"\nworker ({args.patients} patients x {args.duration:.0f} s = {len(valid)} chunks, "
          f"{findings} findings; {PARTITIONS} partitions, one worker):")
    print(f"  valid backlog only:              {clean_s:6.1f} s  {len(valid) / clean_s:7.0f} chunks/s")
    print(f"  with {len(bad)} malformed mixed in: {mixed_s:6.1f} s  {len(valid) / mixed_s:7.0f} chunks/s "
          f"({(len(valid) + len(bad)) / mixed_s:.0f} messages/s)")
    print(f"  cost: {mixed_s - clean_s:+.1f} s for {len(bad)} bad messages = "
          f"{(mixed_s - clean_s) / len(bad) * 1e6:.0f} us each; valid throughput "
          f"{(clean_s / mixed_s - 1) * 100:+.0f} %")


if __name__ == "__main__":
    main()
