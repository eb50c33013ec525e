"""Capacity: how many simulated patients W workers keep in real time, through the real path.

    python bench/bench_capacity.py [--workers 1 2] [--start 400] [--step 100] [--ceiling 1600]
                                   [--patients 600 800 ...] [--warmup 25] [--measure 60]
                                   [--out out/capacity] [--no-passthrough]

Per run (N patients, W workers): a fresh embedded broker (Tansu) and Redis, the topics,
W ``vitalstream worker`` processes; then this process is the load generator: N simulated
patients (every ninth an ICU bed with five signals; the others ECG, PPG and respiration)
publish 1-s chunks in real time, each patient on its own phase within the second, as
independent gateways would. Event time is wall time. Meanwhile, every second:

* consumer lag: messages produced minus messages the workers read (their ``/stats/``);
* sample-to-finding latency: the Kafka timestamp of each finding (the worker's produce
  time) minus the time this generator produced the chunk holding the window's last sample;
* sample-to-alert latency: the Redis time an alert change was written (``written_ms`` of
  the ``P:alerts`` stream entry) minus the time the chunk holding the deciding window's
  last sample was produced (raised, updated and resolved changes: those findings decide);
* worker CPU (user + system) and RSS (psutil), and this generator's own CPU.

Windows of the measured span whose finding has not arrived 15 s after the load stops
count with their wait so far (a lower bound): a worker that falls behind fails at p99.
A run passes when p99 sample-to-finding <= 5 s and the lag stays bounded
(``stream.capacity.lag_verdict``). For each W the largest passing N is searched
(``stream.capacity.next_patients``). In the same broker, after the last run, the same
messages are read by raw aiokafka and by a Faust agent that does nothing
(bench/faust_passthrough.py), and the pipeline's sustained rate is printed as a ratio of
each. Results: ``<out>/capacity.json`` and ``<out>/capacity.png``.

The simulated signals come from a pool of 18 distinct patients (default_cohort, two ICU
beds) repeated under distinct patient ids and phases: the per-window work does not depend
on which patient is which, and simulating 1,000 patients on the cores being measured
would compete with the worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream.capacity import (  # noqa: E402
    P99_LIMIT_S,
    SendBook,
    keeps_up,
    lag_verdict,
    next_patients,
    percentiles,
)
from stream.connections import NO_REDIS_AUTH, PLAINTEXT, redis_client  # noqa: E402
from stream.schema import encode_chunk, make_chunk  # noqa: E402
from stream.services import FINDINGS_TOPIC, VITALS_TOPICS, create_topics, embedded_services  # noqa: E402
from stream.simulator import SimulatedRecording, default_cohort, device_id_for, simulate_patient  # noqa: E402
from stream.worker_process import WorkerProcess  # noqa: E402

PARTITIONS = 8
POOL = 18  # distinct simulated patients (two ICU beds: every ninth)
DRAIN_S = 15.0  # after the load stops: findings of the measured span still awaited
ALERT_EVENTS = {"raised", "updated", "resolved"}  # alert changes a finding decides
PREFIX = "capbench"
# The bench starts its own embedded broker and Redis: plain TCP, no users.
EMBEDDED = PLAINTEXT


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def machine_line(info: dict[str, Any]) -> str:
    return (f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, Python {info['python']}; "
            f"load average at start {info['load_avg_at_start']}")


def prepare(args: argparse.Namespace) -> tuple[dict[str, Any], list[SimulatedRecording]]:
    """The output folder, the machine (printed) and the simulated pool for runs of
    ``args.warmup + args.measure`` seconds."""
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(machine_line(info))
    return info, build_pool(int(args.warmup + args.measure) + 2)


# ---------------------------------------------------------------- load


@dataclass
class Load:
    """N patients drawn from the pool, each on its own phase within the second."""

    pool: list[SimulatedRecording]
    n: int
    seconds: int
    chunk_s: int = 1
    t0_ms: int = 0
    phase_ms: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.phase_ms = [(p * 1000) // self.n for p in range(self.n)]
        self.ids = [f"cap-{p:05d}" for p in range(self.n)]
        self.keys = [pid.encode() for pid in self.ids]
        self.signals = [list(self.pool[p % len(self.pool)].signal_arrays().items()) for p in range(self.n)]
        self.messages_per_s = sum(len(s) for s in self.signals) / self.chunk_s

    def chunks(self, p: int, k: int) -> list[tuple[str, bytes]]:
        """The messages of patient p's chunk k (event time [k, k+1) chunk lengths after its start)."""
        out = []
        start = self.t0_ms + self.phase_ms[p]
        for sig, (x, fs) in self.signals[p]:
            per = int(fs) * self.chunk_s
            piece = x[k * per : (k + 1) * per]
            if piece.size == 0:
                continue
            chunk = make_chunk(self.ids[p], device_id_for(self.ids[p]), sig, fs, start + k * 1000 * self.chunk_s, k,
                               piece)
            out.append((chunk.signal.topic, encode_chunk(chunk)))
        return out


def build_pool(seconds: int) -> list[SimulatedRecording]:
    return [simulate_patient(s, seed=i) for i, s in enumerate(default_cohort(POOL, float(seconds), seed=23))]


# ---------------------------------------------------------------- one run


@dataclass
class RunResult:
    patients: int
    workers: int
    passed: bool
    summary: dict[str, Any]
    series: dict[str, list[float]]


async def generate(load: Load, book: SendBook, bootstrap: str, t0_wall: float, stop_at: float,
                   counters: dict[str, float]) -> None:
    """Send every patient's chunk k when its last sample is due (its end in wall time)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=1 << 20, max_request_size=1 << 21, **EMBEDDED.client_kwargs())
    await producer.start()
    order = sorted(range(load.n), key=lambda p: load.phase_ms[p])
    try:
        k = 0
        while True:
            for p in order:
                due = t0_wall + (load.phase_ms[p] + (k + 1) * 1000 * load.chunk_s) / 1000.0
                if due >= stop_at:
                    return
                delay = due - time.time()
                if delay > 0.002:
                    await asyncio.sleep(delay)
                else:
                    counters["late_max_s"] = max(counters["late_max_s"], -delay)
                now = time.time()
                for topic, value in load.chunks(p, k):
                    await producer.send(topic, value=value, key=load.keys[p])
                    counters["produced"] += 1
                book.mark_sent(p, k, now)
            k += 1
    finally:
        await producer.flush()
        await producer.stop()


async def read_findings(load: Load, book: SendBook, bootstrap: str, span: tuple[float, float],
                        latencies: dict[tuple[int, int], float], counters: dict[str, float],
                        stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer

    index = {key: p for p, key in enumerate(load.keys)}
    consumer = AIOKafkaConsumer(FINDINGS_TOPIC, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, **EMBEDDED.client_kwargs())
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batch.values():
                for r in records:
                    p = index.get(r.key)
                    if p is None:
                        continue
                    counters["findings"] += 1
                    t_ms = json.loads(r.value)["t_ms"]
                    produced = book.produced_s(p, t_ms)
                    if produced is not None and span[0] <= t_ms / 1000.0 < span[1]:
                        latencies[(p, int(t_ms))] = r.timestamp / 1000.0 - produced
    finally:
        await consumer.stop()


def read_alerts(client: Any, load: Load, book: SendBook, last_id: str, span: tuple[float, float],
                out: list[float]) -> str:
    index = {pid: p for p, pid in enumerate(load.ids)}
    entries = client.xread({f"{PREFIX}:alerts": last_id}, count=10000) or []
    for _stream, items in entries:
        for entry_id, fields in items:
            last_id = entry_id
            f = {k.decode(): v.decode() for k, v in fields.items()}
            p = index.get(f.get("patient_id", ""))
            if p is None or f.get("event") not in ALERT_EVENTS or not f.get("updated_ms") or not f.get("written_ms"):
                continue
            t_ms = int(f["updated_ms"])
            produced = book.produced_s(p, t_ms)
            if produced is not None and span[0] <= t_ms / 1000.0 < span[1]:
                out.append(int(f["written_ms"]) / 1000.0 - produced)
    return last_id


def cpu_s(proc: psutil.Process) -> float:
    with contextlib.suppress(psutil.Error):
        t = proc.cpu_times()
        return t.user + t.system + t.children_user + t.children_system
    return float("nan")


def rss_mb(proc: psutil.Process) -> float:
    with contextlib.suppress(psutil.Error):
        return proc.memory_info().rss / 2**20
    return float("nan")


def run_once(n: int, workers: int, pool: list[SimulatedRecording], args: argparse.Namespace, workdir: Path,
             keep_services: dict[str, Any] | None = None) -> RunResult:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    seconds = int(args.warmup + args.measure)
    load = Load(pool, n, seconds + 1, args.chunk_s)
    label = f"n{n}-w{workers}"
    svc_dir = workdir / f"svc-{label}"
    services = embedded_services(svc_dir, env={})
    endpoints = services.__enter__()
    procs: list[WorkerProcess] = []
    counters = {"produced": 0.0, "late_max_s": 0.0, "findings": 0.0}
    try:
        create_topics(endpoints.kafka_bootstrap, PARTITIONS)
        env = {"KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap, "REDIS_URL": endpoints.redis_url,
               "VITALSTREAM_APP_ID": f"cap-{label}", "VITALSTREAM_REDIS_PREFIX": PREFIX,
               "VITALSTREAM_PARTITIONS": str(PARTITIONS), "VITALSTREAM_STATE_DIR": str(workdir / label),
               "VITALSTREAM_LOG_LEVEL": "warn", **dict(kv.split("=", 1) for kv in args.worker_env)}
        if args.worker_src is not None:
            # Workers from another checkout (e.g. the code before an optimisation), same venv.
            env["PYTHONPATH"] = str(args.worker_src)
        procs = [WorkerProcess(env, workdir / f"{label}-{i}.log", name=f"worker-{i}", cwd=args.worker_src).start()
                 for i in range(workers)]
        for w in procs:
            w.wait_ready(240)
        # Every worker must hold its share before the load starts (a rebalance mid-run
        # would count as lag).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stats = [w.stats() or {} for w in procs]
            vitals = [tp for s in stats for tp in s.get("partitions", []) if tp.split(":")[0] in VITALS_TOPICS]
            if (all(s.get("assigned") and not s.get("rebalancing") for s in stats)
                    and len(set(vitals)) == len(vitals) == PARTITIONS * len(VITALS_TOPICS)):
                break
            time.sleep(0.5)
        time.sleep(3.0)
        ps = [psutil.Process(w.proc.pid) for w in procs if w.proc is not None]
        idle_rss = [rss_mb(p) for p in ps]
        me = psutil.Process()
        from stream.services import ServiceState

        state = ServiceState.load(svc_dir)
        svc = [psutil.Process(x.pid) for x in (state.started if state else [])]

        t0_wall = float(int(time.time()) + 2)
        load.t0_ms = int(t0_wall * 1000)
        book = SendBook([load.t0_ms + ph for ph in load.phase_ms], seconds // args.chunk_s + 2, 1000 * args.chunk_s)
        span = (t0_wall + args.warmup, t0_wall + seconds - 4)  # windows whose findings are measured
        stop_at = t0_wall + seconds
        latencies: dict[tuple[int, int], float] = {}
        alert_lat: list[float] = []
        rclient = redis_client(endpoints.redis_url, NO_REDIS_AUTH)
        series: dict[str, list[float]] = {k: [] for k in ("t", "lag", "read_rate", "findings_rate", "cpu",
                                                          "rss_mb", "gen_cpu", "services_cpu", "machine_busy")}

        async def drive() -> None:
            stop_reading = asyncio.Event()
            gen = asyncio.create_task(generate(load, book, endpoints.kafka_bootstrap, t0_wall, stop_at, counters))
            reader = asyncio.create_task(read_findings(load, book, endpoints.kafka_bootstrap, span, latencies,
                                                       counters, stop_reading))
            last_alert = "0-0"
            prev_cpu = [cpu_s(p) for p in ps]
            prev_me = cpu_s(me)
            prev_svc = sum(cpu_s(x) for x in svc)
            prev_machine = psutil.cpu_times()
            prev_read = 0.0
            prev_findings = 0.0
            last_read = [0.0] * len(procs)
            prev_t = time.time()
            with Progress(TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("{task.description}"),
                          TimeRemainingColumn(), transient=True) as bar:
                task = bar.add_task("", total=seconds + DRAIN_S)
                while True:
                    await asyncio.sleep(1.0)
                    now = time.time()
                    stats = await asyncio.gather(*(asyncio.to_thread(w.stats) for w in procs))
                    # A worker too busy to answer within its 1-s timeout keeps its last count
                    # (counting it as 0 drew lag spikes that were not there).
                    for i, st in enumerate(stats):
                        if st is not None:
                            last_read[i] = float(st.get("chunks_in", 0))
                    read = sum(last_read)
                    cpu_now = [cpu_s(p) for p in ps]
                    me_now = cpu_s(me)
                    svc_now = sum(cpu_s(x) for x in svc)
                    machine = psutil.cpu_times()
                    dt = now - prev_t
                    series["t"].append(round(now - t0_wall, 2))
                    series["lag"].append(counters["produced"] - read)
                    series["read_rate"].append(round((read - prev_read) / dt, 1))
                    series["findings_rate"].append(round((counters["findings"] - prev_findings) / dt, 1))
                    series["cpu"].append(round(sum(c - p for c, p in zip(cpu_now, prev_cpu, strict=True)) / dt, 3))
                    series["rss_mb"].append(round(sum(rss_mb(p) for p in ps), 1))
                    series["gen_cpu"].append(round((me_now - prev_me) / dt, 3))
                    series["services_cpu"].append(round((svc_now - prev_svc) / dt, 3))
                    # Busy share of all cores (everything on the machine, other jobs too).
                    idle = (machine.idle + machine.iowait) - (prev_machine.idle + prev_machine.iowait)
                    series["machine_busy"].append(round(1.0 - idle / max(1e-9, sum(machine) - sum(prev_machine)), 3))
                    prev_svc, prev_machine = svc_now, machine
                    prev_cpu, prev_me, prev_read, prev_t = cpu_now, me_now, read, now
                    prev_findings = counters["findings"]
                    last_alert = await asyncio.to_thread(read_alerts, rclient, load, book, last_alert, span, alert_lat)
                    bar.update(task, completed=min(now - t0_wall, seconds + DRAIN_S),
                               description=f"lag {series['lag'][-1]:.0f} msgs, {series['findings_rate'][-1]:.0f} "
                                           f"findings/s, worker CPU {series['cpu'][-1]:.2f}")
                    if gen.done() and (now >= stop_at + DRAIN_S or _all_in(latencies, load, span)):
                        break
            stop_reading.set()
            await gen
            await reader

        spy = None
        if args.py_spy and ps:
            # Sampled from the end of the warm-up for the measured span: where the loaded
            # worker's time goes (collapsed stacks; summarised by bench/profile_summary.py).
            spy_out = args.out / f"profile-{label}.txt"
            spy = subprocess.Popen(["sh", "-c", f"sleep {max(0.0, t0_wall + args.warmup - time.time()):.1f} && "
                                    f"exec {shutil.which('py-spy') or 'py-spy'} record -p {ps[0].pid} "
                                    f"-d {int(args.measure)} -r 40 --nonblocking -f raw -o {spy_out}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        asyncio.run(drive())
        if spy is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(30)
        end_wall = time.time()
        end_rss = [rss_mb(p) for p in ps]
        return summarise(n, workers, load, book, span, latencies, alert_lat, series, counters, idle_rss, end_rss,
                         end_wall, t0_wall, args)
    finally:
        for w in procs:
            w.stop()
        if keep_services is not None:
            keep_services.update(services=services, endpoints=endpoints, produced=int(counters["produced"]))
        else:
            services.__exit__(None, None, None)
            shutil.rmtree(svc_dir, ignore_errors=True)


def expected_windows(load: Load, span: tuple[float, float], args: argparse.Namespace) -> list[tuple[int, int]]:
    """(patient, window end ms) of every window that ends within the measured span: the
    first ends one window length after the patient's start, then one every hop."""
    out = []
    for p in range(load.n):
        start = load.t0_ms + load.phase_ms[p]
        t = start + int(args.window_s * 1000)
        while t / 1000.0 < span[1]:
            if t / 1000.0 >= span[0]:
                out.append((p, t))
            t += int(args.hop_s * 1000)
    return out


def _all_in(latencies: dict[tuple[int, int], float], load: Load, span: tuple[float, float]) -> bool:
    # Cheap test first: ~one window per patient per hop in the span.
    return len(latencies) >= load.n * int((span[1] - span[0]) / 2.0)


def summarise(n: int, workers: int, load: Load, book: SendBook, span: tuple[float, float],
              latencies: dict[tuple[int, int], float], alert_lat: list[float], series: dict[str, list[float]],
              counters: dict[str, float], idle_rss: list[float], end_rss: list[float], end_wall: float,
              t0_wall: float, args: argparse.Namespace) -> RunResult:
    expected = expected_windows(load, span, args)
    values = []
    missing = 0
    for p, t in expected:
        lat = latencies.get((p, t))
        if lat is None:
            missing += 1
            produced = book.produced_s(p, t)
            lat = end_wall - produced if produced is not None else end_wall - t / 1000.0
        values.append(lat)
    finding = percentiles(values)
    alert = percentiles(alert_lat)
    t = np.array(series["t"])
    measured = (t >= args.warmup) & (t <= args.warmup + args.measure)
    lag = lag_verdict([(float(a), float(b)) for a, b, m in zip(t, series["lag"], measured, strict=True) if m],
                      load.messages_per_s)
    cpu = float(np.mean(np.array(series["cpu"])[measured])) if measured.any() else float("nan")
    def mean(key: str) -> float:
        return float(np.mean(np.array(series[key])[measured])) if measured.any() else float("nan")

    gen_cpu = mean("gen_cpu")
    rss_end = sum(end_rss)
    passed = keeps_up(finding["p99"], lag, args.p99_limit)
    summary = {
        "patients": n,
        "workers": workers,
        "icu_beds": sum(1 for p in range(n) if len(load.signals[p]) == 5),
        "messages_per_s": load.messages_per_s,
        "passed": passed,
        "sample_to_finding_s": finding,
        "sample_to_alert_s": alert,
        "windows_expected": len(expected),
        "windows_missing_at_end": missing,
        "lag": lag.as_dict(),
        "read_rate_msgs_per_s": round(float(np.mean(np.array(series["read_rate"])[measured])), 1),
        "findings_per_s": round(float(np.mean(np.array(series["findings_rate"])[measured])), 1),
        "worker_cpu_cores": round(cpu, 3),
        "worker_cpu_ms_per_patient_s": round(cpu / n * 1000, 3),
        "worker_cpu_us_per_message": round(cpu / load.messages_per_s * 1e6, 1),
        "generator_cpu_cores": round(gen_cpu, 3),
        "broker_and_redis_cpu_cores": round(mean("services_cpu"), 3),
        "machine_busy_fraction": round(mean("machine_busy"), 3),
        "generator_late_max_s": round(counters["late_max_s"], 3),
        "worker_rss_idle_mb": [round(x, 1) for x in idle_rss],
        "worker_rss_end_mb": [round(x, 1) for x in end_rss],
        "rss_per_patient_mb": round((rss_end - sum(idle_rss)) / n, 3),
        "rss_total_per_patient_mb": round(rss_end / n, 3),
    }
    return RunResult(n, workers, passed, summary, series)


# ---------------------------------------------------------------- Kafka baselines


def raw_aiokafka_rate(bootstrap: str, target: int) -> dict[str, float]:
    """A plain aiokafka consumer reads ``target`` messages of the vitals topics from the start:
    partitions assigned by hand (no group join to wait for), timed from the first fetch."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> dict[str, float]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    auto_offset_reset="earliest", **EMBEDDED.client_kwargs())
        await consumer.start()
        try:
            parts = [TopicPartition(t, p) for t in VITALS_TOPICS for p in range(PARTITIONS)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            n = 0
            started = time.monotonic()
            while n < target and time.monotonic() - started < 300:
                batch = await consumer.getmany(timeout_ms=1000, max_records=10000)
                for records in batch.values():
                    n += len(records)
            elapsed = time.monotonic() - started
            return {"messages": n, "seconds": round(elapsed, 3), "msgs_per_s": round(n / elapsed, 1)}
        finally:
            await consumer.stop()

    return asyncio.run(run())


def faust_rate(bootstrap: str, target: int, workdir: Path) -> dict[str, float]:
    out = workdir / "passthrough.json"
    env = {**os.environ, "PASSTHROUGH_BOOTSTRAP": bootstrap, "PASSTHROUGH_TARGET": str(target),
           "PASSTHROUGH_OUT": str(out), "PASSTHROUGH_DATADIR": str(workdir / "passthrough-data"),
           "VITALSTREAM_PARTITIONS": str(PARTITIONS), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "bench" / "faust_passthrough.py"), "worker", "-l", "warn"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                            stderr=open(workdir / "passthrough.log", "wb"), start_new_session=True)  # noqa: SIM115
    try:
        proc.wait(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
    if not out.exists():
        raise SystemExit(f"Faust pass-through failed:\n{(workdir / 'passthrough.log').read_text()[-3000:]}")
    data = json.loads(out.read_text())
    return {"messages": data["messages"], "seconds": round(data["seconds"], 3),
            "msgs_per_s": round(data["messages"] / data["seconds"], 1)}


# ---------------------------------------------------------------- plot


def plot(results: list[RunResult], path: Path, limit_s: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    rss_axis = axes[2].twinx()
    for w, marker in ((1, "o"), (2, "s")):
        runs = sorted((r for r in results if r.workers == w), key=lambda r: r.patients)
        if not runs:
            continue
        ns = [r.patients for r in runs]
        for q, style in (("p50", ":"), ("p95", "--"), ("p99", "-")):
            axes[0].plot(ns, [r.summary["sample_to_finding_s"][q] for r in runs], style, marker=marker,
                         label=f"W={w} {q}")
        axes[2].plot(ns, [r.summary["worker_cpu_ms_per_patient_s"] for r in runs], "-", marker=marker,
                     color="tab:blue", label=f"W={w} CPU ms per patient-second")
        rss_axis.plot(ns, [sum(r.summary["worker_rss_end_mb"]) for r in runs], "--", marker=marker,
                      color="tab:orange", label=f"W={w} workers' RSS (MB)")
    axes[0].axhline(limit_s, color="red", lw=1)
    axes[0].set(xlabel="patients", ylabel="sample-to-finding latency (s)", yscale="log",
                title="latency (red: p99 limit)")
    axes[0].legend(fontsize=7)
    for r in results:
        axes[1].plot(r.series["t"], r.series["lag"], label=f"N={r.patients} W={r.workers}", lw=1)
    axes[1].set(xlabel="seconds since load start", ylabel="consumer lag (messages)", title="lag per second")
    axes[1].legend(fontsize=6)
    axes[2].set(xlabel="patients", ylabel="worker CPU ms per patient-second", title="cost (CPU) and memory")
    rss_axis.set(ylabel="workers' RSS at the end (MB)")
    axes[2].legend(fontsize=7, loc="upper left")
    rss_axis.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--patients", type=int, nargs="*", default=[],
                        help="run exactly these counts (for each W) instead of searching")
    parser.add_argument("--start", type=int, default=400, help="first patient count tried with one worker")
    parser.add_argument("--step", type=int, default=50)
    parser.add_argument("--ceiling", type=int, default=2000)
    parser.add_argument("--max-runs", type=int, default=4, help="per worker count, when searching")
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--measure", type=float, default=45.0)
    parser.add_argument("--chunk-s", type=int, default=1, choices=(1, 2),
                        help="seconds of signal per message (the gateway's chunk_s; 2 halves the messages "
                             "and adds ~1 s to every latency)")
    parser.add_argument("--window-s", type=float, default=10.0)
    parser.add_argument("--hop-s", type=float, default=2.0)
    parser.add_argument("--p99-limit", type=float, default=P99_LIMIT_S)
    parser.add_argument("--worker-env", nargs="*", default=[], help="extra VAR=value for the workers")
    parser.add_argument("--worker-src", type=Path, default=None,
                        help="run the workers from this source tree (a before/after comparison)")
    parser.add_argument("--no-passthrough", action="store_true", help="skip the raw aiokafka and Faust baselines")
    parser.add_argument("--baseline-messages", type=int, default=150_000)
    parser.add_argument("--py-spy", action="store_true",
                        help="profile worker 0 over the measured span with py-spy (pip install py-spy)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "capacity")
    args = parser.parse_args()
    info, pool = prepare(args)
    results: list[RunResult] = []
    best: dict[int, RunResult | None] = {}
    keep: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp:
        work = Path(tmp)
        for w in args.workers:
            tried: dict[int, bool] = {}
            plan = list(args.patients)
            while True:
                if plan:
                    n: int | None = plan.pop(0)
                elif args.patients:
                    n = None
                else:
                    # More workers start from what fewer kept, scaled (saves runs).
                    fewer = [r.patients for r in results if r.workers < w and r.passed]
                    start = round(max(fewer) * 1.5 / args.step) * args.step if fewer else args.start
                    n = next_patients(tried, start=start, step=args.step, ceiling=args.ceiling)
                    if len(tried) >= args.max_runs:
                        n = None
                if n is None:
                    break
                if keep.get("services") is not None:
                    keep["services"].__exit__(None, None, None)
                    keep.clear()
                result = run_once(n, w, pool, args, work, keep if not args.no_passthrough else None)
                results.append(result)
                (args.out / f"run-n{n}-w{w}.json").write_text(json.dumps({**result.summary, "series": result.series}))
                tried[n] = result.passed
                s = result.summary
                print(f"W={w} N={n:5d} ({s['messages_per_s']} msgs/s): {'PASS' if result.passed else 'FAIL'}  "
                      f"finding p50/p95/p99 {s['sample_to_finding_s']['p50']}/{s['sample_to_finding_s']['p95']}/"
                      f"{s['sample_to_finding_s']['p99']} s, alert p50/p95/p99 {s['sample_to_alert_s']['p50']}/"
                      f"{s['sample_to_alert_s']['p95']}/{s['sample_to_alert_s']['p99']} s "
                      f"({s['sample_to_alert_s']['n']:.0f}), lag {s['lag']['final_msgs']:.0f} "
                      f"(slope {s['lag']['slope_msgs_per_s']}/s), worker CPU {s['worker_cpu_cores']} cores = "
                      f"{s['worker_cpu_ms_per_patient_s']} ms per patient-s, RSS {s['worker_rss_end_mb']} MB = "
                      f"{s['rss_per_patient_mb']} MB/patient over idle; generator {s['generator_cpu_cores']} cores, "
                      f"late max {s['generator_late_max_s']} s; broker+Redis {s['broker_and_redis_cpu_cores']} cores; "
                      f"machine busy {s['machine_busy_fraction']}", flush=True)
            passing = [r for r in results if r.workers == w and r.passed]
            best[w] = max(passing, key=lambda r: r.patients) if passing else None
        baselines: dict[str, Any] = {}
        if not args.no_passthrough and keep.get("endpoints") is not None:
            bootstrap = keep["endpoints"].kafka_bootstrap
            target = min(args.baseline_messages, keep["produced"])
            print("baselines on the last run's messages: raw aiokafka, then Faust pass-through ...", flush=True)
            baselines["raw_aiokafka"] = raw_aiokafka_rate(bootstrap, keep["produced"])
            baselines["faust_passthrough"] = faust_rate(bootstrap, target, work)
            keep["services"].__exit__(None, None, None)
        elif keep.get("services") is not None:
            keep["services"].__exit__(None, None, None)

    report: dict[str, Any] = {"machine": info, "criterion": {"p99_sample_to_finding_s": args.p99_limit,
                                                             "lag": "bounded (stream.capacity.lag_verdict)"},
                              "settings": {"warmup_s": args.warmup, "measure_s": args.measure, "chunk_s": args.chunk_s,
                                           "partitions": PARTITIONS, "worker_env": args.worker_env},
                              "runs": [r.summary for r in results], "baselines": baselines, "max_patients": {}}
    for w, r in best.items():
        report["max_patients"][str(w)] = None if r is None else r.patients
    one, two = best.get(1), best.get(2)
    if one is not None and two is not None:
        report["two_over_one"] = round(two.patients / one.patients, 2)
    if one is not None and baselines:
        rate = one.summary["read_rate_msgs_per_s"]
        report["pipeline_rate_msgs_per_s"] = rate
        report["pipeline_over_faust_passthrough"] = round(rate / baselines["faust_passthrough"]["msgs_per_s"], 3)
        report["pipeline_over_raw_aiokafka"] = round(rate / baselines["raw_aiokafka"]["msgs_per_s"], 4)
    for w in best:
        # Marginal memory: the slope of the workers' RSS over patients across this W's runs
        # (fixed costs such as the models and Kafka buffers fall out).
        runs = [r for r in results if r.workers == w]
        if len({r.patients for r in runs}) >= 2:
            slope = np.polyfit([r.patients for r in runs], [sum(r.summary["worker_rss_end_mb"]) for r in runs], 1)[0]
            report.setdefault("rss_marginal_mb_per_patient", {})[str(w)] = round(float(slope), 3)
    print("\ncapacity on", f"{info['cpu']} ({info['cores']} cores, {info['memory_gib']} GiB), load generator, broker "
          "and Redis on the same machine:")
    for w, r in best.items():
        if r is None:
            print(f"  W={w}: no patient count passed")
            continue
        s = r.summary
        print(f"  W={w}: {r.patients} patients in real time: sample-to-finding p50/p95/p99 "
              f"{s['sample_to_finding_s']['p50']}/{s['sample_to_finding_s']['p95']}/"
              f"{s['sample_to_finding_s']['p99']} s, sample-to-alert p50/p95/p99 "
              f"{s['sample_to_alert_s']['p50']}/{s['sample_to_alert_s']['p95']}/{s['sample_to_alert_s']['p99']} s, "
              f"worker CPU {s['worker_cpu_ms_per_patient_s']} ms per patient-s, "
              f"RSS {s['rss_per_patient_mb']} MB per patient")
    if one is not None:
        # What one worker costs per patient predicts a larger machine: patients per core.
        report["patients_per_worker_core"] = round(1000.0 / one.summary["worker_cpu_ms_per_patient_s"])
        print(f"  one worker costs {one.summary['worker_cpu_ms_per_patient_s']} ms CPU per patient-second: "
              f"~{report['patients_per_worker_core']} patients per core it gets")
    if "rss_marginal_mb_per_patient" in report:
        print(f"  marginal RSS per patient (slope over the runs): {report['rss_marginal_mb_per_patient']} MB")
    if "two_over_one" in report:
        print(f"  two workers / one: {report['two_over_one']}x")
    if baselines:
        print(f"  raw aiokafka {baselines['raw_aiokafka']['msgs_per_s']:.0f} msgs/s, Faust pass-through "
              f"{baselines['faust_passthrough']['msgs_per_s']:.0f} msgs/s; pipeline (W=1 max N) "
              f"{report.get('pipeline_rate_msgs_per_s')} msgs/s = {report.get('pipeline_over_faust_passthrough')} of "
              f"Faust pass-through, {report.get('pipeline_over_raw_aiokafka')} of raw aiokafka")
    (args.out / "capacity.json").write_text(json.dumps({**report, "series": [
        {"patients": r.patients, "workers": r.workers, **r.series} for r in results]}, indent=1))
    plot(results, args.out / "capacity.png", args.p99_limit)
    print(f"  JSON: {args.out / 'capacity.json'}  plot: {args.out / 'capacity.png'}")


if __name__ == "__main__":
    main()
