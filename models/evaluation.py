"""Metrics: AAMI beat sensitivity / positive predictivity and rhythm F1, with
record-level bootstrap confidence intervals (records, not beats, are the independent
units: beats of one patient are strongly correlated)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.data import BEAT_CLASSES, RHYTHM_CLASSES


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(y_true * n + y_pred, minlength=n * n).reshape(n, n)


def se_ppv(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tp = np.diag(cm).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = tp / cm.sum(axis=1)
        ppv = tp / cm.sum(axis=0)
    return se, ppv


def _percentile(x: np.ndarray, q: float) -> float:
    """nanpercentile without the all-NaN warning (a class absent from every resample)."""
    x = x[np.isfinite(x)]
    return float(np.percentile(x, q)) if x.size else float("nan")


def _pct(x: float) -> float | None:
    return None if not np.isfinite(x) else round(100.0 * float(x), 2)


def beat_metrics(y_true: np.ndarray, y_pred: np.ndarray, records: np.ndarray,
                 n_boot: int = 1000, seed: int = 0,
                 classes: Sequence[str] = ("N", "S", "V", "F")) -> dict:
    """Se/PPV (percent) per AAMI class, accuracy, and 95 % bootstrap CIs over records
    (``n_boot=0``: no resampling, the CIs are None)."""
    k = len(BEAT_CLASSES)
    cm = confusion(y_true, y_pred, k)
    se, ppv = se_ppv(cm)
    names = sorted(set(records.tolist()))
    per_rec = np.stack([confusion(y_true[records == r], y_pred[records == r], k) for r in names])
    rng = np.random.default_rng(seed)
    boot_se, boot_ppv = [], []
    for _ in range(n_boot):
        pick = rng.integers(0, len(names), size=len(names))
        s, p = se_ppv(per_rec[pick].sum(axis=0))
        boot_se.append(s)
        boot_ppv.append(p)
    bs, bp = np.array(boot_se).reshape(-1, k), np.array(boot_ppv).reshape(-1, k)
    out: dict = {}
    for name in classes:
        i = BEAT_CLASSES.index(name)
        out[name] = {
            "se": _pct(se[i]), "ppv": _pct(ppv[i]),
            "se_ci95": [_pct(_percentile(bs[:, i], 2.5)),
                        _pct(_percentile(bs[:, i], 97.5))],
            "ppv_ci95": [_pct(_percentile(bp[:, i], 2.5)),
                         _pct(_percentile(bp[:, i], 97.5))],
            "n": int(cm[i].sum()),
        }
    return {
        "classes": out,
        "accuracy": _pct(np.trace(cm) / max(cm.sum(), 1)),
        "confusion": {"rows_true_cols_pred": list(BEAT_CLASSES), "matrix": cm.tolist()},
    }


def f1_scores(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    cm = confusion(y_true, y_pred, n)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / denom, np.nan)


def rhythm_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_boot: int = 1000,
                   seed: int = 0) -> dict:
    """Per-class F1 (CinC 2017 definition) and mean over N, A, O, with bootstrap CIs over
    recordings (one recording per patient)."""
    k = len(RHYTHM_CLASSES)
    f1 = f1_scores(y_true, y_pred, k)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        pick = rng.integers(0, y_true.size, size=y_true.size)
        boots.append(f1_scores(y_true[pick], y_pred[pick], k))
    b = np.array(boots)
    b_mean = np.nanmean(b[:, :3], axis=1)

    def r4(x: float) -> float | None:
        return None if not np.isfinite(x) else round(float(x), 4)

    return {
        "f1": {c: r4(f1[i]) for i, c in enumerate(RHYTHM_CLASSES)},
        "f1_ci95": {c: [r4(_percentile(b[:, i], 2.5)), r4(_percentile(b[:, i], 97.5))]
                    for i, c in enumerate(RHYTHM_CLASSES)},
        "f1_mean_nao": r4(np.mean(f1[:3])),
        "f1_mean_nao_ci95": [r4(np.percentile(b_mean, 2.5)), r4(np.percentile(b_mean, 97.5))],
        "confusion": {"rows_true_cols_pred": list(RHYTHM_CLASSES),
                      "matrix": confusion(y_true, y_pred, k).tolist()},
    }
