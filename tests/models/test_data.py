"""models/data.py: two-lead beat sets, SVDB reading at 128 Hz, SVDB record names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import wfdb

from models import data as md
from models import preprocess as pp


def _write_record(folder: Path, name: str, fs: int, sig_names: list[str], r_s: np.ndarray,
                  symbols: list[str], seconds: float = 20.0) -> None:
    """A synthetic two-lead record: Gaussian QRS at ``r_s`` (s) on both leads, lead 2
    inverted and half as large, with a beat annotation file."""
    t = np.arange(int(seconds * fs)) / fs
    lead = np.zeros_like(t)
    for r in r_s:
        lead += np.exp(-0.5 * ((t - r) / 0.012) ** 2)
    sig = np.stack([lead, -0.5 * lead], axis=1)
    wfdb.wrsamp(name, fs=fs, units=["mV", "mV"], sig_name=sig_names, p_signal=sig,
                fmt=["16", "16"], write_dir=str(folder))
    wfdb.wrann(name, "atr", np.round(r_s * fs).astype(np.int64), symbol=symbols,
               write_dir=str(folder))


def test_svdb_record_is_resampled_to_the_pipeline_rate_with_both_leads(tmp_path: Path) -> None:
    r_s = np.arange(1.0, 19.0, 0.8)
    symbols = ["N"] * r_s.size
    symbols[10] = "A"  # an S beat
    symbols[15] = "V"
    _write_record(tmp_path, "800", 128, ["ECG1", "ECG2"], r_s, symbols)
    beats = md.load_svdb_beats(tmp_path)
    n = r_s.size - 2  # first and last beat have no RR context
    assert beats.segments.shape == (n, pp.N_LEADS, pp.BEAT_LEN)
    assert set(beats.records.tolist()) == {"svdb800"}
    assert md.is_svdb(beats.records).all()
    # R positions at 250 Hz, labels in AAMI classes
    np.testing.assert_array_equal(beats.r_samples, np.round(np.round(r_s[1:-1] * 128) * 250 / 128))
    assert beats.labels.tolist().count(md.BEAT_CLASSES.index("S")) == 1
    assert beats.labels.tolist().count(md.BEAT_CLASSES.index("V")) == 1
    # The R peak sits at the segment's R position on both leads, the second inverted.
    peak = pp.BEAT_PRE
    assert np.all(np.abs(np.argmax(beats.segments[:, 0], axis=1) - peak) <= 1)
    assert np.all(np.abs(np.argmin(beats.segments[:, 1], axis=1) - peak) <= 1)
    # Each lead scaled by its own QRS amplitude: both about unit peak-to-peak.
    ptp = np.ptp(beats.segments, axis=2)
    assert np.all((ptp > 0.7) & (ptp < 1.3))
    # Context features from the primary lead: RR 0.8 s.
    np.testing.assert_allclose(beats.rr[:, 0], 0.8, atol=0.01)


def test_mlii_is_the_primary_lead_wherever_it_is(tmp_path: Path) -> None:
    assert md.primary_channel(["V5", "MLII"]) == 1  # MIT-BIH 114
    assert md.primary_channel(["MLII", "V1"]) == 0
    assert md.primary_channel(["ECG1", "ECG2"]) == 0
    r_s = np.arange(1.0, 9.0, 1.0)
    _write_record(tmp_path, "114", 360, ["V5", "MLII"], r_s, ["N"] * r_s.size, 10.0)
    ecg, ecg2, pos, _ = md.load_two_lead_ecg(tmp_path, "114")
    assert ecg2 is not None
    # channel 1 (MLII, inverted and halved in this synthetic record) comes first
    assert ecg.min() < -0.2 and ecg.max() < ecg2.max()
    np.testing.assert_array_equal(pos, np.round(np.round(r_s * 360) * 250 / 360))


def test_subsample_majority_keeps_every_minority_beat() -> None:
    labels = np.array([0] * 1000 + [1] * 10 + [2] * 5)
    bs = md.BeatSet(np.zeros((labels.size, 2, pp.BEAT_LEN), np.float32),
                    np.zeros((labels.size, pp.N_CONTEXT_FEATURES), np.float32), labels,
                    np.full(labels.size, "svdb800"), np.arange(labels.size))
    sub = md.subsample_majority(bs, 0.3, seed=1)
    assert (sub.labels == 1).sum() == 10 and (sub.labels == 2).sum() == 5
    assert 230 < (sub.labels == 0).sum() < 370
    assert md.subsample_majority(bs, 1.0, seed=1) is bs


def test_beat_record_source_maps_svdb_names_to_their_folder(tmp_path: Path) -> None:
    assert md.beat_record_source("svdb801", tmp_path / "m", tmp_path / "s") == (tmp_path / "s", "801")
    assert md.beat_record_source("209", tmp_path / "m", tmp_path / "s") == (tmp_path / "m", "209")


def test_rhythm_episodes_map_mitdb_rhythms_to_cinc2017_classes() -> None:
    pos = np.array([0, 100, 500, 900, 1200])
    aux = ["(N", "", "(AFIB", "(P", "(B\x00"]
    eps = md.rhythm_episodes(pos, aux, 2000)
    assert eps == [(0, 500, "N"), (500, 900, "A"), (1200, 2000, "O")]  # paced left out
    chunks = md.episode_chunks(eps, 300)
    assert chunks == [(0, 300, "N"), (500, 800, "A"), (1200, 1500, "O"), (1500, 1800, "O")]
