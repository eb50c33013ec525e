"""What a bedside alarm is verified on: the evidence of the windows around it. Pure numpy.

Two steps, so that the aggregator keeps only a compact row per window in its state:

1. :func:`window_evidence` -- one :class:`~stream.findings.VitalsFinding` (one 10-s window)
   to a fixed-order row of numbers (:data:`WINDOW_FIELDS`; NaN = not measured) from every
   signal the window has: both ECG leads (rates, pauses, beat classes and V runs,
   fibrillation, quality indices), the two leads together, the arterial line and the PPG.
2. :func:`alarm_evidence` -- the rows of the windows ending in the alarm's *lookback* (the
   10 s before it, and the window covering it: CinC 2015 judged alarms on the 10 s before
   them) to an :class:`AlarmEvidence`: each signal's worst value of each alarm criterion,
   how usable it was throughout, and what the two leads agreed on.

Training (:mod:`models.verifier_training`) and the running aggregator call the same two
functions on the same findings, so the verifier sees live exactly what it was fitted on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stream.findings import AbpFindings, EcgFindings, PpgFindings, VitalsFinding

LOOKBACK_S = 10.0
LEADS = ("e1", "e2")
PULSES = ("abp", "ppg")

# Per ECG lead (prefix e1_ / e2_). "present": there and not off; "usable": its quality
# gate passed (beats match their template); the rest as in stream.findings.EcgFindings.
_ECG_FIELDS = ("present", "usable", "hr", "pause", "hr_min5", "hr_max17", "hr_max5", "v_run", "vf_s",
               "template_corr", "basqi")
# Per pulse wave (prefix abp_ / ppg_).
_PULSE_FIELDS = ("present", "usable", "pulsatile", "quality", "rate", "pause")
WINDOW_FIELDS: tuple[str, ...] = (
    *(f"{lead}_{name}" for lead in LEADS for name in _ECG_FIELDS),
    # The rhythm model's probability that the first lead's window is noise.
    "e1_p_noise",
    # Both leads in the same window: the slower lead's fastest 5 beats. Artefact is on one
    # lead; a rhythm is on both (Li & Clifford 2012 fuse leads the same way for rates).
    "both_hr_max5",
    *(f"{wave}_{name}" for wave in PULSES for name in _PULSE_FIELDS),
)
_COL = {name: i for i, name in enumerate(WINDOW_FIELDS)}
NAN = math.nan


def _num(value: float | int | bool | None) -> float:
    return NAN if value is None else float(value)


def _ecg_row(lead: EcgFindings | None) -> list[float]:
    if lead is None or lead.lead_off:
        # A lead that is off says nothing about the rhythm, only that it is not there.
        return [0.0, 0.0] + [NAN] * (len(_ECG_FIELDS) - 2)
    classified = bool(lead.beat_counts) or lead.n_beats == 0
    return [
        1.0, float(lead.usable), _num(lead.hr_bpm), _num(lead.max_pause_s), _num(lead.hr_min_5beats),
        _num(lead.hr_max_17beats), _num(lead.hr_max_5beats),
        float(lead.v_run_length) if classified else NAN,
        float(lead.vf_seconds) if lead.vf_score is not None else NAN,
        _num(lead.template_corr), _num(lead.basqi),
    ]


def _pulse_row(wave: PpgFindings | AbpFindings | None) -> list[float]:
    if wave is None:
        return [0.0] + [NAN] * (len(_PULSE_FIELDS) - 1)
    return [1.0, float(wave.usable), float(wave.pulsatile), wave.quality, _num(wave.pulse_rate_bpm),
            _num(wave.max_pause_s)]


def window_evidence(f: VitalsFinding) -> tuple[float, ...]:
    """One window as a row of :data:`WINDOW_FIELDS` (floats; NaN = not measured), rounded
    to 3 significant digits: the aggregator keeps ~15 of them per patient in its state."""
    first = f.ecg if f.ecg is not None and not f.ecg.lead_off else None
    second = f.ecg2 if f.ecg2 is not None and not f.ecg2.lead_off else None
    both = (min(first.hr_max_5beats, second.hr_max_5beats)
            if first is not None and second is not None
            and first.hr_max_5beats is not None and second.hr_max_5beats is not None else None)
    row = [
        *_ecg_row(f.ecg), *_ecg_row(f.ecg2),
        _num(first.rhythm_probs.get("~")) if first is not None and first.rhythm_probs else NAN,
        _num(both),
        *_pulse_row(f.abp), *_pulse_row(f.ppg),
    ]
    return tuple(_round3(v) for v in row)


def _round3(v: float) -> float:
    if not math.isfinite(v) or v == 0.0:
        return v
    return round(v, 2 - math.floor(math.log10(abs(v))))


@dataclass(frozen=True, slots=True)
class AlarmEvidence:
    """The lookback of one alarm, summarised: ``values`` maps ``<signal>_<field>_<how>``
    (``how``: min, max, median or ``throughout``, the share of windows with the flag) to a
    float (NaN: never measured), ``windows`` counts the lookback's windows."""

    values: dict[str, float]
    windows: int

    def get(self, name: str) -> float:
        return self.values.get(name, NAN)

    def clean(self, lead: str) -> bool:
        """The lead was there and passed its quality gate in every window of the lookback."""
        return self.windows > 0 and self.get(f"{lead}_usable_throughout") >= 1.0

    def pulse_ok(self, wave: str) -> bool:
        """The pulse wave was usable and pulsatile in every window of the lookback."""
        return (self.windows > 0 and self.get(f"{wave}_usable_throughout") >= 1.0
                and self.get(f"{wave}_pulsatile_throughout") >= 1.0)


_HOW = {"pause": "max", "hr_min5": "min", "hr_max17": "max", "hr_max5": "max", "v_run": "max", "vf_s": "max",
        "hr": "median", "template_corr": "median", "basqi": "median", "rate": "median", "quality": "median",
        "p_noise": "median"}


def alarm_evidence(rows: Sequence[Sequence[float]], row_t_ms: Sequence[int], alarm_ms: int,
                   decide_ms: int) -> AlarmEvidence:
    """Summarise the window rows (:func:`window_evidence`) ending in ``[alarm_ms - LOOKBACK_S,
    decide_ms]`` (``decide_ms``: the end of the first window covering the alarm)."""
    table = np.asarray(rows, dtype=np.float64).reshape(-1, len(WINDOW_FIELDS))
    t = np.asarray(row_t_ms, dtype=np.int64)
    look = table[(t >= alarm_ms - round(LOOKBACK_S * 1000)) & (t <= decide_ms)]
    values: dict[str, float] = {}
    for name, col in _COL.items():
        x = look[:, col]
        kind = name.split("_", 1)[1]
        if kind in ("present", "usable", "pulsatile"):
            values[f"{name}_throughout"] = float(np.nan_to_num(x).mean()) if x.size else 0.0
            continue
        finite = x[np.isfinite(x)]
        how = "max" if name == "both_hr_max5" else _HOW.get(kind, "median")
        values[f"{name}_{how}"] = (NAN if finite.size == 0 else float(
            finite.max() if how == "max" else finite.min() if how == "min" else np.median(finite)))
        if kind == "rate":  # the pulse rate's range too
            values[f"{name}_min"] = NAN if finite.size == 0 else float(finite.min())
            values[f"{name}_max"] = NAN if finite.size == 0 else float(finite.max())
    # The window covering the alarm: a run that began seconds before the alarm shows on
    # both leads there.
    values["both_hr_max5_last"] = float(look[-1, _COL["both_hr_max5"]]) if look.size else NAN
    return AlarmEvidence(values, int(look.shape[0]))
