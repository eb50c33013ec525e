"""Supraventricular ectopic beat (S) expert: decides S against N for the beats the beat
CNN calls N or S.

Why a second model: patient-wise CV on MIT-BIH showed the CNN's S calls to be worse than
two thresholds on RR prematurity and QRS similarity (S Se 29 % / PPV 16 % against 49 % /
29 %). An S beat is a normal-looking QRS that comes early *for this patient's rhythm*;
the CNN, trained on 20 patients per fold, learns their morphology instead. The expert is a
class-balanced logistic model over features that say exactly that:

* prematurity against several references: the last 10 RR (as the CNN has), and the median,
  75th and 90th percentile of the 60 RR before the beat. A run of supraventricular
  tachycardia soon becomes its own local rhythm (MIT-BIH 207, 209); the longer, upper
  references still see the sinus rate;
* regularity of the rhythm around it: the share of the last 30 RR within 10 % of their
  median, and the RR irregularity of the 8 before the beat. In atrial fibrillation every
  conducted beat looks "premature" (most false S calls came from MIT-BIH 201 and 203);
* the rhythm model's probabilities for the window (AF, other, noise), which see the
  fibrillatory baseline a beat's RR cannot;
* QRS similarity to the patient's local template (the CNN's morphology features), and
  interactions of prematurity with regularity, AF probability and similarity.

V, F and Q stay the CNN's: the expert never turns a ventricular call into S, so the V runs
behind the VT alarm are the CNN's alone. Weights and threshold live in
``models/weights/sveb.json`` (``vitalstream train sveb``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import preprocess as pp

SVEB_VERSION = "sveb-1.0.0"
LONG_RR_BEATS = 60  # the runtime keeps this many RR intervals of history per patient
REGULARITY_RR_BEATS = 30
IRREGULARITY_RR_BEATS = 8
N_RHYTHM_PROBS = 4  # N, A, O, ~ (models.runtime.RHYTHM_CLASSES)

SVEB_FEATURES: tuple[str, ...] = (
    "log_pre_rr", "log_post_rr", "log_local_rr", "log_pre_over_local", "log_post_over_local",
    "log_post_over_pre",
    "qrs_corr", "full_corr", "qrs_rms_diff", "qrs_amp_ratio",
    "log_pre_over_median60", "log_pre_over_p75_60", "log_pre_over_p90_60",
    "log_pre_over_median30",
    "irregularity8", "log_median60", "regular_share30",
    *(f"prem{i}_x_regular" for i in range(4)),
    *(f"prem{i}_x_irregularity" for i in range(4)),
    *(f"prem{i}_x_qrs_corr" for i in range(4)),
    "log_post_over_pre_x_regular",
    "log_p_rhythm_N", "log_p_rhythm_A", "log_p_rhythm_O", "log_p_rhythm_noise",
    *(f"prem{i}_x_p_af" for i in range(4)),
)
N_SVEB_FEATURES = len(SVEB_FEATURES)


def _history(seq: np.ndarray, js: np.ndarray, n: int, end_offset: int) -> np.ndarray:
    """``(len(js), n)`` rows ``seq[j - n + end_offset : j + end_offset]``, NaN where a row
    reaches before the start of ``seq`` (so NaN only ever pads a row on the left)."""
    cols = np.arange(-n, 0) + end_offset
    idx = js[:, None] + cols[None, :]
    return np.where(idx >= 0, seq[np.clip(idx, 0, None)], np.nan)


def rr_history_rows(rr_seq_s: np.ndarray, js: np.ndarray) -> np.ndarray:
    """``(len(js), LONG_RR_BEATS + 1)``: for each beat the ``LONG_RR_BEATS`` RR before its
    pre-RR, then the pre-RR itself (``rr_seq_s[j]``), clipped to 0.1-4 s, NaN-padded on the
    left. Rows of many patients stack into one :func:`sveb_features_from_history` call."""
    seq = np.clip(np.asarray(rr_seq_s, dtype=np.float64), 0.1, 4.0)
    js = np.asarray(js, dtype=np.int64)
    if js.size and (js.min() < 0 or js.max() >= seq.size):
        raise ValueError(f"pre-RR indices must lie in the RR sequence of {seq.size}")
    return _history(seq, js, LONG_RR_BEATS + 1, 1)


def _row_quantile(rows: np.ndarray, q: float) -> np.ndarray:
    """Per-row quantile (numpy's linear rule) ignoring NaN, for rows with at least one
    value: a vectorised ``np.nanquantile(rows, q, axis=1)``, which loops over rows."""
    ordered = np.sort(rows, axis=1)  # NaN last
    counts = np.sum(~np.isnan(rows), axis=1)
    pos = (counts - 1) * q
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, counts - 1)
    frac = pos - lo
    r = np.arange(rows.shape[0])
    return ordered[r, lo] * (1 - frac) + ordered[r, hi] * frac


def sveb_features(rr_seq_s: np.ndarray, js: np.ndarray, post_rr_s: np.ndarray,
                  morphology: np.ndarray, rhythm_probs: np.ndarray) -> np.ndarray:
    """``(n, N_SVEB_FEATURES)`` float64 features of ``n`` beats of one patient.

    ``rr_seq_s``: the patient's consecutive RR intervals (s), oldest first; ``js``: the index
    in it of each beat's pre-RR (causal: only entries up to ``j`` are used); ``post_rr_s``:
    each beat's next RR; ``morphology``: ``(n, 4)`` from
    :func:`models.preprocess.morphology_features`; ``rhythm_probs``: ``(n, 4)`` rhythm-model
    probabilities (N, A, O, ~) of the window the beat is classified in.
    """
    return sveb_features_from_history(rr_history_rows(rr_seq_s, js), post_rr_s, morphology,
                                      rhythm_probs)


def sveb_features_from_history(history: np.ndarray, post_rr_s: np.ndarray,
                               morphology: np.ndarray, rhythm_probs: np.ndarray) -> np.ndarray:
    """:func:`sveb_features` from :func:`rr_history_rows` rows (any mix of patients)."""
    hist = np.array(history, dtype=np.float64, copy=True)
    n = hist.shape[0]
    if n == 0:
        return np.zeros((0, N_SVEB_FEATURES))
    post = np.asarray(post_rr_s, dtype=np.float64).reshape(n)
    morph = np.asarray(morphology, dtype=np.float64).reshape(n, 4)
    probs = np.asarray(rhythm_probs, dtype=np.float64).reshape(n, N_RHYTHM_PROBS)
    pre = hist[:, -1]
    local = _row_quantile(hist[:, -pp.LOCAL_RR_BEATS:], 0.5)
    rr6 = np.log(pp.rr_features(pre, post, local).astype(np.float64))

    first = np.isnan(hist[:, -2])  # a patient's first beat: no RR before its own
    hist[first, -2] = pre[first]
    long = hist[:, :-1]
    recent = hist[:, -1 - REGULARITY_RR_BEATS:-1]
    med60 = _row_quantile(long, 0.5)
    p75 = _row_quantile(long, 0.75)
    p90 = _row_quantile(long, 0.9)
    med30 = _row_quantile(recent, 0.5)
    prem = np.log(np.stack([pre / med60, pre / p75, pre / p90, pre / med30], axis=1))
    valid = ~np.isnan(recent)
    close = np.abs(np.where(valid, recent, 0.0) / med30[:, None] - 1.0) < 0.1
    regular = np.sum(close & valid, axis=1) / np.sum(valid, axis=1)

    # The 8 RR before the pre-RR's predecessor.
    before = hist[:, -2 - IRREGULARITY_RR_BEATS:-2].copy()
    enough = np.sum(~np.isnan(before), axis=1) > 2
    irregular = np.zeros(n)
    if enough.any():
        b = before[enough]
        irregular[enough] = (_row_quantile(np.abs(np.diff(b, axis=1)), 0.5)
                             / _row_quantile(b, 0.5))

    log_probs = np.log(probs + 1e-3)
    return np.concatenate([
        rr6, morph, prem, irregular[:, None], np.log(med60)[:, None], regular[:, None],
        prem * regular[:, None], prem * irregular[:, None], prem * morph[:, :1],
        rr6[:, 5:6] * regular[:, None], log_probs, prem * probs[:, 1:2],
    ], axis=1)


def fit_balanced_logistic(x: np.ndarray, y: np.ndarray, c: float = 1.0,
                          iters: int = 50) -> tuple[np.ndarray, float]:
    """Class-balanced L2 logistic regression by Newton's method (deterministic, exact):
    minimises ``0.5 |w|^2 + c * sum_i s_i * logloss_i`` with ``s_i = n / (2 n_class(i))``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = x.shape
    n_pos = max(float(y.sum()), 1.0)
    s = np.where(y == 1, n / (2 * n_pos), n / (2 * max(n - n_pos, 1.0))) * c
    xb = np.concatenate([x, np.ones((n, 1))], axis=1)
    theta = np.zeros(d + 1)
    reg = np.ones(d + 1)
    reg[-1] = 0.0  # the intercept is not penalised
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ theta, -30, 30)))
        grad = xb.T @ (s * (p - y)) + reg * theta
        hess = (xb * (s * p * (1 - p))[:, None]).T @ xb + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return theta[:-1], float(theta[-1])


@dataclass(frozen=True, slots=True)
class SvebModel:
    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float
    version: str = SVEB_VERSION

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, threshold: float) -> SvebModel:
        mean = x.mean(axis=0)
        std = x.std(axis=0) + 1e-9
        coef, intercept = fit_balanced_logistic((x - mean) / std, y)
        return cls(mean, std, coef, intercept, threshold)

    @classmethod
    def load(cls, path: Path) -> SvebModel:
        d = json.loads(Path(path).read_text())
        if list(d["features"]) != list(SVEB_FEATURES):
            raise ValueError(f"{path}: feature list does not match this code's SVEB_FEATURES")
        return cls(np.array(d["mean"]), np.array(d["std"]), np.array(d["coef"]),
                   float(d["intercept"]), float(d["threshold"]), d["version"])

    def to_dict(self) -> dict[str, object]:
        return {"version": self.version, "features": list(SVEB_FEATURES),
                "mean": self.mean.tolist(), "std": self.std.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept,
                "threshold": self.threshold}

    def probability(self, feats: np.ndarray) -> np.ndarray:
        f = np.asarray(feats, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != N_SVEB_FEATURES:
            raise ValueError(f"S-expert features must be (n, {N_SVEB_FEATURES}), got {f.shape}")
        if not np.all(np.isfinite(f)):
            raise ValueError("S-expert features contain NaN or infinite values")
        z = ((f - self.mean) / self.std) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))

    def is_sveb(self, feats: np.ndarray) -> np.ndarray:
        return self.probability(feats) >= self.threshold


def sveb_labels(cnn_labels: np.ndarray, is_s: np.ndarray) -> np.ndarray:
    """The CNN's class indices (``BEAT_CLASSES`` order N, S, V, F, Q) with N against S
    decided by ``is_s`` where the CNN says N or S; V, F and Q are left as they are."""
    labels = np.array(cnn_labels, copy=True)
    n_or_s = (labels == 0) | (labels == 1)
    labels[n_or_s] = np.where(np.asarray(is_s, dtype=bool)[n_or_s], 1, 0)
    return labels


def best_f1_threshold(p: np.ndarray, y: np.ndarray,
                      grid: np.ndarray | None = None) -> float:
    """The threshold on ``p`` with the best F1 for ``y == 1`` (ties: the higher one, fewer
    false S)."""
    grid = np.round(np.arange(0.5, 0.995, 0.01), 2) if grid is None else grid
    best, best_f1 = float(grid[0]), -1.0
    for t in grid:
        pred = p >= t
        tp = float((pred & (y == 1)).sum())
        f1 = 2 * tp / max(float(pred.sum() + (y == 1).sum()), 1.0)
        if f1 >= best_f1:
            best, best_f1 = float(t), f1
    return best
