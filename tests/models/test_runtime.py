from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models import preprocess as pp
from models.runtime import ModelOutputs, ModelRuntime, _longest_v_run
from stream.window_analysis import WindowAnalysis


def test_load_default_and_version(runtime: ModelRuntime) -> None:
    assert runtime.model_version.startswith("beats-")
    assert "+rhythm-" in runtime.model_version
    assert not runtime.beat_model.training and not runtime.rhythm_model.training


def test_weights_are_small() -> None:
    weights = Path(__file__).resolve().parents[2] / "models" / "weights"
    for name in ("beats.pt", "rhythm.pt"):
        assert (weights / name).stat().st_size < 2_000_000


def test_predict_deterministic_and_normalised(runtime: ModelRuntime) -> None:
    rng = np.random.default_rng(0)
    seg = rng.normal(size=(8, 1, pp.BEAT_LEN)).astype(np.float32)
    rr = pp.beat_context(np.full(8, 0.8), np.full(8, 0.8), np.full(8, 0.8), seg, seg)
    a = runtime.predict_beats(seg, rr)
    b = runtime.predict_beats(seg.copy(), rr.copy())
    assert a.shape == (8, 5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-5)
    x = rng.normal(size=(3, 1, pp.RHYTHM_LEN)).astype(np.float32)
    p1, p2 = runtime.predict_rhythm(x), runtime.predict_rhythm(x)
    assert p1.shape == (3, 4)
    np.testing.assert_array_equal(p1, p2)
    # Batch composition must not change a window's result (eval-mode BatchNorm).
    np.testing.assert_allclose(runtime.predict_rhythm(x[:1]), p1[:1], atol=1e-5)


@pytest.mark.parametrize(
    ("segments", "rr", "match"),
    [
        (np.zeros((2, pp.BEAT_LEN), np.float32), np.ones((2, 10), np.float32), "3 dimensions"),
        (np.zeros((2, 1, 100), np.float32), np.ones((2, 10), np.float32), "must be 176"),
        (np.zeros((2, 1, pp.BEAT_LEN), np.float64), np.ones((2, 10), np.float32), "float32"),
        (np.full((2, 1, pp.BEAT_LEN), np.nan, np.float32), np.ones((2, 10), np.float32), "NaN"),
        (np.zeros((2, 1, pp.BEAT_LEN), np.float32), np.ones((3, 10), np.float32), "disagree"),
        (np.zeros((2, 1, pp.BEAT_LEN), np.float32), np.ones((2, 4), np.float32), "must be 10"),
        (np.zeros((2, 3, pp.BEAT_LEN), np.float32), np.ones((2, 10), np.float32), "1 or 2 leads"),
    ],
)
def test_predict_beats_rejects_malformed(runtime: ModelRuntime, segments, rr, match) -> None:
    with pytest.raises(ValueError, match=match):
        runtime.predict_beats(segments, rr)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.zeros((2, pp.RHYTHM_LEN), np.float32), "3 dimensions"),
        (np.zeros((2, 2, pp.RHYTHM_LEN), np.float32), "must be 1"),
        (np.zeros((1, 1, 100), np.float32), "at least 2 s"),
        ([[0.0]], "numpy array"),
        (np.full((1, 1, pp.RHYTHM_LEN), np.inf, np.float32), "NaN or infinite"),
    ],
)
def test_predict_rhythm_rejects_malformed(runtime: ModelRuntime, x, match) -> None:
    with pytest.raises(ValueError, match=match):
        runtime.predict_rhythm(x)


def test_predict_rhythm_rr_features_are_checked_and_used(runtime: ModelRuntime) -> None:
    assert runtime.rhythm_model.n_rr == pp.N_RHYTHM_RR_FEATURES
    x = np.random.default_rng(1).normal(size=(2, 1, pp.RHYTHM_LEN)).astype(np.float32)
    with pytest.raises(ValueError, match="must be 8"):
        runtime.predict_rhythm(x, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="disagree"):
        runtime.predict_rhythm(x, np.zeros((3, pp.N_RHYTHM_RR_FEATURES), np.float32))
    regular = np.stack([pp.rhythm_rr_features(np.arange(100, pp.RHYTHM_LEN, 200))] * 2)
    beats = np.cumsum([100, 140, 260, 170, 230, 120, 250, 150, 210, 180])
    irregular = np.stack([pp.rhythm_rr_features(beats)] * 2)
    assert not np.allclose(runtime.predict_rhythm(x, regular), runtime.predict_rhythm(x, irregular))


def test_window_without_ecg_gives_empty_outputs(runtime: ModelRuntime) -> None:
    out = runtime.analyse([WindowAnalysis(patient_id="p-none", t_ms=10_000, window_s=10.0)])
    assert out == [ModelOutputs()]


def test_longest_v_run_and_rate() -> None:
    t = np.arange(8) * 500.0  # 120 bpm
    length, rate = _longest_v_run(t, ["N", "V", "V", "V", "N", "V", "V", None])
    assert length == 3
    assert rate == pytest.approx(120.0)
    assert _longest_v_run(t, ["N"] * 8) == (0, None)


def _synthetic_window(patient: str, t_ms: int, beats_ms: np.ndarray, new_from_ms: float,
                      fs: float = 250.0) -> WindowAnalysis:
    """A 10-s window with narrow Gaussian 'QRS' complexes at the given absolute times."""
    n = int(10 * fs)
    start = t_ms - 10_000
    x = np.zeros(n)
    inside = beats_ms[(beats_ms >= start) & (beats_ms < t_ms)]
    samples = np.round((inside - start) * fs / 1000).astype(np.int64)
    k = np.arange(n)
    for s in samples:
        x += np.exp(-0.5 * ((k - s) / 3.0) ** 2)
    return WindowAnalysis(patient_id=patient, t_ms=t_ms, window_s=10.0, ecg_fs=fs,
                          ecg_window=x.astype(np.float32), beat_samples=samples,
                          beat_is_new=inside >= new_from_ms,
                          rr_history_ms=np.full(5, 800.0))


def test_each_beat_classified_once_across_hops(runtime: ModelRuntime) -> None:
    rt = ModelRuntime(runtime.beat_model, runtime.rhythm_model, runtime.vf_model,
                      runtime.beat_meta, runtime.rhythm_meta)
    beats = np.arange(100, 40_000, 800.0)
    total = 0
    prev_end = 0
    for t_ms in range(10_000, 40_001, 2000):
        w = _synthetic_window("p1", t_ms, beats, new_from_ms=prev_end)
        prev_end = t_ms
        out = rt.analyse([w])[0]
        total += sum(out.beat_counts.values())
        assert out.rhythm in {"N", "A", "O", "~"}
        assert set(out.rhythm_probs) == {"N", "A", "O", "~"}
    # Every beat but the last (no post-RR yet) is classified exactly once; the first
    # gets its pre-RR from the RR history.
    assert total == beats.size - 1


def test_batches_many_patients_in_one_call(runtime: ModelRuntime) -> None:
    rt = ModelRuntime(runtime.beat_model, runtime.rhythm_model, runtime.vf_model,
                      runtime.beat_meta, runtime.rhythm_meta)
    beats = np.arange(100, 10_000, 800.0)
    windows = [_synthetic_window(f"p{i}", 10_000, beats, new_from_ms=0) for i in range(5)]
    windows.insert(2, WindowAnalysis(patient_id="gap", t_ms=10_000, window_s=10.0))
    out = rt.analyse(windows)
    assert len(out) == 6
    assert out[2] == ModelOutputs()
    counts = [sum(o.beat_counts.values()) for i, o in enumerate(out) if i != 2]
    assert len(set(counts)) == 1 and counts[0] == beats.size - 1


def test_the_second_lead_is_classified_in_the_same_batch_with_its_own_memory(runtime: ModelRuntime) -> None:
    from dataclasses import replace

    from stream.window_analysis import LeadInput

    rt = ModelRuntime(runtime.beat_model, runtime.rhythm_model, runtime.vf_model,
                      runtime.beat_meta, runtime.rhythm_meta)
    beats = np.arange(100, 40_000, 800.0)
    fast = np.arange(100, 40_000, 400.0)  # the second lead sees other beats (its own memory)
    first_total = second_total = 0
    prev_end = 0
    for t_ms in range(10_000, 40_001, 2000):
        w = _synthetic_window("p1", t_ms, beats, new_from_ms=prev_end)
        lead2 = _synthetic_window("p1", t_ms, fast, new_from_ms=prev_end)
        prev_end = t_ms
        w = replace(w, ecg2_input=LeadInput(lead2.ecg_fs or 250.0, lead2.ecg_window, lead2.beat_samples,
                                            lead2.beat_is_new, lead2.rr_history_ms))
        out = rt.analyse([w])[0]
        assert out.second_lead is not None and out.second_lead.second_lead is None
        assert out.second_lead.rhythm is None and out.second_lead.vf_score is not None  # no rhythm model
        first_total += sum(out.beat_counts.values())
        second_total += sum(out.second_lead.beat_counts.values())
    assert first_total == beats.size - 1 and second_total == fast.size - 1
    rt.forget("p1")
    assert rt._patients == {}


def test_a_two_lead_beat_model_takes_the_second_lead_and_works_without_it(runtime: ModelRuntime) -> None:
    from dataclasses import replace

    import torch

    from models.architecture import BeatNet
    from models.runtime import second_lead_segments
    from stream.window_analysis import LeadInput

    torch.manual_seed(0)
    rt = ModelRuntime(BeatNet(n_leads=2).eval(), runtime.rhythm_model, runtime.vf_model,
                      {**runtime.beat_meta, "n_leads": 2}, runtime.rhythm_meta)
    beats = np.arange(100, 10_000, 800.0)
    w = _synthetic_window("p1", 10_000, beats, new_from_ms=0)
    r = np.asarray(w.beat_samples)
    assert not np.any(second_lead_segments(w, r))  # no second lead: zeros
    lead2 = _synthetic_window("p1", 10_000, beats, new_from_ms=0)
    inverted = LeadInput(lead2.ecg_fs or 250.0, -np.asarray(lead2.ecg_window), lead2.beat_samples,
                         lead2.beat_is_new, lead2.rr_history_ms)
    two = replace(w, ecg2_input=inverted)
    seg2 = second_lead_segments(two, r)
    assert seg2.shape == (r.size, 1, pp.BEAT_LEN)
    assert np.all(np.abs(np.argmin(seg2[1:-1, 0], axis=1) - pp.BEAT_PRE) <= 2)  # at the R peaks
    one_out = rt.analyse([w])[0]
    rt.forget("p1")
    two_out = rt.analyse([two])[0]
    assert sum(one_out.beat_counts.values()) == sum(two_out.beat_counts.values()) == beats.size - 1
    assert two_out.second_lead is not None  # the second lead still gets its own classification
    segs = np.random.default_rng(0).normal(size=(4, 2, pp.BEAT_LEN)).astype(np.float32)
    ctx = pp.beat_context(np.full(4, 0.8), np.full(4, 0.8), np.full(4, 0.8), segs[:, :1], segs[:, :1])
    blank = segs.copy()
    blank[:, 1] = 0.0
    np.testing.assert_allclose(rt.predict_beats(blank, ctx), rt.predict_beats(segs[:, :1].copy(), ctx), atol=1e-6)
