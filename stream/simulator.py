"""Simulated bedside patients: ECG, PPG and respiration (and, in an ICU bed, a second ECG
lead and an arterial line) with scripted episodes and truth.

Pure numpy and deterministic given a seed. The generator is beat-by-beat, which is cheap
(a few Gaussians per beat instead of solving an ODE per sample) and lets the rhythm be
scripted exactly:

* ECG: every beat is a sum of Gaussian P, Q, R, S and T waves placed at its R time, the
  morphology model of ECGSYN (McSharry et al. 2003, IEEE TBME 50:289), written in time
  instead of phase. QT shortens with the RR interval as Bazett's sqrt(RR). Ventricular
  beats have no P wave, a wide QRS (~160 ms) and a discordant T wave.
* HRV: the RR interval carries respiratory sinus arrhythmia (heart rate rises during
  inspiration), a 0.1 Hz Mayer-wave component and 1.5 % white jitter, which gives an
  SDNN of a few tens of ms at rest (Task Force of the ESC/NASPE 1996 normal ranges).
* Respiration: a rate that drifts slowly around the patient's baseline, integrated into a
  phase, so breaths are continuous across any block boundary. Respiration modulates the
  ECG amplitude and baseline (the basis of ECG-derived respiration) and the PPG baseline
  and pulse amplitude (respiratory-induced intensity/amplitude variation, Charlton 2016).
* PPG: one pulse per ventricular beat that ejects, after a pulse transit delay (~200 ms
  R-to-foot), shaped as a fast systolic upstroke and a slower diastolic wave; its
  amplitude grows with the preceding RR interval (Frank-Starling filling), which makes AF
  pulses vary beat to beat. No pulses during asystole and ventricular fibrillation.
* Atrial fibrillation: irregularly irregular RR (independent draws, coefficient of
  variation ~0.2), no P waves, 4-8 Hz fibrillatory baseline waves.
* Ventricular fibrillation: a 4-6 Hz quasi-sinusoid with drifting frequency and waxing
  and waning amplitude, no organised QRS.
* ICU bed (``PatientScenario.icu``): a second ECG lead (the same beats seen at a smaller,
  patient-specific gain, with its own noise; a ``lead_off`` episode disconnects only the
  first lead) and an invasive arterial pressure in mmHg: one pressure pulse per ejecting
  beat ~120 ms after the R wave (an arterial line is closer to the heart than a finger),
  a fast upstroke, a dicrotic notch, diastolic run-off; systolic and diastolic pressures
  per patient, lowered smoothly during a ``hypotension`` episode. Without beats (asystole,
  VF) the pressure falls towards ~20 mmHg with no pulse.

Every sample is a function of absolute time and the seed (noise comes from one
generator per whole second of signal), so rendering a recording in blocks of any size
gives the same samples; :class:`PatientSimulator` streams endless patients in blocks.

Ground truth: each scripted episode yields one row per alert type that must fire
(``role="expected"``) plus rows for alert types that are acceptable side effects
(``role="tolerated"``: e.g. ``brady`` during extreme bradycardia, ``extreme_tachy``
during a long VT run); scoring should count only expected rows for sensitivity and not
count tolerated ones as false alerts.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_FS = {"ecg": 250.0, "ppg": 125.0, "resp": 25.0, "ecg2": 250.0, "abp": 125.0}
SIGNALS = ("ecg", "ppg", "resp")
# What an ICU bed adds to SIGNALS.
ICU_SIGNALS = ("ecg2", "abp")
_SIGNAL_CODES = {"ecg": 1, "ppg": 2, "resp": 3, "ecg2": 4, "abp": 5}

# Episode name -> (expected alert types, tolerated alert types). Alert vocabulary in the
# project preamble; tolerated types are ones a correct monitor may also raise.
EPISODE_ALERTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "brady": (("brady",), ()),
    "extreme_brady": (("extreme_brady",), ("brady",)),
    "tachy": (("tachy",), ()),
    "extreme_tachy": (("extreme_tachy",), ("tachy",)),
    "afib": (("afib",), ("tachy",)),
    "vtach": (("vtach",), ("extreme_tachy", "tachy")),
    "asystole": (("asystole",), ("extreme_brady", "brady")),
    "vfib": (("vfib",), ("vtach", "extreme_tachy", "tachy", "asystole", "poor_signal")),
    "apnea": (("apnea",), ("resp_abnormal",)),
    "resp_abnormal": (("resp_abnormal",), ()),
    "motion": (("poor_signal",), ("signal_loss",)),
    "lead_off": (("lead_off",), ("poor_signal", "signal_loss")),
    # ICU beds only (it needs the arterial line). A systolic pressure under 90 mmHg also
    # scores 3 in NEWS2, whose red score raises trend_deterioration.
    "hypotension": (("hypotension",), ("trend_deterioration",)),
}
EPISODE_TYPES = tuple(EPISODE_ALERTS)
# Episodes that set the cardiac rhythm (at most one active at a time).
_RHYTHM_EPISODES = {
    "brady",
    "extreme_brady",
    "tachy",
    "extreme_tachy",
    "afib",
    "vtach",
    "asystole",
    "vfib",
}
# Default parameters per episode; EpisodeSpec.params overrides them.
# Rates: brady < 50 bpm and extreme brady < 40 bpm, tachy > 100 bpm and extreme tachy
# > 140 bpm (the alert definitions in the preamble, after the CinC 2015 alarm criteria);
# VT 150-250 bpm and VF 4-7 Hz (ACC/AHA/ESC 2006 ventricular arrhythmia guideline);
# tachypnoea > 24 breaths/min (NEWS2 scores >= 25 as its worst band).
EPISODE_DEFAULTS: dict[str, dict[str, float]] = {
    "brady": {"hr_bpm": 46.0},
    "extreme_brady": {"hr_bpm": 34.0},
    "tachy": {"hr_bpm": 122.0},
    "extreme_tachy": {"hr_bpm": 156.0},
    "afib": {"hr_bpm": 96.0, "rr_cv": 0.22, "f_wave_mv": 0.06},
    "vtach": {"hr_bpm": 172.0},
    "asystole": {},
    "vfib": {"amplitude_mv": 0.6, "frequency_hz": 5.0},
    "apnea": {},
    "resp_abnormal": {"resp_rate_bpm": 30.0},
    "motion": {"ecg_mv": 1.5, "ppg_scale": 2.0, "resp_scale": 1.5, "abp_mmhg": 8.0},
    "lead_off": {"rail_mv": 5.0},
    # Mean arterial pressure ~54 mmHg, under the 65 mmHg of the alert.
    "hypotension": {"systolic_mmhg": 78.0, "diastolic_mmhg": 42.0},
}

_BEAT_SINUS, _BEAT_NO_P, _BEAT_VENTRICULAR = 0, 1, 2
_NO_BEAT_EPISODES = {"asystole", "vfib"}
_GRID_DT = 0.02  # driver grid (respiration phase/amplitude) step, s
# R-to-foot pulse transit delay (Mukkamala et al. 2015 report 150-300 ms R-to-finger).
_PTT_S = 0.2
# R to the arterial upstroke of a radial line, and the pressure towards which an arrested
# circulation settles (mean systemic filling pressure) and how fast.
_ABP_DELAY_S = 0.12
_ARREST_MMHG = 20.0
_ARREST_TAU_S = 3.0


@dataclass(frozen=True)
class EpisodeSpec:
    type: str  # one of EPISODE_TYPES
    start_s: float
    duration_s: float
    params: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in EPISODE_ALERTS:
            raise ValueError(
                f"unknown episode type {self.type!r}; one of {', '.join(EPISODE_TYPES)}"
            )
        if self.duration_s <= 0 or self.start_s < 0:
            raise ValueError("episode needs start_s >= 0 and duration_s > 0")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def param(self, name: str) -> float:
        return float(self.params.get(name, EPISODE_DEFAULTS[self.type][name]))

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.end_s


@dataclass(frozen=True)
class PatientScenario:
    patient_id: str
    episodes: tuple[EpisodeSpec, ...] = ()
    duration_s: float | None = None  # None: endless (streaming only)
    profile: str = "normal"
    hr_bpm: float = 72.0
    resp_rate_bpm: float = 15.0
    icu: bool = False  # an ICU bed: a second ECG lead and an arterial line as well

    def __post_init__(self) -> None:
        if not self.icu and any(ep.type == "hypotension" for ep in self.episodes):
            raise ValueError(f"{self.patient_id}: a hypotension episode needs an arterial line (icu=True)")

    @property
    def signals(self) -> tuple[str, ...]:
        return SIGNALS + ICU_SIGNALS if self.icu else SIGNALS

    def truth(self, start_ms: int, end_s: float | None = None) -> list[dict[str, Any]]:
        """Ground-truth rows (JSON-ready) for the episodes that start before ``end_s``."""
        limit = self.duration_s if end_s is None else end_s
        rows = []
        for ep in self.episodes:
            if limit is not None and ep.start_s >= limit:
                continue
            stop = ep.end_s if limit is None else min(ep.end_s, limit)
            expected, tolerated = EPISODE_ALERTS[ep.type]
            for role, types in (("expected", expected), ("tolerated", tolerated)):
                for alert_type in types:
                    rows.append(
                        {
                            "patient_id": self.patient_id,
                            "type": alert_type,
                            "episode": ep.type,
                            "role": role,
                            "start_ms": start_ms + round(1000 * ep.start_s),
                            "end_ms": start_ms + round(1000 * stop),
                        }
                    )
        return rows


Scenario = PatientScenario


@dataclass
class SimulatedRecording:
    patient_id: str
    start_ms: int
    fs: dict[str, float]
    ecg: np.ndarray
    ppg: np.ndarray
    resp: np.ndarray
    episodes: list[dict[str, Any]]  # expected truth rows
    tolerated: list[dict[str, Any]] = field(default_factory=list)
    profile: str = ""
    ecg2: np.ndarray | None = None  # ICU beds only
    abp: np.ndarray | None = None  # mmHg; ICU beds only

    @property
    def duration_s(self) -> float:
        return len(self.ecg) / self.fs["ecg"]

    def signal_arrays(self) -> dict[str, tuple[np.ndarray, float]]:
        """{signal: (samples, fs)} for the signals this recording has."""
        out = {}
        for name in SIGNALS + ICU_SIGNALS:
            x = getattr(self, name)
            if x is not None:
                out[name] = (x, self.fs[name])
        return out

    def truth_rows(self) -> list[dict[str, Any]]:
        return sorted([*self.episodes, *self.tolerated], key=lambda r: (r["start_ms"], r["type"]))


def _stable_id(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


class _SlowSines:
    """A smooth random function of absolute time: a sum of a few sinusoids."""

    def __init__(
        self, rng: np.random.Generator, periods_s: Sequence[float], amplitudes: Sequence[float]
    ):
        self.omega = 2 * np.pi / np.asarray(periods_s, dtype=np.float64)
        self.amp = np.asarray(amplitudes, dtype=np.float64)
        self.phase = rng.uniform(0, 2 * np.pi, len(self.omega))

    def __call__(self, t: np.ndarray | float) -> np.ndarray:
        tt = np.asarray(t, dtype=np.float64)[..., None]
        return (self.amp * np.sin(self.omega * tt + self.phase)).sum(axis=-1)

    def integral(self, t: np.ndarray) -> np.ndarray:
        tt = np.asarray(t, dtype=np.float64)[..., None]
        return (-(self.amp / self.omega) * np.cos(self.omega * tt + self.phase)).sum(axis=-1)


class _Oscillation:
    """A quasi-periodic wave with drifting frequency (fibrillation), analytic in time."""

    def __init__(self, rng: np.random.Generator, f0_hz: float, drift_hz: float):
        self.f0 = f0_hz
        self.drift = _SlowSines(rng, rng.uniform(1.5, 6.0, 3), np.full(3, drift_hz / 3))
        self.envelope = _SlowSines(rng, rng.uniform(1.0, 4.0, 2), [0.25, 0.15])
        self.harmonic_phase = rng.uniform(0, 2 * np.pi)

    def __call__(self, t: np.ndarray) -> np.ndarray:
        phase = 2 * np.pi * (self.f0 * t + self.drift.integral(t))
        wave = np.sin(phase) + 0.35 * np.sin(2 * phase + self.harmonic_phase)
        return (1.0 + self.envelope(t)) * wave / 1.35


class PatientSimulator:
    """Streams one patient's signals; sample ``i`` of a signal is at ``i / fs`` seconds."""

    def __init__(
        self,
        scenario: PatientScenario,
        *,
        fs_ecg: float = 250.0,
        fs_ppg: float = 125.0,
        fs_resp: float = 25.0,
        fs_abp: float = DEFAULT_FS["abp"],
        seed: int = 0,
    ) -> None:
        self.scenario = scenario
        self.signals = scenario.signals
        self.fs = {"ecg": float(fs_ecg), "ppg": float(fs_ppg), "resp": float(fs_resp)}
        if scenario.icu:
            self.fs.update(ecg2=float(fs_ecg), abp=float(fs_abp))
        self.seed = int(seed)
        self._key = [self.seed, _stable_id(scenario.patient_id)]
        rng = np.random.default_rng([*self._key, 0])
        # Per-patient physiology: amplitudes and variability differ between people.
        self.ecg_gain = float(rng.uniform(0.8, 1.5))  # R amplitude, mV
        self.ppg_gain = float(rng.uniform(0.8, 1.2))
        self.resp_gain = float(rng.uniform(0.7, 1.3))
        self.ecg_noise_mv = float(rng.uniform(0.008, 0.02))
        self.rsa_bpm = float(rng.uniform(2.0, 5.0))
        self.t_wave_gain = float(rng.uniform(0.2, 0.35))
        self.ventricular_polarity = float(rng.choice([-1.0, 1.0]))
        self._hr_slow = _SlowSines(rng, [10.0, 37.0, 150.0], [0.03, 0.02, 0.03])  # Mayer + slow
        self._resp_rate_slow = _SlowSines(rng, [23.0, 71.0], [0.06, 0.08])
        self._resp_amp_slow = _SlowSines(rng, [17.0, 53.0], [0.1, 0.08])
        self._wander = _SlowSines(rng, [19.0, 47.0], [0.05, 0.04])
        self._ppg_wander = _SlowSines(rng, [29.0, 61.0], [0.05, 0.04])
        self._mains_phase = float(rng.uniform(0, 2 * np.pi))
        self._episodes = sorted(scenario.episodes, key=lambda e: e.start_s)
        self._rhythm_episodes = [e for e in self._episodes if e.type in _RHYTHM_EPISODES]
        self._fibrillation: dict[int, _Oscillation] = {}
        self._motion: dict[int, tuple[list[tuple[float, float]], dict[str, _SlowSines]]] = {}
        for k, ep in enumerate(self._episodes):
            erng = np.random.default_rng([*self._key, 100 + k])
            if ep.type == "afib":
                self._fibrillation[k] = _Oscillation(erng, erng.uniform(5.0, 7.0), 1.0)
            elif ep.type == "vfib":
                self._fibrillation[k] = _Oscillation(erng, ep.param("frequency_hz"), 1.0)
            elif ep.type == "motion":
                self._motion[k] = (
                    _motion_bursts(erng, ep),
                    {
                        sig: _SlowSines(
                            erng, erng.uniform(0.12, 2.0, 8), erng.uniform(0.1, 0.35, 8)
                        )
                        for sig in SIGNALS + ICU_SIGNALS
                    },
                )
        # Respiration drivers on a fixed grid (point k at k * _GRID_DT s): phase (rad) and
        # amplitude envelope; arrays hold points _grid_first .. _grid_next - 1.
        self._grid_first = 0
        self._grid_next = 0
        self._grid_phase = np.zeros(0)
        self._grid_amp = np.zeros(0)
        self._grid_phase_end = float(rng.uniform(0, 2 * np.pi))
        # Beats: R time, kind, RR before it, ECG and PPG amplitude factors, pulse delay.
        self._beat_rng = np.random.default_rng([*self._key, 1])
        self._beats = np.zeros((0, 6))
        rr0 = 60.0 / scenario.hr_bpm
        self._last_beat_t = -float(rng.uniform(0.2, 1.0)) * rr0
        self._noise_cache: dict[tuple[str, int], np.ndarray] = {}
        # ICU bed (drawn last, so the other signals do not change with it): the second lead's
        # gain, and the arterial pressures at rest.
        self.ecg2_gain = float(rng.uniform(0.4, 0.8))
        self.systolic_mmhg = float(rng.uniform(108.0, 135.0))
        self.diastolic_mmhg = float(rng.uniform(62.0, 80.0))

    # ---------------------------------------------------------------- drivers

    def _episode_at(self, t: float) -> EpisodeSpec | None:
        """The rhythm episode active at ``t`` (None: the patient's sinus rhythm)."""
        for ep in self._rhythm_episodes:
            if ep.start_s > t:
                break
            if ep.active(t):
                return ep
        return None

    def _ensure_grid(self, t_end: float) -> None:
        """Extend the respiration drivers past ``t_end`` (in 1 s steps)."""
        per_s = round(1 / _GRID_DT)
        while (self._grid_next - 1) * _GRID_DT < t_end + _GRID_DT:
            t = (self._grid_next + np.arange(per_s)) * _GRID_DT
            rate = self.scenario.resp_rate_bpm * (1 + self._resp_rate_slow(t))
            amp = self.resp_gain * (1 + self._resp_amp_slow(t))
            for ep in self._episodes:
                if ep.end_s < t[0] - 3 or ep.start_s > t[-1] + 3:
                    continue
                if ep.type == "resp_abnormal":
                    inside = (t >= ep.start_s) & (t < ep.end_s)
                    target = ep.param("resp_rate_bpm")
                    rate = np.where(inside, target * (1 + 0.3 * self._resp_rate_slow(t)), rate)
                elif ep.type == "apnea":
                    amp = amp * _apnea_envelope(t, ep.start_s, ep.end_s)
            phase = self._grid_phase_end + np.cumsum(2 * np.pi * rate / 60.0 * _GRID_DT)
            self._grid_phase_end = float(phase[-1])
            self._grid_phase = np.concatenate([self._grid_phase, phase])
            self._grid_amp = np.concatenate([self._grid_amp, amp])
            self._grid_next += per_s

    def _prune(self, t_keep: float) -> None:
        """Forget drivers, beats and noise older than a few seconds before ``t_keep``."""
        drop = int((t_keep - 3.0) / _GRID_DT) - self._grid_first
        if drop > 5000:
            self._grid_phase = self._grid_phase[drop:]
            self._grid_amp = self._grid_amp[drop:]
            self._grid_first += drop
        if len(self._beats) > 200:
            self._beats = self._beats[self._beats[:, 0] >= t_keep - 3.0]
        self._noise_cache = {k: v for k, v in self._noise_cache.items() if k[1] >= int(t_keep) - 1}

    def respiration(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(phase rad, amplitude) at times ``t`` (s); the breath is ``amp * shape(phase)``."""
        t = np.asarray(t, dtype=np.float64)
        if t.size:
            self._ensure_grid(max(float(t.max()), 0.0))
        grid_t = (self._grid_first + np.arange(len(self._grid_phase))) * _GRID_DT
        return np.interp(t, grid_t, self._grid_phase), np.interp(t, grid_t, self._grid_amp)

    def _breath(self, t: np.ndarray) -> np.ndarray:
        phase, amp = self.respiration(t)
        # Inspiration is shorter than expiration: skew the phase before the cosine.
        return amp * -np.cos(phase - 0.35 * np.sin(phase))

    # ---------------------------------------------------------------- beats

    def _ensure_beats(self, t_end: float) -> None:
        rows = []
        rng = self._beat_rng
        t = self._last_beat_t
        while t < t_end:
            ep = self._episode_at(t)
            if ep is not None and ep.type in _NO_BEAT_EPISODES:
                t_next = ep.end_s
                kind = self._kind_for(self._episode_at(t_next))
            else:
                rr, kind = self._next_rr(t, ep, rng)
                t_next = t + rr
                # A rhythm change inside (t, t_next) takes over from its boundary.
                boundaries = [
                    b for e in self._rhythm_episodes for b in (e.start_s, e.end_s) if t < b < t_next
                ]
                if boundaries:
                    boundary = min(boundaries)
                    new_ep = self._episode_at(boundary)
                    if new_ep is not None and new_ep.type in _NO_BEAT_EPISODES:
                        t_next = new_ep.end_s
                        kind = self._kind_for(self._episode_at(t_next))
                    else:
                        rr_new, kind = self._next_rr(boundary, new_ep, rng)
                        t_next = max(t + rr_new, boundary)
            rr = t_next - t
            ecg_amp = self.ecg_gain * (1 + rng.normal(0, 0.02))
            filling = float(np.clip(math.sqrt(rr / (60.0 / self.scenario.hr_bpm)), 0.45, 1.3))
            ppg_amp = self.ppg_gain * filling * (0.35 if kind == _BEAT_VENTRICULAR else 1.0)
            ptt = _PTT_S + rng.normal(0, 0.006) + (0.04 if kind == _BEAT_VENTRICULAR else 0.0)
            rows.append((t_next, kind, rr, ecg_amp, ppg_amp, ptt))
            t = t_next
        self._last_beat_t = t
        if rows:
            self._beats = np.concatenate([self._beats, np.asarray(rows, dtype=np.float64)])

    @staticmethod
    def _kind_for(ep: EpisodeSpec | None) -> int:
        if ep is None:
            return _BEAT_SINUS
        return {"afib": _BEAT_NO_P, "vtach": _BEAT_VENTRICULAR}.get(ep.type, _BEAT_SINUS)

    def _next_rr(
        self, t: float, ep: EpisodeSpec | None, rng: np.random.Generator
    ) -> tuple[float, int]:
        if ep is None:
            hr, rsa, jitter, kind = self.scenario.hr_bpm, self.rsa_bpm, 0.015, _BEAT_SINUS
        elif ep.type == "afib":
            mean_rr = 60.0 / ep.param("hr_bpm")
            cv = ep.param("rr_cv")
            # Gamma-distributed independent RR: irregularly irregular, never too short
            # (the AV node's refractory period, ~250 ms).
            shape = 1 / cv**2
            rr = max(0.28, float(rng.gamma(shape, mean_rr / shape)))
            return rr, _BEAT_NO_P
        elif ep.type == "vtach":
            return 60.0 / ep.param("hr_bpm") * (1 + rng.normal(0, 0.02)), _BEAT_VENTRICULAR
        else:
            hr, rsa, jitter, kind = ep.param("hr_bpm"), 0.4 * self.rsa_bpm, 0.01, _BEAT_SINUS
        phase, amp = self.respiration(np.array([t]))
        hr_now = hr * (1 + float(self._hr_slow(t))) + rsa * float(amp[0] * np.sin(phase[0]))
        return 60.0 / max(hr_now, 20.0) * (1 + rng.normal(0, jitter)), kind

    def beat_times(self, t0: float, t1: float) -> np.ndarray:
        """R times (s) of the QRS complexes in [t0, t1)."""
        self._ensure_beats(t1)
        b = self._beats
        return b[(b[:, 0] >= t0) & (b[:, 0] < t1), 0].copy()

    def pulse_times(self, t0: float, t1: float) -> np.ndarray:
        """Systolic peak times (s) of the PPG pulses in [t0, t1)."""
        self._ensure_beats(t1 + 1)
        b = self._beats
        peaks = b[:, 0] + b[:, 5] + 0.13 * _pulse_scale(b[:, 2])
        return peaks[(peaks >= t0) & (peaks < t1)]

    # ---------------------------------------------------------------- rendering

    def render(self, signal: str, i0: int, i1: int) -> np.ndarray:
        """Samples ``i0 .. i1-1`` of ``signal`` (one of ``self.signals``) as float32."""
        fs = self.fs[signal]
        t = np.arange(i0, i1, dtype=np.float64) / fs
        if t.size == 0:
            return np.zeros(0, dtype=np.float32)
        t0, t1 = float(t[0]), float(t[-1])
        self._ensure_beats(t1 + 1.5)
        if signal == "ecg":
            x = self._render_ecg(t)
        elif signal == "ecg2":
            x = self.ecg2_gain * self._render_ecg(t)
        elif signal == "ppg":
            x = self._render_ppg(t)
        elif signal == "abp":
            x = self._render_abp(t)
        else:
            x = self._render_resp(t)
        noise = {"ecg": self.ecg_noise_mv, "ecg2": self.ecg_noise_mv, "ppg": 0.01, "resp": 0.02, "abp": 0.4}
        x = x + self._noise(signal, i0, i1) * noise[signal]
        for k, ep in enumerate(self._episodes):
            if ep.end_s <= t0 or ep.start_s > t1:
                continue
            inside = (t >= ep.start_s) & (t < ep.end_s)
            if ep.type == "motion":
                x = x + self._motion_artefact(k, ep, signal, t) * inside
            elif ep.type == "lead_off" and signal == "ecg":
                # A disconnected electrode drives the amplifier to its rail: a constant.
                x = np.where(inside, ep.param("rail_mv"), x)
        return x.astype(np.float32)

    def _render_ecg(self, t: np.ndarray) -> np.ndarray:
        breath = self._breath(t)
        x = (
            0.05 * breath
            + self._wander(t)
            + 0.006 * np.sin(2 * np.pi * 50.0 * t + self._mains_phase)
        )
        b = self._beats
        sel = b[(b[:, 0] > t[0] - 0.8) & (b[:, 0] < t[-1] + 0.4)]
        if len(sel):
            tb, kind, rr, amp = sel[:, 0], sel[:, 1], sel[:, 2], sel[:, 3]
            phase, ramp = self.respiration(tb)
            # Respiration rotates the heart's axis: R amplitude varies ~+-8 % per breath.
            amp = amp * (1 + 0.08 * ramp * np.cos(phase))
            sq = np.sqrt(np.clip(rr, 0.25, 2.0))
            ventricular = kind == _BEAT_VENTRICULAR
            sinus = kind == _BEAT_SINUS
            pol = self.ventricular_polarity
            # (centre s, width s, amplitude as share of R) per wave; ventricular beats differ.
            waves = [
                (
                    np.full_like(tb, -0.16) * np.clip(sq, 0.8, 1.1),
                    0.022,
                    np.where(sinus, 0.12, 0.0),
                ),
                (np.full_like(tb, -0.028), 0.009, np.where(ventricular, 0.0, -0.1)),
                (
                    np.zeros_like(tb),
                    np.where(ventricular, 0.035, 0.011),
                    np.where(ventricular, 1.2 * pol, 1.0),
                ),
                (
                    np.where(ventricular, 0.075, 0.026),
                    np.where(ventricular, 0.035, 0.011),
                    np.where(ventricular, -0.45 * pol, -0.22),
                ),
                (
                    np.where(ventricular, 0.3, 0.27) * sq,
                    np.where(ventricular, 0.075, 0.055) * sq,
                    np.where(ventricular, -0.4 * pol, self.t_wave_gain),
                ),
            ]
            dt = t[None, :] - tb[:, None]
            near = np.abs(dt) < 0.9
            total = np.zeros_like(dt)
            for centre, width, share in waves:
                c = np.broadcast_to(np.asarray(centre, dtype=np.float64), tb.shape)[:, None]
                w = np.broadcast_to(np.asarray(width, dtype=np.float64), tb.shape)[:, None]
                a = np.broadcast_to(np.asarray(share, dtype=np.float64), tb.shape)[:, None]
                total += a * np.exp(-0.5 * ((dt - c) / w) ** 2)
            x = x + (amp[:, None] * total * near).sum(axis=0)
        for k, ep in enumerate(self._episodes):
            if ep.type not in ("afib", "vfib") or ep.end_s <= t[0] or ep.start_s > t[-1]:
                continue
            inside = (t >= ep.start_s) & (t < ep.end_s)
            size = ep.param("f_wave_mv") if ep.type == "afib" else ep.param("amplitude_mv")
            x = x + self.ecg_gain * size * self._fibrillation[k](t) * inside
        return x

    def _render_ppg(self, t: np.ndarray) -> np.ndarray:
        breath = self._breath(t)
        x = 0.12 * self.ppg_gain * breath + self._ppg_wander(t)
        b = self._beats
        sel = b[(b[:, 0] > t[0] - 1.4) & (b[:, 0] < t[-1])]
        if len(sel):
            tb, rr, amp, ptt = sel[:, 0], sel[:, 2], sel[:, 4], sel[:, 5]
            phase, ramp = self.respiration(tb)
            amp = amp * (1 + 0.1 * ramp * np.cos(phase))
            s = _pulse_scale(rr)[:, None]
            dt = t[None, :] - (tb + ptt)[:, None]
            # Fast systolic upstroke, slower fall; then the diastolic (reflected) wave.
            pulse = _pulse_shape(dt, s, peak=0.13, rise=0.05, fall=0.1, wave=(0.35, 0.36, 0.08))
            x = x + (amp[:, None] * pulse * (np.abs(dt) < 1.4)).sum(axis=0)
        return x

    def _render_abp(self, t: np.ndarray) -> np.ndarray:
        systolic = np.full_like(t, self.systolic_mmhg)
        diastolic = np.full_like(t, self.diastolic_mmhg)
        for ep in self._episodes:
            if ep.type == "hypotension" and ep.end_s > t[0] - 30 and ep.start_s <= t[-1]:
                # Pressures drift down and back over ~20 s, as a falling output would.
                depth = _smooth_box(t, ep.start_s, ep.end_s, 10.0)
                systolic += depth * (ep.param("systolic_mmhg") - self.systolic_mmhg)
                diastolic += depth * (ep.param("diastolic_mmhg") - self.diastolic_mmhg)
        # Breathing swings arterial pressure a few mmHg (pulsus paradoxus when large).
        x = diastolic + 2.0 * self._breath(t)
        b = self._beats
        sel = b[(b[:, 0] > t[0] - 1.5) & (b[:, 0] < t[-1])]
        if len(sel):
            tb, rr, amp = sel[:, 0], sel[:, 2], sel[:, 4] / self.ppg_gain
            s = _pulse_scale(rr)[:, None]
            dt = t[None, :] - (tb + _ABP_DELAY_S)[:, None]
            # Steep upstroke, systolic decay, the dicrotic notch and wave, diastolic run-off.
            wave = _pulse_shape(dt, s, peak=0.1, rise=0.035, fall=0.13, wave=(0.18, 0.34, 0.045))
            pulses = (amp[:, None] * wave * (dt > -0.05) * (dt < 1.5)).sum(axis=0)
            x = x + (systolic - diastolic) * pulses
        for ep in self._episodes:
            if ep.type in _NO_BEAT_EPISODES and ep.end_s + 5 * _ARREST_TAU_S > t[0] and ep.start_s <= t[-1]:
                # Share of the living pressure left: it decays while nothing ejects, and the
                # first beats after the episode restore it over a few seconds.
                fall = np.exp(-np.clip(t - ep.start_s, 0.0, None) / _ARREST_TAU_S)
                fall_end = math.exp(-ep.duration_s / _ARREST_TAU_S)
                after = np.clip(t - ep.end_s, 0.0, None)
                recovered = fall_end + (1 - fall_end) * (1 - np.exp(-after / (_ARREST_TAU_S / 2)))
                share = np.where(t < ep.start_s, 1.0, np.where(t < ep.end_s, fall, recovered))
                x = _ARREST_MMHG + (x - _ARREST_MMHG) * share
        return x

    def _render_resp(self, t: np.ndarray) -> np.ndarray:
        return self._breath(t)

    def _motion_artefact(self, k: int, ep: EpisodeSpec, signal: str, t: np.ndarray) -> np.ndarray:
        bursts, waves = self._motion[k]
        envelope = np.zeros_like(t)
        for a, b in bursts:
            envelope = np.maximum(envelope, _smooth_box(t, a, b, 0.15))
        scale = {
            "ecg": ep.param("ecg_mv"),
            "ecg2": ep.param("ecg_mv"),
            "ppg": ep.param("ppg_scale") * self.ppg_gain,
            "resp": ep.param("resp_scale") * self.resp_gain,
            "abp": ep.param("abp_mmhg"),
        }[signal]
        # Movement moves the electrodes and the sensor: large low-frequency swings plus
        # broadband (EMG-like) noise during each burst.
        slow = waves[signal](t) / 0.6
        fast = 0.5 * self._noise(f"motion-{signal}", 0, 0, t=t)
        return scale * envelope * (slow + fast)

    def _noise(self, signal: str, i0: int, i1: int, t: np.ndarray | None = None) -> np.ndarray:
        """Standard normal noise tied to absolute sample index (one generator per second)."""
        base = signal.split("-")[-1]
        fs = self.fs[base]
        idx = np.arange(i0, i1) if t is None else np.round(t * fs).astype(np.int64)
        if idx.size == 0:
            return np.zeros(0)
        per_s = round(fs)
        code = _SIGNAL_CODES[base] + (10 if signal.startswith("motion") else 0)
        out = np.empty(idx.size)
        sec = idx // per_s
        for s in np.unique(sec):
            key = (signal, int(s))
            block = self._noise_cache.get(key)
            if block is None:
                block = np.random.default_rng([*self._key, 1000 + code, int(s)]).standard_normal(
                    per_s
                )
                self._noise_cache[key] = block
            mask = sec == s
            out[mask] = block[idx[mask] - s * per_s]
        return out

    # ---------------------------------------------------------------- streaming

    def blocks(
        self, block_s: float = 1.0, end_s: float | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """Consecutive blocks ``{signal: samples}``; block k covers [k*block_s, (k+1)*block_s)."""
        end = self.scenario.duration_s if end_s is None else end_s
        k = 0
        while end is None or k * block_s < end - 1e-9:
            t0 = k * block_s
            t1 = (k + 1) * block_s if end is None else min((k + 1) * block_s, end)
            out = {}
            for sig in self.signals:
                fs = self.fs[sig]
                out[sig] = self.render(sig, math.ceil(t0 * fs - 1e-9), math.ceil(t1 * fs - 1e-9))
            self._prune(t0)
            yield out
            k += 1


def _pulse_shape(
    dt: np.ndarray, s: np.ndarray, *, peak: float, rise: float, fall: float, wave: tuple[float, float, float]
) -> np.ndarray:
    """One pressure/volume pulse at ``dt`` s after its onset, its timing scaled by ``s``: a
    Gaussian peak at ``peak`` with ``rise`` width before it and ``fall`` after, plus a
    secondary (reflected / dicrotic) wave ``(share, at, width)``."""
    top = peak * s
    width = np.where(dt < top, rise * s, fall * s)
    share, at, wave_width = wave
    pulse = np.exp(-0.5 * ((dt - top) / width) ** 2)
    pulse += share * np.exp(-0.5 * ((dt - at * s) / (wave_width * s)) ** 2)
    return pulse


def _pulse_scale(rr: np.ndarray) -> np.ndarray:
    return np.clip(np.sqrt(np.asarray(rr) / 0.8), 0.6, 1.15)


def _smooth_box(t: np.ndarray, a: float, b: float, ramp: float) -> np.ndarray:
    rise = np.clip((t - a) / ramp, 0, 1)
    fall = np.clip((b - t) / ramp, 0, 1)
    return np.minimum(rise, fall)


def _apnea_envelope(t: np.ndarray, start: float, end: float) -> np.ndarray:
    """1 outside, 0 inside [start, end), 2 s cosine ramps just outside."""
    ramp = 2.0
    env = np.ones_like(t)
    before = (t >= start - ramp) & (t < start)
    after = (t >= end) & (t < end + ramp)
    env[before] = 0.5 * (1 + np.cos(np.pi * (t[before] - (start - ramp)) / ramp))
    env[(t >= start) & (t < end)] = 0.0
    env[after] = 0.5 * (1 - np.cos(np.pi * (t[after] - end) / ramp))
    return env


def _motion_bursts(rng: np.random.Generator, ep: EpisodeSpec) -> list[tuple[float, float]]:
    """Bursts of 1-4 s separated by 0.3-1.2 s lulls, covering the episode."""
    bursts = []
    t = ep.start_s
    while t < ep.end_s:
        length = float(rng.uniform(1.0, 4.0))
        bursts.append((t, min(t + length, ep.end_s)))
        t += length + float(rng.uniform(0.3, 1.2))
    return bursts


# ---------------------------------------------------------------- cohort


# Per-profile episode programmes: (episode, start offset s, duration s). Programmes repeat
# every PROGRAMME_PERIOD_S for long recordings; the first episode starts within 20-40 s so
# a demo shows alerts within a minute.
_PROGRAMMES: dict[str, list[tuple[str, float, float]]] = {
    "normal": [],
    "bradycardia": [("brady", 25, 70), ("extreme_brady", 170, 40)],
    "atrial_fibrillation": [("afib", 30, 150)],
    "cardiac_arrest": [("asystole", 35, 9), ("vfib", 160, 12), ("lead_off", 250, 20)],
    "ventricular": [("vtach", 30, 12), ("tachy", 110, 70), ("extreme_tachy", 220, 45)],
    "respiratory": [("apnea", 30, 25), ("resp_abnormal", 120, 90)],
    "technical": [("motion", 25, 15), ("lead_off", 110, 20)],
    # An ICU bed: the first lead comes off while the second carries on.
    "icu": [("hypotension", 40, 110), ("lead_off", 200, 20)],
}
# The order patients get profiles in: a cohort of 3 already has bradycardia, AF and
# normal; 4 adds asystole; 9 covers every episode type and has an ICU bed.
COHORT_PROFILES = (
    "normal",
    "bradycardia",
    "atrial_fibrillation",
    "cardiac_arrest",
    "normal",
    "ventricular",
    "respiratory",
    "technical",
    "icu",
)
PROGRAMME_PERIOD_S = 300.0


def default_cohort(
    n_patients: int, duration_s: float | None, seed: int = 0
) -> list[PatientScenario]:
    """A ward of ``n_patients``; episodes jittered by the seed; ``duration_s`` None = endless.

    Endless scenarios carry the programme for the first 24 h.
    """
    if n_patients < 1:
        raise ValueError("need at least one patient")
    horizon = 24 * 3600.0 if duration_s is None else float(duration_s)
    rng = np.random.default_rng([seed, 7])
    cohort = []
    for i in range(n_patients):
        profile = COHORT_PROFILES[i % len(COHORT_PROFILES)]
        episodes: list[EpisodeSpec] = []
        cycle = 0
        while cycle * PROGRAMME_PERIOD_S < horizon:
            for name, offset, length in _PROGRAMMES[profile]:
                jitter = float(rng.uniform(-5, 5))
                start = max(0.0, cycle * PROGRAMME_PERIOD_S + offset + jitter)
                length = length * float(rng.uniform(0.9, 1.1))
                if start + min(length, 10.0) <= horizon:
                    episodes.append(EpisodeSpec(name, round(start, 2), round(length, 2)))
            cycle += 1
        hr = float(rng.uniform(60, 88))
        if profile == "atrial_fibrillation":
            hr = float(rng.uniform(68, 80))
        cohort.append(
            PatientScenario(
                patient_id=f"sim-{i + 1:03d}",
                episodes=tuple(episodes),
                duration_s=duration_s,
                profile=profile,
                hr_bpm=round(hr, 1),
                resp_rate_bpm=round(float(rng.uniform(12, 18)), 1),
                icu=profile == "icu",
            )
        )
    return cohort


# ---------------------------------------------------------------- whole recordings and files


def simulate_patient(
    scenario: PatientScenario,
    fs_ecg: float = 250.0,
    fs_ppg: float = 125.0,
    fs_resp: float = 25.0,
    seed: int = 0,
    *,
    start_ms: int = 0,
    block_s: float = 10.0,
) -> SimulatedRecording:
    """The whole scenario (needs ``duration_s``) as arrays plus ground truth."""
    if scenario.duration_s is None:
        raise ValueError("simulate_patient needs a finite duration; use PatientSimulator.blocks")
    sim = PatientSimulator(scenario, fs_ecg=fs_ecg, fs_ppg=fs_ppg, fs_resp=fs_resp, seed=seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in sim.signals}
    for block in sim.blocks(block_s):
        for s in sim.signals:
            parts[s].append(block[s])
    rows = scenario.truth(start_ms)
    return SimulatedRecording(
        patient_id=scenario.patient_id,
        start_ms=int(start_ms),
        fs=dict(sim.fs),
        **{s: np.concatenate(parts[s]) for s in sim.signals},
        episodes=[r for r in rows if r["role"] == "expected"],
        tolerated=[r for r in rows if r["role"] == "tolerated"],
        profile=scenario.profile,
    )


def write_truth(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def save_simulated(directory: Path, recordings: Sequence[SimulatedRecording]) -> None:
    """``DIR/<patient>.npz`` per recording plus ``DIR/truth.jsonl``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for rec in recordings:
        arrays = rec.signal_arrays()
        np.savez_compressed(
            directory / f"{rec.patient_id}.npz",
            **{name: x for name, (x, _fs) in arrays.items()},
            **{f"fs_{name}": fs for name, (_x, fs) in arrays.items()},
            start_ms=np.int64(rec.start_ms),
            profile=np.str_(rec.profile),
        )
        rows.extend(rec.truth_rows())
    write_truth(directory / "truth.jsonl", rows)


def write_simulated(
    directory: Path,
    *,
    patients: int = 9,
    duration_s: float = 600.0,
    seed: int = 0,
    start_ms: int = 0,
    progress: Any = None,
) -> list[SimulatedRecording]:
    """Simulate :func:`default_cohort` and save it (see :func:`save_simulated`)."""
    recordings = []
    for scenario in default_cohort(patients, duration_s, seed):
        recordings.append(simulate_patient(scenario, seed=seed, start_ms=start_ms))
        if progress is not None:
            progress(scenario.patient_id)
    save_simulated(Path(directory), recordings)
    return recordings


def load_simulated(directory: Path | str) -> list[SimulatedRecording]:
    """Read what :func:`save_simulated` wrote, sorted by patient id."""
    directory = Path(directory)
    truth: dict[str, list[dict[str, Any]]] = {}
    truth_path = directory / "truth.jsonl"
    if truth_path.exists():
        for line in truth_path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                truth.setdefault(str(row["patient_id"]), []).append(row)
    out = []
    for path in sorted(directory.glob("*.npz")):
        with np.load(path) as data:
            pid = path.stem
            rows = truth.get(pid, [])
            present = [s for s in SIGNALS + ICU_SIGNALS if s in data]
            out.append(
                SimulatedRecording(
                    patient_id=pid,
                    start_ms=int(data["start_ms"]),
                    fs={s: float(data[f"fs_{s}"]) for s in present},
                    **{s: data[s].astype(np.float32) for s in present},  # type: ignore[arg-type]
                    episodes=[r for r in rows if r.get("role", "expected") == "expected"],
                    tolerated=[r for r in rows if r.get("role") == "tolerated"],
                    profile=str(data["profile"]) if "profile" in data else "",
                )
            )
    return out


def scenario_as_dict(scenario: PatientScenario) -> dict[str, Any]:
    return asdict(scenario)


# ---------------------------------------------------------------- live streaming


def device_id_for(patient_id: str) -> str:
    return f"sim-bedside-{patient_id}"[:64]


class LiveWard:
    """A cohort as one event-time-ordered stream of sample chunks, generated as it goes.

    Truth rows are appended to ``truth_path`` (JSON lines) as each episode starts, so the
    file always describes what has been sent. ``keep`` keeps the samples for
    :meth:`recordings` (finite runs).
    """

    def __init__(
        self,
        cohort: Sequence[PatientScenario],
        *,
        start_ms: int,
        seed: int = 0,
        truth_path: Path | None = None,
        keep: bool = False,
        chunk_s: float = 1.0,
        fs: dict[str, float] | None = None,
    ) -> None:
        from stream.gateway import DeviceStream

        rates = {**DEFAULT_FS, **(fs or {})}
        self.cohort = list(cohort)
        self.start_ms = int(start_ms)
        self.chunk_s = chunk_s
        self.simulators = [
            PatientSimulator(
                s, fs_ecg=rates["ecg"], fs_ppg=rates["ppg"], fs_resp=rates["resp"], fs_abp=rates["abp"], seed=seed
            )
            for s in self.cohort
        ]
        self.streams = [
            {
                sig: DeviceStream(
                    s.patient_id, device_id_for(s.patient_id), sig, sim.fs[sig], start_ms, chunk_s
                )
                for sig in sim.signals
            }
            for s, sim in zip(self.cohort, self.simulators, strict=True)
        ]
        self._pending_truth = sorted(
            (row for s in self.cohort for row in s.truth(self.start_ms)),
            key=lambda r: r["start_ms"],
        )
        self.truth_written: list[dict[str, Any]] = []
        self._truth_file = None
        if truth_path is not None:
            truth_path.parent.mkdir(parents=True, exist_ok=True)
            self._truth_file = open(truth_path, "w")  # noqa: SIM115 - closed in close()
        self._keep = keep
        self._kept: list[dict[str, list[np.ndarray]]] = [
            {sig: [] for sig in sim.signals} for sim in self.simulators
        ]

    def _write_truth(self, until_ms: float) -> None:
        while self._pending_truth and self._pending_truth[0]["start_ms"] < until_ms:
            row = self._pending_truth.pop(0)
            self.truth_written.append(row)
            if self._truth_file is not None:
                self._truth_file.write(json.dumps(row) + "\n")
                self._truth_file.flush()

    def chunks(self) -> Iterator[Any]:
        """Chunks of every patient, ordered by end time, block by block (endless if the
        scenarios are)."""
        generators = [sim.blocks(self.chunk_s) for sim in self.simulators]
        k = 0
        while True:
            batch = []
            alive = False
            for i, gen in enumerate(generators):
                block = next(gen, None)
                if block is None:
                    batch.extend(c for s in self.streams[i].values() for c in s.flush())
                    continue
                alive = True
                for sig in self.simulators[i].signals:
                    if self._keep:
                        self._kept[i][sig].append(block[sig])
                    batch.extend(self.streams[i][sig].feed(block[sig]))
            self._write_truth(self.start_ms + 1000 * (k + 1) * self.chunk_s)
            yield from sorted(batch, key=lambda c: c.end_ms)
            if not alive:
                return
            k += 1

    def recordings(self) -> list[SimulatedRecording]:
        """What was generated so far (needs ``keep=True``)."""
        out = []
        rows_by_patient: dict[str, list[dict[str, Any]]] = {}
        for row in self.truth_written:
            rows_by_patient.setdefault(row["patient_id"], []).append(row)
        for scenario, sim, kept in zip(self.cohort, self.simulators, self._kept, strict=True):
            arrays = {
                sig: np.concatenate(kept[sig]) if kept[sig] else np.zeros(0, np.float32)
                for sig in sim.signals
            }
            end_ms = self.start_ms + round(1000 * len(arrays["ecg"]) / sim.fs["ecg"])
            rows = [
                {**r, "end_ms": min(r["end_ms"], end_ms)}
                for r in rows_by_patient.get(scenario.patient_id, [])
            ]
            out.append(
                SimulatedRecording(
                    patient_id=scenario.patient_id,
                    start_ms=self.start_ms,
                    fs=dict(sim.fs),
                    **arrays,  # type: ignore[arg-type]
                    episodes=[r for r in rows if r["role"] == "expected"],
                    tolerated=[r for r in rows if r["role"] == "tolerated"],
                    profile=scenario.profile,
                )
            )
        return out

    def close(self) -> None:
        if self._truth_file is not None:
            self._truth_file.close()
            self._truth_file = None
