"""Where a worker's time goes per window, stage by stage, without Kafka or Redis.

    python bench/bench_worker_stages.py [--patients 36] [--seconds 120] [--dump findings.jsonl]

Simulated patients (default_cohort: every ninth an ICU bed) are cut into 1-s chunks and
encoded as the gateway sends them, then fed in event-time order, in polls of one second of
every patient's data, through what the worker does with them: decode and validate
(``stream.agents.vitals.decode_message``'s ``decode_chunk``), ``VitalsPipeline.push``
(sequencing, streaming DSP, window assembly), the batched models
(``VitalsPipeline.assemble``), the finding's JSON, and the aggregator's part (finding JSON
decoded, alert state loaded from and saved to its table JSON, ``process_finding``). Prints
CPU ms per window of each stage and per patient-second of the whole (one thread).

``--dump`` writes every finding (JSON) and every alert emission in order: two runs before
and after an optimisation must produce identical files (``cmp``), which is how the
capacity work shows it changed no analysis output.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alerting.aggregator import PatientAlertState, process_finding  # noqa: E402
from alerting.catalogue import AlertConfig  # noqa: E402
from models.runtime import ModelRuntime  # noqa: E402
from stream.evidence import EvidenceRecorder  # noqa: E402
from stream.findings import VitalsFinding  # noqa: E402
from stream.gateway import chunk_signals, merge_by_time  # noqa: E402
from stream.pipeline import VitalsPipeline  # noqa: E402
from stream.schema import Signal, decode_chunk, encode_chunk  # noqa: E402
from stream.simulator import default_cohort, device_id_for, simulate_patient  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=36)
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--dump", type=Path, default=None)
    parser.add_argument("--chunk-s", type=float, default=1.0, help="seconds of signal per chunk (gateway)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--memory", action="store_true",
                        help="also the memory each patient holds (tracemalloc: slower, timings not comparable)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    start_ms = 1_767_225_600_000  # fixed (2026-01-01): --dump files of two runs compare byte for byte
    recs = [simulate_patient(s, seed=i, start_ms=start_ms)
            for i, s in enumerate(default_cohort(args.patients, float(args.seconds), seed=23))]
    chunks = list(merge_by_time(*(
        chunk_signals(r.patient_id, device_id_for(r.patient_id), {Signal(k): v for k, v in r.signal_arrays().items()},
                      r.start_ms, args.chunk_s) for r in recs)))
    polls: dict[int, list[bytes]] = defaultdict(list)
    for c in chunks:
        polls[int((c.end_ms - start_ms - 1) // (1000 * args.chunk_s))].append(encode_chunk(c))

    runtime = ModelRuntime.load_default()
    if args.memory:
        tracemalloc.start()
        gc.collect()
        held_before = tracemalloc.get_traced_memory()[0]
    pipeline = VitalsPipeline(runtime)
    recorder = EvidenceRecorder()  # the care feed's strips buffer, as in the worker
    runtime.beat_observer = recorder.record_beats
    config = AlertConfig()
    states: dict[str, bytes] = {}
    cost: dict[str, float] = defaultdict(float)
    windows_n = 0
    dump = open(args.dump, "w") if args.dump else None  # noqa: SIM115
    clock = time.process_time
    for k in sorted(polls):
        windows = []
        for value in polls[k]:
            t0 = clock()
            chunk = decode_chunk(value)
            t1 = clock()
            windows.extend(pipeline.push(chunk))
            t2 = clock()
            recorder.record_chunk(chunk)
            t3 = clock()
            cost["decode"] += t1 - t0
            cost["push (sequencing, DSP, windows)"] += t2 - t1
            cost["evidence recorder"] += t3 - t2
        if not windows:
            continue
        t0 = clock()
        findings = pipeline.assemble(windows)
        t1 = clock()
        encoded = [f.to_json() for f in findings]
        t2 = clock()
        cost["models (assemble)"] += t1 - t0
        cost["finding to_json"] += t2 - t1
        windows_n += len(windows)
        for raw in encoded:
            t0 = clock()
            finding = VitalsFinding.from_json(raw)
            saved = states.get(finding.patient_id)
            state = PatientAlertState.from_json(saved) if saved else PatientAlertState.new(finding.patient_id)
            new_state, emissions = process_finding(state, finding, config)[:2]
            if new_state is not state:
                states[finding.patient_id] = new_state.to_json()
            cost["aggregator (JSON in, state, rules, state out)"] += clock() - t0
            if dump is not None:
                dump.write(raw.decode() + "\n")
                for e in emissions:
                    dump.write(json.dumps(e.to_dict(), sort_keys=True, default=str) + "\n")
    if dump is not None:
        dump.close()
    memory = {}
    if args.memory:
        polls.clear()
        chunks.clear()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - held_before
        tables = (sum(len(v) for v in states.values())
                  + sum(len(json.dumps(t.to_dict())) for t in pipeline.trends.values()))
        memory = {"kb_per_patient_in_process": round(held / args.patients / 1024, 1),
                  "kb_per_patient_table_values": round(tables / args.patients / 1024, 1)}
    total = sum(cost.values())
    patient_s = args.patients * args.seconds
    report = {"patients": args.patients, "seconds": args.seconds, "windows": windows_n,
              "ms_per_window": {k: round(1000 * v / windows_n, 3) for k, v in cost.items()},
              "ms_per_window_total": round(1000 * total / windows_n, 3),
              "ms_per_patient_second": round(1000 * total / patient_s, 3),
              "patients_per_core": round(patient_s / total), **memory}
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{args.patients} patients x {args.seconds} s, {windows_n} windows, one thread:")
    for k, v in report["ms_per_window"].items():  # type: ignore[union-attr]
        print(f"  {k:48s} {v:7.3f} ms per window")
    print(f"  {'total':48s} {report['ms_per_window_total']:7.3f} ms per window = "
          f"{report['ms_per_patient_second']} ms per patient-second (~{report['patients_per_core']} patients per core)")
    if memory:
        print(f"  memory held per patient: {memory['kb_per_patient_in_process']} KB in process (monitors, beat "
              f"memory, trend trackers, evidence buffers, alert states), of which the table values "
              f"(alert and trend state JSON) {memory['kb_per_patient_table_values']} KB")


if __name__ == "__main__":
    main()
