"""`make demo`: embedded services, one worker, a simulated cohort, alerts printed as they land.

Everything started here is stopped on the way out — after the duration, on Ctrl-C, or on
an error — so the demo leaves no process behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO

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
                console.print(f"simulator started; ground truth in {truth}; waiting for alerts…")
                dashboard, dash_log = start_dashboard(workdir, env, settings.dashboard_port, console)
                console.print()
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
                    stop_process(dashboard)
                    dash_log.close()
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


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def start_dashboard(workdir: Path, env: dict[str, str], port: int,
                    console: Console) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """The care team's dashboard on the demo's Redis and broker, with two demo users whose
    passwords are made up now and printed (a nurse who may acknowledge, a viewer)."""
    from dashboard.auth import hash_password

    passwords = {"nurse": secrets.token_urlsafe(9), "viewer": secrets.token_urlsafe(9)}
    users = workdir / "dashboard-users.toml"
    users.write_text("".join(f'[users.{name}]\nrole = "{name}"\nname = "Demo {name}"\n'
                             f'password = "{hash_password(pw)}"\n\n' for name, pw in passwords.items()))
    users.chmod(0o600)
    if not _port_free(port):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
    log = open(workdir / "dashboard.log", "wb")  # noqa: SIM115 - closed by the caller
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream.cli.main", "dashboard", "--port", str(port), "--ward", "Demo ward"],
        env={**os.environ, **env, "VITALSTREAM_DASHBOARD_USERS": str(users), "VITALSTREAM_LOG_LEVEL": "info"},
        stdout=log, stderr=log, start_new_session=True)
    console.print(f"[bold]dashboard[/] http://127.0.0.1:{port}/  log in as [bold]nurse[/] / {passwords['nurse']} "
                  f"(or viewer / {passwords['viewer']}); it stops with the demo (`vitalstream demo --duration "
                  f"900` for longer)")
    return proc, log


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
