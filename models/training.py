"""Training loops for the beat and rhythm models, and patient-wise fold design.

Deterministic given the seed (single-threaded data order, seeded torch). Progress is
reported through an optional callback so the CLI can draw a bar on stderr.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models import preprocess as pp
from models.architecture import BeatNet, RhythmNet
from models.data import (
    AAMI_MAP,
    BEAT_CLASSES,
    RHYTHM_CLASSES,
    BeatSet,
    beat_record_source,
    is_svdb,
    load_mitdb_ecg,
)
from models.sveb import N_SVEB_FEATURES, SvebModel, best_f1_threshold, sveb_features

Progress = Callable[[int, int, str], None]  # (step, total, message)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def record_folds(records: np.ndarray, labels: np.ndarray, k: int) -> dict[str, int]:
    """Patient-wise folds: every record in exactly one fold.

    Greedy balancing so each fold holds a share of the rare classes: records sorted by
    their S count (then V, then F), each assigned to the fold with the fewest S (then V)
    beats so far. Deterministic (ties broken by record name).
    """
    names = sorted(set(records.tolist()))
    counts = {r: np.bincount(labels[records == r], minlength=len(BEAT_CLASSES)) for r in names}
    order = sorted(names, key=lambda r: (-counts[r][1], -counts[r][2], -counts[r][3], r))
    totals = np.zeros((k, len(BEAT_CLASSES)))
    n_records = np.zeros(k)
    folds: dict[str, int] = {}
    for r in order:
        c = counts[r]
        key = 1 if c[1] > 0 else (2 if c[2] > 0 else 0)
        f = int(np.lexsort((n_records, totals[:, 0], totals[:, key]))[0])
        folds[r] = f
        totals[f] += c
        n_records[f] += 1
    return folds


TRAIN_ONLY = -1  # fold index of records that are only ever training data (SVDB)


def beat_fold_of(records: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Fold index per beat: MIT-BIH records in :func:`record_folds`' k patient-wise folds,
    SVDB records :data:`TRAIN_ONLY` (in the training set of every fold, never scored), so
    every MIT-BIH figure is from MIT-BIH patients held out of training and the MIT-BIH
    folds are the same with or without SVDB."""
    svdb = is_svdb(records)
    folds = record_folds(records[~svdb], labels[~svdb], k)
    return np.array([TRAIN_ONLY if s else folds[r] for r, s in zip(records, svdb, strict=True)],
                    dtype=np.int64)


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index per recording, stratified by label (CinC 2017: one recording per
    patient in the challenge training set as published)."""
    rng = np.random.default_rng(seed)
    folds = np.empty(labels.size, dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        folds[idx] = np.arange(idx.size) % k
    return folds


def stratified_share(labels: np.ndarray, idx: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A seeded ``share`` of ``idx`` (at least one of each class present), per label, sorted."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels[idx]):
        members = idx[labels[idx] == c]
        keep.append(rng.choice(members, size=max(1, round(share * members.size)), replace=False))
    return np.sort(np.concatenate(keep))


def class_weights(labels: np.ndarray, n_classes: int, power: float) -> torch.Tensor:
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1)) ** power, 0.0)
    w = w / (w * counts).sum() * counts.sum()
    return torch.tensor(w, dtype=torch.float32)


@dataclass(slots=True)
class BeatTrainConfig:
    epochs: int = 12
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-3
    class_weight_power: float = 0.6
    noise_prob: float = 0.5
    noise_std: tuple[float, float] = (0.02, 0.3)  # relative to the unit QRS amplitude
    max_shift: int = 3  # samples (12 ms): detected R peaks differ from the reference
    # Share of training beats whose waveform is blanked, so the classifier must also decide
    # from RR prematurity and the beat-vs-this-patient's-template features: the raw
    # waveform ties it to the training patients' morphologies (wide "N" beats of
    # bundle-branch block called V).
    segment_dropout: float = 0.0
    # Two-lead network (models.architecture.BeatNet ``n_leads``) and the share of training
    # beats whose second lead is blanked (channel dropout), so one lead keeps working.
    n_leads: int = 1
    lead_dropout: float = 0.5


def beat_config_of(meta: dict[str, Any], epochs: int | None = None) -> BeatTrainConfig:
    """The training settings a shipped beat model's metadata records (``beats.json``), so a
    CV run re-trains the configuration that is shipped, not the command-line defaults."""
    default = BeatTrainConfig()
    return BeatTrainConfig(epochs=epochs or int(meta.get("epochs", default.epochs)),
                           class_weight_power=float(meta.get("class_weight_power", default.class_weight_power)),
                           segment_dropout=float(meta.get("segment_dropout", default.segment_dropout)),
                           n_leads=int(meta.get("n_leads", default.n_leads)),
                           lead_dropout=float(meta.get("lead_dropout", default.lead_dropout)))


def _augment_beats(seg: np.ndarray, noise: np.ndarray | None, cfg: BeatTrainConfig,
                   rng: np.random.Generator) -> np.ndarray:
    """Augmented copy of ``(n, leads, L)`` segments: one R-position shift and gain for all
    leads of a beat, NSTDB noise drawn independently per lead, and (two leads) the second
    lead blanked for ``cfg.lead_dropout`` of the beats."""
    n, leads, length = seg.shape
    shifts = rng.integers(-cfg.max_shift, cfg.max_shift + 1, size=n)
    idx = np.clip(np.arange(length)[None, :] - shifts[:, None], 0, length - 1)
    out = np.take_along_axis(seg, np.broadcast_to(idx[:, None, :], seg.shape), axis=2)
    out = out * rng.uniform(0.8, 1.25, size=(n, 1, 1)).astype(np.float32)
    if cfg.segment_dropout > 0:
        out[rng.random(n) < cfg.segment_dropout] = 0.0
    if noise is not None:
        for lead in range(leads):
            present = np.any(out[:, lead, :] != 0, axis=1)
            use = (rng.random(n) < cfg.noise_prob) & present
            m = int(use.sum())
            if m:
                rows = rng.integers(0, noise.shape[0], size=m)
                starts = rng.integers(0, noise.shape[1] - length, size=m)
                chunk = noise[rows[:, None], starts[:, None] + np.arange(length)[None, :]]
                chunk = chunk - chunk.mean(axis=1, keepdims=True)
                std = rng.uniform(*cfg.noise_std, size=(m, 1))
                out[use, lead, :] += (chunk * std).astype(np.float32)
    if leads > 1 and cfg.lead_dropout > 0:
        out[rng.random(n) < cfg.lead_dropout, 1:, :] = 0.0
    return out.astype(np.float32, copy=False)


def lead_inputs(segments: np.ndarray, n_leads: int) -> np.ndarray:
    """The channels a network with ``n_leads`` inputs takes (a one-lead network: the
    primary lead only)."""
    return np.ascontiguousarray(segments[:, :n_leads])


def train_beat_model(data: BeatSet, noise: np.ndarray | None, seed: int,
                     cfg: BeatTrainConfig | None = None,
                     progress: Progress | None = None) -> BeatNet:
    cfg = cfg or BeatTrainConfig()
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    model = BeatNet(n_leads=cfg.n_leads)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = data.labels.size
    segments = lead_inputs(data.segments, cfg.n_leads)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr,
                                                total_steps=cfg.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(
        weight=class_weights(data.labels, len(BEAT_CLASSES), cfg.class_weight_power))
    rr_all = torch.from_numpy(data.rr)
    y_all = torch.from_numpy(data.labels)
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(n)
        total = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            seg = torch.from_numpy(_augment_beats(segments[idx], noise, cfg, rng))
            # Small heart-rate jitter on the absolute RR values (ratios are unchanged).
            factor = np.ones((idx.size, rr_all.shape[1]), dtype=np.float32)
            factor[:, :3] = rng.uniform(0.95, 1.05, size=(idx.size, 1))
            rr = rr_all[idx] * torch.from_numpy(factor)
            loss = loss_fn(model(seg, rr), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * idx.size
        if progress:
            progress(epoch + 1, cfg.epochs, f"epoch {epoch + 1} loss {total / n:.4f}")
    model.eval()
    return model


@torch.inference_mode()
def beat_probs(model: BeatNet, segments: np.ndarray, rr: np.ndarray,
               batch: int = 4096) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(segments), batch):
        logits = model(torch.from_numpy(segments[i:i + batch]), torch.from_numpy(rr[i:i + batch]))
        out.append(torch.softmax(logits, dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(BEAT_CLASSES)), np.float32)


@dataclass(slots=True)
class RhythmTrainConfig:
    epochs: int = 25
    batch_size: int = 32
    crops_per_record: int = 2
    lr: float = 3e-3
    weight_decay: float = 1e-3
    class_weight_power: float = 0.5
    flip_prob: float = 0.3  # CinC 2017 handheld leads are often inverted


def rhythm_config_of(meta: dict[str, Any], epochs: int | None = None) -> RhythmTrainConfig:
    """The training settings a shipped rhythm model's metadata records (``rhythm.json``)."""
    default = RhythmTrainConfig()
    return RhythmTrainConfig(epochs=epochs or int(meta.get("epochs", default.epochs)),
                             crops_per_record=int(meta.get("crops_per_record", default.crops_per_record)))


def _crop_at(x: np.ndarray, start: int, length: int) -> np.ndarray:
    """``x[start:start + length]``; a negative start is :func:`pp.fit_length`'s centred
    zero-padding of a recording shorter than ``length``."""
    return pp.fit_length(x, length) if start < 0 else x[start:start + length]


def random_crop_start(n: int, length: int, rng: np.random.Generator) -> int:
    return pp.fit_length_start(n, length) if n <= length else int(rng.integers(0, n - length + 1))


def eval_crop_starts(n: int, length: int = pp.RHYTHM_LEN, stride_s: float = 5.0) -> list[int]:
    """Starts of crops covering a recording at a fixed stride (last crop flush with the end)."""
    if n <= length:
        return [pp.fit_length_start(n, length)]
    stride = int(stride_s * pp.ECG_FS)
    starts = list(range(0, n - length + 1, stride))
    if starts[-1] != n - length:
        starts.append(n - length)
    return starts


def eval_crops(x: np.ndarray, length: int = pp.RHYTHM_LEN, stride_s: float = 5.0) -> np.ndarray:
    return np.stack([_crop_at(x, s, length) for s in eval_crop_starts(x.size, length, stride_s)])


def crop_rr_features(peaks: np.ndarray, starts: Sequence[int], length: int = pp.RHYTHM_LEN) -> np.ndarray:
    """RR features ``(len(starts), N)`` of crops of one recording, from its R peaks."""
    return np.stack([pp.rhythm_rr_features(peaks - s, length) for s in starts]).astype(np.float32)


def recording_crops(x: np.ndarray, peaks: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The covering 10-s crops of one recording ``(n, 1, L)`` float32, not normalised, and
    their RR features ``(n, N)`` from the recording's R peaks (None without peaks): what
    evaluation averages over, with the model directly or through the runtime."""
    starts = eval_crop_starts(x.size)
    crops = np.stack([_crop_at(x, s, pp.RHYTHM_LEN) for s in starts])[:, None, :].astype(np.float32)
    return crops, None if peaks is None else crop_rr_features(peaks, starts)


def recording_rpeaks(signals: Sequence[np.ndarray]) -> list[np.ndarray]:
    """R peaks of each recording (at ECG_FS) by the pipeline's own streaming detector, so
    training sees the beats the runtime will see."""
    from stream.dsp.rpeaks import ecg_rpeaks

    return [ecg_rpeaks(x, pp.ECG_FS, chunk_s=1.0) for x in signals]


def train_rhythm_model(signals: Sequence[np.ndarray], labels: np.ndarray, seed: int,
                       cfg: RhythmTrainConfig | None = None,
                       progress: Progress | None = None,
                       peaks: Sequence[np.ndarray] | None = None) -> RhythmNet:
    """``peaks`` (R peaks per recording): train with the window's RR features as well."""
    cfg = cfg or RhythmTrainConfig()
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    model = RhythmNet(n_rr=pp.N_RHYTHM_RR_FEATURES if peaks is not None else 0)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    items = np.repeat(np.arange(len(signals)), cfg.crops_per_record)
    steps_per_epoch = math.ceil(items.size / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr,
                                                total_steps=cfg.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(
        weight=class_weights(labels, len(RHYTHM_CLASSES), cfg.class_weight_power))
    y_all = torch.from_numpy(labels)
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(items)
        total = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            starts = [random_crop_start(signals[i].size, pp.RHYTHM_LEN, rng) for i in idx]
            crops = np.stack([_crop_at(signals[i], s, pp.RHYTHM_LEN) for i, s in zip(idx, starts, strict=True)])
            crops = pp.rhythm_normalise(crops)
            flip = rng.random(idx.size) < cfg.flip_prob
            crops[flip] *= -1
            rr = None
            if peaks is not None:
                rr = torch.from_numpy(np.concatenate(
                    [crop_rr_features(peaks[i], [s]) for i, s in zip(idx, starts, strict=True)]))
            loss = loss_fn(model(torch.from_numpy(crops[:, None, :]), rr), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * idx.size
        if progress:
            progress(epoch + 1, cfg.epochs, f"epoch {epoch + 1} loss {total / items.size:.4f}")
    model.eval()
    return model


@torch.inference_mode()
def rhythm_record_probs(model: RhythmNet, signals: Sequence[np.ndarray],
                        peaks: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Per-recording probabilities: softmax averaged over covering 10-s crops."""
    model.eval()
    if model.n_rr and peaks is None:
        peaks = recording_rpeaks(signals)
    out = np.zeros((len(signals), len(RHYTHM_CLASSES)), dtype=np.float32)
    for i, x in enumerate(signals):
        crops, rr = recording_crops(x, None if peaks is None else peaks[i])
        rr_t = None if rr is None else torch.from_numpy(rr)
        p = torch.softmax(model(torch.from_numpy(pp.rhythm_normalise(crops)), rr_t), dim=1).numpy()
        out[i] = p.mean(axis=0)
    return out


@dataclass(slots=True)
class BeatCvResult:
    """Held-out predictions of the scored (MIT-BIH) beats only; SVDB beats were training
    data in every fold and are not here."""

    y_true: np.ndarray
    y_pred: np.ndarray
    probs: np.ndarray
    records: np.ndarray
    folds: dict[str, int]
    probs_one_lead: np.ndarray  # the same models with the second lead blanked


def cross_validate_beats(data: BeatSet, noise: np.ndarray | None, k: int, seed: int,
                         cfg: BeatTrainConfig | None = None,
                         progress: Progress | None = None) -> BeatCvResult:
    """Patient-wise k-fold CV: each fold's records are scored by a model trained only on
    the other folds' records (plus the train-only SVDB records, :func:`beat_fold_of`)."""
    cfg = cfg or BeatTrainConfig()
    fold_of = beat_fold_of(data.records, data.labels, k)
    probs = np.zeros((data.labels.size, len(BEAT_CLASSES)), dtype=np.float32)
    probs_one = np.zeros_like(probs)
    for f in range(k):
        test = fold_of == f

        def fold_progress(step: int, total: int, msg: str, f: int = f) -> None:
            if progress:
                progress(f * total + step, k * total, f"fold {f + 1}/{k} {msg}")

        model = train_beat_model(data.subset(~test), noise, seed + f, cfg, fold_progress)
        seg = lead_inputs(data.segments[test], cfg.n_leads)
        probs[test] = beat_probs(model, seg, data.rr[test])
        one = seg.copy()
        one[:, 1:] = 0.0
        probs_one[test] = beat_probs(model, one, data.rr[test])
    scored = fold_of != TRAIN_ONLY
    folds = {str(r): int(g) for r, g in zip(data.records[scored], fold_of[scored], strict=True)}
    return BeatCvResult(data.labels[scored], probs[scored].argmax(axis=1), probs[scored],
                        data.records[scored], folds, probs_one[scored])


def cross_validate_rhythm(signals: Sequence[np.ndarray], labels: np.ndarray, k: int, seed: int,
                          cfg: RhythmTrainConfig | None = None,
                          progress: Progress | None = None,
                          peaks: Sequence[np.ndarray] | None = None,
                          extra: tuple[Sequence[np.ndarray], np.ndarray, Sequence[np.ndarray] | None] | None = None,
                          train_share: float = 1.0,
                          ) -> tuple[np.ndarray, np.ndarray]:
    """k-fold CV (stratified by label); returns (fold per recording, held-out probs).

    ``extra``: (signals, labels, peaks) of train-only recordings (MIT-BIH rhythm episodes),
    added to the training set of every fold and never scored. ``train_share`` < 1 trains
    each fold on that share of its training recordings (stratified, seeded) and scores the
    same held-out folds: a learning curve, to ask whether more recordings would help."""
    if not 0.0 < train_share <= 1.0:
        raise ValueError(f"train_share must be in (0, 1], got {train_share}")
    folds = stratified_folds(labels, k, seed)
    probs = np.zeros((labels.size, len(RHYTHM_CLASSES)), dtype=np.float32)
    for f in range(k):
        test = folds == f
        train_idx = np.flatnonzero(~test)
        if train_share < 1.0:
            train_idx = stratified_share(labels, train_idx, train_share, seed + f)

        def fold_progress(step: int, total: int, msg: str, f: int = f) -> None:
            if progress:
                progress(f * total + step, k * total, f"fold {f + 1}/{k} {msg}")

        train_sigs = [signals[i] for i in train_idx]
        train_labels = labels[train_idx]
        sub_peaks = None if peaks is None else [peaks[i] for i in train_idx]
        if extra is not None:
            train_sigs += list(extra[0])
            train_labels = np.concatenate([train_labels, extra[1]])
            if sub_peaks is not None and extra[2] is not None:
                sub_peaks += list(extra[2])
        model = train_rhythm_model(train_sigs, train_labels, seed + f, cfg, fold_progress, sub_peaks)
        test_idx = np.flatnonzero(test)
        probs[test] = rhythm_record_probs(model, [signals[i] for i in test_idx],
                                          None if peaks is None else [peaks[i] for i in test_idx])
    return folds, probs


# ---------------------------------------------------------------- S expert (models.sveb)
def beat_rhythm_probs(data_dir: Path, beats: BeatSet,
                      predict_rhythm: Callable[[np.ndarray, np.ndarray], np.ndarray],
                      progress: Progress | None = None,
                      svdb_dir: Path | None = None) -> np.ndarray:
    """``(n, 4)`` rhythm probabilities for each beat of ``beats`` (MIT-BIH records; SVDB
    records, named ``svdb…``, read from ``svdb_dir``), as the
    runtime has them: the 10-s window of the 2-s hop grid in which the beat is first
    classifiable (its next beat and its segment tail inside), with the window's RR
    features from the reference beats."""
    out = np.zeros((beats.labels.size, 4), dtype=np.float32)
    records = list(dict.fromkeys(beats.records.tolist()))
    hop = int(2 * pp.ECG_FS)
    for k, record in enumerate(records):
        ecg, pos, symbols = load_mitdb_ecg(*beat_record_source(record, data_dir, svdb_dir))
        r_all = pos[np.array([s in AAMI_MAP for s in symbols])]
        ends = np.arange(pp.RHYTHM_LEN, ecg.size + 1, hop)
        x = np.stack([ecg[e - pp.RHYTHM_LEN:e] for e in ends])[:, None, :].astype(np.float32)
        rr = np.stack([pp.rhythm_rr_features(r_all[(r_all >= e - pp.RHYTHM_LEN) & (r_all < e)]
                                             - (e - pp.RHYTHM_LEN)) for e in ends])
        probs = predict_rhythm(x, rr.astype(np.float32))
        idx = np.flatnonzero(beats.records == record)
        r = beats.r_samples[idx]
        nxt = r_all[np.clip(np.searchsorted(r_all, r, side="right"), 0, r_all.size - 1)]
        need = np.maximum(r + pp.BEAT_POST, nxt)
        out[idx] = probs[np.clip(np.searchsorted(ends, need), 0, ends.size - 1)]
        if progress:
            progress(k + 1, len(records), f"rhythm context {record}")
    return out


def beatset_sveb_features(beats: BeatSet, rhythm_probs: np.ndarray) -> np.ndarray:
    """S-expert features of every beat: per record, the pre-RR sequence of its consecutive
    beats is the RR history (a beat's pre-RR is the previous beat's post-RR)."""
    feats = np.zeros((beats.labels.size, N_SVEB_FEATURES))
    for record in dict.fromkeys(beats.records.tolist()):
        idx = np.flatnonzero(beats.records == record)
        feats[idx] = sveb_features(beats.rr[idx, 0], np.arange(idx.size), beats.rr[idx, 1],
                                   beats.rr[idx, pp.N_RR_FEATURES:], rhythm_probs[idx])
    return feats


@dataclass(slots=True)
class SvebCvResult:
    probs: np.ndarray  # held-out S probability per beat
    is_s: np.ndarray  # held-out decision (the fold's nested threshold)
    thresholds: dict[int, float]  # per outer fold, chosen on its training folds only


def cross_validate_sveb(feats: np.ndarray, labels: np.ndarray, fold_of: np.ndarray
                        ) -> SvebCvResult:
    """Patient-wise CV of the S expert with a nested threshold: for each held-out fold the
    threshold is the best-F1 one on held-out predictions of the *other* folds (each scored
    by a model trained on the remaining ones), so no figure sees its own fold twice.
    Beats of fold :data:`TRAIN_ONLY` (SVDB) are in every fit and never scored, neither in
    the outer folds nor in the inner ones that choose the threshold."""
    y = (labels == BEAT_CLASSES.index("S")).astype(np.int64)
    folds = sorted(set(fold_of.tolist()) - {TRAIN_ONLY})
    scored = fold_of != TRAIN_ONLY
    probs = np.zeros(y.size)
    is_s = np.zeros(y.size, dtype=bool)
    thresholds: dict[int, float] = {}
    for f in folds:
        train = fold_of != f
        test = fold_of == f
        inner = np.zeros(y.size)
        for g in folds:
            if g == f:
                continue
            fit = train & (fold_of != g)
            inner[fold_of == g] = SvebModel.fit(feats[fit], y[fit], 0.5).probability(
                feats[fold_of == g])
        pick = train & scored
        thresholds[f] = best_f1_threshold(inner[pick], y[pick])
        model = SvebModel.fit(feats[train], y[train], thresholds[f])
        probs[test] = model.probability(feats[test])
        is_s[test] = probs[test] >= thresholds[f]
    return SvebCvResult(probs, is_s, thresholds)
