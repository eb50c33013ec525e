"""Findings: what the worker measured and inferred for one patient over one window.

One :class:`VitalsFinding` is published to ``vitals.findings`` (keyed by patient id) per
patient per hop. It carries raw measurements, not verdicts: thresholds, persistence,
hysteresis and per-patient budgets belong to the aggregator (``alerting``), so the same
findings can be re-scored under other settings (replay, validation).

All times are event time (epoch ms of the samples), never wall-clock, so a replay at
any speed yields the same findings. ``None`` means "not measurable in this window"
(signal absent or unusable), which the aggregator must not confuse with a normal value.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from typing import Any

from stream.schema import MAX_FUTURE_SKEW_MS, MAX_ID_BYTES, MIN_TIMESTAMP_MS
from stream.wire import check_epoch_ms, check_fields, load_json_object

FINDINGS_SCHEMA_VERSION = 1


class InvalidFinding(ValueError):
    """A findings message the aggregator cannot use; the text is the dead-letter detail."""


@dataclass(frozen=True, slots=True)
class EcgFindings:
    quality: float  # 0..1, higher is better
    usable: bool
    lead_off: bool  # flat line / saturated: a technical condition, not a clinical one
    hr_bpm: float | None = None  # median heart rate over the window
    n_beats: int = 0
    # Longest interval in the window without a detected QRS, including the open interval
    # from the last beat to the window end (CinC 2015: asystole = no QRS for >= 4 s).
    max_pause_s: float | None = None
    # Lowest mean HR over any 5 consecutive beats / highest over any 17 consecutive beats
    # (CinC 2015 extreme bradycardia / extreme tachycardia definitions); highest over any
    # 5 (a second lead's check of a ventricular run, >= 5 beats > 100 bpm).
    hr_min_5beats: float | None = None
    hr_max_17beats: float | None = None
    hr_max_5beats: float | None = None  # fastest mean HR over any 5 consecutive beats
    sdnn_ms: float | None = None
    rmssd_ms: float | None = None
    rr_irregularity: float | None = None  # e.g. coefficient of variation of successive RR diffs
    # Beat classifier output (AAMI classes) summarised over the window.
    beat_counts: dict[str, int] = field(default_factory=dict)  # {"N": 9, "V": 3, ...}
    v_run_length: int = 0  # longest run of consecutive ventricular beats
    v_run_rate_bpm: float | None = None  # rate within that run
    # Rhythm classifier over the window: probabilities for "N", "A", "O", "~".
    rhythm: str | None = None
    rhythm_probs: dict[str, float] = field(default_factory=dict)
    vf_score: float | None = None  # 0..1 from the VF-specific detector
    vf_seconds: float = 0.0  # seconds of the window judged fibrillatory / flutter
    # Waveform evidence, read when a bedside alarm is verified (models.verifier): the quality
    # indices behind ``quality`` (stream.dsp.quality) and the spectral SQIs and QRS width of
    # stream.dsp.morphology. None when not measurable (lead off, too few beats).
    kurtosis: float | None = None
    template_corr: float | None = None
    psqi: float | None = None
    basqi: float | None = None
    low_band: float | None = None
    qrs_width_ms: float | None = None
    qrs_width_max_ms: float | None = None


@dataclass(frozen=True, slots=True)
class PpgFindings:
    quality: float
    usable: bool
    pulsatile: bool  # a perfusing pulse is visible (used to corroborate ECG asystole)
    pulse_rate_bpm: float | None = None
    max_pause_s: float | None = None  # longest interval without a pulse
    irregularity: float | None = None
    perfusion_index: float | None = None
    template_corr: float | None = None  # pulses against their median pulse (quality's basis)


@dataclass(frozen=True, slots=True)
class AbpFindings:
    """Invasive arterial pressure: the pulse fields mean what they mean for the PPG."""

    quality: float
    usable: bool
    pulsatile: bool
    pulse_rate_bpm: float | None = None
    max_pause_s: float | None = None
    irregularity: float | None = None
    # Medians over the window's pulse cycles (mmHg): maximum, minimum and cycle mean.
    systolic_mmhg: float | None = None
    diastolic_mmhg: float | None = None
    mean_mmhg: float | None = None
    template_corr: float | None = None


@dataclass(frozen=True, slots=True)
class RespFindings:
    rate_bpm: float | None  # breaths per minute
    source: str  # "resp", "ecg" (ECG-derived respiration) or "ppg"
    quality: float
    usable: bool
    max_pause_s: float | None = None  # longest interval without a breath (apnoea)


@dataclass(frozen=True, slots=True)
class TrendFinding:
    kind: str  # e.g. "hr_rising", "resp_rate_rising", "news2"
    message: str  # e.g. "resting HR up 25 % over 2 h"
    value: float
    baseline: float | None = None
    horizon_s: float | None = None
    severity: str = "medium"


@dataclass(frozen=True, slots=True)
class VitalsFinding:
    patient_id: str
    t_ms: int  # end of the analysed window (event time)
    window_s: float
    ecg: EcgFindings | None = None
    # The second ECG lead, when the device sends one: the same measurements as the first
    # (beats, pauses, rates, quality, beat classes and V runs, VF), but no rhythm model.
    ecg2: EcgFindings | None = None
    ppg: PpgFindings | None = None
    resp: RespFindings | None = None
    abp: AbpFindings | None = None
    trends: tuple[TrendFinding, ...] = ()
    news2: int | None = None  # early-warning score from the vitals this pipeline has
    gaps: tuple[str, ...] = ()  # signals with missing data inside the window
    model_version: str = ""
    schema_version: int = FINDINGS_SCHEMA_VERSION

    @property
    def finding_id(self) -> str:
        """Deterministic: the same window re-processed after a redelivery has the same id."""
        return f"{self.patient_id}:{self.t_ms}"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str, now_ms: int | None = None) -> VitalsFinding:
        """Decode a findings message: a valid finding, or :class:`InvalidFinding`."""
        return cls.from_wire(load_json_object(data, InvalidFinding, "finding"), now_ms)

    @classmethod
    def from_wire(cls, obj: Any, now_ms: int | None = None) -> VitalsFinding:
        """A finding from a parsed message, after :func:`check_finding`."""
        check_finding(obj, now_ms)
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> VitalsFinding:
        if obj.get("schema_version") != FINDINGS_SCHEMA_VERSION:
            raise ValueError(f"unsupported findings schema_version {obj.get('schema_version')!r}")
        kwargs = _known_fields(cls, obj)
        subs = (("ecg", EcgFindings), ("ecg2", EcgFindings), ("ppg", PpgFindings), ("resp", RespFindings),
                ("abp", AbpFindings))
        for key, sub in subs:
            if kwargs.get(key) is not None:
                # Fields added later (optional, with defaults) are ignored by an older reader:
                # during a rolling upgrade a finding from a newer worker stays readable.
                kwargs[key] = sub(**_known_fields(sub, kwargs[key]))
        kwargs["trends"] = tuple(TrendFinding(**_known_fields(TrendFinding, t)) for t in kwargs.get("trends", ()))
        kwargs["gaps"] = tuple(kwargs.get("gaps", ()))
        return cls(**kwargs)


def _known_fields(cls: type, obj: dict[str, Any]) -> dict[str, Any]:
    known = _field_names(cls)
    return {k: v for k, v in obj.items() if k in known}


@cache
def _field_names(cls: type) -> frozenset[str]:
    # Every finding the aggregator reads passes through here, up to six times.
    return frozenset(f.name for f in fields(cls))


def check_finding(obj: Any, now_ms: int | None = None) -> None:
    """Raise :class:`InvalidFinding` unless ``obj`` (a parsed message) is a finding the
    aggregator can use: every known field of the declared type, a patient id the size of
    the samples', and an event time no sample could have been refused for. A finding far
    in the future would otherwise make every real finding of the patient look stale
    (``process_finding`` ignores findings not newer than the last one)."""
    if not isinstance(obj, dict):
        raise InvalidFinding(f"a finding must be a JSON object, got {type(obj).__name__}")
    if obj.get("schema_version") != FINDINGS_SCHEMA_VERSION:
        raise InvalidFinding(f"unsupported findings schema_version {obj.get('schema_version')!r:.40}")
    check_fields(VitalsFinding, obj, InvalidFinding)
    patient_id = obj["patient_id"]
    if not patient_id.strip() or len(patient_id.encode()) > MAX_ID_BYTES:
        raise InvalidFinding(f"patient_id must be 1-{MAX_ID_BYTES} bytes, got {patient_id[:80]!r}")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    check_epoch_ms(obj["t_ms"], "t_ms", InvalidFinding, lo=MIN_TIMESTAMP_MS, hi=now + MAX_FUTURE_SKEW_MS)
