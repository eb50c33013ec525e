"""Validation without Kafka or Redis: the same pure stages the worker runs, in local processes.

``VitalsPipeline`` (windows, DSP, batched models, trends) feeds
``alerting.aggregator.process_finding`` per patient, exactly as the vitals and aggregator
agents do; what is left out is only transport (topics, the Faust table, the Redis store).
The alert spans come from the emissions' snapshots and their sequence, the same fields
and audit trail the store keeps.

This is the quick loop for tuning detectors and thresholds (CinC 2015 in ~40 s on two
cores instead of ~5 min through the broker); the figure that counts is still the one from
the real path (``vitalstream validate`` without ``--in-process``). The two give the same
decisions because the stages are the same code and the model runtime's outputs do not
depend on how windows are batched (``stream/replay/README.md`` has the comparison). A
patient's stream ends with the flush the worker's idle timer would do, so the window ending
at the last sample is measured. Time-driven transitions (escalation, snooze expiry, device
silence: the worker's ticks) are not simulated; no scorer uses them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from alerting.verification import VERIFY_TIMEOUT_S, DeviceAlarmDecision
from stream.device_alarm import DeviceAlarm
from stream.replay import scoring
from stream.replay.outcome import FindingRecord
from stream.replay.records import Recording
from stream.replay.replayer import ReplayStats, prepare_replay, record_device_alarms
from stream.schema import SampleChunk


@dataclass
class InProcessResult:
    alerts: dict[str, list[scoring.AlertSpan]]  # per patient
    findings: dict[str, list[Any]]  # FindingRecord summaries per patient
    stats: ReplayStats
    decisions: list[DeviceAlarmDecision]  # on the bedside monitors' alarms
    # Full VitalsFindings near each bedside alarm, per patient (``capture_s``).
    alarm_findings: dict[str, list[Any]]


@dataclass(frozen=True)
class _Job:
    patients: tuple[tuple[str, tuple[SampleChunk, ...]], ...]  # (patient id, its chunks)
    alarms: dict[str, tuple[DeviceAlarm, ...]]  # the bedside monitor's alarms per patient
    window_s: float
    hop_s: float
    alert_config_json: str
    # Keep the full findings that end within this many seconds before each bedside alarm
    # (and the window covering it): the training data of the alarm verifier.
    capture_s: float = 0.0
    feed_alarms: bool = True  # False: the alarms only mark what to capture


_runtime: Any = None  # one ModelRuntime per worker process, loaded by its first job


def _run_job(job: _Job) -> tuple[dict[str, list[Any]], dict[str, list[Any]], list[DeviceAlarmDecision],
                                 dict[str, list[Any]]]:
    """In a worker process: each record of the job as its own patient. A record is pushed
    whole, so all its windows go through the models in one batch where the agent batches
    per poll; the runtime's per-patient beat memory makes the results independent of that."""
    global _runtime
    import torch

    from alerting.aggregator import PatientAlertState, process_device_alarm, process_finding, process_tick
    from alerting.catalogue import AlertConfig
    from models.runtime import ModelRuntime
    from stream.pipeline import VitalsPipeline

    if _runtime is None:
        torch.set_num_threads(1)
        _runtime = ModelRuntime.load_default()
    config = AlertConfig.from_json(job.alert_config_json) if job.alert_config_json else AlertConfig()
    pipeline = VitalsPipeline(_runtime, window_s=job.window_s, hop_s=job.hop_s)
    findings: dict[str, list[FindingRecord]] = {}
    emissions: dict[str, list[Any]] = {}
    decisions: list[DeviceAlarmDecision] = []
    captured: dict[str, list[Any]] = {}
    for patient_id, chunks in job.patients:
        state = PatientAlertState.new(patient_id)
        produced = pipeline.process(chunks)
        produced += pipeline.assemble(pipeline.flush(patient_id))
        if job.capture_s > 0:
            captured[patient_id] = _near_alarms(produced, job.alarms.get(patient_id, ()), job.capture_s,
                                                job.hop_s)
        by_alert: dict[str, list[Any]] = {}
        # A bedside alarm goes in before the findings that cover its instant, as it reaches a
        # live worker (the gateway forwards it at once; the findings lag the samples).
        alarms = sorted(job.alarms.get(patient_id, ()), key=lambda a: a.t_ms) if job.feed_alarms else []
        for f in produced:
            findings.setdefault(f.patient_id, []).append(FindingRecord.of(f))
            while alarms and alarms[0].t_ms <= f.t_ms:
                state, ems = process_device_alarm(state, alarms.pop(0), config)
                _collect(ems, by_alert, decisions)
            state, ems = process_finding(state, f, config)
            _collect(ems, by_alert, decisions)
        for alarm in alarms:  # after the last finding: decided by the timeout tick
            state, ems = process_device_alarm(state, alarm, config)
            _collect(ems, by_alert, decisions)
            state, ems = process_tick(state, alarm.t_ms + round(VERIFY_TIMEOUT_S * 1000), config)
            _collect(ems, by_alert, decisions)
        emissions[patient_id] = list(by_alert.values())
        pipeline.forget(patient_id)
    return findings, emissions, decisions, captured


def _near_alarms(findings: Sequence[Any], alarms: Sequence[DeviceAlarm], capture_s: float,
                 hop_s: float) -> list[Any]:
    """The findings ending in ``[t - capture_s, t + hop]`` of any alarm instant t."""
    spans = [(a.t_ms - round(capture_s * 1000), a.t_ms + round(hop_s * 1000)) for a in alarms]
    return [f for f in findings if any(lo <= f.t_ms <= hi for lo, hi in spans)]


def _collect(emissions: Sequence[Any], by_alert: dict[str, list[Any]], decisions: list[DeviceAlarmDecision]) -> None:
    for em in emissions:
        if isinstance(em, DeviceAlarmDecision):
            decisions.append(em)
        else:
            by_alert.setdefault(em.alert_id, []).append(em)


def run_in_process(
    recordings: Sequence[Recording],
    *,
    stops: Sequence[float | None],
    window_s: float,
    hop_s: float,
    alert_config: str = "",
    jobs: int | None = None,
    progress: Any = None,
    device_alarms: bool = True,
    capture_s: float = 0.0,
) -> InProcessResult:
    """Replay ``recordings`` through the pipeline and the aggregator. ``device_alarms``: replay
    the alarms the recordings' monitors raised (CinC 2015), as the gateway forwards them;
    ``capture_s``: also return the full findings of the ``capture_s`` before each alarm."""
    stop_of = {r.patient_id: stop for r, stop in zip(recordings, stops, strict=True)}
    started = time.monotonic()
    # The same chunks the broker route publishes, cut once here.
    chunks, stats = prepare_replay(recordings, end_s=lambda rec: stop_of[rec.patient_id])
    per_patient: dict[str, list[SampleChunk]] = {r.patient_id: [] for r in recordings}
    for chunk in chunks:
        stats.add(chunk)
        per_patient[chunk.patient_id].append(chunk)
    del chunks
    base_ms = stats.base_ms
    config_json = Path(alert_config).read_text() if alert_config else ""
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(recordings)))
    # Small jobs keep the progress bar moving and the processes evenly loaded.
    size = max(1, min(8, len(recordings) // (jobs * 4) or 1))
    items = [(pid, tuple(cs)) for pid, cs in per_patient.items()]
    alarms = {r.patient_id: tuple(record_device_alarms(r, base_ms, stop_of[r.patient_id]))
              for r in recordings} if device_alarms or capture_s else {}
    batches = [
        _Job(part, {pid: alarms[pid] for pid, _ in part if alarms.get(pid)}, window_s, hop_s, config_json,
             capture_s, device_alarms)
        for part in (tuple(items[i : i + size]) for i in range(0, len(items), size))
    ]
    alerts: dict[str, list[scoring.AlertSpan]] = {r.patient_id: [] for r in recordings}
    findings: dict[str, list[Any]] = {}
    decisions: list[DeviceAlarmDecision] = []
    alarm_findings: dict[str, list[Any]] = {}
    done = 0
    if progress:
        progress("records (in process)", 0, len(recordings))
    # spawn: torch and the model weights are loaded fresh in each worker, no forked threads.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_run_job, b): len(b.patients) for b in batches}
        for fut in as_completed(futures):
            job_findings, job_emissions, job_decisions, job_captured = fut.result()
            findings.update(job_findings)
            alarm_findings.update(job_captured)
            decisions.extend(job_decisions)
            for pid, per_alert in job_emissions.items():
                # The last snapshot is the alert as the store keeps it; the sequence is its
                # audit trail.
                spans = (
                    scoring.alert_span(ems[-1], base_ms, [(e.updated_ms, e.condition_active) for e in ems])
                    for ems in per_alert
                )
                alerts[pid] = sorted(spans, key=lambda a: a.raised_s)
            done += futures[fut]
            if progress:
                progress("records (in process)", done, len(recordings))
    stats.wall_s = round(time.monotonic() - started, 3)
    decisions.sort(key=lambda d: (d.alarm.patient_id, d.alarm.t_ms))
    return InProcessResult(alerts, findings, stats, decisions, alarm_findings)
