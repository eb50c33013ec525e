"""The dashboard in a real browser (headless Debian Chromium via Playwright), against the
session's Redis and Kafka: an alert written to Redis appears on the open board within 5 s
without a reload; a nurse acknowledges it (Redis, the page and the action topic agree); a
viewer's acknowledgement is refused."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from alerting.store import RedisAlertStore
from alerting.ward import VitalsSnapshot
from alerting.ward_store import RedisWardStore
from dashboard.app import create_app
from dashboard.auth import UsersFile
from dashboard.config import DashboardConfig
from stream.services import ACTIONS_TOPIC, Endpoints, create_topics
from tests.dashboard.browser import browser_context, log_in, served, why_no_browser
from tests.dashboard.conftest import PASSWORDS
from tests.dashboard.ward_data import raised
from tests.e2e.conftest import PARTITIONS
from tests.e2e.kafka_io import consume_until

pytestmark = [pytest.mark.browser, pytest.mark.skipif(why_no_browser() is not None,
                                                      reason=why_no_browser() or "")]


@pytest.fixture
def live(services: Endpoints, users_path: Path) -> Iterator[tuple[str, RedisAlertStore]]:
    """A ward of 12 simulated patients and the dashboard serving it, with the real broker."""
    prefix = f"testbrowser{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(services.redis_url)
    create_topics(services.kafka_bootstrap, PARTITIONS)
    now = int(time.time() * 1000)
    RedisWardStore(client, prefix).write([VitalsSnapshot(f"sim-{i:03d}", now, hr_bpm=60.0 + i, pulse_bpm=61.0 + i,
                                                         resp_bpm=14.0, ecg_quality=0.9) for i in range(1, 13)])
    store = RedisAlertStore(client, prefix)
    config = DashboardConfig(redis_url=services.redis_url, redis_prefix=prefix,
                             kafka_bootstrap=services.kafka_bootstrap)
    app = create_app(config, users=UsersFile(users_path))
    try:
        with served(app) as base:
            yield base, store
    finally:
        store.delete_prefix()
        client.close()


def test_alert_appears_live_nurse_acknowledges_viewer_is_refused(live, services: Endpoints) -> None:  # type: ignore[no-untyped-def]
    base, store = live
    with browser_context() as browser:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        log_in(page, base, "kim", PASSWORDS["kim"])
        page.wait_for_selector('.tile[data-pid="sim-012"]')
        assert page.locator(".tile").count() == 12
        page.evaluate("window.__sameDocument = true")

        # The worker's write of a new alert (its own emission, through the store's Lua script).
        alert = raised("sim-007", "asystole", int(time.time() * 1000), "asystole: no QRS for 6.2 s", 6.2)
        written = time.time()
        store.apply([alert])
        item = f'#alert-list li[data-alert-id="{alert.alert_id}"]'
        page.wait_for_selector(item, timeout=5000)
        page.wait_for_selector(f'.tile[data-pid="sim-007"] .chip[data-alert-id="{alert.alert_id}"]', timeout=5000)
        seen_after_s = time.time() - written
        assert seen_after_s < 5.0
        assert page.evaluate("window.__sameDocument") is True  # no reload
        tile = page.locator('.tile[data-pid="sim-007"]')
        assert "tone-high" in (tile.get_attribute("class") or "")
        assert tile.evaluate("n => n === n.parentElement.firstElementChild || getComputedStyle(n).order === '0'")
        assert page.locator("#counts .cnt.high").inner_text() == "1 high"

        page.click(f'{item} button[data-action="ack"]')
        page.wait_for_selector(f'{item}[data-state="acknowledged"]', timeout=5000)
        assert "ack kim" in page.locator(f"{item} .a-state").inner_text()
        stored = store.get(alert.alert_id)
        assert stored is not None and stored.state == "acknowledged" and stored.acked_by == "kim"
        assert [e.by for e in store.history(alert.alert_id)][-1] == "kim"
        assert "tone-acknowledged" in (page.locator('.tile[data-pid="sim-007"]').get_attribute("class") or "")
        assert errors == []

    # The same action went to the worker (vitals.alert-actions, keyed by patient): read it
    # outside Playwright's event loop.
    actions = consume_until(services.kafka_bootstrap, ACTIONS_TOPIC, lambda kept: bool(kept), timeout_s=30,
                            keep=lambda k, v: alert.alert_id.encode() in v)
    action = json.loads(actions[0][1])
    assert (action["kind"], action["by"], actions[0][0]) == ("ack", "kim", b"sim-007")

    # A viewer sees the alarms but has no buttons, and the server refuses the request anyway.
    other = raised("sim-003", "vfib", int(time.time() * 1000), "ventricular fibrillation 5.1 s", 5.1)
    store.apply([other])
    with browser_context() as browser:
        page = browser.new_page()
        log_in(page, base, "vic", PASSWORDS["vic"])
        page.wait_for_selector(f'#alert-list li[data-alert-id="{other.alert_id}"]')
        assert page.locator('button[data-action="ack"]').count() == 0
        status = page.evaluate("""async (id) => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const r = await fetch(`/api/alerts/${id}/ack`, {method: 'POST', headers: {'X-CSRF-Token': csrf}});
            return [r.status, (await r.json()).error];
        }""", other.alert_id)
        assert status[0] == 403 and "viewer" in status[1]
        assert store.get(other.alert_id).state == "raised"  # type: ignore[union-attr]
        assert page.locator(f'#alert-list li[data-alert-id="{other.alert_id}"]').get_attribute("data-state") == "raised"
