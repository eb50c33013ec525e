"""Make the dashboard screenshots in docs/img/ from the real pipeline.

Embedded broker and Redis, one worker, simulated patients through the gateway SDK: an ICU
bed with two hours of history (a hypotension episode in its last hour) for the patient
view, and a ward of 16 beds whose last 100 s include a ventricular tachycardia, an
asystole, AF, a bradycardia, an electrode coming off and a bedside-monitor alarm that the
signals contradict. Then the dashboard, and headless Chromium takes the pictures.

    .venv/bin/python docs/screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alerting.store import RedisAlertStore  # noqa: E402
from alerting.ward_store import RedisWardStore  # noqa: E402
from dashboard.app import create_app  # noqa: E402
from dashboard.auth import UsersFile, hash_password  # noqa: E402
from dashboard.config import DashboardConfig  # noqa: E402
from stream.device_alarm import DeviceAlarm  # noqa: E402
from stream.gateway import publish_device_alarms  # noqa: E402
from stream.services import create_topics, embedded_services  # noqa: E402
from stream.simulator import EpisodeSpec, PatientScenario  # noqa: E402
from stream.worker_process import WorkerProcess  # noqa: E402
from tests.dashboard.browser import browser_context, log_in, served  # noqa: E402
from tests.e2e.publish import publish_recordings, simulate  # noqa: E402


def wait_for(predicate, timeout_s: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1.0)
    return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="vitalstream-shots-"))
    prefix = f"shots{uuid.uuid4().hex[:6]}"
    with embedded_services(work / "services") as ep:
        create_topics(ep.kafka_bootstrap, 4)
        env = {"KAFKA_BOOTSTRAP_SERVERS": ep.kafka_bootstrap, "REDIS_URL": ep.redis_url,
               "VITALSTREAM_REDIS_PREFIX": prefix, "VITALSTREAM_PARTITIONS": "4",
               "VITALSTREAM_APP_ID": f"shots-{prefix}", "VITALSTREAM_STATE_DIR": str(work / "worker"),
               "VITALSTREAM_LOG_LEVEL": "warn"}
        with WorkerProcess(env, work / "worker.log") as worker:
            worker.wait_ready(120)
            now = int(time.time() * 1000)
            history_s = 2 * 3600
            icu = PatientScenario("icu-01", (EpisodeSpec("tachy", 2400, 1200), EpisodeSpec("hypotension", 5400, 1500)),
                                  duration_s=history_s, icu=True, hr_bpm=78.0)
            print("publishing 2 h of an ICU bed, 10 min at a time …", flush=True)
            history = simulate([icu], start_ms=now - history_s * 1000)
            client = redis.Redis.from_url(ep.redis_url)
            ward = RedisWardStore(client, prefix)
            span = 600
            for k in range(history_s // span):
                # A span at a time, the worker catching up in between: as fast as possible
                # in one go, five topics of one patient outrun its topic alignment.
                publish_recordings(ep.kafka_bootstrap, history, span_s=(k * span, (k + 1) * span))
                wait_for(lambda k=k: len(ward.trend("icu-01")) >= (k + 1) * span // 60 - 1, 120)
            print(f"{len(ward.trend('icu-01'))} trend points of icu-01", flush=True)
            ward_s = 100
            episodes = {1: ("vtach", 70, 25), 2: ("asystole", 80, 15), 5: ("afib", 10, 90), 7: ("brady", 20, 80),
                        9: ("lead_off", 60, 40), 12: ("tachy", 15, 85)}
            beds = [PatientScenario(f"bed-{i:02d}", (EpisodeSpec(*episodes[i]),) if i in episodes else (),
                                    duration_s=ward_s, hr_bpm=62.0 + 2 * i) for i in range(1, 17)]
            start = int(time.time() * 1000) - ward_s * 1000
            alarm = DeviceAlarm("bed-03", "asystole", start + 85_000, "mx-3", "ASYSTOLE")
            asyncio.run(publish_device_alarms(ep.kafka_bootstrap, [alarm]))
            print("publishing the ward's last 100 s …", flush=True)
            publish_recordings(ep.kafka_bootstrap, simulate(beds, start_ms=start))
            store = RedisAlertStore(client, prefix)
            vt = wait_for(lambda: [a for a in store.list_alerts("bed-01") if a.type == "vtach"], 180)
            wait_for(lambda: store.device_alarms("bed-03"), 120)
            wait_for(lambda: len(ward.patients()) >= 17, 120)
            time.sleep(3)
            stats = worker.stats() or {}
            print({k: stats.get(k) for k in ("strips_written", "strips_unavailable", "vitals_snapshots_written",
                                              "care_feed_errors")}, flush=True)
            users = work / "users.toml"
            secret = hash_password("kim-password")
            users.write_text(f'[users.kim]\nrole = "nurse"\nname = "Kim Lee"\npassword = "{secret}"\n')
            config = DashboardConfig(redis_url=ep.redis_url, redis_prefix=prefix, kafka_bootstrap=ep.kafka_bootstrap,
                                     ward_name="Ward 7")
            with served(create_app(config, users=UsersFile(users))) as base, browser_context((1600, 980)) as browser:
                page = browser.new_page()
                log_in(page, base, "kim", "kim-password")
                page.wait_for_selector('.tile[data-pid="bed-16"]')
                page.wait_for_timeout(1500)
                page.screenshot(path=str(args.out / "board.png"))
                if vt:
                    page.goto(f"{base}/alerts/{vt[0].alert_id}")
                    page.wait_for_selector("#alert-strip canvas.strip", timeout=10_000)
                    page.wait_for_timeout(800)
                    page.screenshot(path=str(args.out / "alert-strip.png"), full_page=True)
                page.goto(f"{base}/device-alarms/{alarm.alarm_id}")
                page.wait_for_selector("#decision-strip canvas.strip", timeout=10_000)
                page.wait_for_timeout(500)
                page.screenshot(path=str(args.out / "bedside-alarm-suppressed.png"), full_page=True)
                page.goto(f"{base}/patients/icu-01")
                page.wait_for_timeout(2500)
                page.screenshot(path=str(args.out / "patient.png"), full_page=True)
    print(f"screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
