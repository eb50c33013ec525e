"""The bedside-alarm verifier: is the monitor's alarm false? Pure numpy.

A bedside monitor's life-threatening alarm is worst suppressed when it is true, so the
verifier suppresses one only on *positive evidence* that it is false, in two tiers:

1. **Evidence rules** (:func:`evidence_of_false_alarm`), fixed clinical reasoning on the
   lookback's :class:`~models.verifier_features.AlarmEvidence` with the alarm definitions'
   own numbers (CinC 2015: asystole >= 4 s without QRS, extreme bradycardia < 40 bpm over 5
   beats, extreme tachycardia > 140 bpm over 17, ventricular tachycardia >= 5 ventricular
   beats at > 100 bpm, fibrillation >= 4 s). For example: a pulse wave usable and pulsing
   throughout the 10 s while the ECG "stopped"; a clean ECG lead with beats at a normal rate
   throughout; no ventricular run on any lead while a lead is clean. Each rule says what it
   saw; none is fitted to data.
2. **The learned verifier** (:class:`VerifierModel`): a class-balanced L2 logistic model
   (per-type intercepts, shared evidence weights) over :data:`VERIFIER_FEATURES` (on how
   many leads the alarm's criterion holds and by how much, baseline stability and template
   similarity of each lead, the rhythm model's noise probability, what the two leads agree
   on, the pulse waves' quality), trained on the CinC 2015 records
   (``vitalstream train verifier``). It may suppress an alarm only where the criterion shows
   on at most one ECG lead (an event on one lead is the artefact signature) and some signal
   was usable, and only when its probability that the alarm is true is below a threshold
   chosen, in training, under every true alarm it saw out of fold.

Everything else reaches the care team: ``confirmed`` when a lead meets the criterion,
``unverifiable`` (delivered as well) when nothing could be judged either way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from models.verifier_features import LEADS, PULSES, AlarmEvidence
from stream.device_alarm import VERIFIABLE_ALARM_TYPES

VERIFIER_VERSION = "verifier-1.0.0"
WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "verifier.json"
ALARM_TYPES = VERIFIABLE_ALARM_TYPES


class Verdict(StrEnum):
    CONFIRMED = "confirmed"  # a lead meets the alarm's criterion: delivered
    SUPPRESSED = "suppressed"  # positive evidence that it is false: recorded, not delivered
    UNVERIFIABLE = "unverifiable"  # neither: delivered, saying it could not be verified


@dataclass(frozen=True, slots=True)
class Criterion:
    """An alarm definition on one lead's lookback summary: ``field`` compared with ``bound``
    (``above``: alarming above it; ``inclusive``: the bound itself alarms too)."""

    field: str
    bound: float
    above: bool
    inclusive: bool
    unit: str
    what: str

    def met(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.above:
            return value >= self.bound if self.inclusive else value > self.bound
        return value <= self.bound if self.inclusive else value < self.bound

    @property
    def says(self) -> str:
        return f"{'>' if self.above else '<'}{'=' if self.inclusive else ''} {self.bound:g} {self.unit}"

    def margin(self, value: float) -> float:
        """How far into the alarm side: value / bound (bound / value for a lower bound); > 1 is met."""
        if not math.isfinite(value):
            return math.nan
        return value / self.bound if self.above else self.bound / max(value, 1.0)


# CinC 2015 alarm definitions (Clifford et al. 2016), on each lead.
CRITERIA: dict[str, Criterion] = {
    "asystole": Criterion("pause_max", 4.0, True, True, "s", "longest interval without a QRS"),
    "extreme_brady": Criterion("hr_min5_min", 40.0, False, False, "bpm", "lowest 5-beat heart rate"),
    "extreme_tachy": Criterion("hr_max17_max", 140.0, True, False, "bpm", "highest 17-beat heart rate"),
    "vtach": Criterion("v_run_max", 5.0, True, True, "beats", "longest ventricular run"),
    "vfib": Criterion("vf_s_max", 4.0, True, True, "s", "fibrillatory waveform"),
}
LEAD_NAMES = {"e1": "first ECG lead", "e2": "second ECG lead"}
PULSE_NAMES = {"abp": "arterial line", "ppg": "PPG"}

# Numbers of the evidence rules, each from a clinical definition (none fitted):
PULSE_THROUGH_ASYSTOLE_S = 3.0  # pulses < 3 s apart throughout: not a >= 4 s arrest
BEATS_THROUGH_ASYSTOLE_S = 3.0  # QRS complexes < 3 s apart on a clean lead throughout
NORMAL_RATE_BPM = 50.0  # NEWS2 lower band / the sustained-bradycardia limit
BRADY_PULSE_GAP_S = 1.5  # 60 / 40 bpm: any longer pulse gap is a beat slower than 40
TACHY_NORMAL_BPM = 120.0  # the sustained-tachycardia limit, well below 140
VT_RATE_BPM = 100.0  # ventricular tachycardia is > 100 bpm
VT_NO_RUN_BEATS = 3  # at most 3 consecutive ventricular beats (a triplet is not VT)
NORMAL_BEATS_RUN = 2  # a clean lead with at most a couplet: normal beats
VF_ORGANISED_S = 2.0  # less than 2 s of fibrillatory waveform: an organised rhythm
VF_PULSE_GAP_S = 2.0  # pulses < 2 s apart throughout: perfusing, which VF is not


def _lt(ev: AlarmEvidence, name: str, bound: float) -> bool:
    value = ev.get(name)
    return math.isfinite(value) and value < bound


def _le(ev: AlarmEvidence, name: str, bound: float) -> bool:
    value = ev.get(name)
    return math.isfinite(value) and value <= bound


def _ge(ev: AlarmEvidence, name: str, bound: float) -> bool:
    value = ev.get(name)
    return math.isfinite(value) and value >= bound


def evidence_of_false_alarm(alarm_type: str, ev: AlarmEvidence) -> str | None:
    """The first evidence rule that holds, said in words; None when none does."""
    clean = [lead for lead in LEADS if ev.clean(lead)]
    pulsing = [wave for wave in PULSES if ev.pulse_ok(wave)]
    match alarm_type:
        case "asystole":
            for lead in clean:
                if _lt(ev, f"{lead}_pause_max", BEATS_THROUGH_ASYSTOLE_S):
                    return (f"the {LEAD_NAMES[lead]} was clean throughout with QRS complexes at most "
                            f"{ev.get(f'{lead}_pause_max'):.1f} s apart")
            for wave in pulsing:
                if _lt(ev, f"{wave}_pause_max", PULSE_THROUGH_ASYSTOLE_S):
                    return (f"the {PULSE_NAMES[wave]} pulsed throughout at {ev.get(f'{wave}_rate_median'):.0f} "
                            f"bpm, pulses at most {ev.get(f'{wave}_pause_max'):.1f} s apart")
        case "extreme_brady":
            for lead in clean:
                if _ge(ev, f"{lead}_hr_min5_min", NORMAL_RATE_BPM):
                    return (f"the {LEAD_NAMES[lead]} was clean throughout and its slowest 5 beats ran at "
                            f"{ev.get(f'{lead}_hr_min5_min'):.0f} bpm")
            # A pulse wave may not overrule a clean lead that is clearly slow.
            slow_lead = any(_lt(ev, f"{lead}_hr_min5_min", CRITERIA["extreme_brady"].bound) for lead in clean)
            for wave in pulsing:
                if (not slow_lead and _le(ev, f"{wave}_pause_max", BRADY_PULSE_GAP_S)
                        and _ge(ev, f"{wave}_rate_min", NORMAL_RATE_BPM)):
                    return (f"the {PULSE_NAMES[wave]} pulsed throughout at >= {ev.get(f'{wave}_rate_min'):.0f} "
                            f"bpm with no pulse gap over {ev.get(f'{wave}_pause_max'):.1f} s")
        case "extreme_tachy":
            pulse_max = max((ev.get(f"{w}_rate_max") for w in PULSES if math.isfinite(ev.get(f"{w}_rate_max"))),
                            default=math.nan)
            for lead in clean:
                if (_le(ev, f"{lead}_hr_max17_max", TACHY_NORMAL_BPM)
                        and not (math.isfinite(pulse_max) and pulse_max > TACHY_NORMAL_BPM)):
                    return (f"the {LEAD_NAMES[lead]} was clean throughout and its fastest 17 beats ran at "
                            f"{ev.get(f'{lead}_hr_max17_max'):.0f} bpm")
        case "vtach":
            runs = [ev.get(f"{lead}_v_run_max") for lead in LEADS if math.isfinite(ev.get(f"{lead}_v_run_max"))]
            if clean and runs and max(runs) <= VT_NO_RUN_BEATS and all(
                    _lt(ev, f"{lead}_vf_s_max", VF_ORGANISED_S) for lead in clean):
                return (f"no lead showed more than {max(runs):.0f} consecutive ventricular beats, and the "
                        + " and ".join(LEAD_NAMES[lead] for lead in clean) + " clean throughout")
            for lead in clean:
                if _le(ev, f"{lead}_v_run_max", NORMAL_BEATS_RUN) and _le(ev, f"{lead}_hr_max5_max", VT_RATE_BPM):
                    return (f"the {LEAD_NAMES[lead]} was clean throughout with normal beats, never 5 faster "
                            f"than {ev.get(f'{lead}_hr_max5_max'):.0f} bpm")
        case "vfib":
            for lead in clean:
                if _lt(ev, f"{lead}_vf_s_max", VF_ORGANISED_S) and _lt(ev, f"{lead}_pause_max", VF_ORGANISED_S):
                    return (f"the {LEAD_NAMES[lead]} was clean throughout with an organised rhythm (no "
                            f"fibrillatory stretch of {VF_ORGANISED_S:g} s)")
            for wave in pulsing:
                if _lt(ev, f"{wave}_pause_max", VF_PULSE_GAP_S):
                    return (f"the {PULSE_NAMES[wave]} pulsed throughout at {ev.get(f'{wave}_rate_median'):.0f} "
                            f"bpm, pulses at most {ev.get(f'{wave}_pause_max'):.1f} s apart")
    return None


def criterion_leads(alarm_type: str, ev: AlarmEvidence) -> list[str]:
    """The ECG leads on which the alarm's own definition holds in the lookback."""
    c = CRITERIA[alarm_type]
    return [lead for lead in LEADS if c.met(ev.get(f"{lead}_{c.field}"))]


def criterion_text(alarm_type: str, ev: AlarmEvidence) -> str:
    """E.g. "longest ventricular run 7 beats (first ECG lead), 2 beats (second ECG lead)"."""
    c = CRITERIA[alarm_type]
    parts = [f"{ev.get(f'{lead}_{c.field}'):.{0 if c.unit in ('beats', 'bpm') else 1}f} {c.unit} "
             f"({LEAD_NAMES[lead]})" for lead in LEADS if math.isfinite(ev.get(f"{lead}_{c.field}"))]
    return f"{c.what} " + (", ".join(parts) if parts else "not measured") + f" (alarm definition {c.says})"


def _nanmax(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) if finite else math.nan


def _nanmin(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return min(finite) if finite else math.nan


VERIFIER_FEATURES: tuple[str, ...] = (
    "criterion_leads",  # ECG leads meeting the alarm's definition (0, 1 or 2)
    "criterion_margin_max", "criterion_margin_min",  # value / bound on the most and least alarming lead
    "basqi_min",  # the worse lead's baseline SQI (1 - 0-1 Hz power share): motion, wander
    "pulse_quality",  # the better pulse wave's quality
    "pulse_usable",  # share of windows with a usable pulse wave
    "e1_p_noise",  # the rhythm model's probability that the first lead is noise
    "both_hr_max5_last",  # the rate both leads agree on, in the window covering the alarm
    "e1_template_corr", "e2_template_corr",  # beats against their median beat, per lead
    *(f"type_{t}" for t in ALARM_TYPES),
)


def verifier_features(alarm_type: str, ev: AlarmEvidence) -> np.ndarray:
    """The learned verifier's input (:data:`VERIFIER_FEATURES`; NaN = not measured)."""
    c = CRITERIA[alarm_type]
    margins = [c.margin(ev.get(f"{lead}_{c.field}")) for lead in LEADS]
    present = [lead for lead in LEADS if ev.get(f"{lead}_present_throughout") > 0]
    row = [
        float(len(criterion_leads(alarm_type, ev))) if present else math.nan,
        _nanmax(margins), _nanmin(margins),
        _nanmin([ev.get(f"{lead}_basqi_median") for lead in LEADS]),
        _nanmax([ev.get(f"{wave}_quality_median") for wave in PULSES]),
        _nanmax([ev.get(f"{wave}_usable_throughout") for wave in PULSES]),
        ev.get("e1_p_noise_median"),
        ev.get("both_hr_max5_last"),
        ev.get("e1_template_corr_median"), ev.get("e2_template_corr_median"),
        *(1.0 if alarm_type == t else 0.0 for t in ALARM_TYPES),
    ]
    return np.asarray(row, dtype=np.float64)


def may_learn_to_suppress(alarm_type: str, ev: AlarmEvidence) -> bool:
    """Where the learned verifier may suppress: the alarm's criterion holds on at most one
    ECG lead (an event on one lead only is the artefact signature; a rhythm shows on both),
    and some signal was usable in at least half the lookback (without one there is no
    evidence of anything)."""
    if len(criterion_leads(alarm_type, ev)) > 1:
        return False
    usable = [ev.get(f"{s}_usable_throughout") for s in (*LEADS, *PULSES)]
    return any(math.isfinite(u) and u >= 0.5 for u in usable)


@dataclass(frozen=True)
class VerifierModel:
    """Median imputation (+ an indicator for features missing in training), standardisation
    and a logistic model, exported from scikit-learn (``models.verifier_training``) as plain
    numbers: inference is a dot product."""

    features: tuple[str, ...]
    medians: np.ndarray
    indicator_of: tuple[int, ...]  # features that get a missing-value indicator column
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float  # suppress (where allowed) when p(true alarm) < threshold
    # The alarm types it may suppress: those with enough alarms of both kinds in its training
    # data (models.verifier_training.MIN_ALARMS_PER_CLASS); for the others it only reports p.
    suppresses: tuple[str, ...] = ()
    version: str = VERIFIER_VERSION
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = WEIGHTS_PATH) -> VerifierModel:
        return cls.load_dict(json.loads(Path(path).read_text()), str(path))

    @classmethod
    def load_dict(cls, d: dict[str, Any], source: str = "verifier weights") -> VerifierModel:
        if tuple(d["features"]) != VERIFIER_FEATURES:
            raise ValueError(f"{source}: verifier features {d['features']} differ from this code's "
                             f"{list(VERIFIER_FEATURES)}; retrain with `vitalstream train verifier`")
        return cls(tuple(d["features"]), np.asarray(d["medians"], dtype=np.float64),
                   tuple(d["indicator_of"]), np.asarray(d["mean"], dtype=np.float64),
                   np.asarray(d["scale"], dtype=np.float64), np.asarray(d["coef"], dtype=np.float64),
                   float(d["intercept"]), float(d["threshold"]), tuple(d.get("suppresses", ())), d["version"],
                   {k: v for k, v in d.items() if k not in _ARRAY_KEYS})

    def to_dict(self) -> dict[str, Any]:
        return {**self.metadata, "version": self.version, "features": list(self.features),
                "medians": _plain(self.medians), "indicator_of": list(self.indicator_of),
                "mean": _plain(self.mean), "scale": _plain(self.scale), "coef": _plain(self.coef),
                "intercept": self.intercept, "threshold": self.threshold, "suppresses": list(self.suppresses)}

    def _standardised(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        missing = ~np.isfinite(x)
        filled = np.where(missing, self.medians[None, :], x)
        full = np.hstack([filled, missing[:, list(self.indicator_of)].astype(np.float64)])
        return (full - self.mean) / self.scale

    def probability(self, x: np.ndarray) -> np.ndarray:
        """p(the alarm is true) for feature rows ``(n, len(features))`` or one row."""
        z = self._standardised(x) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def strongest(self, x: np.ndarray, n: int = 2) -> list[tuple[str, float]]:
        """The ``n`` features pushing hardest towards "false alarm" for one row: (name, value)."""
        contrib = self._standardised(x)[0] * self.coef
        names = list(self.features) + [f"{self.features[i]} missing" for i in self.indicator_of]
        values = list(np.asarray(x, dtype=np.float64)) + [1.0] * len(self.indicator_of)
        order = [i for i in np.argsort(contrib) if contrib[i] < 0 and not names[i].startswith("type_")]
        return [(names[i], float(values[i])) for i in order[:n]]


_ARRAY_KEYS = {"features", "medians", "indicator_of", "mean", "scale", "coef", "intercept", "threshold", "version",
               "suppresses"}


def _plain(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float64)]


@dataclass(frozen=True, slots=True)
class Verification:
    verdict: Verdict
    reason: str
    p_true: float | None  # the learned verifier's probability that the alarm is true
    value: float | None  # the criterion's most alarming value over the leads
    windows: int


def verify(alarm_type: str, ev: AlarmEvidence, model: VerifierModel | None) -> Verification:
    """Decide one alarm on its lookback evidence (see the module docstring)."""
    c = CRITERIA[alarm_type]
    values = [ev.get(f"{lead}_{c.field}") for lead in LEADS]
    worst = (_nanmax(values) if c.above else _nanmin(values))
    worst_value = None if not math.isfinite(worst) else round(worst, 2)
    if ev.windows == 0:
        return Verification(Verdict.UNVERIFIABLE, "no data in the 10 s before the alarm", None, None, 0)
    measured = criterion_text(alarm_type, ev)
    p: float | None = None
    x = verifier_features(alarm_type, ev)
    if model is not None:
        p = round(float(model.probability(x)[0]), 3)
    evidence = evidence_of_false_alarm(alarm_type, ev)
    said_p = "" if p is None else f"; verifier p(true) {p:.2f}"
    if evidence is not None:
        return Verification(Verdict.SUPPRESSED, f"evidence it is false: {evidence}; {measured}{said_p}",
                            p, worst_value, ev.windows)
    if (model is not None and p is not None and p < model.threshold and alarm_type in model.suppresses
            and may_learn_to_suppress(alarm_type, ev)):
        why = ", ".join(f"{name} {value:.2f}" for name, value in model.strongest(x))
        on = criterion_leads(alarm_type, ev)
        where = f"on the {LEAD_NAMES[on[0]]} only" if on else "on no lead"
        return Verification(Verdict.SUPPRESSED,
                            f"verifier {model.version}: p(true) {p:.2f} below {model.threshold:.2f}, the "
                            f"event {where} (strongest: {why}); {measured}", p, worst_value, ev.windows)
    if criterion_leads(alarm_type, ev):
        return Verification(Verdict.CONFIRMED, f"{measured}{said_p}", p, worst_value, ev.windows)
    return Verification(Verdict.UNVERIFIABLE, f"no evidence that it is false, none that it is true: "
                        f"{measured}{said_p}", p, worst_value, ev.windows)
