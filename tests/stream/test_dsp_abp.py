from __future__ import annotations

import numpy as np
import pytest

from stream.dsp.abp import arterial_pressures
from stream.dsp.ppg import ppg_pulses

FS = 125


def pulse_shape(n: int) -> np.ndarray:
    """One arterial pulse, 0..1: fast upstroke, exponential run-off, dicrotic wave."""
    phase = np.arange(n) / n
    rise = np.sin(np.clip(phase / 0.15, 0, 1) * np.pi / 2) ** 2
    run_off = np.where(phase < 0.15, 1.0, np.exp(-(phase - 0.15) / 0.35))
    shape = rise * run_off + 0.08 * np.exp(-(((phase - 0.45) / 0.04) ** 2))
    return (shape - shape.min()) / (shape.max() - shape.min())


def arterial_wave(systolic: float = 120.0, diastolic: float = 80.0, rate: float = 72.0,
                  seconds: float = 20.0) -> np.ndarray:
    n = round(FS * 60.0 / rate)
    beats = int(np.ceil(seconds * rate / 60.0))
    return diastolic + (systolic - diastolic) * np.tile(pulse_shape(n), beats)[: round(seconds * FS)]


def test_pressures_per_cycle() -> None:
    x = arterial_wave()
    _, pulses, _, _ = ppg_pulses(x, FS)
    p = arterial_pressures(x, pulses)
    assert p is not None
    assert p.cycles >= 15
    assert p.systolic_mmhg == pytest.approx(120.0, abs=0.1)
    assert p.diastolic_mmhg == pytest.approx(80.0, abs=0.1)
    # The mean is the time average over a cycle, not (2 DBP + SBP) / 3.
    assert p.mean_mmhg == pytest.approx(80.0 + 40.0 * pulse_shape(104).mean(), abs=0.5)
    assert p.plausible and p.pulsatile


def test_a_damped_line_is_measured_but_not_a_pulse() -> None:
    x = arterial_wave(systolic=72.0, diastolic=66.0)
    _, pulses, _, _ = ppg_pulses(x, FS)
    p = arterial_pressures(x, pulses)
    assert p is not None and p.plausible
    assert p.pulse_pressure_mmhg < 10.0
    assert not p.pulsatile


def test_an_implausible_mean_is_a_fault_not_a_pressure() -> None:
    x = arterial_wave(systolic=320.0, diastolic=260.0)  # flush / zeroing error
    _, pulses, _, _ = ppg_pulses(x, FS)
    p = arterial_pressures(x, pulses)
    assert p is not None
    assert not p.plausible and not p.pulsatile


def test_fewer_than_two_cycles_give_nothing() -> None:
    x = arterial_wave(seconds=10)
    assert arterial_pressures(x, np.array([100])) is None
    assert arterial_pressures(x, np.array([100, 190])) is None
    bad = x.copy()
    bad[:] = np.nan
    assert arterial_pressures(bad, np.array([100, 190, 280])) is None
