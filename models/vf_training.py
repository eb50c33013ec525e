"""Fit the VF/flutter detector's logistic coefficients on MIT-BIH rhythm annotations.

Positives: 4-s sub-windows lying entirely inside ``(VFL`` episodes; negatives: sub-windows
entirely inside any other annotated rhythm (VT, atrial flutter, AF, paced … are the hard
negatives), plus (with ``--cinc2015-dir``) the 50 s before the alarm of every CinC 2015
record whose alarm is NOT a VF/flutter alarm (ICU noise, tachycardia and VT are the hard
negatives that one-patient MIT-BIH VFL alone does not cover). The VF/flutter alarm
records stay held out for validation. Run ``python -m models.vf_training --data-dir
../shared/data/mitdb --cinc2015-dir ../shared/data/challenge2015``; it writes
``models/weights/vf.json``. Deterministic (closed-form data, fixed iterations).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models import data as md
from models import preprocess as pp
from models.packaging import WEIGHTS_DIR
from models.vf import FEATURES, SUB_WINDOW_S, vf_features

STEP_FIT_S = 2.0


def rhythm_intervals(data_dir: Path, record: str, n_samples: int) -> list[tuple[int, int, str]]:
    import wfdb

    ann = wfdb.rdann(str(Path(data_dir) / record), "atr")
    scale = pp.ECG_FS / ann.fs
    marks = [(int(s * scale), a.strip("\x00")) for s, a in zip(ann.sample, ann.aux_note,
                                                                strict=True) if a.startswith("(")]
    out = []
    for i, (s, name) in enumerate(marks):
        e = marks[i + 1][0] if i + 1 < len(marks) else n_samples
        out.append((s, e, name))
    return out


def vf_dataset(data_dir: Path, records: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = int(SUB_WINDOW_S * pp.ECG_FS)
    step = int(STEP_FIT_S * pp.ECG_FS)
    feats, labels, recs = [], [], []
    for record in records:
        ecg, _, _ = md.load_mitdb_ecg(data_dir, record)
        for s, e, name in rhythm_intervals(data_dir, record, ecg.size):
            for start in range(s, e - n + 1, step):
                feats.append(vf_features(ecg[start:start + n]))
                labels.append(1 if name == "(VFL" else 0)
                recs.append(record)
    return np.stack(feats), np.array(labels), np.array(recs)


ECG_LEADS = ("II", "I", "III", "V", "aVF", "aVR", "aVL", "MCL")


def cinc2015_negatives(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Features of 4-s sub-windows over 250-300 s of non-VF-alarm CinC 2015 records."""
    n = int(SUB_WINDOW_S * pp.ECG_FS)
    feats, recs = [], []
    for line in (Path(root) / "ALARMS").read_text().splitlines():
        if not line.strip():
            continue
        rec, alarm, _ = line.strip().split(",")
        if alarm == "Ventricular_Flutter_Fib":
            continue
        r = wfdb_read(root, rec, 250.0, 300.0)
        if r is None:
            continue
        x = r
        for start in range(0, x.size - n + 1, int(STEP_FIT_S * pp.ECG_FS)):
            feats.append(vf_features(x[start:start + n]))
            recs.append(rec)
    return np.stack(feats), np.array(recs)


def wfdb_read(root: Path, rec: str, t0: float, t1: float) -> np.ndarray | None:
    """First usable ECG lead of a CinC 2015 record between t0 and t1 s, band-passed."""
    import wfdb

    r = wfdb.rdrecord(str(Path(root) / rec), sampfrom=int(t0 * 250), sampto=int(t1 * 250))
    for name in ECG_LEADS:
        if name in r.sig_name:
            x = r.p_signal[:, r.sig_name.index(name)]
            if np.isnan(x).mean() < 0.2:
                return pp.ecg_bandpass(pp.ecg_resample(np.nan_to_num(x), float(r.fs)))
    return None


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 3000,
                 lr: float = 0.5) -> tuple[np.ndarray, float]:
    """Class-balanced L2 logistic regression by gradient descent (deterministic)."""
    w = np.zeros(x.shape[1])
    b = 0.0
    sample_w = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        g = (p - y) * sample_w
        w -= lr * (x.T @ g + l2 * w)
        b -= lr * g.sum()
    return w, float(b)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/mitdb"))
    ap.add_argument("--cinc2015-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR / "vf.json")
    args = ap.parse_args()
    records = md.list_mitdb_records(args.data_dir)
    x, y, recs = vf_dataset(args.data_dir, records)
    data_note = "MIT-BIH Arrhythmia DB records " + " ".join(records) + ", lead MLII"
    if args.cinc2015_dir is not None:
        xc, rc = cinc2015_negatives(args.cinc2015_dir)
        x = np.concatenate([x, xc])
        y = np.concatenate([y, np.zeros(len(xc), dtype=y.dtype)])
        recs = np.concatenate([recs, rc])
        data_note += ("; negatives from CinC 2015 non-VF-alarm records (250-300 s, "
                      "first ECG lead); VF-alarm records held out")
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    xs = (x - mean) / std
    w, b = fit_logistic(xs, y)
    p = 1 / (1 + np.exp(-(xs @ w + b)))
    # Threshold: keep sensitivity high for a life-threatening rhythm, then the aggregator's
    # 4-s persistence rule removes most isolated false sub-windows.
    threshold = 0.5
    tp = int(((p >= threshold) & (y == 1)).sum())
    fp = int(((p >= threshold) & (y == 0)).sum())
    report = {"positives": int(y.sum()), "negatives": int((1 - y).sum()),
              "sensitivity": tp / max(int(y.sum()), 1),
              "false_positive_rate": fp / max(int((1 - y).sum()), 1),
              "false_positive_records": len(set(recs[(p >= threshold) & (y == 0)].tolist()))}
    out = {"version": "vf-1.0.0", "features": list(FEATURES), "mean": mean.tolist(),
           "std": std.tolist(), "coef": w.tolist(), "intercept": b, "threshold": threshold,
           "sub_window_s": SUB_WINDOW_S, "fit": report,
           "data": data_note}
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
