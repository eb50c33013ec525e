"""The S expert (models.sveb): features, fit, decisions and its place in the runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models import data as md
from models.packaging import WEIGHTS_DIR
from models.runtime import ModelRuntime
from models.sveb import (
    N_SVEB_FEATURES,
    SVEB_FEATURES,
    SvebModel,
    best_f1_threshold,
    fit_balanced_logistic,
    sveb_features,
    sveb_labels,
)
from models.training import beat_rhythm_probs, beatset_sveb_features

SINUS = np.array([0.97, 0.01, 0.01, 0.01])  # rhythm-model probabilities N, A, O, ~
AF = np.array([0.05, 0.9, 0.04, 0.01])
SAME_AS_TEMPLATE = np.array([0.99, 0.97, 0.1, 1.0])  # qrs corr, full corr, rms diff, amp ratio


def _one_beat(history: np.ndarray, pre: float, post: float, rhythm: np.ndarray,
              morph: np.ndarray = SAME_AS_TEMPLATE) -> np.ndarray:
    seq = np.append(history, pre)
    return sveb_features(seq, np.array([seq.size - 1]), np.array([post]), morph[None, :],
                         rhythm[None, :])


def test_a_premature_normal_beat_is_s_in_sinus_rhythm_and_n_in_af(runtime: ModelRuntime) -> None:
    expert = runtime.sveb_model
    assert expert is not None
    sinus = np.full(60, 0.8)
    pac = _one_beat(sinus, 0.5, 1.05, SINUS)
    on_time = _one_beat(sinus, 0.8, 0.8, SINUS)
    af = np.random.default_rng(3).uniform(0.45, 1.1, 60)
    early_in_af = _one_beat(af, 0.5, 1.05, AF)
    assert expert.is_sveb(pac)[0]
    assert not expert.is_sveb(on_time)[0]
    assert not expert.is_sveb(early_in_af)[0]
    assert expert.probability(pac)[0] > expert.probability(early_in_af)[0]


def test_a_run_of_tachycardia_stays_premature_against_the_longer_reference(
        runtime: ModelRuntime) -> None:
    """Beats deep inside a run have the run as their last-10 reference (pre/local ~ 1);
    against the 60 before it they are still early (MIT-BIH 209's SVTA)."""
    history = np.concatenate([np.full(52, 0.8), np.full(8, 0.45)])
    feats = _one_beat(history, 0.45, 0.45, SINUS)
    names = list(SVEB_FEATURES)
    assert abs(feats[0, names.index("log_pre_over_local")]) < 0.05
    assert feats[0, names.index("log_pre_over_median60")] < np.log(0.6)
    assert runtime.sveb_model is not None and runtime.sveb_model.is_sveb(feats)[0]


def test_features_are_causal_and_check_their_indices() -> None:
    rng = np.random.default_rng(0)
    seq = rng.uniform(0.6, 1.0, 80)
    js = np.array([5, 40, 70])
    morph = np.tile(SAME_AS_TEMPLATE, (3, 1))
    rhythm = np.tile(SINUS, (3, 1))
    a = sveb_features(seq, js, seq[js + 1], morph, rhythm)
    later = seq.copy()
    later[71:] = 2.0  # only what follows the last beat's pre-RR changes
    b = sveb_features(later, js, seq[js + 1], morph, rhythm)
    assert a.shape == (3, N_SVEB_FEATURES) and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    first = sveb_features(seq, np.array([0]), seq[1:2], morph[:1], rhythm[:1])
    assert np.all(np.isfinite(first))  # a patient's first beat has no history: still defined
    with pytest.raises(ValueError, match="pre-RR indices"):
        sveb_features(seq, np.array([80]), seq[:1], morph[:1], rhythm[:1])


def test_the_expert_never_touches_ventricular_fusion_or_paced_calls() -> None:
    cnn = np.array([0, 1, 2, 3, 4, 0, 1])
    is_s = np.array([True, False, True, True, True, False, True])
    np.testing.assert_array_equal(sveb_labels(cnn, is_s), [1, 0, 2, 3, 4, 0, 1])


def test_runtime_labels_fall_back_to_the_cnn_without_expert_features(runtime: ModelRuntime) -> None:
    probs = np.array([[0.1, 0.9, 0, 0, 0], [0.9, 0.1, 0, 0, 0], [0.1, 0.1, 0.8, 0, 0]])
    on_time = _one_beat(np.full(60, 0.8), 0.8, 0.8, SINUS)[0]
    feats = np.stack([on_time, np.full(N_SVEB_FEATURES, np.nan), on_time])
    np.testing.assert_array_equal(runtime.beat_labels(probs, feats), [0, 0, 2])
    np.testing.assert_array_equal(runtime.beat_labels(probs, None), [1, 0, 2])


def test_logistic_fit_is_deterministic_and_finds_the_separating_direction() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 3))
    y = (x[:, 0] - 0.5 * x[:, 2] + 0.3 * rng.normal(size=2000) > 1.5).astype(np.int64)
    w1, b1 = fit_balanced_logistic(x, y)
    w2, b2 = fit_balanced_logistic(x, y)
    np.testing.assert_array_equal(w1, w2)
    assert b1 == b2 and w1[0] > 1.0 and w1[2] < -0.3 and abs(w1[1]) < 0.3
    assert (((x @ w1 + b1) > 0) == y).mean() > 0.85


def test_best_f1_threshold_prefers_fewer_false_s_on_ties() -> None:
    y = np.array([1, 1, 0, 0])
    p = np.array([0.97, 0.96, 0.5, 0.2])
    assert best_f1_threshold(p, y) == pytest.approx(0.96)


def test_malformed_features_and_weights_are_rejected(runtime: ModelRuntime, tmp_path: Path) -> None:
    expert = runtime.sveb_model
    assert expert is not None
    with pytest.raises(ValueError, match=r"\(n, 38\)"):
        expert.probability(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="NaN"):
        expert.probability(np.full((1, N_SVEB_FEATURES), np.nan))
    doc = json.loads((WEIGHTS_DIR / "sveb.json").read_text())
    doc["features"] = doc["features"][:-1]
    (tmp_path / "sveb.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="feature list"):
        SvebModel.load(tmp_path / "sveb.json")


@pytest.mark.realdata
def test_real_premature_atrial_beats_of_record_220(runtime: ModelRuntime, data_root: Path) -> None:
    """Record 220's atrial premature beats are S and its sinus beats N (in-sample: the
    shipped expert was fitted on all 26 records; the honest figures are the CV ones in
    models/cards/beats.md)."""
    mitdb = data_root / "mitdb"
    if not (mitdb / "220.hea").exists():
        pytest.skip("MIT-BIH data not present")
    beats = md.load_mitdb_beats(mitdb, ["220"])
    feats = beatset_sveb_features(beats, beat_rhythm_probs(mitdb, beats, runtime.predict_rhythm))
    labels = runtime.beat_labels(runtime.predict_beats(beats.segments, beats.rr), feats)
    s, n = md.BEAT_CLASSES.index("S"), md.BEAT_CLASSES.index("N")
    assert (beats.labels == s).sum() >= 90
    assert (labels[beats.labels == s] == s).mean() >= 0.8
    assert (labels[beats.labels == n] == s).mean() <= 0.01
