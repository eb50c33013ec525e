"""From sample chunks to findings for many patients at once — no Kafka, no Redis.

The Faust vitals agent, the benchmarks and the tests all drive this one class, so the
streaming path under test is the production path. Per patient it keeps a
:class:`~stream.monitor.PatientMonitor` (windows and incremental DSP) and a
:class:`~models.trends.TrendTracker`; across patients it batches model inference: all
windows completed by one poll go through the models in a single call.

Per-patient DSP state lives in memory, not in a changelogged table: it is seconds of
signal that a new owner rebuilds within one window after a rebalance (the findings
simply start one window later), while alert state — which must survive — is in the
aggregator's table. Trend state is hours of history that no window rebuilds: a
:class:`TrendStore` (the worker's changelogged table) keeps a copy, saved once a minute of
event time, and a patient new to this pipeline starts from it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from models.runtime import ModelOutputs, ModelRuntime
from models.trends import BIN_S, HISTORY_BINS, TrendTracker
from stream.findings import VitalsFinding
from stream.monitor import ALIGN_HOLD_S, MonitorOutput, PatientMonitor, UnreadFn, complete_spectral
from stream.schema import SampleChunk
from stream.window_analysis import WindowAnalysis

# A patient's trend state is saved at most this often (event time): a new owner loses at
# most this much of the current 5-minute bin.
TREND_SAVE_EVERY_S = 60.0
# A new owner may read a patient's first windows before the store has caught up (a worker
# that just took the partition over is still restoring the table), so a patient found
# without saved state is looked up again, window by window, for this long of event time;
# meanwhile its own fresh state is not saved, so it cannot overwrite the copy on its way.
TREND_LOOKUP_S = 60.0


class TrendStore(Protocol):
    """Where trend state outlives this pipeline (a worker restart or a rebalance)."""

    def load(self, patient_id: str) -> TrendTracker | None: ...

    def save(self, patient_id: str, tracker: TrendTracker) -> None: ...

    def delete(self, patient_id: str) -> None: ...


@dataclass
class PipelineCounters:
    chunks: Counter[str] = field(default_factory=Counter)  # by ChunkStatus value
    findings: int = 0
    gaps: int = 0
    resets: int = 0
    held: int = 0  # chunks held back for a lagging signal's topic (see PatientMonitor)
    held_now: int = 0  # chunks waiting so, over all patients, now and at the peak
    held_peak: int = 0
    held_overdue: int = 0  # let go after align_hold_s: the lagging signal became a gap
    trends_saved: int = 0  # copies of trend state handed to the TrendStore
    trends_restored: int = 0  # patients whose trend state came from it
    patients_left: int = 0  # forgotten after forget_idle_s without data (see forget_idle)
    trends_expired: int = 0  # their saved copies deleted once older than the trend history

    def as_dict(self) -> dict[str, object]:
        return {
            "chunks": dict(self.chunks),
            "findings": self.findings,
            "gaps": self.gaps,
            "resets": self.resets,
            "held": self.held,
            "held_now": self.held_now,
            "held_peak": self.held_peak,
            "held_overdue": self.held_overdue,
            "trends_saved": self.trends_saved,
            "trends_restored": self.trends_restored,
            "patients_left": self.patients_left,
            "trends_expired": self.trends_expired,
        }


class VitalsPipeline:
    def __init__(
        self,
        runtime: ModelRuntime,
        *,
        window_s: float = 10.0,
        hop_s: float = 2.0,
        align_hold_s: float = ALIGN_HOLD_S,
        clock: Callable[[], float] = time.monotonic,
        on_release: Callable[[SampleChunk], None] | None = None,
        trend_store: TrendStore | None = None,
        trend_lookup_s: float = TREND_LOOKUP_S,
    ) -> None:
        """``on_release(chunk)``: a chunk that a monitor held back (see :meth:`holds`) left the
        hold, analysed or dropped with its patient; the worker acknowledges its message then.
        ``trend_store``: trend state of patients new to this pipeline, and saved copies;
        ``trend_lookup_s``: how long a patient without a stored copy is looked up again."""
        self.runtime = runtime
        self.on_release = on_release
        self.trend_store = trend_store
        self.trend_lookup_ms = trend_lookup_s * 1000.0
        self.trends_saved_ms: dict[str, int] = {}
        # Patients still looked up in the store: event time of their first window.
        self.trends_unsettled: dict[str, int] = {}
        self.window_s = window_s
        self.hop_s = hop_s
        self.align_hold_s = align_hold_s
        self.clock = clock
        self.monitors: dict[str, PatientMonitor] = {}
        # Wall-clock time of each patient's newest chunk (flush_idle, forget_idle), and the
        # patients with chunks since their last flush.
        self.last_chunk_at: dict[str, float] = {}
        self.unflushed: set[str] = set()
        # Patients forgotten by forget_idle: the event time of their saved trend state.
        self.departed: dict[str, int] = {}
        self.newest_t_ms = 0  # newest window of any patient (event time)
        self.trends: dict[str, TrendTracker] = {}
        self.counters = PipelineCounters()

    def push(self, chunk: SampleChunk, produced_s: float = 0.0, unread: UnreadFn | None = None) -> list[WindowAnalysis]:
        """Add one valid chunk to its patient's monitor; return the windows it completes.
        ``produced_s`` and ``unread``: see :meth:`PatientMonitor.push` (a worker reading a
        backlog)."""
        monitor = self.monitors.get(chunk.patient_id)
        if monitor is None:
            # Spectral indices deferred to assemble(): one vectorised call for the poll's windows.
            monitor = PatientMonitor(
                chunk.patient_id, window_s=self.window_s, hop_s=self.hop_s, align_hold_s=self.align_hold_s,
                defer_spectral=True,
            )
            self.monitors[chunk.patient_id] = monitor
        held_before = monitor.held
        out = monitor.push(chunk, produced_s, unread)
        self.last_chunk_at[chunk.patient_id] = self.clock()
        self.unflushed.add(chunk.patient_id)
        self.counters.held += int(monitor.holds(chunk))
        self._count(out, held_before)
        return out.windows

    def holds(self, chunk: SampleChunk) -> bool:
        """Whether the chunk just pushed is being held back for a lagging topic: its message
        must not count as processed (committed) until :attr:`on_release` says so, or a
        worker that stops would lose it."""
        monitor = self.monitors.get(chunk.patient_id)
        return monitor is not None and monitor.holds(chunk)

    def drop_held(self, patient_id: str) -> list[SampleChunk]:
        """Discard a patient's held chunks without releasing them, and return them (its
        partition was revoked: their messages are read again by whoever owns it next)."""
        monitor = self.monitors.get(patient_id)
        if monitor is None:
            return []
        dropped = monitor.drop_held()
        self._count_held(-len(dropped))
        return dropped

    def process(self, chunks: Iterable[SampleChunk]) -> list[VitalsFinding]:
        """Push valid chunks (any patients, any order) and return the findings they complete."""
        windows: list[WindowAnalysis] = []
        for chunk in chunks:
            windows.extend(self.push(chunk))
        return self.assemble(windows)

    def flush(self, patient_id: str) -> list[WindowAnalysis]:
        """The patient's stream ended or paused: close the windows its data already covers
        (see :meth:`PatientMonitor.flush`)."""
        self.unflushed.discard(patient_id)
        monitor = self.monitors.get(patient_id)
        if monitor is None:
            return []
        held_before = monitor.held
        out = monitor.flush()
        self._count(out, held_before)
        return out.windows

    def _count(self, out: MonitorOutput, held_before: int) -> None:
        if self.on_release is not None:
            for chunk in out.released:
                self.on_release(chunk)
        self.counters.chunks.update(status.value for status in out.statuses)
        self.counters.gaps += int(out.gap)
        self.counters.resets += int(out.reset)
        self.counters.held_overdue += out.overdue
        self._count_held(out.held - held_before)

    def _count_held(self, change: int) -> None:
        if change:
            self.counters.held_now += change
            self.counters.held_peak = max(self.counters.held_peak, self.counters.held_now)

    def flush_idle(self, idle_s: float, caught_up: Callable[[str], bool] | None = None) -> list[WindowAnalysis]:
        """Flush every patient that sent nothing for ``idle_s`` wall-clock seconds.

        A live device that stops (disconnected, recording finished) would otherwise leave
        its last window — the one ending at the newest data — waiting for look-ahead that
        never comes; an alarm at the end of the stream must not wait for the next chunk.
        ``caught_up(patient_id)`` false means more of the patient's data is already
        waiting for this worker (it lags, see :mod:`stream.consumer_progress`): that
        silence is not the device's, so the patient is not flushed.
        """
        cutoff = self.clock() - idle_s
        idle = [p for p in self.unflushed
                if self.last_chunk_at[p] <= cutoff and (caught_up is None or caught_up(p))]
        windows: list[WindowAnalysis] = []
        for patient_id in idle:
            windows.extend(self.flush(patient_id))
        return windows

    def restart_idle_clocks(self) -> None:
        """Count every patient's silence from now (the worker itself stopped reading, e.g.
        during a rebalance)."""
        now = self.clock()
        for patient_id in self.last_chunk_at:
            self.last_chunk_at[patient_id] = now

    def forget_idle(self, idle_s: float, caught_up: Callable[[str], bool] | None = None) -> list[str]:
        """Forget the patients that sent nothing for ``idle_s`` wall-clock seconds (their
        devices left: discharge, transfer, a monitor switched off), after saving their trend
        state; return their ids.

        Without this a worker keeps the windows, filter state and beat memory of every
        patient it ever saw, and a ward's admissions grow its memory for good. A device that
        comes back starts like a new one: fresh windows (its data would be a gap anyway) and
        the trends from the saved copy. Only patients already flushed (see :meth:`flush_idle`),
        holding no chunks and, per ``caught_up``, whose data is not waiting unread."""
        cutoff = self.clock() - idle_s
        gone = [p for p, t in self.last_chunk_at.items()
                if t <= cutoff and p not in self.unflushed
                and not (p in self.monitors and self.monitors[p].held)
                and (caught_up is None or caught_up(p))]
        for patient_id in gone:
            tracker = self.trends.get(patient_id)
            saved_t_ms = None
            if tracker is not None and tracker.last_t_ms is not None:
                saved_t_ms = tracker.last_t_ms
                self._save_trends(patient_id, saved_t_ms, tracker, force=True)
            self.forget(patient_id)  # (also drops it from departed)
            if saved_t_ms is not None:
                self.departed[patient_id] = saved_t_ms
            self.counters.patients_left += 1
        return gone

    def expire_departed_trends(self, history_s: float = HISTORY_BINS * BIN_S) -> list[str]:
        """Delete the saved trend state of patients gone (see :meth:`forget_idle`) for longer
        than the trend history, by the newest event time this pipeline has seen: a tracker
        that old would drop all its bins, so the copy only takes room in the store. Only
        this pipeline's own departures are known: a copy left by a patient who departed
        before a restart or a rebalance stays."""
        if self.trend_store is None:
            return []
        cutoff = self.newest_t_ms - history_s * 1000.0
        expired = [p for p, t in self.departed.items() if t < cutoff]
        for patient_id in expired:
            del self.departed[patient_id]
            self.trend_store.delete(patient_id)
            self.counters.trends_expired += 1
        return expired

    def assemble(self, windows: Sequence[WindowAnalysis]) -> list[VitalsFinding]:
        if not windows:
            return []
        complete_spectral(windows)
        outputs = self.runtime.analyse(windows)
        findings = [self._finding(w, out) for w, out in zip(windows, outputs, strict=True)]
        self.counters.findings += len(findings)
        return findings

    def forget(self, patient_id: str) -> None:
        """Drop a patient's state (e.g. discharged, or its partition moved to another worker)."""
        monitor = self.monitors.pop(patient_id, None)
        if monitor is not None:
            self._count_held(-monitor.held)
            for chunk in monitor.drop_held():
                if self.on_release is not None:
                    self.on_release(chunk)
        self.unflushed.discard(patient_id)
        self.last_chunk_at.pop(patient_id, None)
        self.departed.pop(patient_id, None)
        self.trends.pop(patient_id, None)
        self.trends_saved_ms.pop(patient_id, None)
        self.trends_unsettled.pop(patient_id, None)
        self.runtime.forget(patient_id)

    def _finding(self, window: WindowAnalysis, out: ModelOutputs) -> VitalsFinding:
        ecg = window.ecg
        if ecg is not None:
            ecg = replace(
                ecg,
                beat_counts=dict(out.beat_counts),
                v_run_length=out.v_run_length,
                v_run_rate_bpm=out.v_run_rate_bpm,
                rhythm=out.rhythm,
                rhythm_probs=dict(out.rhythm_probs),
                vf_score=out.vf_score,
                vf_seconds=out.vf_seconds,
            )
        ecg2 = window.ecg2
        second = out.second_lead
        if ecg2 is not None and second is not None:
            ecg2 = replace(
                ecg2,
                beat_counts=dict(second.beat_counts),
                v_run_length=second.v_run_length,
                v_run_rate_bpm=second.v_run_rate_bpm,
                vf_score=second.vf_score,
                vf_seconds=second.vf_seconds,
            )
        finding = VitalsFinding(
            patient_id=window.patient_id,
            t_ms=window.t_ms,
            window_s=window.window_s,
            ecg=ecg,
            ecg2=ecg2,
            ppg=window.ppg,
            resp=window.resp,
            abp=window.abp,
            gaps=window.gaps,
            model_version=self.runtime.model_version,
        )
        self.newest_t_ms = max(self.newest_t_ms, window.t_ms)
        tracker = self._tracker(window.patient_id, window.t_ms)
        trends, news2 = tracker.update(finding)
        self._save_trends(window.patient_id, window.t_ms, tracker)
        return replace(finding, trends=tuple(trends), news2=news2)

    def _tracker(self, pid: str, t_ms: int) -> TrendTracker:
        """The patient's trend tracker: the one in memory, else the stored copy (looked up
        again for TREND_LOOKUP_S while none is found), else a new one."""
        tracker = self.trends.get(pid)
        if tracker is None:
            self.departed.pop(pid, None)  # back: its copy is live again
            tracker = self.trends[pid] = TrendTracker()
            if self.trend_store is not None:
                self.trends_unsettled[pid] = t_ms
        first_ms = self.trends_unsettled.get(pid)
        if first_ms is not None and self.trend_store is not None:
            stored = self.trend_store.load(pid)
            if stored is not None:
                # The few windows seen meanwhile are given up for the hours of history.
                tracker = self.trends[pid] = stored
                self.counters.trends_restored += 1
                del self.trends_unsettled[pid]
            elif t_ms - first_ms >= self.trend_lookup_ms:
                del self.trends_unsettled[pid]
        return tracker

    def _save_trends(self, pid: str, t_ms: int, tracker: TrendTracker, force: bool = False) -> None:
        if self.trend_store is None or pid in self.trends_unsettled:
            return
        if force or t_ms - self.trends_saved_ms.get(pid, -(2**62)) >= TREND_SAVE_EVERY_S * 1000.0:
            self.trend_store.save(pid, tracker)
            self.trends_saved_ms[pid] = t_ms
            self.counters.trends_saved += 1
