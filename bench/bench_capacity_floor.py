"""The floor under capacity: what the load itself costs before the worker does any work.

    python bench/bench_capacity_floor.py [--patients 150 1000] [--warmup 10] [--measure 30]
                                         [--out out/capacity-floor]

For each N: a fresh embedded broker and Redis, and in place of the workers a Faust agent
that does nothing with the vitals messages (bench/faust_passthrough.py, live mode: the
worker's app settings, ``take_events`` batches). This process is the load generator of
bench/bench_capacity.py (the same N simulated patients, 1-s chunks, real time). Every
second it samples the CPU of the generator, of the broker and Redis, of the pass-through
consumer and of the whole machine, and the consumer's lag.

What is left of the machine for the worker's own work (decode, windows, DSP, models,
findings, the aggregator) is then measured, not estimated:

* machine-wide: the cores minus the generator, the broker and Redis, and Faust's own
  per-message cost (the pass-through's cores);
* for one worker: a worker is one Python thread (the agents; torch with one thread), so at
  most one core, of which Faust takes the pass-through's share.

Both are printed as milliseconds of CPU per window (one window per patient per 2-s hop),
to compare with the per-window cost of ``bench/bench_worker_stages.py`` and the models'
of ``bench/bench_models.py``. Results: ``<out>/floor.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_capacity import (  # noqa: E402
    EMBEDDED,
    PARTITIONS,
    Load,
    cpu_s,
    generate,
    prepare,
)

from stream.capacity import SendBook, lag_verdict  # noqa: E402
from stream.services import VITALS_TOPICS, ServiceState, create_topics, embedded_services  # noqa: E402

HOP_S = 2.0  # one window per patient per hop (the pipeline's default)


def start_passthrough(bootstrap: str, workdir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "passthrough-live.json"
    env = {**os.environ, "PASSTHROUGH_BOOTSTRAP": bootstrap, "PASSTHROUGH_TARGET": "0",
           "PASSTHROUGH_OUT": str(out), "PASSTHROUGH_DATADIR": str(workdir / "passthrough-data"),
           "VITALSTREAM_PARTITIONS": str(PARTITIONS), "PYTHONPATH": str(ROOT)}
    log = open(workdir / "passthrough.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "faust_passthrough.py"), "worker", "-l", "warn"],
                            env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    return proc, out


async def send_probes(bootstrap: str, n: int) -> None:
    """Messages that only show the pass-through consumer is reading (counted, then subtracted)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **EMBEDDED.client_kwargs())
    await producer.start()
    try:
        for p in range(n):
            await producer.send_and_wait(VITALS_TOPICS[0], value=b"probe", key=b"probe", partition=p % PARTITIONS)
    finally:
        await producer.stop()


def read_count(path: Path) -> float:
    try:
        return float(json.loads(path.read_text())["messages"])
    except (OSError, ValueError, KeyError):
        return 0.0


def run_floor(n: int, pool: list[Any], args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    seconds = int(args.warmup + args.measure)
    load = Load(pool, n, seconds + 1)
    svc_dir = workdir / f"svc-n{n}"
    services = embedded_services(svc_dir, env={})
    endpoints = services.__enter__()
    proc = None
    try:
        create_topics(endpoints.kafka_bootstrap, PARTITIONS)
        run_dir = workdir / f"passthrough-n{n}"
        proc, count_file = start_passthrough(endpoints.kafka_bootstrap, run_dir)
        # The consumer must be reading before the load starts (its group join takes ~20 s;
        # a join mid-run would be measured as catching up): one probe per partition, and
        # the load starts once it has counted them all.
        asyncio.run(send_probes(endpoints.kafka_bootstrap, PARTITIONS))
        deadline = time.monotonic() + 180
        while read_count(count_file) < PARTITIONS:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"pass-through not reading:\n{(run_dir / 'passthrough.log').read_text()[-3000:]}")
            time.sleep(0.5)
        time.sleep(2.0)
        probes = read_count(count_file)
        consumer = psutil.Process(proc.pid)
        state = ServiceState.load(svc_dir)
        svc = [psutil.Process(x.pid) for x in (state.started if state else [])]
        me = psutil.Process()
        t0_wall = float(int(time.time()) + 2)
        load.t0_ms = int(t0_wall * 1000)
        book = SendBook([load.t0_ms + ph for ph in load.phase_ms], seconds + 2, 1000)
        stop_at = t0_wall + seconds
        counters = {"produced": 0.0, "late_max_s": 0.0, "findings": 0.0}
        series: dict[str, list[float]] = {k: [] for k in ("t", "lag", "gen_cpu", "services_cpu", "consumer_cpu",
                                                          "machine_busy")}

        async def drive() -> None:
            gen = asyncio.create_task(generate(load, book, endpoints.kafka_bootstrap, t0_wall, stop_at, counters))
            prev = (cpu_s(me), sum(cpu_s(x) for x in svc), cpu_s(consumer), psutil.cpu_times(), time.time())
            with Progress(TextColumn(f"[bold]floor n{n}"), BarColumn(), TextColumn("{task.description}"),
                          TimeRemainingColumn(), transient=True) as bar:
                task = bar.add_task("", total=seconds)
                while not gen.done():
                    await asyncio.sleep(1.0)
                    now = (cpu_s(me), sum(cpu_s(x) for x in svc), cpu_s(consumer), psutil.cpu_times(), time.time())
                    dt = now[4] - prev[4]
                    series["t"].append(round(now[4] - t0_wall, 2))
                    series["lag"].append(counters["produced"] - (read_count(count_file) - probes))
                    series["gen_cpu"].append(round((now[0] - prev[0]) / dt, 3))
                    series["services_cpu"].append(round((now[1] - prev[1]) / dt, 3))
                    series["consumer_cpu"].append(round((now[2] - prev[2]) / dt, 3))
                    idle = (now[3].idle + now[3].iowait) - (prev[3].idle + prev[3].iowait)
                    series["machine_busy"].append(round(1.0 - idle / max(1e-9, sum(now[3]) - sum(prev[3])), 3))
                    prev = now
                    bar.update(task, completed=min(series["t"][-1], seconds),
                               description=f"lag {series['lag'][-1]:.0f} msgs, consumer CPU "
                                           f"{series['consumer_cpu'][-1]:.2f}")
            await gen

        asyncio.run(drive())
        time.sleep(2.0)  # the consumer's last count
        series["lag_after_s"] = [counters["produced"] - (read_count(count_file) - probes)]
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)
        services.__exit__(None, None, None)
        shutil.rmtree(svc_dir, ignore_errors=True)

    t = np.array(series["t"])
    measured = (t >= args.warmup) & (t <= args.warmup + args.measure)

    def mean(key: str) -> float:
        return float(np.mean(np.array(series[key])[measured]))

    gen, services_cpu, consumer_cpu, busy = mean("gen_cpu"), mean("services_cpu"), mean("consumer_cpu"), \
        mean("machine_busy")
    cores = os.cpu_count() or 1
    windows_per_s = n / HOP_S
    machine_left = cores - gen - services_cpu - consumer_cpu
    worker_left = min(1.0, machine_left + consumer_cpu) - consumer_cpu
    lag = lag_verdict([(float(a), float(b)) for a, b, m in zip(t, series["lag"], measured, strict=True) if m],
                      load.messages_per_s)
    return {
        "patients": n,
        "messages_per_s": load.messages_per_s,
        "windows_per_s": windows_per_s,
        "generator_cpu_cores": round(gen, 3),
        "broker_and_redis_cpu_cores": round(services_cpu, 3),
        "faust_passthrough_cpu_cores": round(consumer_cpu, 3),
        "faust_passthrough_us_per_message": round(consumer_cpu / load.messages_per_s * 1e6, 1),
        "machine_busy_fraction": round(busy, 3),
        "passthrough_lag": lag.as_dict(),
        "passthrough_lag_after_load_msgs": series["lag_after_s"][0],
        "generator_late_max_s": round(counters["late_max_s"], 3),
        "left_machine_cores": round(machine_left, 3),
        "left_one_worker_cores": round(max(0.0, worker_left), 3),
        "left_ms_per_window_machine": round(max(0.0, machine_left) / windows_per_s * 1000, 3),
        "left_ms_per_window_one_worker": round(max(0.0, worker_left) / windows_per_s * 1000, 3),
        "series": {k: v for k, v in series.items() if k != "lag_after_s"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, nargs="+", default=[150, 1000])
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--measure", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "capacity-floor")
    args = parser.parse_args()
    info, pool = prepare(args)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        for n in args.patients:
            r = run_floor(n, pool, args, Path(tmp))
            runs.append(r)
            print(f"N={n:5d} ({r['messages_per_s']:.0f} msgs/s, {r['windows_per_s']:.0f} windows/s): generator "
                  f"{r['generator_cpu_cores']} cores, broker+Redis {r['broker_and_redis_cpu_cores']}, Faust "
                  f"pass-through {r['faust_passthrough_cpu_cores']} ({r['faust_passthrough_us_per_message']} µs/msg, "
                  f"lag {r['passthrough_lag']['final_msgs']:.0f}), machine busy {r['machine_busy_fraction']}; "
                  f"left for the worker's own work: {r['left_ms_per_window_one_worker']} ms per window in one "
                  f"worker ({r['left_one_worker_cores']} cores), {r['left_ms_per_window_machine']} ms per window "
                  f"machine-wide ({r['left_machine_cores']} cores)", flush=True)
    (args.out / "floor.json").write_text(json.dumps({"machine": info, "hop_s": HOP_S, "runs": runs}, indent=1))
    print(f"JSON: {args.out / 'floor.json'}")


if __name__ == "__main__":
    main()
