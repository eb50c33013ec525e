"""Model inference speed on this CPU, and how many patients one core sustains.

Prints, side by side in one run: ms per item for the beat model and the rhythm model at
batch sizes 1, 64 and 512, ms per window for the whole ``ModelRuntime.analyse`` path
(band-pass, segments, both models, S expert, VF features) next to the same path without
the S expert (its cost as a ratio) and with a second ECG lead classified alongside (beats,
V runs and VF on both leads, as ICU patients with two leads get; its cost as a ratio), and
the real-time patients per core
assuming ~1.2 beats/s per patient and one 10-s rhythm window per 2-s hop.

Side by side with the previous beat network: the shipped weights' ``ModelRuntime`` next to
the same runtime with beats-1.0.0's one-lead ``BeatNet`` (same layers, weights untrained:
the cost does not depend on their values), so a two-lead beat model's cost is measured
against today's on the same machine in the same run.

``--beats DIR``: also time the beat network whose ``beats.pt``/``beats.json`` are in DIR
(e.g. an unshipped candidate, ``models/candidates/beats-2.0.0``) in the same runtime, fed
the primary lead only and, for a two-lead network, both leads.

Run: ``.venv/bin/python bench/bench_models.py [--json] [--beats DIR]`` (single torch thread
= one core).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from models import preprocess as pp
from models.architecture import BeatNet
from models.packaging import load_metadata, load_state
from models.runtime import ModelRuntime
from stream.window_analysis import LeadInput, WindowAnalysis

BATCHES = (1, 64, 512)
BEATS_PER_S = 1.2
HOP_S = 2.0


def _time(fn, min_seconds: float = 1.0) -> float:
    """Median seconds per call over repeated calls (after one warm-up)."""
    fn()
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_seconds or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _window(patient: str, t_ms: int, rng: np.random.Generator) -> WindowAnalysis:
    fs = pp.ECG_FS
    n = int(10 * fs)
    rr = 1 / BEATS_PER_S
    beats = np.arange(0.3, 10.0, rr) + rng.uniform(-0.02, 0.02)
    samples = np.round(beats * fs).astype(np.int64)
    k = np.arange(n)
    x = rng.normal(0, 0.02, n)
    for s in samples:
        x += np.exp(-0.5 * ((k - s) / 3.0) ** 2)
    return WindowAnalysis(patient_id=patient, t_ms=t_ms, window_s=10.0, ecg_fs=fs,
                          ecg_window=x.astype(np.float32), beat_samples=samples,
                          beat_is_new=beats >= 10.0 - HOP_S - rr,
                          rr_history_ms=np.full(60, rr * 1000))


def _with_second_lead(w: WindowAnalysis, rng: np.random.Generator) -> WindowAnalysis:
    """The window with another synthetic lead of the same beats as its second lead."""
    other = _window(w.patient_id, w.t_ms, rng)
    assert other.ecg_window is not None and other.ecg_fs is not None
    lead = LeadInput(other.ecg_fs, other.ecg_window, other.beat_samples, other.beat_is_new, other.rr_history_ms)
    return WindowAnalysis(patient_id=w.patient_id, t_ms=w.t_ms, window_s=w.window_s, ecg_fs=w.ecg_fs,
                          ecg_window=w.ecg_window, beat_samples=w.beat_samples, beat_is_new=w.beat_is_new,
                          rr_history_ms=w.rr_history_ms, ecg2_input=lead)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--beats", default=None, help="folder of another beats.pt/beats.json to time alongside")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rt = ModelRuntime.load_default()
    # The same models without the S expert, timed side by side: what the expert costs.
    rt_cnn_s = ModelRuntime(rt.beat_model, rt.rhythm_model, rt.vf_model, rt.beat_meta,
                            rt.rhythm_meta)
    # Today's (beats-1.0.0) one-lead network in the same runtime, for the cost side by side.
    rt_one_lead = ModelRuntime(BeatNet(n_leads=1).eval(), rt.rhythm_model, rt.vf_model,
                               {**rt.beat_meta, "n_leads": 1}, rt.rhythm_meta, rt.sveb_model)
    candidates: dict[str, ModelRuntime] = {}
    if args.beats:
        meta = load_metadata(args.beats, "beats")
        net = BeatNet(n_leads=int(meta.get("n_leads", 1)))
        net.load_state_dict(load_state(args.beats, "beats"))
        for leads in range(1, net.n_leads + 1):
            candidates[f"{meta['version']}_fed_{leads}_lead"] = ModelRuntime(
                net, rt.rhythm_model, rt.vf_model, {**meta, "runtime_leads": leads},
                rt.rhythm_meta, rt.sveb_model)
    rng = np.random.default_rng(0)
    rows = []
    for b in BATCHES:
        seg = rng.normal(size=(b, 1, pp.BEAT_LEN)).astype(np.float32)
        rr = pp.beat_context(np.full(b, 0.8), np.full(b, 0.8), np.full(b, 0.8), seg, seg)
        x = rng.normal(size=(b, 1, pp.RHYTHM_LEN)).astype(np.float32)
        # The pipeline passes the RR features of the beats it already detected.
        x_rr = np.stack([pp.rhythm_rr_features(np.arange(100, pp.RHYTHM_LEN, 200))] * b)
        t_beat = _time(lambda seg=seg, rr=rr: rt.predict_beats(seg, rr))
        t_rhythm = _time(lambda x=x, x_rr=x_rr: rt.predict_rhythm(x, x_rr))
        windows = [_window(f"p{i}", 10_000, rng) for i in range(b)]

        def run_analyse(windows=windows, runtime=rt) -> None:
            runtime._patients.clear()  # every call classifies the same new beats again
            runtime.analyse(windows)

        two_leads = [_with_second_lead(w, rng) for w in windows]
        t_an = _time(run_analyse)
        t_an_cnn = _time(lambda windows=windows: run_analyse(windows, rt_cnn_s))
        t_an_two = _time(lambda windows=two_leads: run_analyse(windows))
        t_old = _time(lambda windows=windows: run_analyse(windows, rt_one_lead))
        t_old_two = _time(lambda windows=two_leads: run_analyse(windows, rt_one_lead))
        cand: dict[str, float] = {}
        for name, crt in candidates.items():
            cand[f"{name}_analyse_ms_per_window"] = round(1000 * _time(
                lambda windows=windows, crt=crt: run_analyse(windows, crt)) / b, 3)
            cand[f"{name}_analyse_two_leads_ms_per_window"] = round(1000 * _time(
                lambda windows=two_leads, crt=crt: run_analyse(windows, crt)) / b, 3)
        rows.append({
            **cand,
            "batch": b,
            "beat_ms_per_beat": round(1000 * t_beat / b, 4),
            "rhythm_ms_per_window": round(1000 * t_rhythm / b, 3),
            "analyse_ms_per_window": round(1000 * t_an / b, 3),
            "analyse_without_s_expert_ms_per_window": round(1000 * t_an_cnn / b, 3),
            "s_expert_cost_ratio": round(t_an / t_an_cnn, 3),
            "analyse_two_leads_ms_per_window": round(1000 * t_an_two / b, 3),
            "second_lead_cost_ratio": round(t_an_two / t_an, 3),
            "one_lead_net_analyse_ms_per_window": round(1000 * t_old / b, 3),
            "one_lead_net_analyse_two_leads_ms_per_window": round(1000 * t_old_two / b, 3),
            "two_leads_vs_one_lead_net_ratio": round(t_an_two / t_old_two, 3),
        })
    big = rows[-1]
    model_only_ms_per_patient_s = (BEATS_PER_S * big["beat_ms_per_beat"]
                                   + big["rhythm_ms_per_window"] / HOP_S)
    full_ms_per_patient_s = big["analyse_ms_per_window"] / HOP_S
    result = {
        "torch_threads": torch.get_num_threads(),
        "model_version": rt.model_version,
        "rows": rows,
        "assumptions": {"beats_per_s_per_patient": BEATS_PER_S, "hop_s": HOP_S},
        "patients_per_core_models_only": int(1000 / model_only_ms_per_patient_s),
        "patients_per_core_full_analyse": int(1000 / full_ms_per_patient_s),
        "patients_per_core_full_analyse_two_leads": int(1000 / (big["analyse_two_leads_ms_per_window"] / HOP_S)),
        "beat_net_leads": rt.beat_model.n_leads,
        "one_lead_net_patients_per_core_full_analyse": int(1000 / (big["one_lead_net_analyse_ms_per_window"] / HOP_S)),
        "one_lead_net_patients_per_core_full_analyse_two_leads": int(
            1000 / (big["one_lead_net_analyse_two_leads_ms_per_window"] / HOP_S)),
    }
    for name in candidates:
        result[f"{name}_patients_per_core_full_analyse"] = int(1000 / (big[f"{name}_analyse_ms_per_window"] / HOP_S))
        result[f"{name}_patients_per_core_full_analyse_two_leads"] = int(
            1000 / (big[f"{name}_analyse_two_leads_ms_per_window"] / HOP_S))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"model {rt.model_version}, {result['torch_threads']} torch thread")
    print(f"{'batch':>6} {'beat ms/beat':>14} {'rhythm ms/win':>14} {'analyse ms/win':>15} "
          f"{'w/o S expert':>13} {'ratio':>6} {'two leads':>10} {'ratio':>6}")
    for r in rows:
        print(f"{r['batch']:>6} {r['beat_ms_per_beat']:>14.4f} {r['rhythm_ms_per_window']:>14.3f} "
              f"{r['analyse_ms_per_window']:>15.3f} "
              f"{r['analyse_without_s_expert_ms_per_window']:>13.3f} "
              f"{r['s_expert_cost_ratio']:>6.3f} {r['analyse_two_leads_ms_per_window']:>10.3f} "
              f"{r['second_lead_cost_ratio']:>6.3f}")
    print(f"{'batch':>6} {'1-lead net ms/win':>18} {'1-lead net, 2 leads':>20} {'ratio (2-lead net)':>19}")
    for r in rows:
        print(f"{r['batch']:>6} {r['one_lead_net_analyse_ms_per_window']:>18.3f} "
              f"{r['one_lead_net_analyse_two_leads_ms_per_window']:>20.3f} "
              f"{r['two_leads_vs_one_lead_net_ratio']:>19.3f}")
    print(f"beat net with {result['beat_net_leads']} lead input(s); the one-lead (beats-1.0.0) net "
          f"sustains {result['one_lead_net_patients_per_core_full_analyse']} (one lead), "
          f"{result['one_lead_net_patients_per_core_full_analyse_two_leads']} (two leads)")
    for name in candidates:
        print(f"{name}: " + ", ".join(f"batch {r['batch']} {r[name + '_analyse_ms_per_window']:.3f} / "
                                      f"{r[name + '_analyse_two_leads_ms_per_window']:.3f} ms/win (one / two leads)"
                                      for r in rows)
              + f"; patients per core {result[name + '_patients_per_core_full_analyse']} / "
                f"{result[name + '_patients_per_core_full_analyse_two_leads']}")
    print(f"real-time patients per core (batch 512): models only "
          f"{result['patients_per_core_models_only']}, full analyse "
          f"{result['patients_per_core_full_analyse']} (one lead), "
          f"{result['patients_per_core_full_analyse_two_leads']} (two leads)")


if __name__ == "__main__":
    main()
