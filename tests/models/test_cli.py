"""`vitalstream eval beats|rhythm --json` on a little real data (fast, shipped weights), the CNN
CV cache key, and `eval rhythm-curve` on synthetic recordings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stream.cli.main import app


@pytest.mark.realdata
def test_eval_beats_json(data_root: Path, tmp_path: Path) -> None:
    mitdb = data_root / "mitdb"
    if not (mitdb / "119.hea").exists():
        pytest.skip("MIT-BIH data not present")
    res = CliRunner().invoke(app, ["eval", "beats", "--data-dir", str(mitdb), "--records", "119",
                                   "--json", "--cache-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):])
    assert out["records"] == 1 and out["beats"] > 1900
    assert set(out["classes"]) == {"N", "S", "V", "F"}
    assert out["classes"]["V"]["se"] > 90
    assert out["model_version"].startswith("beats-")


@pytest.mark.realdata
def test_eval_rhythm_json(data_root: Path, tmp_path: Path) -> None:
    cinc = data_root / "cinc2017"
    if not (cinc / "REFERENCE.csv").exists():
        pytest.skip("CinC 2017 data not present")
    res = CliRunner().invoke(app, ["eval", "rhythm", "--data-dir", str(cinc), "--records",
                                   "A00003,A00006,A00008,A00009,A00054", "--json",
                                   "--cache-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):])
    assert out["records"] == 5
    assert set(out["f1"]) == {"N", "A", "O", "~"}
    assert 0.0 <= out["f1_mean_nao"] <= 1.0


def test_cnn_cv_cache_is_keyed_by_configuration(tmp_path: Path) -> None:
    """Held-out CNN probabilities are reused only for the same training configuration (and
    the same training code, hashed into the name)."""
    from stream.cli.models_cmd import _cnn_cv_cache

    config = {"epochs": 10, "class_weight_power": 0.3, "segment_dropout": 0.0, "seed": 7,
              "folds": 5, "noise": True}
    same = _cnn_cv_cache(tmp_path, dict(config))
    assert same == _cnn_cv_cache(tmp_path, config) and same.parent == tmp_path
    assert _cnn_cv_cache(tmp_path, {**config, "seed": 8}) != same
    assert _cnn_cv_cache(tmp_path, {**config, "noise": False}) != same


def test_rhythm_curve_reports_one_point_per_share_and_plots_it(monkeypatch, tmp_path: Path) -> None:
    """`eval rhythm-curve` on synthetic recordings (the loader patched): one CV per share on
    the same folds, JSON with each share's F1, and the plot."""
    import numpy as np

    from models import data as md

    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, 3] * 6)
    t = np.arange(2500) / 250.0
    signals = [(np.sin(2 * np.pi * (1.0 + 0.2 * lab) * t) ** 15 + 0.05 * rng.standard_normal(t.size))
               .astype(np.float32) for lab in labels]
    monkeypatch.setattr(md, "load_cinc2017", lambda data_dir, cache_dir=None: (
        [f"S{i:04d}" for i in range(labels.size)], signals, labels))
    res = CliRunner().invoke(app, ["eval", "rhythm-curve", "--data-dir", str(tmp_path), "--shares", "0.5,1.0",
                                   "--epochs", "1", "--cv-folds", "2", "--threads", "1", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{"):])
    assert [p["train_share"] for p in out["points"]] == [0.5, 1.0]
    assert [p["training_recordings_per_fold"] for p in out["points"]] == [6, 12]
    assert all(0.0 <= p["f1_mean_nao"] <= 1.0 and set(p["f1"]) == {"N", "A", "O", "~"} for p in out["points"])
    assert json.loads((tmp_path / "rhythm_curve.json").read_text())["points"] == out["points"]
    assert (tmp_path / "rhythm_curve.png").stat().st_size > 1000


@pytest.mark.parametrize("shares", ["0.5,x", "0,1", "1.5"])
def test_rhythm_curve_refuses_bad_shares_before_loading(monkeypatch, tmp_path: Path, shares: str) -> None:
    from models import data as md

    monkeypatch.setattr(md, "load_cinc2017", lambda *a, **k: pytest.fail("loaded before checking --shares"))
    res = CliRunner().invoke(app, ["eval", "rhythm-curve", "--data-dir", str(tmp_path), "--shares", shares])
    assert res.exit_code == 2 and "share" in res.output and f"{shares!r}" in res.output
