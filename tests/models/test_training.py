"""models/training.py: SVDB records only ever in training folds; two-lead augmentation."""

from __future__ import annotations

import numpy as np

from models import preprocess as pp
from models.data import BeatSet
from models.training import (
    TRAIN_ONLY,
    BeatTrainConfig,
    _augment_beats,
    beat_fold_of,
    cross_validate_beats,
    cross_validate_sveb,
    record_folds,
)


def _records_and_labels() -> tuple[np.ndarray, np.ndarray]:
    mit = ["101", "106", "118", "201", "209", "220"]
    svdb = ["svdb800", "svdb801", "svdb802"]
    records = np.repeat(np.array(mit + svdb), 20)
    labels = np.zeros(records.size, dtype=np.int64)
    labels[::7] = 1  # S beats in every record, SVDB included
    labels[::11] = 2
    return records, labels


def test_svdb_records_are_train_only_and_mitdb_folds_are_unchanged() -> None:
    records, labels = _records_and_labels()
    fold_of = beat_fold_of(records, labels, 3)
    svdb = np.char.startswith(records, "svdb")
    assert np.all(fold_of[svdb] == TRAIN_ONLY)
    assert set(fold_of[~svdb].tolist()) == {0, 1, 2}
    # The MIT-BIH folds are those of the MIT-BIH records alone.
    alone = record_folds(records[~svdb], labels[~svdb], 3)
    assert all(fold_of[i] == alone[r] for i, r in enumerate(records) if not svdb[i])
    # Each record in one fold only.
    for r in set(records.tolist()):
        assert len(set(fold_of[records == r].tolist())) == 1


def test_beat_cv_scores_mitdb_beats_only_with_svdb_in_every_training_fold(monkeypatch) -> None:
    import models.training as tr

    records, labels = _records_and_labels()
    n = labels.size
    data = BeatSet(np.zeros((n, 2, pp.BEAT_LEN), np.float32),
                   np.ones((n, pp.N_CONTEXT_FEATURES), np.float32), labels, records, np.arange(n))
    seen: list[set[str]] = []

    def fake_train(train: BeatSet, *args, **kwargs):
        seen.append(set(train.records.tolist()))
        return None

    monkeypatch.setattr(tr, "train_beat_model", fake_train)
    monkeypatch.setattr(tr, "beat_probs", lambda model, seg, rr: np.tile(
        np.eye(5, dtype=np.float32)[0], (len(seg), 1)))
    cv = cross_validate_beats(data, None, 3, 7, BeatTrainConfig(n_leads=2))
    assert len(seen) == 3
    for train_records in seen:
        assert {"svdb800", "svdb801", "svdb802"} <= train_records
    assert not any(r.startswith("svdb") for r in cv.records.tolist())
    assert cv.y_true.size == int((~np.char.startswith(records, "svdb")).sum())
    assert set(cv.folds) == {"101", "106", "118", "201", "209", "220"}
    # Each scored record was out of the training set of the model that scored it.
    for r, f in cv.folds.items():
        assert r not in seen[f]


def test_sveb_cv_never_scores_or_thresholds_on_train_only_beats() -> None:
    rng = np.random.default_rng(0)
    n = 600
    y = (rng.random(n) < 0.2).astype(np.int64)
    feats = rng.normal(size=(n, 38)) + y[:, None] * 0.8
    fold_of = np.repeat(np.array([0, 1, 2, TRAIN_ONLY]), n // 4)
    res = cross_validate_sveb(feats, y, fold_of)
    assert set(res.thresholds) == {0, 1, 2}
    assert np.all(res.probs[fold_of == TRAIN_ONLY] == 0) and not res.is_s[fold_of == TRAIN_ONLY].any()
    assert np.all(res.probs[fold_of != TRAIN_ONLY] > 0)


def test_augmentation_blanks_the_second_lead_only_and_keeps_one_lead_beats_one_lead() -> None:
    seg = np.ones((400, 2, pp.BEAT_LEN), dtype=np.float32)
    seg[:100, 1] = 0.0  # beats recorded with one lead
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(4, 5000)).astype(np.float32)
    out = _augment_beats(seg, noise, BeatTrainConfig(n_leads=2, lead_dropout=0.5, noise_prob=1.0), rng)
    blank2 = np.all(out[:, 1] == 0.0, axis=1)
    assert blank2[:100].all()  # no noise added to an absent lead
    assert 100 < blank2[100:].sum() < 200
    assert not np.any(np.all(out[:, 0] == 0.0, axis=1))  # the primary lead is never blanked
    none = _augment_beats(seg, None, BeatTrainConfig(n_leads=2, lead_dropout=0.0), rng)
    assert not np.all(none[100:, 1] == 0.0, axis=1).any()


def test_rhythm_cv_puts_extra_recordings_in_every_training_fold_only(monkeypatch) -> None:
    import models.training as tr

    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    signals = [np.full(100, float(i), np.float32) for i in range(labels.size)]
    extra = ([np.full(100, -1.0, np.float32)] * 2, np.array([1, 1]), None)
    seen: list[int] = []

    def fake_train(sigs, labs, *args, **kwargs):
        assert sum(float(s[0]) == -1.0 for s in sigs) == 2 and labs.size == len(sigs)
        seen.append(len(sigs))
        return None

    monkeypatch.setattr(tr, "train_rhythm_model", fake_train)
    monkeypatch.setattr(tr, "rhythm_record_probs", lambda model, sigs, peaks: np.full(
        (len(sigs), 4), 0.25, np.float32))
    folds, probs = tr.cross_validate_rhythm(signals, labels, 2, 7, extra=extra)
    assert len(seen) == 2 and probs.shape == (labels.size, 4)  # extras never scored
    assert sorted(seen) == sorted(int((folds != f).sum()) + 2 for f in range(2))


def test_a_rhythm_learning_curve_trains_on_a_share_and_scores_the_same_folds(monkeypatch) -> None:
    import pytest

    import models.training as tr

    labels = np.array([0] * 40 + [1] * 12 + [2] * 20 + [3] * 8)
    signals = [np.full(100, float(i), np.float32) for i in range(labels.size)]
    trained_on: list[np.ndarray] = []

    def fake_train(sigs, labs, *args, **kwargs):
        trained_on.append(np.array([int(s[0]) for s in sigs]))
        return None

    monkeypatch.setattr(tr, "train_rhythm_model", fake_train)
    monkeypatch.setattr(tr, "rhythm_record_probs", lambda model, sigs, peaks: np.full(
        (len(sigs), 4), 0.25, np.float32))
    folds, _ = tr.cross_validate_rhythm(signals, labels, 4, 7, train_share=0.5)
    assert np.array_equal(folds, tr.stratified_folds(labels, 4, 7))  # held-out folds unchanged
    for f, used in enumerate(trained_on):
        assert not np.isin(used, np.flatnonzero(folds == f)).any()  # never its own held-out fold
        full = np.bincount(labels[folds != f], minlength=4)
        assert np.array_equal(np.bincount(labels[used], minlength=4), np.maximum(1, np.round(full * 0.5)))
    with pytest.raises(ValueError, match="train_share"):
        tr.cross_validate_rhythm(signals, labels, 4, 7, train_share=0.0)
