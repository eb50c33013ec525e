"""Dashboard bench: 200 patients on the board, alert latency from the Redis write to the
browser's DOM, and the dashboard server's CPU per update.

Setup: Redis (``REDIS_URL``, else 127.0.0.1:6379, else a throw-away redis-server), a fresh
key prefix, 200 patients' vitals. The dashboard runs as its own process (`vitalstream
dashboard`), so its CPU time (/proc/<pid>/stat) is its alone; headless Chromium (Debian's,
`make install-browser`) logs in and keeps the board open. While a writer thread plays the
worker's vitals feed for the 200 patients (a snapshot per patient every 2 s, written once
a second in one pipeline, as ``stream.agents.care_feed`` does), alerts are written through
the worker's own store path (``RedisAlertStore.apply``) every 0.5 s. A MutationObserver in
the page stamps the wall clock when each alert's list item appears; latency = that stamp -
the wall clock just before the Redis write (same machine, same clock).

    python bench/bench_dashboard.py [--patients 200] [--alerts 120] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alerting.store import RedisAlertStore  # noqa: E402
from alerting.ward import VitalsSnapshot  # noqa: E402
from alerting.ward_store import RedisWardStore  # noqa: E402
from dashboard.auth import hash_password  # noqa: E402
from stream.connections import redis_client  # noqa: E402
from tests.dashboard.browser import browser_context, free_port, why_no_browser  # noqa: E402
from tests.dashboard.ward_data import raised  # noqa: E402

ALERT_TYPES = ("asystole", "vtach", "vfib", "extreme_brady", "extreme_tachy", "tachy", "brady", "afib", "apnea")
OBSERVER_JS = """() => {
  window.__seen = {};
  const list = document.getElementById('alert-list');
  new MutationObserver(() => {
    const now = Date.now();
    for (const li of list.querySelectorAll('li[data-alert-id]')) {
      const id = li.dataset.alertId;
      if (!(id in window.__seen)) window.__seen[id] = now;
    }
  }).observe(list, {childList: true, subtree: true});
}"""


def redis_url() -> tuple[str, subprocess.Popen[bytes] | None]:
    for url in (os.environ.get("REDIS_URL", ""), "redis://127.0.0.1:6379/0"):
        if not url:
            continue
        try:
            if redis_client(url, socket_connect_timeout=1).ping():
                return url, None
        except redis.RedisError:
            continue
    from stream.services import start_redis

    started = start_redis(Path(tempfile.mkdtemp(prefix="bench-redis-")))
    return f"redis://127.0.0.1:{started.port}/0", None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--alerts", type=int, default=120)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between alerts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    reason = why_no_browser()
    if reason:
        print(f"bench_dashboard skipped: {reason}")
        return 0

    url, _ = redis_url()
    client = redis_client(url)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    store = RedisAlertStore(client, prefix)
    ward = RedisWardStore(client, prefix)
    patients = [f"bed-{i + 1:03d}" for i in range(args.patients)]
    now = int(time.time() * 1000)
    ward.write([VitalsSnapshot(p, now, hr_bpm=70.0, pulse_bpm=71.0, resp_bpm=15.0, ecg_quality=0.9) for p in patients])

    workdir = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    users = workdir / "users.toml"
    password = "bench-password-1"
    users.write_text(f'[users.bench]\nrole = "nurse"\npassword = "{hash_password(password)}"\n')
    port = free_port()
    env = {**os.environ, "REDIS_URL": url, "VITALSTREAM_REDIS_PREFIX": prefix, "KAFKA_BOOTSTRAP_SERVERS": "",
           "VITALSTREAM_DASHBOARD_USERS": str(users), "VITALSTREAM_LOG_LEVEL": "warning",
           "VITALSTREAM_STATE_DIR": str(workdir / "state")}
    server = subprocess.Popen([sys.executable, "-m", "stream.cli.main", "dashboard", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(workdir / "dashboard.log", "wb"),  # noqa: SIM115
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    vitals_written = [0]

    def play_vitals() -> None:
        # Half the ward per second: each patient's snapshot every 2 s (the worker's hop).
        rng = random.Random(1)
        tick = 0
        while not stop.is_set():
            t = int(time.time() * 1000)
            half = patients[tick % 2::2]
            ward.write([VitalsSnapshot(p, t, hr_bpm=float(rng.randint(55, 110)), pulse_bpm=float(rng.randint(55, 110)),
                                       resp_bpm=float(rng.randint(10, 24)), ecg_quality=0.9) for p in half])
            vitals_written[0] += len(half)
            tick += 1
            stop.wait(1.0)

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                import urllib.request

                if urllib.request.urlopen(f"{base}/healthz", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        with browser_context((1920, 1080)) as browser:
            page = browser.new_page()
            page.goto(f"{base}/login")
            page.fill("#username", "bench")
            page.fill("#password", password)
            page.click("#login-button")
            page.wait_for_selector("#conn[data-state=live]")
            page.wait_for_function(f"document.querySelectorAll('.tile').length >= {args.patients}")
            page.evaluate(OBSERVER_JS)
            writer = threading.Thread(target=play_vitals, daemon=True)
            writer.start()
            time.sleep(2.0)
            cpu0, wall0, vit0 = cpu_seconds(server.pid), time.monotonic(), vitals_written[0]
            written: dict[str, float] = {}
            # Distinct (patient, type) pairs: a second open alert of a type for the same patient
            # is merged into the first by the store, as the worker's would be.
            pairs = random.Random(7).sample([(p, t) for p in patients for t in ALERT_TYPES], args.alerts)
            for i, (pid, kind) in enumerate(pairs):
                alert = raised(pid, kind, int(time.time() * 1000) + i, f"bench alert {i}")
                written[alert.alert_id] = time.time() * 1000
                store.apply([alert])
                time.sleep(args.interval)
            time.sleep(2.0)
            cpu1, wall1, vit1 = cpu_seconds(server.pid), time.monotonic(), vitals_written[0]
            seen = page.evaluate("window.__seen")
            tiles = page.evaluate("document.querySelectorAll('.tile').length")
            stop.set()
            writer.join(5)
        latencies = np.array([seen[a] - t for a, t in written.items() if a in seen])
        missing = len(written) - latencies.size
        updates = len(written) + (vit1 - vit0)
        cpu = cpu1 - cpu0
        result = {
            "patients_on_board": tiles,
            "alerts_written": len(written),
            "alerts_not_seen": missing,
            "latency_ms": {"p50": round(float(np.percentile(latencies, 50)), 1),
                           "p95": round(float(np.percentile(latencies, 95)), 1),
                           "max": round(float(latencies.max()), 1), "min": round(float(latencies.min()), 1)},
            "vitals_snapshots_during": vit1 - vit0,
            "server_cpu_s": round(cpu, 3),
            "wall_s": round(wall1 - wall0, 1),
            "server_cpu_pct_of_one_core": round(100 * cpu / (wall1 - wall0), 1),
            "server_cpu_us_per_update": round(1e6 * cpu / updates, 1),
            "updates": updates,
        }
    finally:
        stop.set()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        store.delete_prefix()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        lat = result["latency_ms"]
        print(f"dashboard, {result['patients_on_board']} patients on the board, one browser, "
              f"{result['vitals_snapshots_during']} vitals snapshots + {result['alerts_written']} alerts in "
              f"{result['wall_s']} s")
        print(f"  alert latency Redis write -> browser DOM: p50 {lat['p50']} ms, p95 {lat['p95']} ms, "
              f"max {lat['max']} ms ({result['alerts_not_seen']} not seen)")
        print(f"  dashboard server CPU: {result['server_cpu_us_per_update']} us per update "
              f"({result['server_cpu_pct_of_one_core']} % of one core)")
    return 0 if result["alerts_not_seen"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
