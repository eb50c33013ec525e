"""The bedside-alarm verifier: evidence rows, lookback summaries, rules, the learned model
and its record-wise cross-validation (models/verifier*.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from models.verifier import (
    ALARM_TYPES,
    VERIFIER_FEATURES,
    Verdict,
    VerifierModel,
    criterion_leads,
    evidence_of_false_alarm,
    may_learn_to_suppress,
    verifier_features,
    verify,
)
from models.verifier_features import WINDOW_FIELDS, AlarmEvidence, alarm_evidence, window_evidence
from models.verifier_training import (
    AlarmSample,
    _arrays,
    _pipeline,
    cross_validate,
    figures,
    fit_verifier,
    in_sample,
    sample_from_findings,
)
from stream.device_alarm import VERIFIABLE_ALARM_TYPES
from tests.alerting.conftest import HOP_MS, T0, abp, ecg, finding, ppg


def test_window_rows_have_every_field_and_nan_for_what_was_not_measured() -> None:
    row = window_evidence(finding(0, ecg=ecg(), ecg2=None, ppg=ppg()))
    assert len(row) == len(WINDOW_FIELDS)
    col = dict(zip(WINDOW_FIELDS, row, strict=True))
    assert col["e1_present"] == 1.0 and col["e1_hr_min5"] == 66.0 and col["e1_v_run"] == 0.0
    assert col["e2_present"] == 0.0 and math.isnan(col["e2_hr"]) and math.isnan(col["both_hr_max5"])
    assert col["abp_present"] == 0.0 and col["ppg_pulsatile"] == 1.0 and col["ppg_rate"] == 70.0
    off = dict(zip(WINDOW_FIELDS, window_evidence(finding(0, ecg=ecg(lead_off=True))), strict=True))
    assert off["e1_present"] == 0.0 and math.isnan(off["e1_pause"])
    # Rounded to 3 significant digits: the state keeps ~15 rows per patient.
    r = dict(zip(WINDOW_FIELDS, window_evidence(finding(0, ecg=ecg(hr_max_17beats=123.456))), strict=True))
    assert r["e1_hr_max17"] == 123.0


def test_the_lookback_is_the_10_s_before_the_alarm_and_the_window_covering_it() -> None:
    windows = [finding(i, ecg=ecg(max_pause_s=float(i))) for i in range(12)]
    rows = [window_evidence(f) for f in windows]
    times = [f.t_ms for f in windows]
    alarm_ms = T0 + 9 * HOP_MS - 500
    ev = alarm_evidence(rows, times, alarm_ms, decide_ms=T0 + 9 * HOP_MS)
    # windows ending in [alarm - 10 s, decide]: i = 4..9
    assert ev.windows == 6 and ev.get("e1_pause_max") == 9.0
    assert ev.clean("e1") and not ev.clean("e2") and not ev.pulse_ok("ppg")
    assert alarm_evidence([], [], alarm_ms, alarm_ms).windows == 0


def _ev(**values: float) -> AlarmEvidence:
    base = {"e1_present_throughout": 1.0, "e1_usable_throughout": 1.0, "e2_present_throughout": 0.0,
            "e2_usable_throughout": 0.0, "abp_usable_throughout": 0.0, "abp_pulsatile_throughout": 0.0,
            "ppg_usable_throughout": 0.0, "ppg_pulsatile_throughout": 0.0}
    return AlarmEvidence({**base, **values}, 6)


def test_each_rule_needs_a_signal_clean_throughout() -> None:
    pulsing = {"abp_usable_throughout": 1.0, "abp_pulsatile_throughout": 1.0, "abp_pause_max": 1.0,
               "abp_rate_median": 72.0}
    assert "arterial line pulsed throughout" in (evidence_of_false_alarm(
        "asystole", _ev(e1_pause_max=6.0, e1_usable_throughout=0.5, **pulsing)) or "")
    assert evidence_of_false_alarm("asystole", _ev(e1_pause_max=6.0, e1_usable_throughout=0.5,
                                                   **{**pulsing, "abp_pulsatile_throughout": 0.83})) is None
    assert evidence_of_false_alarm("vfib", _ev(e1_vf_s_max=0.0, e1_pause_max=1.0)) is not None
    assert evidence_of_false_alarm("vfib", _ev(e1_vf_s_max=5.0, e1_pause_max=1.0)) is None


def test_not_seeing_the_event_is_not_evidence_without_a_clean_signal() -> None:
    # No ventricular run on the lead, but the lead is never clean: no rule may suppress.
    noisy = _ev(e1_usable_throughout=0.0, e1_v_run_max=0.0, e1_hr_max5_max=80.0)
    assert evidence_of_false_alarm("vtach", noisy) is None
    assert evidence_of_false_alarm("extreme_tachy", _ev(e1_usable_throughout=0.5, e1_hr_max17_max=90.0)) is None
    # A run of 4 on the noisy second lead keeps a clean-but-fast first lead from deciding.
    run_on_noisy = _ev(e1_v_run_max=1.0, e1_hr_max5_max=125.0, e1_vf_s_max=0.0, e2_present_throughout=1.0,
                       e2_usable_throughout=0.5, e2_v_run_max=4.0)
    assert evidence_of_false_alarm("vtach", run_on_noisy) is None


def test_a_pulse_wave_cannot_overrule_a_clean_clearly_slow_lead() -> None:
    pulse = {"ppg_usable_throughout": 1.0, "ppg_pulsatile_throughout": 1.0, "ppg_pause_max": 1.0,
             "ppg_rate_min": 72.0}
    assert evidence_of_false_alarm("extreme_brady", _ev(e1_hr_min5_min=36.0, **pulse)) is None
    assert evidence_of_false_alarm("extreme_brady", _ev(e1_usable_throughout=0.5, e1_hr_min5_min=36.0,
                                                        **pulse)) is not None


def test_criterion_features_count_the_leads_that_meet_the_definition() -> None:
    ev = _ev(e1_v_run_max=6.0, e2_present_throughout=1.0, e2_v_run_max=2.0)
    assert criterion_leads("vtach", ev) == ["e1"]
    x = verifier_features("vtach", ev)
    assert x.shape == (len(VERIFIER_FEATURES),)
    named = dict(zip(VERIFIER_FEATURES, x, strict=True))
    assert named["criterion_leads"] == 1.0 and named["criterion_margin_max"] == pytest.approx(6 / 5)
    assert named["type_vtach"] == 1.0 and named["type_asystole"] == 0.0
    assert may_learn_to_suppress("vtach", ev)
    assert not may_learn_to_suppress("vtach", _ev(e1_v_run_max=6.0, e2_present_throughout=1.0, e2_v_run_max=7.0))
    nothing_usable = _ev(e1_usable_throughout=0.0, e1_v_run_max=6.0)
    assert not may_learn_to_suppress("vtach", nothing_usable)


def test_the_verifiers_types_are_the_message_contracts() -> None:
    assert ALARM_TYPES == VERIFIABLE_ALARM_TYPES


def _synthetic_samples(n: int, seed: int) -> list[AlarmSample]:
    """VT alarms whose truth follows the leads' agreement and the baseline SQI, plus
    asystole alarms that a pulsing arterial line decides."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        true = rng.random() < 0.35
        basqi = rng.uniform(0.85, 1.0) if true else rng.uniform(0.3, 0.95)
        runs = (rng.integers(5, 9), rng.integers(4, 9)) if true else (rng.integers(3, 8), rng.integers(0, 3))
        ev = _ev(e1_v_run_max=float(runs[0]), e2_present_throughout=1.0, e2_usable_throughout=0.5,
                 e2_v_run_max=float(runs[1]), e1_basqi_median=basqi, e2_basqi_median=basqi,
                 e1_usable_throughout=1.0 if true else 0.5, e1_hr_max5_max=150.0, both_hr_max5_last=140.0)
        out.append(AlarmSample(f"v{i}", "vtach", bool(true), ev))
    for i in range(n // 4):
        true = i % 5 == 0
        values = {"e1_pause_max": 6.0, "e1_usable_throughout": 0.5}
        if not true:
            values.update(abp_usable_throughout=1.0, abp_pulsatile_throughout=1.0, abp_pause_max=1.0,
                          abp_rate_median=70.0)
        out.append(AlarmSample(f"a{i}", "asystole", true, _ev(**values)))
    return out


def test_the_exported_model_computes_what_scikit_learn_fitted() -> None:
    samples = _synthetic_samples(120, 0)
    model = fit_verifier(samples, c=0.3)
    x, y, ruled, _ = _arrays(samples)
    reference = _pipeline(0.3).fit(x[~ruled], y[~ruled])
    np.testing.assert_allclose(model.probability(x), reference.predict_proba(x)[:, 1], rtol=1e-9, atol=1e-12)
    # The JSON round trip keeps every number, and refuses weights of other features.
    again = VerifierModel.load_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_allclose(again.probability(x), model.probability(x))
    bad = {**model.to_dict(), "features": ["x"]}
    with pytest.raises(ValueError, match="retrain"):
        VerifierModel.load_dict(bad)
    # No true alarm the model may suppress got a probability below the threshold out of fold.
    assert 0.0 < model.threshold <= 1.0


def test_cross_validation_scores_every_alarm_out_of_fold() -> None:
    samples = _synthetic_samples(160, 1)
    cv = cross_validate(samples, folds=4, repeats=2, n_boot=50)
    assert len(cv["decisions"]) == len(samples)
    assert sum(cv["counts"][k] for k in ("TP", "FP", "TN", "FN")) == len(samples)
    assert len(cv["repeats"]["scores"]) == 2 and cv["score_95ci"][0] <= cv["score"] <= cv["score_95ci"][1]
    # The pulsing arterial line decides every false asystole, in and out of sample.
    assert cv["per_type"]["asystole"]["FP"] == 0
    _, fitted = in_sample(samples)
    assert fitted["score"] >= cv["score"] - 15  # the in-sample figure is reported beside it


def test_figures_count_a_suppressed_true_alarm_five_times() -> None:
    s = [AlarmSample("r1", "vtach", True, _ev()), AlarmSample("r2", "vtach", False, _ev())]
    f = figures(s, [Verdict.SUPPRESSED, Verdict.SUPPRESSED])
    assert f["counts"]["FN"] == 1 and f["counts"]["TN"] == 1 and f["score"] == round(100 * 1 / 6, 2)
    assert f["true_alarms_suppressed"] == 1 and f["per_type"]["vtach"]["true_suppressed_pct"] == 100.0


def test_a_sample_is_built_from_findings_as_the_aggregator_decides() -> None:
    windows = [finding(i, ecg=ecg(), abp=abp()) for i in range(8)]
    s = sample_from_findings("r", "asystole", False, T0 + 7 * HOP_MS, windows)
    assert s.evidence.windows == 6 and verify("asystole", s.evidence, None).verdict is Verdict.SUPPRESSED


def test_the_shipped_verifier_loads_and_says_how_it_was_validated() -> None:
    model = VerifierModel.load()
    assert model.features == VERIFIER_FEATURES and 0.0 < model.threshold < 0.5
    cv = model.metadata["cv"]
    assert cv["method"].startswith("record-wise") and cv["score"] is not None
    assert model.metadata["in_sample"]["score"] is not None
    # It may suppress only the types it saw enough of (the shared records: VT alone).
    assert model.suppresses == ("vtach",)


def test_the_learned_tier_leaves_types_it_saw_too_few_of_to_the_rules() -> None:
    samples = _synthetic_samples(120, 3)  # ~40 true, ~80 false VT; 30 asystole (6 true)
    model = fit_verifier(samples)
    assert model.suppresses == ("vtach",)
    # An asystole alarm the model scores as false, with nothing for the rules: delivered.
    ev = _ev(e1_pause_max=6.0, e1_usable_throughout=0.5, e2_present_throughout=1.0, e2_pause_max=1.0,
             e2_usable_throughout=0.5)
    assert verify("asystole", ev, model).verdict is not Verdict.SUPPRESSED
