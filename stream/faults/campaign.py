"""Run a fault campaign: simulated patients through a broker, two workers and Redis while
faults are injected on a schedule; then count what was lost (``stream.faults.scoring``).

Everything runs here on free ports (never the shared Redis on 6379): a Tansu broker
behind :class:`~stream.faults.proxy.KafkaClientProxy` (it advertises the proxy, so the
gateway's link can be cut alone), a durable redis-server (append-only, fsync always) that
is stopped and started again on the same port and files, two ``vitalstream worker``
processes and the campaign's gateway process (``stream.faults.gateway``), which publishes
the patients in real time. The campaign reads ``vitals.findings`` as it goes (arrival
time of each finding) and samples the worker group's consumer lag every second.

Fault kinds (each a :class:`Fault` at a time from the start):

* ``kill_worker`` — SIGKILL one worker (no leave-group, no final commit), restarted after
  ``restart_after_s`` as a supervisor would (systemd, Kubernetes).
* ``kill_in_rebalance`` — SIGKILL one worker and restart it at once; when the other worker
  reports a rebalance in progress (its ``/stats/`` ``rebalancing``), SIGKILL that one too,
  then restart it.
* ``redis_outage`` — Redis stopped (alternately SIGKILL and SIGTERM) for
  ``redis_outage_s``, then started again.
* ``gateway_cut`` — the gateway's connections to the broker cut, and new ones refused, for
  ``cut_s``.
* ``duplicate_burst`` — the gateway re-sends its last 20 s of chunks shuffled and sends the
  next 2 s out of order (``stream.faults.gateway``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stream.faults import scoring
from stream.faults.gateway import GATEWAY_CLIENT_ID, campaign_chunks
from stream.faults.proxy import KafkaClientProxy, wait_until
from stream.findings import InvalidFinding, VitalsFinding
from stream.services import (
    DEADLETTER_TOPIC,
    FINDINGS_TOPIC,
    ServiceError,
    _Started,
    _terminate,
    consumer_group_lag,
    create_topics,
    free_port,
    start_kafka,
    start_redis,
    wait_kafka_ready,
)
from stream.simulator import PatientScenario, default_cohort, scenario_as_dict
from stream.worker_process import WorkerProcess

log = logging.getLogger(__name__)

# How long kill_in_rebalance waits for the other worker to report the rebalance before it
# kills it anyway (recorded as rebalance_seen false): a run of 2026-12-04 waited 90 s for
# one that had already passed, and its fault overlapped the next.
REBALANCE_WAIT_S = 30.0
FAULT_KINDS = ("kill_worker", "kill_in_rebalance", "redis_outage", "gateway_cut", "duplicate_burst")


@dataclass(frozen=True)
class Fault:
    at_s: float  # from the campaign's start (event time 0)
    kind: str
    worker: int = 0  # which worker (kill kinds)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {', '.join(FAULT_KINDS)}")


def default_schedule(duration_s: float, first_s: float = 75.0, spacing_s: float = 75.0) -> list[Fault]:
    """Every kind in turn, every ``spacing_s``, until the last two minutes."""
    order = ["kill_worker", "redis_outage", "gateway_cut", "duplicate_burst", "kill_in_rebalance"]
    faults, t, i = [], first_s, 0
    while t <= duration_s - 120:
        faults.append(Fault(t, order[i % len(order)], worker=(i // len(order)) % 2))
        t += spacing_s
        i += 1
    return faults


@dataclass
class CampaignConfig:
    out_dir: Path
    patients: int = 9  # the 9th of a cohort is an ICU bed (arterial line, second lead)
    duration_s: float = 1200.0
    faults: list[Fault] = field(default_factory=list)
    partitions: int = 8
    seed: int = 0
    restart_after_s: float = 3.0
    redis_outage_s: float = 30.0
    cut_s: float = 20.0
    drain_timeout_s: float = 240.0
    # What "flowing again" means (see scoring.recovery_ms); measured before the first fault.
    min_normal_finding_lag_s: float = 8.0
    min_normal_group_lag: int = 0  # 0: from the baseline
    progress: Callable[[str], None] = print


@dataclass
class FaultRecord:
    kind: str
    at_s: float
    started_ms: int
    ended_ms: int
    detail: dict[str, Any] = field(default_factory=dict)
    recovery_s: float | None = None


class Observer:
    """Reads ``vitals.findings`` and ``vitals.deadletter`` from the start in a thread,
    noting each finding's arrival time; samples the worker group's consumer lag."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.findings: list[scoring.FindingSeen] = []
        self.finding_objects: dict[tuple[str, int], VitalsFinding] = {}
        self.copies = 0  # findings read more than once (same patient and window end)
        self.dead_letters = 0
        self.group_lag: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._read, daemon=True, name="findings-reader"),
                         threading.Thread(target=self._sample, daemon=True, name="lag-sampler")]

    def start(self) -> Observer:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def _read(self) -> None:
        asyncio.run(self._read_async())

    async def _read_async(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(FINDINGS_TOPIC, DEADLETTER_TOPIC, bootstrap_servers=self.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                now = int(time.time() * 1000)
                for tp, records in batch.items():
                    if tp.topic == DEADLETTER_TOPIC:
                        self.dead_letters += len(records)
                        continue
                    for r in records:
                        try:
                            f = VitalsFinding.from_json(r.value)
                        except InvalidFinding:
                            continue
                        key = (f.patient_id, f.t_ms)
                        if key in self.finding_objects:
                            self.copies += 1
                        else:
                            self.finding_objects[key] = f
                        self.findings.append(scoring.FindingSeen(now, f.patient_id, f.t_ms))
        finally:
            await consumer.stop()

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            try:
                lag = consumer_group_lag(self.bootstrap, self.group, [FINDINGS_TOPIC])
            except Exception as exc:  # the broker is not a fault target; log and go on
                log.warning("consumer lag unavailable: %r", exc)
                continue
            self.group_lag.append((int(time.time() * 1000), -1 if lag is None else lag))

    def newest_t_ms(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in list(self.findings):
            out[f.patient_id] = max(out.get(f.patient_id, 0), f.t_ms)
        return out


class Campaign:
    def __init__(self, config: CampaignConfig) -> None:
        self.config = config
        self.tag = uuid.uuid4().hex[:6]
        self.dir = config.out_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.say = config.progress
        self.records: list[FaultRecord] = []
        self.redis_port = free_port()
        self.redis: _Started | None = None
        self.kafka: _Started | None = None
        self.proxy: KafkaClientProxy | None = None
        self.workers: list[WorkerProcess] = []
        self.gateway: subprocess.Popen[bytes] | None = None
        self.redis_stops = 0
        # Workers that exited without being killed by the campaign (restarted as a
        # supervisor would): each one is a defect, counted and reported.
        self.unplanned_exits: list[dict[str, Any]] = []
        self.scenarios: list[PatientScenario] = default_cohort(config.patients, config.duration_s, config.seed)
        self.start_ms = 0

    # ------------------------------------------------------------------ services

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def _start_services(self) -> None:
        broker_port, proxy_port = free_port(), free_port()
        self.proxy = KafkaClientProxy(proxy_port, broker_port).start()
        self.kafka = start_kafka(self.dir / "kafka", broker_port, advertised_port=proxy_port)
        wait_kafka_ready(self.proxy.address)
        self.redis = start_redis(self.dir / "redis", self.redis_port, durable=True)
        create_topics(self.proxy.address, self.config.partitions)

    def _worker_env(self, i: int) -> dict[str, str]:
        assert self.proxy is not None
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.proxy.address,
            "REDIS_URL": self.redis_url,
            "VITALSTREAM_APP_ID": f"faults-{self.tag}",
            "VITALSTREAM_REDIS_PREFIX": f"faults{self.tag}",
            "VITALSTREAM_PARTITIONS": str(self.config.partitions),
            "VITALSTREAM_STATE_DIR": str(self.dir / f"worker{i}"),
            "VITALSTREAM_LOG_LEVEL": "info",
        }

    def _new_worker(self, i: int) -> WorkerProcess:
        return WorkerProcess(self._worker_env(i), self.dir / f"worker{i}.log", name=f"worker{i}")

    def _start_gateway(self) -> None:
        assert self.proxy is not None
        spec = {"bootstrap": self.proxy.address, "start_ms": self.start_ms, "seed": self.config.seed,
                "scenarios": [scenario_as_dict(s) for s in self.scenarios]}
        path = self.dir / "gateway-spec.json"
        path.write_text(json.dumps(spec))
        with open(self.dir / "gateway.log", "ab") as out:
            self.gateway = subprocess.Popen([sys.executable, "-m", "stream.faults.gateway", str(path)],
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def _stop_all(self) -> None:
        if self.gateway is not None and self.gateway.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.gateway.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.gateway.wait(10)
        for w in self.workers:
            w.stop()
        for started in (self.redis, self.kafka):
            if started is not None:
                _terminate(started.pid)
        if self.proxy is not None:
            self.proxy.stop()

    def _supervise(self) -> None:
        """Restart a worker that exited on its own, as systemd or Kubernetes would, and
        record it: a worker must not die of anything the campaign did not do to it."""
        for i, worker in enumerate(self.workers):
            if worker.proc is None or worker.proc.poll() is None:
                continue
            at_s = round(time.time() - self.start_ms / 1000, 1) if self.start_ms else 0.0
            self.unplanned_exits.append({"worker": i, "at_s": at_s, "code": worker.proc.returncode})
            self.say(f"  t={at_s:6.0f} s  worker{i} exited on its own (code {worker.proc.returncode}), "
                     f"not by a fault; restarted in {self.config.restart_after_s:.0f} s (see worker{i}.log)")
            time.sleep(self.config.restart_after_s)
            self.workers[i] = self._new_worker(i).start()

    def _wait(self, seconds: float, until: Callable[[], bool] = lambda: False) -> bool:
        """Wait ``seconds`` or until ``until()`` holds, supervising the workers meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._supervise()
            if until():
                return True
            time.sleep(min(0.5, left))
        return until()

    # --------------------------------------------------------------------- faults

    def _inject(self, fault: Fault) -> FaultRecord:
        now = lambda: int(time.time() * 1000)  # noqa: E731
        started = now()
        detail: dict[str, Any] = {}
        if fault.kind == "kill_worker":
            i = fault.worker % len(self.workers)
            self.workers[i].kill()
            time.sleep(self.config.restart_after_s)
            self.workers[i] = self._new_worker(i).start()
            detail = {"worker": i}
        elif fault.kind == "kill_in_rebalance":
            a = fault.worker % len(self.workers)
            b = (a + 1) % len(self.workers)
            self.workers[a].kill()
            self.workers[a] = self._new_worker(a).start()
            seen = wait_until(lambda: _rebalancing(self.workers[b]), REBALANCE_WAIT_S, 0.05)
            detail = {"restarted": a, "killed_in_rebalance": b, "rebalance_seen": seen,
                      "waited_s": round((now() - started) / 1000, 1)}
            self.workers[b].kill()
            time.sleep(self.config.restart_after_s)
            self.workers[b] = self._new_worker(b).start()
        elif fault.kind == "redis_outage":
            assert self.redis is not None
            self.redis_stops += 1
            how = "SIGKILL" if self.redis_stops % 2 else "SIGTERM"
            os.kill(self.redis.pid, signal.SIGKILL if how == "SIGKILL" else signal.SIGTERM)
            wait_until(lambda: _gone(self.redis.pid), 10)  # type: ignore[union-attr]
            time.sleep(self.config.redis_outage_s)
            self.redis = start_redis(self.dir / "redis", self.redis_port, durable=True)
            detail = {"stop": how, "down_s": round((now() - started) / 1000, 1)}
        elif fault.kind == "gateway_cut":
            assert self.proxy is not None
            closed = self.proxy.sever(GATEWAY_CLIENT_ID)
            time.sleep(self.config.cut_s)
            self.proxy.restore(GATEWAY_CLIENT_ID)
            detail = {"connections_cut": closed, "refused_meanwhile": self.proxy.stats.refused}
        elif fault.kind == "duplicate_burst":
            assert self.gateway is not None
            os.kill(self.gateway.pid, signal.SIGUSR1)
        return FaultRecord(fault.kind, fault.at_s, started, now(), detail)

    # ------------------------------------------------------------------------ run

    def run(self) -> dict[str, Any]:
        cfg = self.config
        self.say(f"campaign {self.tag}: {cfg.patients} patients x {cfg.duration_s:.0f} s, "
                 f"{len(cfg.faults)} faults, output in {self.dir}")
        try:
            self._start_services()
            assert self.proxy is not None
            self.workers = [self._new_worker(i).start() for i in range(2)]
            for w in self.workers:
                w.wait_ready(180)
            # The gateway simulates the cohort first (seconds), then starts at start_ms.
            self.start_ms = (int(time.time() * 1000) // 1000 + 20) * 1000
            self._start_gateway()
            observer = Observer(self.proxy.address, f"faults-{self.tag}").start()
            self.say(f"services up (broker behind proxy {self.proxy.address}, Redis {self.redis_url}); "
                     "workers ready; gateway starting")
            for fault in sorted(cfg.faults, key=lambda f: f.at_s):
                self._wait(self.start_ms / 1000 + fault.at_s - time.time())
                if self.gateway is not None and self.gateway.poll() is not None:
                    raise ServiceError(f"the gateway stopped early (code {self.gateway.returncode}); see gateway.log")
                record = self._inject(fault)
                self.records.append(record)
                self.say(f"  t={fault.at_s:6.0f} s  {fault.kind:18s} {json.dumps(record.detail)}")
            # The end of the recordings, then the drain: every patient's last window in.
            end = self.start_ms / 1000 + cfg.duration_s
            self._wait(end - time.time())
            gateway = self.gateway
            if gateway is not None:
                self._wait(120, until=lambda: gateway.poll() is not None)
            last_window = self.start_ms + int(cfg.duration_s * 1000) - 2000
            patients = [s.patient_id for s in self.scenarios]
            drained = self._wait(
                cfg.drain_timeout_s,
                until=lambda: all(observer.newest_t_ms().get(p, 0) >= last_window for p in patients)
                and bool(observer.group_lag) and observer.group_lag[-1][1] == 0)
            time.sleep(3)
            observer.stop()
            worker_stats = [w.stats() or {} for w in self.workers]
            stored = self._stored_alerts(patients)
            self.say(f"recordings over; drained: {drained}; scoring")
        finally:
            self._stop_all()
        return self._score(observer, stored, worker_stats, drained)

    def _stored_alerts(self, patients: list[str]) -> list[scoring.AlertRecord]:
        import redis as redis_lib

        from alerting.store import RedisAlertStore

        client = redis_lib.Redis.from_url(self.redis_url)
        store = RedisAlertStore(client, prefix=f"faults{self.tag}")
        out = []
        for pid in patients:
            for alert in store.list_alerts(pid, include_resolved=True):
                history = store.history(alert.alert_id)
                out.append(scoring.AlertRecord(
                    alert_id=alert.alert_id, patient_id=alert.patient_id, type=alert.type,
                    raised_ms=alert.raised_ms, resolved_ms=alert.resolved_ms,
                    raised_events=sum(1 for h in history if h.event == "raised"),
                    aliases=int(client.scard(f"faults{self.tag}:alert:{alert.alert_id}:aliases")),
                    condition=scoring.condition_spans(
                        alert.raised_ms,
                        [(h.t_ms, h.condition_active and h.event != "resolved") for h in history]),
                ))
        return out

    # -------------------------------------------------------------------- scoring

    def _score(self, observer: Observer, stored: list[scoring.AlertRecord], worker_stats: list[dict[str, Any]],
               drained: bool) -> dict[str, Any]:
        from alerting.aggregator import PatientAlertState, process_finding
        from models.runtime import ModelRuntime
        from stream.pipeline import VitalsPipeline
        from stream.settings import Settings

        cfg = self.config
        settings = Settings()
        window_ms, hop_ms = int(settings.window_s * 1000), int(settings.hop_s * 1000)
        patients = [s.patient_id for s in self.scenarios]
        truth = [
            scoring.Episode(r["patient_id"], r["type"], r["start_ms"], r["end_ms"], r["episode"])
            for s in self.scenarios for r in s.truth(self.start_ms) if r["role"] == "expected"
        ]
        # The fault-free reference: the same chunks through the same stages, in process.
        self.say("reference run (the same patients without faults, in process)")
        chunks = campaign_chunks(self.scenarios, self.start_ms, cfg.seed)
        pipe = VitalsPipeline(ModelRuntime.load_default(), window_s=settings.window_s, hop_s=settings.hop_s)
        ref_findings = pipe.process(chunks)
        for p in patients:
            ref_findings += pipe.assemble(pipe.flush(p))
        reference = _alerts_of(ref_findings, patients, PatientAlertState, process_finding)
        # What the aggregator had to write, from the findings that reached the topic.
        published = sorted(observer.finding_objects.values(), key=lambda f: (f.patient_id, f.t_ms))
        expected = _alerts_of(published, patients, PatientAlertState, process_finding)

        outcomes = scoring.episode_outcomes(truth, stored, reference)
        overlapping = scoring.overlapping_alerts(stored)
        lost = scoring.lost_alerts(expected, stored)
        ref_ends: dict[str, list[int]] = {}
        for f in ref_findings:
            ref_ends.setdefault(f.patient_id, []).append(f.t_ms)
        published_ends: dict[str, list[int]] = {}
        for pid, t in observer.finding_objects:
            published_ends.setdefault(pid, []).append(t)
        uncovered = scoring.uncovered_hops(ref_ends, published_ends, window_ms, hop_ms)

        findings = sorted(observer.findings, key=lambda f: f.received_ms)
        recovery = recovery_times(self.start_ms, cfg.duration_s, [asdict(r) for r in self.records], findings,
                                  observer.group_lag, patients, cfg.min_normal_finding_lag_s, cfg.min_normal_group_lag)
        for rec, seconds in zip(self.records, recovery["recovery_s"], strict=True):
            rec.recovery_s = seconds
        normal_finding_lag_ms, normal_group_lag = recovery["normal_finding_lag_ms"], recovery["normal_group_lag"]

        truth_types = {(e.patient_id, e.type) for e in truth}
        tolerated = {(r["patient_id"], r["type"]) for s in self.scenarios for r in s.truth(self.start_ms)}
        fault_false = [a for a in stored if (a.patient_id, a.type) not in tolerated
                       and not any(r.alert_id == a.alert_id for r in reference)
                       and not any(r.patient_id == a.patient_id and r.type == a.type
                                   and r.active_during(a.raised_ms - scoring.LOST_TOLERANCE_MS,
                                                       a.raised_ms + scoring.LOST_TOLERANCE_MS)
                                   for r in reference)]
        recoveries = [r.recovery_s for r in self.records if r.recovery_s is not None]
        result = {
            "campaign": self.tag,
            "patients": cfg.patients,
            "duration_s": cfg.duration_s,
            "partitions": cfg.partitions,
            "workers": 2,
            "start_ms": self.start_ms,
            "drained": drained,
            "worker_exits_not_injected": self.unplanned_exits,
            "faults_injected": len(self.records),
            "faults_by_kind": {k: sum(1 for r in self.records if r.kind == k) for k in FAULT_KINDS},
            "episodes": len(truth),
            "episodes_alerted_once": sum(o.alerted_once for o in outcomes),
            "episodes_missed": sum(o.missed for o in outcomes),
            "episodes_duplicated": sum(o.duplicated for o in outcomes),
            "not_detected_without_faults": sum(not o.detected_without_faults for o in outcomes),
            "duplicate_alerts": len(overlapping) + sum(len(o.raised_inside) - 1 for o in outcomes if o.duplicated),
            "alerts_lost_worker_to_redis": len(lost),
            "findings_lost": sum(len(v) for v in uncovered.values()),
            "alerts_stored": len(stored),
            "alerts_expected_from_findings": len(expected),
            "reruns_merged_by_store": sum(a.aliases for a in stored),
            "alerts_not_in_reference": [asdict(a) for a in fault_false],
            "findings_read": len(observer.findings),
            "finding_copies": observer.copies,
            "dead_letters": observer.dead_letters,
            "normal_finding_lag_s": normal_finding_lag_ms / 1000,
            "normal_group_lag": normal_group_lag,
            "fresh_s": recovery["fresh_ms"] / 1000,
            "baseline_finding_lag_p50_s": recovery["baseline_lag_p50_ms"] / 1000,
            "baseline_finding_lag_p99_s": recovery["baseline_lag_p99_ms"] / 1000,
            "recovery_s": {"max": max(recoveries, default=None), "median": scoring.percentile(recoveries, 50),
                           "all_recovered": len(recoveries) == len(self.records)},
            "faults": [asdict(r) for r in self.records],
            "missed": [{**asdict(o.episode),
                        "published": _signal_quality(published, o.episode, self.start_ms),
                        "reference": _signal_quality(ref_findings, o.episode, self.start_ms)}
                       for o in outcomes if o.missed],
            "duplicated": [{**asdict(o.episode), "alerts": o.raised_inside} for o in outcomes if o.duplicated],
            "overlapping_alerts": overlapping,
            "lost": [asdict(a) for a in lost],
            "uncovered_hops": uncovered,
            "undetected_without_faults": [asdict(o.episode) for o in outcomes if not o.detected_without_faults],
            "truth_types": len(truth_types),
            "worker_stats": worker_stats,
        }
        (self.dir / "observed.json").write_text(json.dumps({
            "findings": [(f.received_ms, f.patient_id, f.t_ms) for f in findings],
            "group_lag": observer.group_lag,
        }))
        return result


def recovery_times(start_ms: int, duration_s: float, faults: list[dict[str, Any]],
                   findings: list[scoring.FindingSeen], group_lag: list[tuple[int, int]], patients: list[str],
                   min_normal_finding_lag_s: float = 8.0, min_normal_group_lag: int = 0) -> dict[str, Any]:
    """Recovery time of each fault (scoring.recovery_ms), with "normal" measured from the
    start + 30 s to the first fault; also used to score a finished run again
    (``bench/faults.py --rescore``)."""
    first_fault_ms = min((f["started_ms"] for f in faults), default=start_ms + int(duration_s * 1000))
    before = [f for f in findings if start_ms + 30_000 <= f.received_ms < first_fault_ms]
    baseline = [f.lag_ms for f in before]
    base_lag = [lag for t, lag in group_lag if start_ms + 30_000 <= t < first_fault_ms and lag >= 0]
    normal_finding_lag_ms = int(max(min_normal_finding_lag_s * 1000, 2 * scoring.percentile(baseline, 99)))
    normal_group_lag = max(min_normal_group_lag, int(2 * scoring.percentile(base_lag, 99)) + len(patients))
    fresh_ms = int(max(scoring.FRESH_MS, 2 * scoring.percentile(scoring.arrival_gaps_ms(before), 99)))
    inputs = scoring.RecoveryInputs(patients, findings, group_lag, normal_finding_lag_ms, normal_group_lag, fresh_ms)
    until = max((f.received_ms for f in findings), default=0)
    starts = [f["started_ms"] for f in faults]
    out = []
    for i, fault in enumerate(faults):
        # Up to the next fault, or to the end of the recordings (the drain after it has
        # no live data to be fresh about).
        horizon = starts[i + 1] if i + 1 < len(starts) else min(until, start_ms + int(duration_s * 1000))
        ms = scoring.recovery_ms(inputs, fault["started_ms"], fault["ended_ms"], horizon)
        out.append(None if ms is None else round(ms / 1000, 2))
    return {"recovery_s": out, "normal_finding_lag_ms": normal_finding_lag_ms, "normal_group_lag": normal_group_lag,
            "fresh_ms": fresh_ms, "baseline_lag_p50_ms": scoring.percentile(baseline, 50),
            "baseline_lag_p99_ms": scoring.percentile(baseline, 99)}


def _signal_quality(findings: list[Any], episode: scoring.Episode, start_ms: int) -> list[dict[str, Any]]:
    """Per window of a missed episode's patient, around the episode: what the signal
    checks saw (the published findings against the reference's show why it was missed)."""
    out = []
    for f in sorted(findings, key=lambda f: f.t_ms):
        if f.patient_id != episode.patient_id or not episode.start_ms - 15_000 <= f.t_ms <= episode.end_ms + 25_000:
            continue
        row: dict[str, Any] = {"t_s": round((f.t_ms - start_ms) / 1000, 1), "gaps": list(f.gaps)}
        for name in ("ecg", "ppg", "abp", "resp"):
            part = getattr(f, name, None)
            if part is not None:
                row[name] = [round(part.quality, 2), part.usable]
        out.append(row)
    return out


def _alerts_of(findings: list[VitalsFinding], patients: list[str], state_cls: Any,
               process: Any) -> list[scoring.AlertRecord]:
    from alerting.episode import AlertEmission

    emissions = []
    for pid in patients:
        state = state_cls.new(pid)
        for f in sorted((f for f in findings if f.patient_id == pid), key=lambda f: f.t_ms):
            state, ems = process(state, f)
            emissions.extend(ems)
    return scoring.alerts_from_emissions(e for e in emissions if isinstance(e, AlertEmission))


def _rebalancing(worker: WorkerProcess) -> bool:
    """The worker reports a rebalance in progress, or has no partitions (Faust revokes them
    all at a rebalance's start)."""
    stats = worker.stats()
    return bool(stats) and (bool(stats.get("rebalancing")) or not stats.get("assigned"))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except OSError:
        return True
