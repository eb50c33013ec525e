"""What the per-patient DSP hands to the models for one window (internal, not on the wire).

The monitor (``stream.monitor``) fills the measurements it can make on its own (rates,
pauses, quality) and the raw material the models need; the batched model runtime
(``models.runtime``) classifies beats and rhythm for many patients at once; then
``stream.analysis`` merges both into the published :class:`~stream.findings.VitalsFinding`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stream.findings import AbpFindings, EcgFindings, PpgFindings, RespFindings


@dataclass(slots=True)
class WindowAnalysis:
    patient_id: str
    t_ms: int  # end of the window, event time
    window_s: float
    ecg: EcgFindings | None = None  # DSP fields filled; model fields left at defaults
    ecg2: EcgFindings | None = None  # the second lead: DSP fields filled, model fields from ``ecg2_input``
    ppg: PpgFindings | None = None
    resp: RespFindings | None = None
    abp: AbpFindings | None = None
    gaps: tuple[str, ...] = ()
    # Model inputs. ``ecg_window`` is the band-passed ECG covering [t_ms - window_s, t_ms]
    # at ``ecg_fs`` (None when ECG is absent, has a gap, or is flat/clipped).
    ecg_fs: float | None = None
    ecg_window: np.ndarray | None = None
    # R-peak sample indices into ``ecg_window``; ``beat_is_new`` marks beats that no earlier
    # window offered for classification, so each beat is classified exactly once.
    beat_samples: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    beat_is_new: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # RR intervals (ms) of the beats before the window, most recent last, for RR features.
    rr_history_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    # The same inputs for the second lead (beat classes, V runs and VF on it; no rhythm
    # model): a ventricular run or fibrillation that one lead shows as artefact-free while
    # the other is noisy is judged on both (alarm verification, models.verifier).
    ecg2_input: LeadInput | None = None
    # Whether the rhythm model runs on this window (the second lead's stand-in windows that
    # models.runtime builds from ``ecg2_input`` skip it).
    classify_rhythm: bool = True
    # ECG leads ("ecg", "ecg2") whose spectral indices are still to be computed, with their
    # raw window and rate (see stream.monitor.complete_spectral); empty once complete.
    spectral_pending: list[tuple[str, np.ndarray, float]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LeadInput:
    """What the beat and VF models need from one ECG lead over the window."""

    fs: float
    window: np.ndarray  # band-passed ECG covering the window
    beat_samples: np.ndarray  # R-peak indices into ``window``
    beat_is_new: np.ndarray  # beats no earlier window offered for classification
    rr_history_ms: np.ndarray
