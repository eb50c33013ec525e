"""Invasive arterial blood pressure (ABP): pressures per pulse cycle and plausibility.

The ABP waveform is a pulse wave like the PPG, so the monitor finds its pulses with the
same streaming systolic-peak detector (:mod:`stream.dsp.ppg`) and grades it with the PPG's
template and skewness SQIs. What the ABP adds is calibrated pressure: per cycle (one
detected pulse to the next) the systolic pressure is the cycle's maximum, the diastolic its
minimum and the mean arterial pressure the cycle's average, the definitions bedside
monitors use (the MAP as the time average over a cycle, not the 1/3 + 2/3 estimate).
Medians over the window's cycles make one ectopic beat or a flush spike not move them.

Plausibility (why a clean-looking waveform may still not be trusted):

* A mean pressure outside 10–200 mmHg is a zeroing/transducer fault or a line flush,
  not a pressure; such windows are not usable.
* A pulse pressure (systolic − diastolic) under 10 mmHg is an over-damped line, a clot or
  a pressure bag being flushed: the waveform may still oscillate, but it is not evidence
  of a perfusing pulse. It is kept as measured and reported not pulsatile, so it can
  never contradict an ECG asystole or VF alarm (Aboukhalil et al. 2008 suppressed false
  ECG alarms with the ABP only when its pulses were clearly present).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

ABP_MEAN_RANGE_MMHG = (10.0, 200.0)
ABP_MIN_PULSE_PRESSURE_MMHG = 10.0
MIN_CYCLES = 2


@dataclass(frozen=True, slots=True)
class ArterialPressures:
    systolic_mmhg: float
    diastolic_mmhg: float
    mean_mmhg: float
    cycles: int

    @property
    def pulse_pressure_mmhg(self) -> float:
        return self.systolic_mmhg - self.diastolic_mmhg

    @property
    def plausible(self) -> bool:
        lo, hi = ABP_MEAN_RANGE_MMHG
        return lo <= self.mean_mmhg <= hi

    @property
    def pulsatile(self) -> bool:
        return self.plausible and self.pulse_pressure_mmhg >= ABP_MIN_PULSE_PRESSURE_MMHG


def arterial_pressures(raw: np.ndarray, pulses: np.ndarray) -> ArterialPressures | None:
    """Median systolic / diastolic / mean pressure over the cycles between consecutive
    ``pulses`` (indices into ``raw``, mmHg). None with fewer than two complete cycles or
    with missing samples inside every cycle."""
    x = np.asarray(raw, dtype=np.float64)
    p = np.asarray(pulses, dtype=np.int64)
    p = p[(p >= 0) & (p < x.size)]
    sys_: list[float] = []
    dia: list[float] = []
    mean: list[float] = []
    for a, b in itertools.pairwise(p.tolist()):
        cycle = x[a:b]
        if cycle.size < 2 or not np.isfinite(cycle).all():
            continue
        sys_.append(float(cycle.max()))
        dia.append(float(cycle.min()))
        mean.append(float(cycle.mean()))
    if len(sys_) < MIN_CYCLES:
        return None
    return ArterialPressures(
        round(float(np.median(sys_)), 1),
        round(float(np.median(dia)), 1),
        round(float(np.median(mean)), 1),
        len(sys_),
    )
