"""Every dashboard endpoint through the real app and a real Redis: what a logged-in user
gets, and what bad input, a missing or forged session, a missing CSRF token or the wrong
role get (a clear 4xx, nothing changed)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient

from alerting.ward import VitalsSnapshot
from alerting.ward_store import RedisWardStore
from dashboard.app import SESSION_COOKIE, create_app
from dashboard.auth import BearerVerifier, SessionStore, UsersFile
from dashboard.config import DashboardConfig
from tests.dashboard.conftest import Dash, RecordingPublisher
from tests.dashboard.ward_data import raised

API_GETS = ["/api/me", "/api/board", "/api/alerts", "/api/alerts/{vtach}", "/api/alerts/{vtach}/strip",
            "/api/device-alarms", "/api/device-alarms/{alarm}", "/api/patients/bed-1",
            "/api/patients/bed-1/trends", "/api/admin/audit", "/api/events"]
PAGES = ["/", "/alerts", "/alerts/{vtach}", "/device-alarms/{alarm}", "/patients/bed-1"]


def fill(path: str, ids: dict[str, str]) -> str:
    return path.format(**{k: quote(v) for k, v in ids.items()})


def state_of(dash: Dash) -> list[dict[str, Any]]:
    """Every alert as stored, and its audit length: what a refused request must not change."""
    return [{**a.to_dict(), "audit": len(dash.store.history(a.alert_id))}
            for a in dash.store.list_alerts(include_resolved=True)]


def test_without_a_session_api_says_401_and_pages_go_to_login(dash: Dash) -> None:
    for path in API_GETS:
        r = dash.client.get(fill(path, dash.ids))
        assert r.status_code == 401, path
        assert r.json()["error"].startswith("not logged in"), path
    for path in PAGES:
        r = dash.client.get(fill(path, dash.ids), follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    before = state_of(dash)
    assert dash.client.post(f"/api/alerts/{dash.ids['vtach']}/ack").status_code == 401
    assert dash.client.post(f"/api/alerts/{dash.ids['vtach']}/snooze", json={"minutes": 5}).status_code == 401
    assert dash.client.post("/logout").status_code == 401
    assert state_of(dash) == before and dash.publisher.sent == []


def test_forged_ended_and_expired_sessions_are_refused(dash: Dash) -> None:
    dash.client.cookies.set(SESSION_COOKIE, "forged-token-that-was-never-issued")
    assert dash.client.get("/api/board").status_code == 401
    dash.client.cookies.clear()
    csrf = dash.login("kim")
    assert dash.client.get("/api/board").status_code == 200
    token = dash.client.cookies.get(SESSION_COOKIE)
    key = f"{dash.store.prefix}:dashboard:session:{SessionStore.token_hash(token)}"
    assert dash.redis.exists(key) and 0 < dash.redis.ttl(key) <= 900  # idle timeout
    assert dash.redis.hget(key, "user") == b"kim" and token.encode() not in b"".join(dash.redis.hvals(key))
    dash.redis.hset(key, "created_ms", str(int(time.time() * 1000) - 13 * 3600 * 1000))  # past the 12-h shift
    assert dash.client.get("/api/board").status_code == 401
    assert not dash.redis.exists(key)
    csrf = dash.login("kim")
    r = dash.client.post("/logout", headers={"X-CSRF-Token": csrf, "Accept": "application/json"})
    assert r.status_code == 200 and r.json() == {"logged_out": True}
    dash.client.cookies.set(SESSION_COOKIE, token)  # a copied cookie after logout
    assert dash.client.get("/api/board").status_code == 401


def test_login_form_checks_csrf_password_and_throttles(dash: Dash) -> None:
    page = dash.client.get("/login")
    assert page.status_code == 200 and 'name="csrf_token"' in page.text
    r = dash.client.post("/login", data={"username": "kim", "password": "kim-nurse-pass-1", "csrf_token": "guess"})
    assert r.status_code == 403 and "expired" in r.text
    for _ in range(5):
        page = dash.client.get("/login")
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        r = dash.client.post("/login", data={"username": "kim", "password": "wrong-password", "csrf_token": token})
        assert r.status_code == 401 and "Wrong user name or password" in r.text
    page = dash.client.get("/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    r = dash.client.post("/login", data={"username": "kim", "password": "kim-nurse-pass-1", "csrf_token": token})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0  # locked even with the right password
    assert SESSION_COOKIE not in dash.client.cookies
    # Another user from the same client address is locked too (the address counts).
    page = dash.client.get("/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    r = dash.client.post("/login", data={"username": "vic", "password": "vic-viewer-pass-1", "csrf_token": token})
    assert r.status_code == 429


def test_login_sets_a_strict_httponly_cookie_and_only_local_redirects(dash: Dash) -> None:
    page = dash.client.get("/login?next=//evil.example/x")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    r = dash.client.post("/login", data={"username": "vic", "password": "vic-viewer-pass-1", "csrf_token": token,
                                         "next": "https://evil.example/"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)).lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age" not in cookie  # ends with the browser
    me = dash.client.get("/api/me").json()
    assert (me["user"], me["role"], me["may_acknowledge"]) == ("vic", "viewer", False)


def test_pages_render_for_a_logged_in_user_with_security_headers(dash: Dash) -> None:
    dash.login("vic")
    for path in PAGES:
        r = dash.client.get(fill(path, dash.ids))
        assert r.status_code == 200, path
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["cache-control"] == "no-store" and r.headers["x-frame-options"] == "DENY"
    assert dash.client.get("/static/app.js").status_code == 200
    assert dash.client.get("/alerts/not-an-id").status_code == 400
    assert dash.client.get("/patients/" + "x" * 80).status_code == 400
    assert dash.client.get("/nowhere").status_code == 404


def test_read_endpoints(dash: Dash) -> None:
    dash.login("vic")
    board = dash.client.get("/api/board").json()
    assert [t["patient_id"] for t in board["tiles"][:3]] == ["bed-1", "bed-2", "bed-3"]
    assert board["tiles"][0]["tone"] == "high" and board["tiles"][2]["technical"] == ["ECG lead off"]
    assert board["counts"] == {"high": 1, "medium": 1, "low": 1}
    assert board["tiles"][0]["vitals"]["hr_bpm"] == 70.0
    alerts = dash.client.get("/api/alerts").json()["alerts"]
    assert [a["type"] for a in alerts] == ["vtach", "tachy", "lead_off"]
    assert dash.client.get("/api/alerts?all=1").status_code == 200
    detail = dash.client.get(f"/api/alerts/{dash.ids['vtach']}").json()
    assert detail["alert"]["priority"] == "high" and detail["strip_ref"] == dash.ids["vtach"]
    assert [e["event"] for e in detail["audit"]] == ["raised"]
    strip = dash.client.get(f"/api/alerts/{dash.ids['vtach']}/strip").json()
    assert [t["signal"] for t in strip["traces"]] == ["ecg", "ppg", "resp"] and strip["beats"]
    assert dash.client.get(f"/api/alerts/{dash.ids['tachy']}/strip").status_code == 404  # medium: no strip
    alarms = dash.client.get("/api/device-alarms").json()["device_alarms"]
    assert [(d["alarm_id"], d["verdict"]) for d in alarms] == [(dash.ids["alarm"], "suppressed")]
    assert dash.client.get("/api/device-alarms?patient=bed-4&limit=5").json()["device_alarms"] == alarms
    one = dash.client.get(f"/api/device-alarms/{quote(dash.ids['alarm'])}").json()
    assert one["decision"]["reason"].startswith("longest ventricular run") and one["strip"]["verdict"] == "suppressed"
    patient = dash.client.get("/api/patients/bed-1").json()
    assert patient["tile"]["patient_id"] == "bed-1" and [a["type"] for a in patient["alerts"]] == ["vtach"]
    assert patient["strips"][0]["ref_id"] == dash.ids["vtach"]
    trends = dash.client.get("/api/patients/bed-1/trends?hours=1").json()
    assert len(trends["t_ms"]) == 61 and trends["hr"][-1] is not None and max(trends["news2"]) == 5
    assert len(dash.client.get("/api/patients/bed-1/trends?hours=4").json()["t_ms"]) == 90
    assert dash.client.get("/api/admin/audit").status_code == 403  # viewer
    health = dash.client.get("/healthz").json()
    assert health["redis"] is True and "bed-1" not in str(health)


def test_admin_reads_the_access_audit(dash: Dash) -> None:
    dash.login("ada")
    rows = dash.client.get("/api/admin/audit").json()["audit"]
    assert rows[0]["event"] == "login" and rows[0]["user"] == "ada"


def test_nurse_acknowledges_and_snoozes_through_the_care_action_path(dash: Dash) -> None:
    csrf = dash.login("kim")
    alert_id = dash.ids["vtach"]
    r = dash.client.post(f"/api/alerts/{alert_id}/ack", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["changed"] is True and body["by"] == "kim" and body["alert"]["state"] == "acknowledged"
    stored = dash.store.get(alert_id)
    assert stored is not None and stored.state == "acknowledged" and stored.acked_by == "kim"
    assert dash.store.history(alert_id)[-1].by == "kim"
    assert [(a.kind, a.alert_id, a.by) for a in dash.publisher.sent] == [("ack", alert_id, "kim")]
    again = dash.client.post(f"/api/alerts/{alert_id}/ack", headers={"X-CSRF-Token": csrf}).json()
    assert again["changed"] is False
    r = dash.client.post(f"/api/alerts/{dash.ids['tachy']}/snooze", json={"minutes": 5},
                         headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["alert"]["state"] == "snoozed"
    assert dash.store.get(dash.ids["tachy"]).snoozed_by == "kim"  # type: ignore[union-attr]
    # A form post (no JavaScript) works the same, with the token as a form field.
    r = dash.client.post(f"/api/alerts/{dash.ids['lead_off']}/snooze", data={"minutes": "2", "csrf_token": csrf})
    assert r.status_code == 200 and r.json()["alert"]["snoozed_by"] == "kim"


def test_viewer_may_not_acknowledge_and_nothing_changes(dash: Dash) -> None:
    csrf = dash.login("vic")
    before = state_of(dash)
    r = dash.client.post(f"/api/alerts/{dash.ids['vtach']}/ack", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403 and "viewer" in r.json()["error"]
    r = dash.client.post(f"/api/alerts/{dash.ids['vtach']}/snooze", json={"minutes": 5},
                         headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403
    assert state_of(dash) == before and dash.publisher.sent == []


def test_state_changes_need_the_csrf_token_and_this_origin(dash: Dash) -> None:
    csrf = dash.login("kim")
    before = state_of(dash)
    url = f"/api/alerts/{dash.ids['vtach']}/ack"
    assert dash.client.post(url).json()["error"] == "missing or wrong CSRF token"
    assert dash.client.post(url, headers={"X-CSRF-Token": "x" + csrf}).status_code == 403
    r = dash.client.post(url, headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-site" in r.json()["error"]
    assert dash.client.post("/logout").status_code == 403  # logout too
    assert state_of(dash) == before and dash.publisher.sent == []


def test_bad_input_gets_a_clear_4xx_and_changes_nothing(dash: Dash) -> None:
    csrf = dash.login("kim")
    h = {"X-CSRF-Token": csrf}
    before = state_of(dash)
    unknown = "vtach-000000000000"
    cases = [
        ("POST", "/api/alerts/not-an-alert/ack", {}, 400, "malformed alert id"),
        ("POST", "/api/alerts/VTACH-0123456789ab/ack", {}, 400, "malformed alert id"),
        ("POST", f"/api/alerts/{unknown}/ack", {}, 404, "no such alert"),
        ("POST", f"/api/alerts/{unknown}/snooze", {"json": {"minutes": 5}}, 404, "no such alert"),
        ("POST", f"/api/alerts/{dash.ids['vtach']}/snooze", {"json": {"minutes": 0}}, 400, "minutes must be in"),
        ("POST", f"/api/alerts/{dash.ids['vtach']}/snooze", {"json": {"minutes": 500}}, 400, "minutes must be in"),
        ("POST", f"/api/alerts/{dash.ids['vtach']}/snooze", {"json": {"minutes": "soon"}}, 400, "number"),
        ("POST", f"/api/alerts/{dash.ids['vtach']}/snooze", {"json": {}}, 400, "number"),
        ("POST", f"/api/alerts/{dash.ids['vtach']}/snooze", {"json": [5]}, 400, "JSON object"),
        ("POST", f"/api/alerts/{dash.ids['vtach']}/snooze",
         {"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
        ("GET", "/api/alerts/x/strip", {}, 400, "malformed alert id"),
        ("GET", f"/api/alerts/{unknown}", {}, 404, "no such alert"),
        ("GET", f"/api/alerts/{unknown}/strip", {}, 404, "no evidence strip"),
        ("GET", "/api/alerts?all=yes", {}, 400, "all must be"),
        ("GET", "/api/patients/" + "p" * 65, {}, 400, "malformed patient id"),
        ("GET", "/api/patients/nobody-here", {}, 404, "no such patient"),
        ("GET", "/api/patients/bed-1/trends?hours=0", {}, 400, "hours must be in"),
        ("GET", "/api/patients/bed-1/trends?hours=13", {}, 400, "hours must be in"),
        ("GET", "/api/patients/bed-1/trends?hours=x", {}, 400, "hours must be a number"),
        ("GET", "/api/device-alarms?limit=0", {}, 400, "limit must be in"),
        ("GET", "/api/device-alarms?limit=ten", {}, 400, "limit must be an integer"),
        ("GET", "/api/device-alarms?patient=a%0Ab", {}, 400, "malformed patient id"),
        ("GET", "/api/device-alarms/bed-4:vtach", {}, 400, "malformed bedside alarm id"),
        ("GET", "/api/device-alarms/bed-4:vtach:1", {}, 404, "no such bedside alarm"),
    ]
    for method, url, kwargs, status, words in cases:
        headers = {**h, **kwargs.pop("headers", {})}
        r = dash.client.request(method, url, headers=headers, **kwargs)
        assert r.status_code == status, (url, r.text)
        assert words in r.json()["error"], (url, r.json())
    assert state_of(dash) == before and dash.publisher.sent == []


def test_live_events_start_with_the_board_then_carry_alerts_and_tiles(dash: Dash) -> None:
    dash.login("vic")
    with dash.client.stream("GET", "/api/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        events: list[str] = []
        for line in lines:
            if line.startswith("event: "):
                events.append(line[7:])
                break
        assert events == ["board"]
        new = raised("bed-5", "asystole", int(time.time() * 1000), "no QRS for 6.1 s")
        dash.store.apply([new])
        RedisWardStore(dash.redis, dash.store.prefix).write([VitalsSnapshot("bed-6", 2**41, hr_bpm=55.0)])
        seen: dict[str, str] = {}
        deadline = time.monotonic() + 10
        pending = None
        for line in lines:
            if line.startswith("event: "):
                pending = line[7:]
            elif line.startswith("data: ") and pending:
                seen[pending] = line[6:]
                if {"alert", "tiles"} <= set(seen) or time.monotonic() > deadline:
                    break
        assert new.alert_id in seen["alert"] and '"tone":"high"' in seen["alert"]
        assert '"patient_id":"bed-6"' in seen["tiles"] and '"hr_bpm":55.0' in seen["tiles"]


def test_server_log_names_routes_not_patients(dash: Dash, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    csrf = dash.login("kim")
    for path in API_GETS[:-1] + PAGES:
        dash.client.get(fill(path, dash.ids))
    dash.client.post(f"/api/alerts/{dash.ids['vtach']}/ack", headers={"X-CSRF-Token": csrf})
    dash.client.get("/api/patients/bed-1/trends?hours=99")
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("dashboard"))
    assert "GET /api/patients/{patient_id:path} 200" in text
    assert "POST /api/alerts/{alert_id}/ack 200" in text
    for clinical in ("bed-1", "bed-4", dash.ids["vtach"], dash.ids["alarm"], "ventricular", "hours=99"):
        assert clinical not in text, clinical


# ------------------------------------------------------------------------ bearer tokens

@pytest.fixture
def bearer_app(dash: Dash, redis_url: str, users_path) -> Iterator[tuple[TestClient, Any, RecordingPublisher]]:  # type: ignore[no-untyped-def]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwks = {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}
    verifier = BearerVerifier("https://idp.example", "vitalstream", jwks=lambda: jwks)
    publisher = RecordingPublisher()
    config = DashboardConfig(redis_url=redis_url, redis_prefix=dash.store.prefix, oidc_issuer="https://idp.example",
                             oidc_audience="vitalstream")
    app = create_app(config, publisher=publisher, bearer=verifier, users=UsersFile(users_path))

    def token(**claims: Any) -> str:
        base = {"iss": "https://idp.example", "aud": "vitalstream", "sub": "u-17", "preferred_username": "dr.lee",
                "exp": int(time.time()) + 300, "roles": ["nurse"]}
        base.update(claims)
        return jwt.encode({k: v for k, v in base.items() if v is not None}, key, algorithm="RS256",
                          headers={"kid": "k1"})

    with TestClient(app) as client:
        yield client, token, publisher


def test_bearer_tokens_from_the_identity_provider(dash: Dash, bearer_app) -> None:  # type: ignore[no-untyped-def]
    client, token, publisher = bearer_app
    auth = {"Authorization": f"Bearer {token()}"}
    me = client.get("/api/me", headers=auth).json()
    assert (me["user"], me["role"], me["via"]) == ("dr.lee", "nurse", "bearer")
    # No CSRF token needed: a bearer token is not sent by the browser on its own.
    r = client.post(f"/api/alerts/{dash.ids['vtach']}/ack", headers=auth)
    assert r.status_code == 200 and dash.store.get(dash.ids["vtach"]).acked_by == "dr.lee"  # type: ignore[union-attr]
    assert publisher.sent[0].by == "dr.lee"
    viewer = {"Authorization": f"Bearer {token(roles='viewer')}"}
    assert client.post(f"/api/alerts/{dash.ids['tachy']}/ack", headers=viewer).status_code == 403
    for bad in (token(exp=int(time.time()) - 600), token(aud="other"), token(iss="https://other.example"),
                token(roles=["visitor"]), token(sub=None), token()[:-4] + "AAAA"):
        r = client.get("/api/board", headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401, r.text
    assert client.get("/api/board", headers={"Authorization": "Basic a2ltOnB3"}).status_code == 401
    # The dashboard without OIDC refuses bearer tokens outright.
    assert dash.client.get("/api/board", headers=auth).json()["error"].startswith("bearer tokens are not enabled")


def test_a_quiet_ward_is_not_mistaken_for_a_redis_outage(dash: Dash) -> None:
    """XREAD blocks longer than nothing happens; the feed must not reconnect (and make every
    browser reload the board) when the streams are merely quiet."""
    from dashboard.app import FEED_BLOCK_MS

    d = dash.client.app.state.dashboard  # type: ignore[attr-defined]
    timeout = d.aclient.connection_pool.connection_kwargs.get("socket_timeout")
    assert timeout is None or timeout > FEED_BLOCK_MS / 1000 + 1
    assert d.feed.block_ms == FEED_BLOCK_MS and d.feed.counters.reconnects == 0
