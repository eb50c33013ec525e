"""Beat metrics: Se/PPV per class, with or without bootstrap confidence intervals."""

from __future__ import annotations

import numpy as np

from models.evaluation import beat_metrics


def test_beat_metrics_without_resampling_gives_the_same_figures_and_no_intervals() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 0, 1])
    y_pred = np.array([0, 1, 0, 1, 0, 2, 2, 0, 0, 1])
    records = np.array(["a"] * 5 + ["b"] * 5)
    full = beat_metrics(y_true, y_pred, records, n_boot=200)
    bare = beat_metrics(y_true, y_pred, records, n_boot=0)
    for name in ("N", "S", "V"):
        assert (bare["classes"][name]["se"], bare["classes"][name]["ppv"]) == (
            full["classes"][name]["se"], full["classes"][name]["ppv"])
        assert bare["classes"][name]["se_ci95"] == [None, None]
        low, high = full["classes"][name]["se_ci95"]
        assert low <= full["classes"][name]["se"] <= high
    assert bare["classes"]["S"]["se"] == 66.67 and bare["classes"]["S"]["ppv"] == 66.67
    assert bare["accuracy"] == full["accuracy"] == 70.0
