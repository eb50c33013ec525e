"""Validation run: recordings -> the production path -> alerts/findings -> scores -> report.

Steps (``run_validation``): load the suite; start (or reuse from the environment) Kafka
and Redis; create the topics; start a ``vitalstream worker`` subprocess with a fresh
Redis key prefix and a fresh Faust app id (= consumer group); publish every record as a
distinct patient through the gateway SDK, held back every ``THROTTLE_EVERY_S`` of event
time until each patient's newest finding is within ``backlog_s`` of what was sent to it;
wait until drained; read the alerts back from Redis and the findings from
``vitals.findings``; score; write ``metrics.json``, ``report.md`` and plots; delete the
Redis prefix and stop everything it started. The recordings are only read.
``in_process=True`` replaces the transport steps with :mod:`stream.replay.in_process`
(same stages, no broker, Redis or worker) for quick tuning.

Drained = the worker's consumer group has no lag on the vitals and findings topics, every
patient's last finding reaches its last closable window (or no new finding arrived for
``quiet_s``), and the alert store stopped changing.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stream.connections import PLAINTEXT, KafkaSecurity
from stream.device_alarm import DEVICE_ALARMS_TOPIC, DeviceAlarm
from stream.replay import scoring
from stream.replay.outcome import FindingRecord, RunOutput, SuiteResult, findings_completeness
from stream.replay.records import CHALLENGE2015_ALARM_S, Recording, load_suite
from stream.replay.replayer import ReplayStats, prepare_replay, record_device_alarms
from stream.schema import SampleChunk
from stream.settings import Settings

SUITES = ("challenge2015", "mitdb", "bidmc", "synthetic")
# The worker lines a patient's signal topics up itself (``PatientMonitor``: chunks read
# ahead of a lagging topic wait for it), so the replay only has to stay within reach of it.
THROTTLE_EVERY_S = 20.0
# The throttle below holds every patient back, for up to this long, while the worker catches up.
REPLAY_THROTTLE_TIMEOUT_S = 20.0
# The worker closes a patient's last window once nothing arrived for it for flush_idle_s of
# wall time (3 s live, where a device sends every second). In a replay the throttle's pauses
# would trigger that flush mid-record, at load-dependent places, and the flush ends the
# filters' look-ahead there: the broker run's findings then differed from the in-process
# run's (CinC 2015 t688s). The worker's lag check (stream/consumer_progress.py) does not
# help here: during a pause the worker has read everything. The replay's worker waits out
# any throttle pause instead, and still flushes before the default device-silent limit
# (30 s), so the end of a replay does not read as a silent device.
REPLAY_FLUSH_IDLE_S = REPLAY_THROTTLE_TIMEOUT_S + 5.0
ProgressFn = Callable[[str, int, int], None]  # (phase, done, total)


def suite_end_s(suite: str) -> Callable[[Recording], float | None]:
    """CinC 2015 real-time rule: data up to the alarm and nothing after it. The window
    ending at the alarm is closed by the worker's idle flush (``flush_idle_s``), as for
    any device that stops sending."""
    if suite == "challenge2015":
        return lambda rec: CHALLENGE2015_ALARM_S
    return lambda rec: None


# ---------------------------------------------------------------- pipeline I/O


def run_pipeline(
    recordings: Sequence[Recording],
    *,
    end_s: Callable[[Recording], float | None],
    work_dir: Path,
    settings: Settings,
    progress: ProgressFn | None = None,
    backlog_s: float = THROTTLE_EVERY_S,
    drain_timeout_s: float = 900.0,
    quiet_s: float = 8.0,
    device_alarms: bool = True,
) -> RunOutput:
    """Everything that touches Kafka, Redis and the worker process."""
    from alerting.store import RedisAlertStore
    from stream.connections import RedisSecurity, redis_client
    from stream.services import create_topics, embedded_services
    from stream.worker_process import WorkerProcess

    run_id = uuid.uuid4().hex[:8]
    prefix = f"val{run_id}"
    app_id = f"vitalstream-val-{run_id}"
    chunks, stats = prepare_replay(recordings, end_s=end_s)
    alarms = [a for r in recordings for a in record_device_alarms(r, stats.base_ms, end_s(r))] if device_alarms else []
    # The services named by the environment (with their TLS / SASL / ACL settings, which the
    # worker inherits too), else embedded ones; security settings without them are refused.
    env_services = {k: v for k, v in os.environ.items() if k.startswith(("KAFKA_", "REDIS_"))}
    kafka_security = KafkaSecurity.from_settings(settings)
    with embedded_services(work_dir / "services", env=env_services,
                           redis_security=RedisSecurity.from_settings(settings)) as endpoints:
        create_topics(endpoints.kafka_bootstrap, settings.partitions, security=kafka_security)
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap,
            "REDIS_URL": endpoints.redis_url,
            "VITALSTREAM_REDIS_PREFIX": prefix,
            "VITALSTREAM_APP_ID": app_id,
            "VITALSTREAM_STATE_DIR": str(work_dir / "worker-state"),
            "VITALSTREAM_PARTITIONS": str(settings.partitions),
            "VITALSTREAM_LOG_LEVEL": "warn",
            "VITALSTREAM_FLUSH_IDLE_S": str(REPLAY_FLUSH_IDLE_S),
        }
        client = redis_client(endpoints.redis_url, RedisSecurity.from_settings(settings))
        store = RedisAlertStore(client, prefix)
        try:
            with WorkerProcess(env, work_dir / "worker.log") as worker:
                if progress:
                    progress("worker starting", 0, 1)
                worker.wait_ready(240)
                findings, drain = asyncio.run(
                    _replay_and_drain(
                        endpoints.kafka_bootstrap,
                        app_id,
                        chunks,
                        alarms,
                        stats,
                        store,
                        progress=progress,
                        backlog_s=backlog_s,
                        drain_timeout_s=drain_timeout_s,
                        quiet_s=quiet_s,
                        hop_s=settings.hop_s,
                        window_s=settings.window_s,
                        flush_idle_s=REPLAY_FLUSH_IDLE_S,
                        security=kafka_security,
                    )
                )
                # The worker's own counters (dead letters, flushes held for lag, ...) at the end.
                drain["worker"] = worker.stats()
                raw_alerts = store.list_alerts(include_resolved=True)
                histories = {a.alert_id: store.history(a.alert_id) for a in raw_alerts}
                decisions = [d for r in recordings for d in store.device_alarms(r.patient_id)]
        finally:
            with contextlib.suppress(Exception):
                store.delete_prefix()
    patients = {r.patient_id for r in recordings}
    alerts: dict[str, list[scoring.AlertSpan]] = {p: [] for p in patients}
    for alert in raw_alerts:
        if alert.patient_id in patients:
            changes = [(h.t_ms, h.condition_active) for h in histories.get(alert.alert_id, [])]
            alerts[alert.patient_id].append(scoring.alert_span(alert, stats.base_ms, changes))
    for spans in alerts.values():
        spans.sort(key=lambda a: a.raised_s)
    return RunOutput(alerts, findings, stats.base_ms, stats, drain, decisions)


async def _replay_and_drain(
    bootstrap: str,
    app_id: str,
    chunks: list[SampleChunk],
    alarms: Sequence[DeviceAlarm],
    stats: ReplayStats,
    store: Any,
    *,
    progress: ProgressFn | None,
    backlog_s: float,
    drain_timeout_s: float,
    quiet_s: float,
    hop_s: float,
    window_s: float,
    flush_idle_s: float,
    throttle_timeout_s: float = REPLAY_THROTTLE_TIMEOUT_S,
    stall_s: float = 3.0,
    security: KafkaSecurity = PLAINTEXT,
) -> tuple[dict[str, list[FindingRecord]], dict[str, Any]]:
    from stream.gateway import publish_device_alarms
    from stream.replay.replayer import replay_to_kafka
    from stream.services import FINDINGS_TOPIC, VITALS_TOPICS, consumer_group_lag

    findings: dict[str, list[FindingRecord]] = {}
    collector = _FindingsCollector(bootstrap, FINDINGS_TOPIC, findings, security)
    await collector.start()
    topics = [*VITALS_TOPICS, FINDINGS_TOPIC, DEVICE_ALARMS_TOPIC]
    # Per patient: chunk start times and the running maximum of chunk ends, to know how
    # far its data reaches at any event time (gaps included).
    starts: dict[str, list[int]] = {}
    reach: dict[str, list[int]] = {}
    for c in chunks:
        starts.setdefault(c.patient_id, []).append(c.ts_ms)
        ends = reach.setdefault(c.patient_id, [])
        ends.append(max(int(c.end_ms), ends[-1] if ends else 0))
    window_ms = int(window_s * 1000)
    throttle_waits = {"count": 0, "timeouts": 0, "wall_s": 0.0}
    # Patients that stopped producing findings although data was sent (the worker judged
    # the data unusable): not waited for again until their findings move.
    exempt: dict[str, int] = {}

    async def lag() -> int | None:
        try:
            return await asyncio.to_thread(lambda: consumer_group_lag(bootstrap, app_id, topics, security=security))
        except Exception:
            return None

    def behind(event_ms: int) -> list[str]:
        """Patients whose newest finding trails what was sent by more than ``backlog_s``."""
        late = []
        for pid, ts in starts.items():
            if ts[0] + window_ms + int(hop_s * 1000) > event_ms:
                continue  # no window can have closed yet
            sent = bisect.bisect_left(ts, event_ms)  # chunks before event_ms were sent
            if sent == 0:
                continue
            sent_until = reach[pid][sent - 1]
            if sent_until < event_ms - window_ms:
                continue  # silent for a whole window: nothing to wait for
            latest = collector.latest.get(pid, 0)
            if pid in exempt and exempt[pid] == latest:
                continue
            if latest < sent_until - backlog_s * 1000:
                late.append(pid)
        return late

    async def throttle(event_ms: int) -> None:
        # Keeps the replay within reach of the worker, so that the drain measures the
        # pipeline rather than a backlog, and a slow worker cannot fall minutes behind.
        started = time.monotonic()
        throttle_waits["count"] += 1
        seen, moved = collector.count, started
        while late := behind(event_ms):
            now = time.monotonic()
            if collector.count != seen:
                seen, moved = collector.count, now
            # Give up on the stragglers once the worker has produced nothing for a while
            # (they are not coming) or after the hard cap.
            if now - moved > stall_s or now - started > throttle_timeout_s:
                throttle_waits["timeouts"] += 1
                for pid in late:
                    exempt[pid] = collector.latest.get(pid, 0)
                break
            await asyncio.sleep(0.05)
        throttle_waits["wall_s"] += time.monotonic() - started

    try:
        total = len(chunks)
        await replay_to_kafka(
            bootstrap,
            chunks,
            stats,
            speed=None,
            progress=(lambda done: progress("replay", done, total)) if progress else None,
            throttle=throttle,
            throttle_every_s=THROTTLE_EVERY_S,
            security=security,
        )
        # The monitors' alarms go out after the data (CinC 2015's fire where the real-time
        # data ends), as a gateway forwards an alarm when the monitor raises it; the
        # aggregator decides each once a finding covers its instant, whichever comes first.
        await publish_device_alarms(bootstrap, alarms, security=security)
        # Last finding each patient can produce: the window ending at the last hop boundary
        # covered by its data (window ends lie on base + k * hop); the worker's idle flush
        # closes it.
        last_ts: dict[str, int] = {}
        for c in chunks:
            last_ts[c.patient_id] = max(last_ts.get(c.patient_id, 0), int(c.end_ms))
        hop_ms = int(hop_s * 1000)
        expected = {p: stats.base_ms + (t - stats.base_ms) // hop_ms * hop_ms for p, t in last_ts.items()}
        started = time.monotonic()
        last_count = -1
        last_change = time.monotonic()
        last_alert_count = -1
        drained = False
        lag_now: int | None = None
        while time.monotonic() - started < drain_timeout_s:
            await asyncio.sleep(2.0)
            count = collector.count
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            lag_now = await lag()
            reached = sum(1 for p, t in expected.items() if findings.get(p) and findings[p][-1].t_ms >= t)
            if progress:
                progress("drain", reached, len(expected))
            silent_s = time.monotonic() - last_change
            complete = reached == len(expected)
            # Until every patient's last window is out, silence must outlast the worker's
            # idle flush, which closes those windows.
            quiet = silent_s >= (quiet_s if complete else max(quiet_s, flush_idle_s + 5.0))
            # Lag can stay above 0 when the group never commits some partition (e.g. a topic
            # a member does not consume); every patient complete and a long silence is done too.
            settled = complete and silent_s >= 4 * quiet_s
            if (lag_now == 0 and (complete or quiet)) or settled:
                alert_count = await asyncio.to_thread(lambda: len(store.list_alerts(include_resolved=True)))
                if alert_count == last_alert_count and quiet:
                    drained = True
                    break
                last_alert_count = alert_count
        drain = {
            "drained": drained,
            "drain_wall_s": round(time.monotonic() - started, 1),
            "final_lag": lag_now,
            "findings": collector.count,
            "patients_complete": sum(1 for p, t in expected.items() if findings.get(p) and findings[p][-1].t_ms >= t),
            "patients": len(expected),
            "throttle": {k: round(v, 1) for k, v in throttle_waits.items()},
            **findings_completeness(findings),
        }
        return findings, drain
    finally:
        await collector.stop()


class _FindingsCollector:
    """Reads ``vitals.findings`` from the beginning without joining any consumer group."""

    def __init__(self, bootstrap: str, topic: str, sink: dict[str, list[FindingRecord]],
                 security: KafkaSecurity = PLAINTEXT) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.topic = topic
        self.sink = sink
        self.count = 0
        self.latest: dict[str, int] = {}  # newest finding time per patient
        self._task: asyncio.Task[None] | None = None
        self._consumer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
            **self.security.client_kwargs(),
        )
        await self._consumer.start()
        parts = self._consumer.partitions_for_topic(self.topic)
        if not parts:
            await self._consumer._client.force_metadata_update()
            parts = self._consumer.partitions_for_topic(self.topic) or {0}
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        from stream.findings import VitalsFinding

        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=2000)
            for messages in batches.values():
                for msg in messages:
                    try:
                        f = VitalsFinding.from_json(msg.value)
                    except (ValueError, TypeError, KeyError):
                        continue
                    self.sink.setdefault(f.patient_id, []).append(FindingRecord.of(f))
                    self.latest[f.patient_id] = max(self.latest.get(f.patient_id, 0), f.t_ms)
                    self.count += 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        for items in self.sink.values():
            items.sort(key=lambda f: f.t_ms)


# ---------------------------------------------------------------- scoring per suite


def score_challenge2015(recordings: Sequence[Recording], out: RunOutput) -> SuiteResult:
    verdicts = {(d["patient_id"], d["alarm_type"]): d for d in out.device_alarms}
    decisions = []
    false_events: list[tuple[str, str, float]] = []
    missed_events: list[tuple[str, str, float]] = []
    lead_times = []
    alarm_records: list[Recording] = []
    for rec in recordings:
        spans = out.alerts.get(rec.patient_id, [])
        for alarm in rec.annotations.alarms:
            raised = scoring.challenge_alarm_raised(spans, alarm.alarm_type, alarm.time_s)
            d = scoring.ChallengeDecision(rec.name, alarm.alarm_type, alarm.is_true, raised)
            decisions.append(d)
            alarm_records.append(rec)
            alert_type = scoring.CHALLENGE2015_ALERT_TYPES[alarm.alarm_type]
            if d.outcome == "FP":
                false_events.append((rec.patient_id, alert_type, alarm.time_s))
            elif d.outcome == "FN":
                missed_events.append((rec.patient_id, alert_type, alarm.time_s))
            elif d.outcome == "TP":
                firsts = [
                    a.raised_s
                    for a in spans
                    if a.type == alert_type and a.active_during(alarm.time_s - 10, alarm.time_s)
                ]
                if firsts:
                    lead_times.append(min(firsts) - alarm.time_s)
    result = scoring.challenge_score(decisions)
    hours = out.replay.record_seconds / 3600.0
    high_alerts = sum(1 for spans in out.alerts.values() for a in spans if a.type in scoring.HIGH_PRIORITY_TYPES)
    metrics = {
        "score": result["score"],
        "counts": result["counts"],
        "per_type": result["per_type"],
        # Each FP decision is one false life-threatening alarm that would have sounded.
        "false_alerts_per_hour": round(sum(1 for d in decisions if d.outcome == "FP") / hours, 3) if hours else None,
        "high_priority_alerts_per_hour": round(high_alerts / hours, 3) if hours else None,
        # Raise time relative to the bedside monitor's alarm for true positives (<= 0: earlier).
        "latency_s": scoring.latency_summary(lead_times),
        "decisions": [
            {
                "record": d.record,
                "alarm": d.alarm_type,
                "true_alarm": d.alarm_true,
                "raised": d.raised,
                "outcome": d.outcome,
                # What the aggregator made of the monitor's alarm, when it was replayed.
                **({"device_alarm": v["verdict"], "reason": v["reason"], "note": v.get("note") or ""}
                   if (v := verdicts.get(
                    (rec.patient_id, scoring.CHALLENGE2015_ALERT_TYPES[d.alarm_type]))) else {}),
            }
            for rec, d in zip(alarm_records, decisions, strict=True)
        ],
        "device_alarms": _device_alarm_outcomes(decisions, alarm_records, verdicts) if verdicts else None,
    }
    outcomes = {t: {k: v for k, v in c.items() if k in ("TP", "FP", "TN", "FN")} for t, c in result["per_type"].items()}
    return SuiteResult(
        metrics,
        false_events,
        missed_events,
        outcomes,
        (
            "Raise time relative to the bedside alarm (true positives)",
            "seconds (negative = before the alarm)",
            lead_times,
        ),
    )


def _episode_result(
    truth: dict[str, list[Any]],
    ignore: dict[str, list[Any]],
    scored_types: Sequence[str],
    out: RunOutput,
) -> SuiteResult:
    hours = out.replay.record_seconds / 3600.0
    scores = scoring.score_episodes(truth, out.alerts, scored_types, hours, ignore=ignore)
    metrics = scores.as_dict()
    false_events = [(a.patient_id, a.type, a.raised_s) for a in scores.false_alerts]
    missed_events = [(m.patient_id, m.episode.label, m.episode.start_s) for m in scores.missed]
    outcomes = {
        t: {
            "detected": s.detected,
            "missed": s.episodes - s.detected,
            "false alerts": s.false_alerts,
        }
        for t, s in scores.per_type.items()
        if s.episodes or s.alerts
    }
    return SuiteResult(
        metrics,
        false_events,
        missed_events,
        outcomes,
        ("Detection latency (raise time - episode start)", "seconds", list(scores.latencies_s)),
    )


def _device_alarm_outcomes(decisions: Sequence[scoring.ChallengeDecision], records: Sequence[Recording],
                           verdicts: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Challenge outcomes (TP/FP/TN/FN) by what the aggregator decided on the monitor's alarm."""
    table: dict[str, dict[str, int]] = {}
    for rec, d in zip(records, decisions, strict=True):
        v = verdicts.get((rec.patient_id, scoring.CHALLENGE2015_ALERT_TYPES[d.alarm_type]))
        row = table.setdefault(v["verdict"] if v else "not replayed", {})
        row[d.outcome] = row.get(d.outcome, 0) + 1
    return table


def score_mitdb(recordings: Sequence[Recording], out: RunOutput) -> SuiteResult:
    truth, ignore = {}, {}
    for rec in recordings:
        a = rec.annotations
        truth[rec.patient_id], ignore[rec.patient_id] = scoring.mitdb_truth(a.rhythm, a.beat_times_s, a.beat_symbols)
    return _episode_result(truth, ignore, ("afib", "vtach", "vfib", "extreme_brady", "extreme_tachy"), out)


def score_synthetic(recordings: Sequence[Recording], out: RunOutput) -> SuiteResult:
    truth = {rec.patient_id: list(rec.annotations.episodes) for rec in recordings}
    tolerated = {rec.patient_id: list(rec.annotations.tolerated) for rec in recordings}
    return _episode_result(truth, tolerated, scoring.ALERT_TYPES, out)


def score_bidmc(recordings: Sequence[Recording], out: RunOutput, window_s: float = 32.0) -> SuiteResult:
    per_record = {}
    all_errors: list[float] = []
    signed_errors: list[float] = []
    false_events: list[tuple[str, str, float]] = []
    worst: list[tuple[float, str, float]] = []
    for rec in recordings:
        found = [((f.t_ms - out.base_ms) / 1000.0, f.resp_rate_bpm) for f in out.findings.get(rec.patient_id, [])]
        res = scoring.score_resp_rate(found, rec.annotations.breaths_s, window_s)
        pairs = res.pop("pairs")
        all_errors.extend(abs(p - r) for _, p, r in pairs)
        signed_errors.extend(p - r for _, p, r in pairs)
        if pairs:
            t, p, r = max(pairs, key=lambda x: abs(x[1] - x[2]))
            worst.append((abs(p - r), rec.patient_id, t))
        per_record[rec.name] = res
    for _, pid, t in sorted(worst, reverse=True)[:5]:
        false_events.append((pid, "resp_rate_error", t))
    import numpy as np

    hours = out.replay.record_seconds / 3600.0
    n_alerts = sum(len(v) for v in out.alerts.values())
    metrics = {
        "resp_rate": {
            "comparison": "per finding: pipeline resp.rate_bpm vs mean annotator rate "
            f"over the {window_s:.0f} s ending at the finding",
            "mae_bpm": round(float(np.mean(all_errors)), 3) if all_errors else None,
            "median_abs_error_bpm": round(float(np.median(all_errors)), 3) if all_errors else None,
            "within_2bpm": round(float(np.mean(np.asarray(all_errors) <= 2.0)), 4) if all_errors else None,
            "n_compared": len(all_errors),
            "per_record": per_record,
        },
        "per_type": {},
        "false_alerts_per_hour": None,
        "alerts_per_hour": round(n_alerts / hours, 3) if hours else None,
        "latency_s": scoring.latency_summary([]),
    }
    return SuiteResult(
        metrics,
        false_events,
        [],
        {},
        ("Breathing-rate error (pipeline - reference)", "breaths/min", signed_errors),
    )


SCORERS = {
    "challenge2015": score_challenge2015,
    "mitdb": score_mitdb,
    "bidmc": score_bidmc,
    "synthetic": score_synthetic,
}


# ---------------------------------------------------------------- orchestration


def generate_synthetic(target: Path, patients: int = 9, duration_s: float = 600.0, seed: int = 7) -> Path:
    """Write a simulated cohort with ground truth (``<patient>.npz`` + ``truth.jsonl``)."""
    from stream import simulator

    target.mkdir(parents=True, exist_ok=True)
    simulator.write_simulated(target, patients=patients, duration_s=duration_s, seed=seed)
    return target


def run_validation(
    suite: str,
    data_dir: Path | None,
    out_dir: Path,
    records: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
    progress: ProgressFn | None = None,
    in_process: bool = False,
    jobs: int | None = None,
    device_alarms: bool = True,
    drain_timeout_s: float = 900.0,
) -> dict[str, Any]:
    """Run one suite end to end; returns the metrics written to ``out_dir/metrics.json``.

    ``in_process``: the same stages without Kafka, Redis or a worker process
    (:mod:`stream.replay.in_process`), spread over ``jobs`` processes. ``device_alarms``:
    replay the alarms the recordings' bedside monitors raised (CinC 2015) for the pipeline
    to confirm or suppress; without them the score is the pipeline's own detection alone."""
    from stream.replay.report import write_report

    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    settings = settings or Settings.from_env()
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f"vitalstream-validate-{suite}-"))
    try:
        if data_dir is None:
            if suite != "synthetic":
                data_dir = Path(settings.data_dir) / suite
            else:
                data_dir = generate_synthetic(work_dir / "synthetic")
        if progress:
            progress("loading", 0, 1)
        run_prefix = f"v{uuid.uuid4().hex[:6]}-"
        recordings = load_suite(suite, data_dir, records, prefix=run_prefix)
        if not recordings:
            raise ValueError(f"no recordings found for {suite} in {data_dir}")
        if in_process:
            out = _run_in_process(recordings, suite, settings, progress, jobs, device_alarms)
        else:
            out = run_pipeline(
                recordings,
                end_s=suite_end_s(suite),
                work_dir=work_dir,
                settings=settings,
                progress=progress,
                device_alarms=device_alarms,
                drain_timeout_s=drain_timeout_s,
            )
        result = SCORERS[suite](recordings, out)
        metrics: dict[str, Any] = {
            "suite": suite,
            "records": len(recordings),
            **({"score": result.metrics.pop("score")} if "score" in result.metrics else {}),
            "per_type": result.metrics.pop("per_type"),
            "false_alerts_per_hour": result.metrics.pop("false_alerts_per_hour"),
            "latency_s": result.metrics.pop("latency_s"),
            **result.metrics,
            "record_names": [r.name for r in recordings],
            "data_dir": str(data_dir),
            "replay": out.replay.as_dict(),
            "path": "in-process" if in_process else "kafka+redis",
            "drain": out.drain,
            "alerts_by_type": _alerts_by_type(out),
            "alerts": _alerts_by_record(recordings, out),
            "wall_s": round(time.monotonic() - started, 1),
        }
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default))
        write_report(out_dir, metrics, recordings, out, result)
        return metrics
    finally:
        worker_log = work_dir / "worker.log"
        if worker_log.exists():
            with contextlib.suppress(OSError):
                shutil.copyfile(worker_log, out_dir / "worker.log")
        shutil.rmtree(work_dir, ignore_errors=True)


def _run_in_process(
    recordings: Sequence[Recording], suite: str, settings: Settings, progress: ProgressFn | None, jobs: int | None,
    device_alarms: bool,
) -> RunOutput:
    from stream.replay.in_process import run_in_process

    end_s = suite_end_s(suite)
    result = run_in_process(
        recordings,
        stops=[end_s(r) for r in recordings],
        window_s=settings.window_s,
        hop_s=settings.hop_s,
        alert_config=settings.alert_config,
        jobs=jobs,
        progress=progress,
        device_alarms=device_alarms,
    )
    drain = {"mode": "in-process, no transport", **findings_completeness(result.findings)}
    return RunOutput(result.alerts, result.findings, result.stats.base_ms, result.stats, drain,
                     [d.to_dict() for d in result.decisions])


def _alerts_by_type(out: RunOutput) -> dict[str, int]:
    counts: dict[str, int] = {}
    for spans in out.alerts.values():
        for a in spans:
            counts[a.type] = counts.get(a.type, 0) + 1
    return dict(sorted(counts.items()))


def _alerts_by_record(recordings: Sequence[Recording], out: RunOutput) -> dict[str, list[list[Any]]]:
    """Compact listing for reviewers: record -> [type, priority, raised_s, resolved_s]."""
    listing: dict[str, list[list[Any]]] = {}
    for rec in recordings:
        listing[rec.name] = [
            [
                a.type,
                a.priority,
                round(a.raised_s, 1),
                None if a.resolved_s is None else round(a.resolved_s, 1),
            ]
            for a in out.alerts.get(rec.patient_id, [])
        ]
    return listing


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
