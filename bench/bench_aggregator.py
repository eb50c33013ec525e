"""Per-finding cost of the aggregator, with and without the bedside-alarm evidence rows,
side by side in one run.

Run: ``python bench/bench_aggregator.py [--patients 200] [--windows 150] [--repeats 5]``

Each finding goes through ``process_finding`` (every alert type judged, persistence,
episodes) plus the JSON round trip of the patient's state, as the aggregator agent does
with its Faust table. The second column also turns the window into its evidence row and
keeps it for 30 s (``_Run.check_window``, ``alerting/verification.py``: ~3 KB of state per
patient); the third feeds one bedside alarm per patient per minute, each decided by the
rules and the learned verifier (``models/verifier.py``).
Findings are varied (normal, tachycardic, noisy, with pauses) so alerts open and close.
Prints microseconds per finding, the ratio, and patients per core (one finding per 2 s hop).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alerting import aggregator
from alerting.aggregator import PatientAlertState, process_device_alarm, process_finding
from stream.device_alarm import DeviceAlarm
from stream.findings import EcgFindings, PpgFindings, RespFindings, VitalsFinding

T0 = 1_700_000_000_000
HOP_MS = 2000


def window(rnd: random.Random, patient: str, i: int) -> VitalsFinding:
    hr = rnd.choice([70.0, 72.0, 125.0, 150.0, 38.0])
    poor = rnd.random() < 0.1
    ecg = EcgFindings(quality=0.2 if poor else 0.9, usable=not poor, lead_off=False, hr_bpm=hr, n_beats=12,
                      max_pause_s=rnd.choice([1.0, 1.1, 4.5]), hr_min_5beats=hr - 3, hr_max_17beats=hr + 3,
                      sdnn_ms=40.0, rmssd_ms=30.0, rr_irregularity=0.05, beat_counts={"N": 11, "V": 1},
                      v_run_length=rnd.choice([0, 1, 6]), v_run_rate_bpm=150.0, rhythm="N",
                      rhythm_probs={"N": 0.9, "A": 0.05, "O": 0.03, "~": 0.02}, vf_score=0.05, vf_seconds=0.0)
    ppg = PpgFindings(quality=0.9, usable=True, pulsatile=True, pulse_rate_bpm=hr, max_pause_s=1.0,
                      irregularity=0.03, perfusion_index=2.0)
    resp = RespFindings(rate_bpm=16.0, source="resp", quality=0.8, usable=True, max_pause_s=5.0)
    return VitalsFinding(patient_id=patient, t_ms=T0 + i * HOP_MS, window_s=10.0, ecg=ecg, ppg=ppg, resp=resp)


def run(inputs: list[list[VitalsFinding | DeviceAlarm]]) -> float:
    """Seconds for all patients' inputs, state stored as JSON between inputs (the table)."""
    started = time.perf_counter()
    for patient_inputs in inputs:
        saved = PatientAlertState.new(patient_inputs[0].patient_id).to_json()
        for item in patient_inputs:
            state = PatientAlertState.from_json(saved)
            if isinstance(item, DeviceAlarm):
                state, _ = process_device_alarm(state, item)
            else:
                state, _ = process_finding(state, item)
            saved = state.to_json()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--windows", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rnd = random.Random(7)
    findings = [[window(rnd, f"p{p}", i) for i in range(args.windows)] for p in range(args.patients)]
    with_alarms: list[list[VitalsFinding | DeviceAlarm]] = []
    for per in findings:
        mixed: list[VitalsFinding | DeviceAlarm] = []
        for i, f in enumerate(per):
            if i % 30 == 29:  # one bedside alarm a minute, before the window that covers it
                mixed.append(DeviceAlarm(f.patient_id, rnd.choice(["extreme_tachy", "asystole", "vtach"]), f.t_ms))
            mixed.append(f)
        with_alarms.append(mixed)
    n = args.patients * args.windows

    real_check: Callable[..., None] = aggregator._Run.check_window
    configs = [("findings, no evidence rows", findings, False),
               ("findings + evidence rows (shipped)", findings, True),
               ("findings + checks + 1 bedside alarm/min", with_alarms, True)]

    def once(inputs: list, check: bool) -> float:
        aggregator._Run.check_window = real_check if check else (  # type: ignore[method-assign]
            lambda self, f: None)
        try:
            return run(inputs)
        finally:
            aggregator._Run.check_window = real_check  # type: ignore[method-assign]

    for _, inputs, check in configs:  # warm-up
        once(inputs[: max(1, len(inputs) // 10)], check)
    # Interleaved repeats, best of each: machine noise hits all three alike.
    best = [once(inputs, check) for _, inputs, check in configs]
    for _ in range(args.repeats - 1):
        best = [min(b, once(inputs, check)) for b, (_, inputs, check) in zip(best, configs, strict=True)]
    print(f"{args.patients} patients x {args.windows} windows, best of {args.repeats} interleaved, one thread")
    for (label, _, _), t in zip(configs, best, strict=True):
        print(f"{label:<44} {t / n * 1e6:8.1f} us/finding  {HOP_MS / 1000 / (t / n):10,.0f} patients/core")
    print(f"ratio: evidence rows cost x{best[1] / best[0]:.2f} per finding; "
          f"with a bedside alarm a minute x{best[2] / best[0]:.2f}")


if __name__ == "__main__":
    main()
