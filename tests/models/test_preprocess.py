from __future__ import annotations

import numpy as np
import pytest

from models import preprocess as pp
from models.training import crop_rr_features, eval_crop_starts, eval_crops, record_folds


def test_resample_length_and_identity() -> None:
    x = np.sin(np.arange(3600) / 50)
    assert pp.ecg_resample(x, 360.0).size == 2500
    assert pp.ecg_resample(x, 300.0).size == 3000
    np.testing.assert_array_equal(pp.ecg_resample(x, 250.0), x)


def test_beat_segments_shape_scale_and_edges() -> None:
    x = np.zeros(1000)
    x[500] = 2.0
    seg = pp.beat_segments(x, np.array([500, 10]), 2.0)
    assert seg.shape == (2, 1, pp.BEAT_LEN) and seg.dtype == np.float32
    assert seg[0, 0, pp.BEAT_PRE] == pytest.approx(1.0)
    assert np.all(np.isfinite(seg[1]))  # edge-padded, not out of bounds


def test_rr_features_ratios() -> None:
    f = pp.rr_features(np.array([0.5]), np.array([1.1]), np.array([0.8]))
    assert f.shape == (1, pp.N_RR_FEATURES)
    np.testing.assert_allclose(f[0], [0.5, 1.1, 0.8, 0.625, 1.375, 2.2], rtol=1e-6)


def test_local_rr_is_causal_median() -> None:
    rr = np.array([1.0, 1.0, 1.0, 0.5, 1.0])
    np.testing.assert_allclose(pp.local_rr(rr, 3), [1.0, 1.0, 1.0, 1.0, 1.0])


def test_rhythm_normalise_is_idempotent_and_scale_free() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 1, 2500))
    a = pp.rhythm_normalise(x)
    np.testing.assert_allclose(pp.rhythm_normalise(a), a, atol=1e-5)
    np.testing.assert_allclose(pp.rhythm_normalise(x * 37.0), a, atol=1e-5)


def test_eval_crops_cover_recording() -> None:
    crops = eval_crops(np.arange(30 * 250, dtype=float))
    assert crops.shape == (5, pp.RHYTHM_LEN)
    assert crops[-1, -1] == 30 * 250 - 1
    assert eval_crops(np.ones(2000)).shape == (1, pp.RHYTHM_LEN)


def test_rhythm_rr_features_separate_regular_from_irregular_rhythm() -> None:
    regular = pp.rhythm_rr_features(np.arange(0, pp.RHYTHM_LEN, 200))  # 75 bpm
    assert regular[0] == pytest.approx(0.75)
    assert regular[1:].max() < 1e-6 and regular[7] == 0.0
    rng = np.random.default_rng(3)
    af = np.cumsum(rng.uniform(120, 260, size=20)).astype(int)  # irregularly irregular
    irregular = pp.rhythm_rr_features(af)
    assert irregular[2] > 0.2 and irregular[4] > 0.5 and irregular[6] > 0.3
    few = pp.rhythm_rr_features(np.array([100, 400]))
    assert few[7] == 1.0 and few[1:7].max() == 0.0
    # Peaks outside the window are ignored; the order of the peaks does not matter.
    np.testing.assert_array_equal(pp.rhythm_rr_features(np.r_[-50, af[::-1], 9999]), irregular)


def test_crop_rr_features_follow_the_crops() -> None:
    peaks = np.arange(0, 30 * 250, 200)
    starts = eval_crop_starts(30 * 250)
    assert starts == [0, 1250, 2500, 3750, 5000]
    feats = crop_rr_features(peaks, starts)
    assert feats.shape == (5, pp.N_RHYTHM_RR_FEATURES) and feats.dtype == np.float32
    np.testing.assert_allclose(feats[:, 0], 0.75)
    # A short recording is zero-padded on both sides: its peaks shift with it.
    short = crop_rr_features(np.arange(0, 2000, 200), eval_crop_starts(2000))
    np.testing.assert_array_equal(short[0], pp.rhythm_rr_features(np.arange(0, 2000, 200) + 250))


def test_record_folds_are_patient_wise_and_spread_rare_classes() -> None:
    records = np.repeat(np.array(["a", "b", "c", "d"]), 10)
    labels = np.zeros(40, dtype=np.int64)
    labels[0:5] = 1  # S beats in record a
    labels[10:15] = 1  # and b
    folds = record_folds(records, labels, 2)
    assert set(folds) == {"a", "b", "c", "d"}
    assert folds["a"] != folds["b"]


def test_morphology_features_compare_beat_with_template() -> None:
    k = np.arange(pp.BEAT_LEN)
    narrow = np.exp(-0.5 * ((k - pp.BEAT_PRE) / 3.0) ** 2)
    wide = -1.5 * np.exp(-0.5 * ((k - pp.BEAT_PRE - 5) / 12.0) ** 2)
    seg = np.stack([narrow, wide])[:, None, :].astype(np.float32)
    tmpl = np.stack([narrow, narrow])[:, None, :].astype(np.float32)
    f = pp.morphology_features(seg, tmpl)
    assert f.shape == (2, 4)
    np.testing.assert_allclose(f[0], [1.0, 1.0, 0.0, 1.0], atol=1e-3)
    assert f[1, 0] < 0.5 and f[1, 2] > 1.0  # a wide inverted beat is unlike the template
    ctx = pp.beat_context(np.array([0.5, 0.8]), np.array([1.1, 0.8]), np.array([0.8, 0.8]),
                          seg, tmpl)
    assert ctx.shape == (2, pp.N_CONTEXT_FEATURES) and ctx.dtype == np.float32


def test_segment_dropout_blanks_the_waveform_of_that_share_of_beats() -> None:
    from models.training import BeatTrainConfig, _augment_beats

    seg = np.ones((400, 1, pp.BEAT_LEN), dtype=np.float32)
    rng = np.random.default_rng(0)
    out = _augment_beats(seg, None, BeatTrainConfig(segment_dropout=0.5, max_shift=0), rng)
    blank = np.all(out == 0.0, axis=(1, 2))
    assert 150 < blank.sum() < 250
    assert np.all(out[~blank] > 0.5)  # the rest only rescaled (0.8-1.25)
    kept = _augment_beats(seg, None, BeatTrainConfig(max_shift=0), rng)
    assert not np.any(np.all(kept == 0.0, axis=(1, 2)))


def test_cv_retrains_the_shipped_configuration() -> None:
    from models.packaging import WEIGHTS_DIR, load_metadata
    from models.training import beat_config_of, rhythm_config_of

    beats = load_metadata(WEIGHTS_DIR, "beats")
    cfg = beat_config_of(beats)
    assert (cfg.epochs, cfg.class_weight_power) == (beats["epochs"], beats["class_weight_power"])
    assert beat_config_of(beats, epochs=3).epochs == 3
    rhythm = load_metadata(WEIGHTS_DIR, "rhythm")
    assert rhythm_config_of(rhythm).epochs == rhythm["epochs"]
    assert beat_config_of({}).class_weight_power == 0.6  # metadata without it: the defaults


def test_bandpass_of_many_windows_is_bit_identical_to_one_at_a_time() -> None:
    rng = np.random.default_rng(7)
    xs = [rng.normal(size=2500).cumsum() for _ in range(5)] + [rng.normal(size=17), rng.normal(size=10),
                                                              rng.normal(size=1234)]
    for many, one in zip(pp.ecg_bandpass_many(xs), xs, strict=True):
        np.testing.assert_array_equal(many, pp.ecg_bandpass(one))
