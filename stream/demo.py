"""`make demo`: embedded services, one worker, a simulated cohort, alerts printed as they land.

Everything started here is stopped on the way out — after the duration, on Ctrl-C, or on
an error — so the demo leaves no process behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console

from alerting.subscriber import AlertSubscriber
from stream.connections import KafkaSecurity, RedisSecurity, redact_url, redis_client
from stream.services import create_topics, embedded_services
from stream.settings import Settings
from stream.worker_process import WorkerProcess

PRIORITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan"}


def run_demo(*, patients: int, duration_s: float, seed: int, console: Console) -> int:
    """Run the demo; returns the number of alerts printed."""
    settings = Settings.from_env()
    workdir = Path(tempfile.mkdtemp(prefix="vitalstream-demo-"))
    prefix = f"demo{uuid.uuid4().hex[:6]}"
    deadline = time.monotonic() + duration_s
    printed = 0
    interrupted = False

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    console.print(f"[bold]vitalstream demo[/]: {patients} simulated patients for {duration_s:.0f} s (Ctrl-C stops)")
    try:
        with embedded_services(workdir / "services",
                               redis_security=RedisSecurity.from_settings(settings)) as endpoints:
            console.print(f"kafka {endpoints.kafka_bootstrap}  redis {redact_url(endpoints.redis_url)}")
            create_topics(endpoints.kafka_bootstrap, settings.partitions,
                          security=KafkaSecurity.from_settings(settings))
            env = {
                "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap,
                "REDIS_URL": endpoints.redis_url,
                "VITALSTREAM_REDIS_PREFIX": prefix,
                "VITALSTREAM_STATE_DIR": str(workdir / "worker"),
                "VITALSTREAM_LOG_LEVEL": "warn",
            }
            with WorkerProcess(env, workdir / "worker.log") as worker:
                console.print("starting the worker (joins the consumer group, loads the models)…")
                worker.wait_ready(120)
                truth = workdir / "truth.jsonl"
                sim_log = open(workdir / "simulator.log", "wb")  # noqa: SIM115 - closed below
                sim = subprocess.Popen(
                    [sys.executable, "-m", "stream.cli.main", "simulate", "--patients", str(patients),
                     "--duration", str(int(duration_s) + 30), "--seed", str(seed), "--truth", str(truth)],
                    env={**os.environ, **env},
                    stdout=subprocess.DEVNULL,
                    stderr=sim_log,
                    start_new_session=True,
                )
                console.print(f"simulator started; ground truth in {truth}; waiting for alerts…\n")
                try:
                    client = redis_client(endpoints.redis_url, RedisSecurity.from_settings(settings))
                    subscriber = AlertSubscriber(client, prefix=prefix, group="demo", consumer="demo-1")
                    while time.monotonic() < deadline:
                        for alert in subscriber.poll(block_ms=1000):
                            printed += 1
                            style = PRIORITY_STYLE.get(alert.priority, "white")
                            console.print(
                                f"[{style}]{alert.priority.upper():6}[/] {alert.type:20} "
                                f"patient {alert.patient_id:10} {alert.last_event:12} {alert.message}"
                            )
                        if sim.poll() is not None and sim.returncode != 0:
                            log = workdir / "simulator.log"
                            console.print(f"[red]simulator exited with {sim.returncode}[/]; see {log}")
                            break
                finally:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(sim.pid, signal.SIGTERM)
                    try:
                        sim.wait(15)
                    except subprocess.TimeoutExpired:
                        os.killpg(sim.pid, signal.SIGKILL)
                        sim.wait()
                    sim_log.close()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous)
    console.print(
        f"\n{'interrupted' if interrupted else 'done'}: {printed} alert updates printed; "
        f"services, worker and simulator stopped (logs in {workdir})"
    )
    return printed
