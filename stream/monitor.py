"""Per-patient streaming monitor: chunks in, windows of DSP measurements out.

One :class:`PatientMonitor` per patient. Each pushed chunk goes through the signal's
:class:`~stream.windows.SignalSequencer` (duplicates, re-ordering, gaps, resets), then the
signal's streaming DSP — which runs once per sample, not once per window: R peaks, pulses
and breaths are found incrementally with carried filter/detector state. Every hop (2 s of
event time) a :class:`~stream.window_analysis.WindowAnalysis` is assembled for the last
window (10 s) from ring buffers and the detected events; that step only reads buffers and
computes window statistics.

Windows advance on ECG time when ECG is present, otherwise on the PPG, otherwise on the
arterial pressure (ABP), otherwise on the respiration signal. A window is released once
the primary signal's detector has decided everything up to the window end (~0.45 s of
look-ahead) and the other live signals have caught up (or lag by more than the 3 s
re-order horizon, then they count as a gap).

Each signal arrives on its own Kafka topic, so a worker reading a backlog (after a restart
or a rebalance) can read one signal's topic minutes of event time ahead of another's. The
3-s horizon would then turn the signal not yet read into a gap, a false ``signal_loss``
and windows judged without it. So the caller passes each chunk's produce time and a
question the monitor may ask, ``unread(signal, produced_s)``: may that signal's topic still
hold data produced before then? A chunk that starts after such a signal's newest data
waits (for at most ``align_hold_s`` of its own signal); held chunks go in oldest first
across signals, as an interleaved feed would have them.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from stream.dsp import hrv
from stream.dsp.abp import arterial_pressures
from stream.dsp.filters import StreamingSosFilter, resp_filter
from stream.dsp.morphology import ecg_morphology, ecg_spectral_sqi_many, rounded_sqi
from stream.dsp.ppg import PulseOutput, StreamingPulseDetector, perfusion_index
from stream.dsp.quality import ecg_quality, ppg_quality
from stream.dsp.resp import RespEstimate, breath_amplitude, derived_resp_rate, resp_rate
from stream.dsp.rpeaks import DetectorOutput, StreamingRPeakDetector
from stream.findings import AbpFindings, EcgFindings, PpgFindings, RespFindings
from stream.schema import SampleChunk, Signal
from stream.window_analysis import LeadInput, WindowAnalysis
from stream.windows import (
    REORDER_HORIZON_S,
    ChunkStatus,
    PushResult,
    Released,
    RingBuffer,
    SignalSequencer,
    WindowSchedule,
)

# Breathing is slow: rate and apnoea need a longer look-back than the 10 s cardiac window
# (Charlton et al. 2016 estimate rates on 32 s windows; an apnoea alarm needs >= 20 s).
RESP_LOOKBACK_S = 32.0
MIN_RESP_SPAN_S = 15.0
EVENT_MEMORY_S = 40.0
# Derived (ECG/PPG) respiration is the costliest per-window step and its 32 s estimate
# moves slowly (a 32 s window), so it is refreshed every 6 s of event time, not every hop.
DERIVED_REFRESH_S = 6.0
# RR intervals before a window handed to the beat models: the S expert compares a beat's
# RR with the 60 before it (models.sveb.LONG_RR_BEATS), so a run of tachycardia does not
# become its own reference.
RR_HISTORY_BEATS = 60
# Apnoea on the RESP channel: once the patient's breath size is known (5–95 % span of the
# last usable RESP window), swings under a fifth of it are not breaths. Central apnoea
# shows as a flat impedance trace (baseline noise only), and the window-relative merge
# threshold of breath counting would otherwise count that noise as fast, irregular
# "breaths". With no breath for APNOEA_RATE_S the rate is not reported: a rate over
# breaths that stopped that long ago is not the current rate (adult breath intervals stay
# < 10 s down to 6 /min).
BREATH_MIN_FRACTION = 0.2
APNOEA_RATE_S = 10.0
# A beat is offered to the classifier once its segment (to 0.448 s after the R peak, see
# models.preprocess) lies inside the window, so no beat is classified from a cut segment
# unless the stream ends there.
BEAT_POST_S = 0.45
# A lead-off / sensor-off input is driven to a constant (the amplifier's rail or a fixed
# value): bit-identical samples. Live ECG/PPG, even a ventricular standstill, keeps baseline
# noise and never repeats one value for a whole second, so a run that long is a technical
# stretch without data: like a gap, it must count neither as a pause without beats nor as
# one long interval in the rate extremes (it ends a contiguous segment).
FLAT_RUN_S = 1.0
# Default for the longest stretch of one signal held back waiting for a lagging topic (see
# the module docstring; ``Settings.align_hold_s``). Beyond it the lagging signal counts as a
# gap after all: memory stays bounded, and a topic that far behind is treated as a fault.
ALIGN_HOLD_S = 300.0
# unread(signal, produced_s): may the signal's topic still hold data produced before then?
UnreadFn = Callable[[Signal, float], bool]


@dataclass(slots=True)
class MonitorOutput:
    # One per chunk that went through its sequencer during the call, in order: none when
    # the pushed chunk was held back, several when held chunks were released with it.
    statuses: list[ChunkStatus] = field(default_factory=list)
    gap: bool = False
    windows: list[WindowAnalysis] = field(default_factory=list)
    reset: bool = False
    held: int = 0  # chunks of this patient still held back after the call
    overdue: int = 0  # held chunks let go because they waited ``align_hold_s``
    # Chunks that left the hold during the call (fed), in order; may include the pushed one.
    released: list[SampleChunk] = field(default_factory=list)

    def add(self, result: PushResult) -> None:
        self.statuses.append(result.status)
        self.gap = self.gap or result.gap
        self.reset = self.reset or result.reset


@dataclass(slots=True)
class _Event:
    index: int  # grid sample index
    segment: int  # contiguous segment number (events in different segments never pair)
    amplitude: float
    baseline: float
    offered: bool = False


class _Track:
    """One signal of one patient: ordering, rings and the streaming DSP."""

    def __init__(self, signal: Signal, ring_s: float, horizon_s: float) -> None:
        self.signal = signal
        self.ring_s = ring_s
        self.sequencer = SignalSequencer(signal, horizon_s)
        self.fs = 0.0
        self.raw = RingBuffer(1)
        self.filtered = RingBuffer(1)
        self.events: deque[_Event] = deque()
        # Intervals (grid samples) between events already forgotten, for the RR history;
        # events are kept only EVENT_MEMORY_S, fewer than RR_HISTORY_BEATS at slow rates.
        self.forgotten_intervals: deque[int] = deque(maxlen=RR_HISTORY_BEATS)
        self.segment = 0
        self.segment_start = 0  # grid index where the current contiguous segment began
        self.final_until = 0  # grid index up to which the DSP's events are decided
        self.detector: StreamingRPeakDetector | StreamingPulseDetector | None = None
        self.filter: StreamingSosFilter | None = None
        # Unchanged-value run tracking (lead-off): start of the current run, last sample.
        self.flat_since: int | None = None
        self.last_value: float | None = None
        self.flat_boundary_segment = -1  # segment that began where a flat run ended
        self.breath_amplitude: float | None = None  # RESP: size of recent usable breaths

    # grid <-> time
    def t_ms(self, index: float) -> float:
        return self.sequencer.t0_ms + index * 1000.0 / self.fs

    def index_at(self, t_ms: float) -> int:
        return math.ceil((t_ms - self.sequencer.t0_ms) * self.fs / 1000.0 - 1e-6)

    @property
    def end_ms(self) -> float:
        return self.sequencer.end_ms

    @property
    def final_ms(self) -> float:
        return self.t_ms(self.final_until)

    def restart(self, fs: float) -> None:
        self.fs = fs
        cap = math.ceil(self.ring_s * fs) + 1
        self.raw = RingBuffer(cap)
        self.filtered = RingBuffer(cap)
        self.events.clear()
        self.forgotten_intervals.clear()
        self.segment += 1
        self.segment_start = 0
        self.final_until = 0
        self.flat_since = None
        self.last_value = None
        self.breath_amplitude = None
        if self.signal in (Signal.ECG, Signal.ECG2):
            self.detector = StreamingRPeakDetector(fs)
        elif self.signal in (Signal.PPG, Signal.ABP):  # both are pulse waves
            self.detector = StreamingPulseDetector(fs)
        else:
            self.filter = resp_filter(fs)

    def feed(self, rel: Released) -> None:
        chunk = rel.chunk
        if rel.reset or (self.detector is None and self.filter is None):
            self.restart(chunk.fs)
        if rel.gap_samples > 0:
            self.segment += 1
            self.segment_start = rel.start_index
            if self.detector is not None:
                self.detector.skip(rel.gap_samples)
            elif self.filter is not None:
                self.filter.reset()
            self.flat_since = None
            self.last_value = None
        x = chunk.samples.astype(np.float64)
        self.raw.write(rel.start_index, x)
        if self.detector is not None:
            self._track_flat_runs(rel.start_index, x)
        if isinstance(self.detector, StreamingRPeakDetector):
            out = self.detector.process(x)
            self.filtered.write(rel.start_index, out.bandpassed)
            self._add_beats(out)
        elif isinstance(self.detector, StreamingPulseDetector):
            pout = self.detector.process(x)
            self.filtered.write(rel.start_index, pout.filtered)
            self._add_pulses(pout)
        else:
            assert self.filter is not None
            self.filtered.write(rel.start_index, self.filter.process(x))
            self.final_until = rel.start_index + chunk.n
            self._forget_old_events()

    def flush(self) -> None:
        """Decide the events held back for look-ahead: the data up to its end is final."""
        if isinstance(self.detector, StreamingRPeakDetector):
            self._add_beats(self.detector.flush())
        elif isinstance(self.detector, StreamingPulseDetector):
            self._add_pulses(self.detector.flush())

    def _add_beats(self, out: DetectorOutput) -> None:
        for b in out.beats:
            amp = float(self.filtered.read(int(b), int(b) + 1)[0])
            base = float(self.raw.read(int(b), int(b) + 1)[0])
            self.events.append(_Event(int(b), self._segment_of(int(b)), amp, base))
        self.final_until = out.final_until
        self._forget_old_events()

    def _add_pulses(self, out: PulseOutput) -> None:
        for p, a in zip(out.pulses, out.amplitudes, strict=True):
            base = float(self.raw.read(int(p), int(p) + 1)[0])
            self.events.append(_Event(int(p), self._segment_of(int(p)), float(a), base))
        self.final_until = out.final_until
        self._forget_old_events()

    def _forget_old_events(self) -> None:
        horizon = self.final_until - round(EVENT_MEMORY_S * self.fs)
        while self.events and self.events[0].index < horizon:
            e = self.events.popleft()
            if self.events and self.events[0].segment == e.segment:
                self.forgotten_intervals.append(self.events[0].index - e.index)

    def _track_flat_runs(self, start: int, x: np.ndarray) -> None:
        """Follow runs of bit-identical samples; when one of >= FLAT_RUN_S ends, the signal
        resumes in a new segment (beat bookkeeping restarts there, as after a gap)."""
        if x.size == 0:
            return
        prev = x[0] if self.last_value is None else self.last_value
        changed = np.empty(x.size, dtype=bool)
        changed[0] = x[0] != prev
        np.not_equal(x[1:], x[:-1], out=changed[1:])
        self.last_value = float(x[-1])
        if self.flat_since is None:
            self.flat_since = start
        min_run = round(FLAT_RUN_S * self.fs)
        if changed.all():  # the usual chunk of live signal: only the carried run can end
            if start - self.flat_since >= min_run:
                self._flat_run_ended(start)
            self.flat_since = start + x.size - 1
            return
        changes = start + np.flatnonzero(changed)
        if changes.size == 0:
            return
        run_starts = np.concatenate(([self.flat_since], changes[:-1]))
        long_runs = np.flatnonzero(changes - run_starts >= min_run)
        if long_runs.size:
            self._flat_run_ended(int(changes[long_runs[-1]]))
        self.flat_since = int(changes[-1])

    def _flat_run_ended(self, resume: int) -> None:
        self.segment += 1
        self.segment_start = resume
        self.flat_boundary_segment = self.segment

    def _segment_of(self, index: int) -> int:
        """Segment of an event just decided: the detector reports beats up to ~0.45 s late,
        so one that precedes the end of a flat run still belongs to the segment before it."""
        if self.segment == self.flat_boundary_segment and index < self.segment_start:
            return self.segment - 1
        return self.segment

    def flat_run_start(self) -> int | None:
        """Grid index where an ongoing flat run (>= FLAT_RUN_S so far) began, else None."""
        if self.flat_since is None or self.detector is None:
            return None
        if self.raw.end_index - self.flat_since >= round(FLAT_RUN_S * self.fs):
            return self.flat_since
        return None

    def events_between(self, i0: int, i1: int) -> list[_Event]:
        return [e for e in self.events if i0 <= e.index < i1]

    def last_event_before(self, i0: int, segment: int) -> _Event | None:
        prev = None
        for e in self.events:
            if e.index >= i0:
                break
            prev = e
        return prev if prev is not None and prev.segment == segment else None


class PatientMonitor:
    """Streaming DSP state of one patient."""

    def __init__(
        self,
        patient_id: str,
        window_s: float = 10.0,
        hop_s: float = 2.0,
        horizon_s: float = REORDER_HORIZON_S,
        align_hold_s: float = ALIGN_HOLD_S,
        defer_spectral: bool = False,
    ) -> None:
        """``defer_spectral``: leave each ECG lead's spectral indices (pSQI, basSQI,
        low band) to :func:`complete_spectral`, which computes them for the windows of many
        patients in one vectorised call (the pipeline does, per poll); without it each window
        is complete when it closes."""
        self.patient_id = patient_id
        self.defer_spectral = defer_spectral
        self.align_hold_ms = align_hold_s * 1000.0
        self.window_s = window_s
        self.hop_s = hop_s
        self.horizon_s = horizon_s
        ring_s = window_s + horizon_s + 2.0
        self.tracks: dict[Signal, _Track] = {
            Signal.ECG: _Track(Signal.ECG, ring_s, horizon_s),
            Signal.ECG2: _Track(Signal.ECG2, ring_s, horizon_s),
            Signal.PPG: _Track(Signal.PPG, ring_s, horizon_s),
            Signal.ABP: _Track(Signal.ABP, ring_s, horizon_s),
            Signal.RESP: _Track(Signal.RESP, max(ring_s, RESP_LOOKBACK_S + horizon_s), horizon_s),
        }
        self.schedule = WindowSchedule(window_s, hop_s)
        self._derived: dict[Signal, tuple[float, RespEstimate]] = {}
        # Chunks waiting for a lagging signal's topic, per signal in arrival order.
        self._held: dict[Signal, deque[tuple[float, SampleChunk]]] = {signal: deque() for signal in self.tracks}
        self._closed_any = False

    # -- input ---------------------------------------------------------------------------

    def push(self, chunk: SampleChunk, produced_s: float = 0.0, unread: UnreadFn | None = None) -> MonitorOutput:
        """Add one chunk, produced at ``produced_s`` (the transport's timestamp); ``unread``
        tells whether another signal may still be on its way (see the module docstring)."""
        out = MonitorOutput()
        if self.held or (unread is not None and self._waits_for(chunk, produced_s, unread)):
            self._held[chunk.signal].append((produced_s, chunk))
            self._release(unread, out)
        else:
            self._feed(chunk, out)
        out.held = self.held
        return out

    def flush(self) -> MonitorOutput:
        """The patient's devices went quiet: stop waiting for look-ahead and for missing
        chunks, and close every window the data now covers (the last one ends at the data's
        end when that falls on the hop grid). Data that arrives later carries on."""
        out = MonitorOutput()
        self._release(None, out)  # the worker has read everything of this patient
        for track in self._live():
            result = track.sequencer.release_held()
            out.gap = out.gap or result.gap
            for rel in result.released:
                track.feed(rel)
            track.flush()
        self._close(out)
        out.held = self.held
        return out

    @property
    def held(self) -> int:
        return sum(len(queue) for queue in self._held.values())

    def holds(self, chunk: SampleChunk) -> bool:
        """Whether ``chunk``, the one just pushed, is waiting (it is last in its queue)."""
        queue = self._held[chunk.signal]
        return bool(queue) and queue[-1][1] is chunk

    def drop_held(self) -> list[SampleChunk]:
        """Discard the held chunks and return them (their partition was revoked, or the
        patient's state is being reset); the caller decides what becomes of their messages."""
        dropped = [chunk for queue in self._held.values() for _, chunk in queue]
        for queue in self._held.values():
            queue.clear()
        return dropped

    def _feed(self, chunk: SampleChunk, out: MonitorOutput) -> None:
        track = self.tracks[chunk.signal]
        result: PushResult = track.sequencer.push(chunk)
        for rel in result.released:
            track.feed(rel)
        if result.released:
            self.schedule.start(result.released[0].chunk.ts_ms)
        out.add(result)
        # Windows close chunk by chunk, also when held chunks go in together: the schedule
        # skips windows that fall due in one burst (a long silence), which these are not.
        self._close(out)

    def _close(self, out: MonitorOutput) -> None:
        windows = self._closable_windows()
        out.windows.extend(windows)
        self._closed_any = self._closed_any or bool(windows)

    def _release(self, unread: UnreadFn | None, out: MonitorOutput) -> None:
        """Feed held chunks, oldest first across signals, while any signal's oldest held chunk
        no longer waits or has waited too long. Feeding a lagging signal's own chunk can free
        the others. Without ``unread`` (a flush) everything goes."""
        while True:
            ready = []
            for signal, queue in self._held.items():
                if not queue:
                    continue
                first = queue[0][1]
                if unread is None or not self._waits_for(first, queue[0][0], unread):
                    ready.append((first.ts_ms, signal, False))
                elif queue[-1][1].end_ms - first.ts_ms > self.align_hold_ms:
                    ready.append((first.ts_ms, signal, True))
            if not ready:
                return
            _, signal, overdue = min(ready)
            out.overdue += int(overdue)
            chunk = self._held[signal].popleft()[1]
            out.released.append(chunk)
            self._feed(chunk, out)

    def _waits_for(self, chunk: SampleChunk, produced_s: float, unread: UnreadFn) -> bool:
        """Whether ``chunk`` must wait for another signal whose topic may still hold data
        produced before it: a live signal that has not reached the chunk's start (so no
        window closes with that signal's data still unread), or, before the patient's first
        window, one not heard from yet."""
        for signal, track in self.tracks.items():
            if signal == chunk.signal:
                continue
            if track.fs > 0:
                if track.end_ms < chunk.ts_ms and unread(signal, produced_s):
                    return True
            elif not self._closed_any and unread(signal, produced_s):
                return True
        return False

    def _closable_windows(self) -> list[WindowAnalysis]:
        windows = [self._window(t) for t in self.schedule.due(self._ready_until())]
        # A window in which no signal has any data (the devices were silent) is not a
        # measurement; the worker reports silence from its wall-clock timers.
        return [w for w in windows if w.ecg or w.ecg2 or w.ppg or w.abp or w.resp]

    def _live(self) -> list[_Track]:
        return [t for t in self.tracks.values() if t.fs > 0]

    def _primary(self) -> _Track | None:
        live = self._live()
        if not live:
            return None
        newest = max(t.end_ms for t in live)
        for t in live:  # ECG, ECG2, PPG, ABP, RESP order
            if t.end_ms >= newest - self.window_s * 1000.0:
                return t
        return live[0]

    def _ready_until(self) -> float:
        primary = self._primary()
        if primary is None:
            return -math.inf
        ready = primary.final_ms
        late_allowance = primary.end_ms - self.horizon_s * 1000.0
        for t in self._live():
            if t is primary or t.end_ms < ready - self.window_s * 1000.0:
                continue  # silent signal: it does not hold windows back
            ready = min(ready, max(t.final_ms, late_allowance))
        return ready

    # -- window assembly -----------------------------------------------------------------

    def _window(self, end_ms: float) -> WindowAnalysis:
        t_ms = round(end_ms)
        start_ms = end_ms - self.window_s * 1000.0
        gaps: list[str] = []
        wa = WindowAnalysis(patient_id=self.patient_id, t_ms=t_ms, window_s=self.window_s)
        ecg = self.tracks[Signal.ECG]
        if ecg.fs > 0:
            self._ecg_window(ecg, start_ms, end_ms, wa, gaps)
        ecg2 = self.tracks[Signal.ECG2]
        if ecg2.fs > 0:
            lead = self._ecg_lead(ecg2, start_ms, end_ms, gaps)
            if lead is not None:
                wa.ecg2 = lead.findings
                if lead.spectral_raw is not None:
                    wa.spectral_pending.append(("ecg2", lead.spectral_raw, ecg2.fs))
                wa.ecg2_input = self._model_input(ecg2, lead)
        ppg = self.tracks[Signal.PPG]
        if ppg.fs > 0:
            wa.ppg = self._ppg_findings(ppg, start_ms, end_ms, gaps)
        abp = self.tracks[Signal.ABP]
        if abp.fs > 0:
            wa.abp = self._abp_findings(abp, start_ms, end_ms, gaps)
        wa.resp = self._resp_findings(end_ms, gaps)
        wa.gaps = tuple(gaps)
        return wa

    def _ecg_lead(self, tr: _Track, start_ms: float, end_ms: float, gaps: list[str]) -> _LeadWindow | None:
        """The DSP measurements of one ECG lead over the window (None: no data at all)."""
        i0, i1 = tr.index_at(start_ms), tr.index_at(end_ms)
        raw = tr.raw.read(i0, i1)
        missing = np.isnan(raw)
        if missing.any():
            gaps.append(tr.signal.value)
        if missing.all():
            return None
        bp = tr.filtered.read(i0, i1)
        fs = tr.fs
        events = tr.events_between(i0, i1)
        idx = np.array([e.index for e in events], dtype=np.int64)
        quality = ecg_quality(raw, bp, fs, idx - i0)
        lead_off = quality.technical_fault
        prev = tr.last_event_before(i0, events[0].segment if events else tr.segment)
        chain = ([prev] if prev is not None else []) + events
        rr_s = _intervals_s(chain, fs)
        last_seg = chain[-1].segment if chain else -1
        times = np.array([e.index / fs for e in chain if e.segment == last_seg])
        pause = self._pause(tr, events, prev, i0, i1)
        sdnn, rmssd = hrv.hrv_time(rr_s * 1000.0)
        usable = quality.usable and not lead_off
        shape = (None if lead_off or missing.any()
                 else ecg_morphology(raw, bp, fs, idx - i0, spectral=not self.defer_spectral))
        findings = EcgFindings(
            quality=quality.quality,
            usable=bool(usable),
            lead_off=bool(lead_off),
            hr_bpm=None if lead_off else hrv.heart_rate(rr_s),
            n_beats=len(events),
            max_pause_s=None if lead_off else pause,
            hr_min_5beats=None if lead_off else hrv.rate_extreme(times, 5, lowest=True),
            hr_max_17beats=None if lead_off else hrv.rate_extreme(times, 17, lowest=False),
            hr_max_5beats=None if lead_off else hrv.rate_extreme(times, 5, lowest=False),
            sdnn_ms=sdnn,
            rmssd_ms=rmssd,
            rr_irregularity=hrv.rr_irregularity(rr_s),
            kurtosis=_round(quality.kurtosis),
            template_corr=_round(quality.template_corr),
            psqi=None if shape is None else shape.psqi,
            basqi=None if shape is None else shape.basqi,
            low_band=None if shape is None else shape.low_band,
            qrs_width_ms=None if shape is None else shape.qrs_width_ms,
            qrs_width_max_ms=None if shape is None else shape.qrs_width_max_ms,
        )
        return _LeadWindow(findings, i0, i1, bp, idx, events, bool(missing.any()),
                           raw if shape is not None and self.defer_spectral else None)

    def _ecg_window(
        self, tr: _Track, start_ms: float, end_ms: float, wa: WindowAnalysis, gaps: list[str]
    ) -> None:
        """The first lead: its measurements plus what the models need."""
        lead = self._ecg_lead(tr, start_ms, end_ms, gaps)
        if lead is None:
            return
        wa.ecg = lead.findings
        if lead.spectral_raw is not None:
            wa.spectral_pending.append(("ecg", lead.spectral_raw, tr.fs))
        wa.ecg_fs = tr.fs
        model_input = self._model_input(tr, lead)
        if model_input is None:
            return
        wa.ecg_window = model_input.window
        wa.beat_samples = model_input.beat_samples
        wa.beat_is_new = model_input.beat_is_new
        wa.rr_history_ms = model_input.rr_history_ms

    @staticmethod
    def _model_input(tr: _Track, lead: _LeadWindow) -> LeadInput | None:
        """What the beat and VF models need from one lead's window, marking the beats it
        offers for classification (each beat is offered once). None for a window with a gap
        or a technical fault.

        The models run on every window that is not a technical fault, usable or not: a
        window mixing sinus and ventricular beats (VT onset) or a fibrillating one has a
        poor single-template correlation precisely because of the arrhythmia. Whether a
        finding on a poor signal may alarm is each alert type's quality gate to decide."""
        if lead.has_gap or lead.findings.lead_off:
            return None
        fs, i0, i1, events = tr.fs, lead.i0, lead.i1, lead.events
        post = round(BEAT_POST_S * fs)
        new = np.array([not e.offered and e.index + post <= i1 for e in events], dtype=bool)
        for e, is_new in zip(events, new, strict=True):
            if is_new:
                e.offered = True
        before = [e for e in tr.events if e.index < i0]
        hist = _intervals_s(before[-(RR_HISTORY_BEATS + 1) :], fs) * 1000.0
        if hist.size < RR_HISTORY_BEATS and tr.forgotten_intervals:
            older = np.asarray(tr.forgotten_intervals, dtype=np.float64) * 1000.0 / fs
            hist = np.concatenate([older, hist])
        return LeadInput(fs, lead.filtered.astype(np.float32), lead.beats - i0, new,
                         hist[-RR_HISTORY_BEATS:])

    @staticmethod
    def _pause(tr: _Track, events: list[_Event], prev: _Event | None, i0: int, i1: int) -> float:
        """Longest event-free interval (s) touching the window, including the open interval
        to the window end (or to the end of data if it stops earlier). An interval never
        spans a gap: after one it counts from the first sample after the gap (a lower bound)."""
        fs = tr.fs

        def seg_floor(segment: int) -> int:
            return max(i0, tr.segment_start) if segment == tr.segment else i0

        longest = 0.0
        anchor = prev
        for e in events:
            same = anchor is not None and anchor.segment == e.segment
            start = anchor.index if same and anchor is not None else seg_floor(e.segment)
            longest = max(longest, (e.index - start) / fs)
            anchor = e
        data_end = min(i1, tr.raw.end_index)
        flat_from = tr.flat_run_start()
        if flat_from is not None:
            # A flat (lead-off) stretch at the end is no data, not a pause: stop before it.
            data_end = max(min(data_end, flat_from), seg_floor(tr.segment))
        if anchor is not None and anchor.segment == tr.segment:
            longest = max(longest, (data_end - anchor.index) / fs)
        elif anchor is None or anchor.segment != tr.segment:
            longest = max(longest, (data_end - seg_floor(tr.segment)) / fs)
        return round(longest, 3)

    def _pulse_window(self, tr: _Track, start_ms: float, end_ms: float, gaps: list[str]) -> _PulseWindow | None:
        """What PPG and ABP share: pulses, quality, rate, pause (None: no data at all)."""
        i0, i1 = tr.index_at(start_ms), tr.index_at(end_ms)
        raw = tr.raw.read(i0, i1)
        missing = np.isnan(raw)
        if missing.any():
            gaps.append(tr.signal.value)
        if missing.all():
            return None
        filt = tr.filtered.read(i0, i1)
        events = tr.events_between(i0, i1)
        idx = np.array([e.index for e in events], dtype=np.int64)
        quality = ppg_quality(raw, filt, tr.fs, idx - i0)
        prev = tr.last_event_before(i0, events[0].segment if events else tr.segment)
        chain = ([prev] if prev is not None else []) + events
        intervals = _intervals_s(chain, tr.fs)
        pause = None if quality.technical_fault else self._pause(tr, events, prev, i0, i1)
        return _PulseWindow(raw, idx - i0, events, quality.quality, quality.usable, intervals, pause,
                            _round(quality.template_corr))

    def _ppg_findings(
        self, tr: _Track, start_ms: float, end_ms: float, gaps: list[str]
    ) -> PpgFindings | None:
        pw = self._pulse_window(tr, start_ms, end_ms, gaps)
        if pw is None:
            return None
        usable = pw.usable
        rate = hrv.heart_rate(pw.intervals_s) if usable else None
        amplitudes = np.array([e.amplitude for e in pw.events])
        return PpgFindings(
            quality=pw.quality,
            usable=bool(usable),
            pulsatile=bool(usable and rate is not None),
            pulse_rate_bpm=rate,
            max_pause_s=pw.max_pause_s,
            irregularity=hrv.rr_irregularity(pw.intervals_s) if usable else None,
            perfusion_index=perfusion_index(pw.raw, amplitudes) if usable else None,
            template_corr=pw.template_corr,
        )

    def _abp_findings(
        self, tr: _Track, start_ms: float, end_ms: float, gaps: list[str]
    ) -> AbpFindings | None:
        pw = self._pulse_window(tr, start_ms, end_ms, gaps)
        if pw is None:
            return None
        pressures = arterial_pressures(pw.raw, pw.pulses)
        # An implausible mean (transducer fault, flush) makes the whole window unusable; a
        # damped line keeps its pressures but is no evidence of a pulse (stream.dsp.abp).
        usable = pw.usable and (pressures is None or pressures.plausible)
        rate = hrv.heart_rate(pw.intervals_s) if usable else None
        pulsatile = usable and rate is not None and pressures is not None and pressures.pulsatile
        shown = pressures if pressures is not None and pressures.plausible else None
        return AbpFindings(
            quality=pw.quality,
            usable=bool(usable),
            pulsatile=bool(pulsatile),
            pulse_rate_bpm=rate,
            max_pause_s=pw.max_pause_s,
            irregularity=hrv.rr_irregularity(pw.intervals_s) if usable else None,
            systolic_mmhg=None if shown is None else shown.systolic_mmhg,
            diastolic_mmhg=None if shown is None else shown.diastolic_mmhg,
            mean_mmhg=None if shown is None else shown.mean_mmhg,
            template_corr=pw.template_corr,
        )

    def _resp_findings(self, end_ms: float, gaps: list[str]) -> RespFindings | None:
        tr = self.tracks[Signal.RESP]
        best: tuple[RespEstimate, str, float | None] | None = None
        if tr.fs > 0:
            i1 = tr.index_at(end_ms)
            w0 = tr.index_at(end_ms - self.window_s * 1000.0)
            raw_w = tr.raw.read(w0, i1)
            if np.isnan(raw_w).any():
                gaps.append("resp")
            i0 = tr.index_at(end_ms - RESP_LOOKBACK_S * 1000.0)
            filt = tr.filtered.read(i0, i1)
            # Trailing contiguous stretch, skipping the filter's settling after a restart.
            ok = np.isfinite(filt)
            last_bad = np.flatnonzero(~ok)
            lo = int(last_bad[-1]) + 1 if last_bad.size else 0
            lo = max(lo, tr.segment_start + round(5.0 * tr.fs) - i0, 0)
            if filt.size - lo >= MIN_RESP_SPAN_S * tr.fs:
                x = filt[lo:]
                ref = tr.breath_amplitude
                min_amp = None if ref is None else BREATH_MIN_FRACTION * ref
                est = resp_rate(x, tr.fs, min_amp)
                span_s = x.size / tr.fs
                last_breath_s = float(est.breaths_s[-1]) if est.breaths_s.size else 0.0
                since_breath = span_s - last_breath_s
                # No breath for APNOEA_RATE_S and a clean flat line over that stretch (no
                # breath-sized swing: exactly flat, or under the patient's breath floor).
                # That is apnoea, not a reason to fall back to ECG/PPG-derived respiration
                # (which reports a normal rate).
                recent = x[-round(APNOEA_RATE_S * tr.fs) :]
                flat = since_breath >= APNOEA_RATE_S and (
                    float(np.ptp(recent)) == 0.0
                    or (min_amp is not None and breath_amplitude(recent) < min_amp)
                )
                pause = None
                if est.rate_bpm is not None or est.breaths_s.size or flat:
                    pause = hrv.max_pause(est.breaths_s, 0.0, span_s)
                if est.usable and since_breath < APNOEA_RATE_S:
                    tr.breath_amplitude = breath_amplitude(x)
                best = (est, "resp", pause)
                if flat and pause is not None:
                    return RespFindings(None, "resp", 1.0, True, round(pause, 3))
                if est.usable:
                    return RespFindings(est.rate_bpm, "resp", est.quality, True, pause)
        for sig in (Signal.PPG, Signal.ECG):
            src = self.tracks[sig]
            if src.fs <= 0:
                continue
            i1 = src.index_at(end_ms)
            i0 = src.index_at(end_ms - RESP_LOOKBACK_S * 1000.0)
            cached = self._derived.get(sig)
            if cached is not None and end_ms - cached[0] < DERIVED_REFRESH_S * 1000.0:
                est = cached[1]
            else:
                evs = [e for e in src.events_between(i0, i1) if e.segment == src.segment]
                if len(evs) < 6:
                    continue
                times = np.array([e.index / src.fs for e in evs])
                est = derived_resp_rate(
                    times,
                    np.array([e.amplitude for e in evs]),
                    np.array([e.baseline for e in evs]),
                    times[-1] - times[0],
                )
                self._derived[sig] = (end_ms, est)
            name = sig.value
            if est.rate_bpm is not None and (
                best is None or est.quality > best[0].quality or best[0].rate_bpm is None
            ):
                best = (est, name, None)
        if best is None:
            return None
        est, name, pause = best
        return RespFindings(est.rate_bpm, name, est.quality, bool(est.usable), pause)


@dataclass(frozen=True, slots=True)
class _LeadWindow:
    findings: EcgFindings
    i0: int  # grid index of the window start
    i1: int
    filtered: np.ndarray
    beats: np.ndarray  # grid indices of the window's beats
    events: list[_Event]
    has_gap: bool
    # The raw window whose spectral indices are left to complete_spectral (deferred).
    spectral_raw: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class _PulseWindow:
    raw: np.ndarray
    pulses: np.ndarray  # indices into ``raw``
    events: list[_Event]
    quality: float
    usable: bool
    intervals_s: np.ndarray
    max_pause_s: float | None
    template_corr: float | None = None


def complete_spectral(windows: Sequence[WindowAnalysis]) -> None:
    """Fill in the spectral indices that monitors with ``defer_spectral`` left out, for all
    these windows (of any patients) in one vectorised Welch call per window length: the
    values are bit-identical to computing each window's on its own
    (:func:`stream.dsp.morphology.ecg_spectral_sqi_many`), and a poll's windows cost one
    call instead of one per lead."""
    pending = [(w, lead, raw, fs) for w in windows for lead, raw, fs in w.spectral_pending]
    if not pending:
        return
    values = ecg_spectral_sqi_many([raw for _, _, raw, _ in pending], [fs for _, _, _, fs in pending])
    for (w, lead, _, _), sqi in zip(pending, values, strict=True):
        psqi, basqi, low = rounded_sqi(sqi)
        setattr(w, lead, replace(getattr(w, lead), psqi=psqi, basqi=basqi, low_band=low))
    for w in windows:
        w.spectral_pending = []


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _intervals_s(events: list[_Event], fs: float) -> np.ndarray:
    """Intervals (s) between consecutive events of the same contiguous segment."""
    return np.array(
        [(b.index - a.index) / fs for a, b in itertools.pairwise(events) if a.segment == b.segment],
        dtype=np.float64,
    )
