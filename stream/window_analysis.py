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
    ecg2: EcgFindings | None = None  # the second lead: DSP fields only, never classified
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
