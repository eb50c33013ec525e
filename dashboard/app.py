"""The dashboard's HTTP edge (Starlette, served by uvicorn): pages, JSON API, live events.

Every route but ``/login``, ``/healthz`` and ``/static`` needs a principal: a session
cookie or, when OIDC is configured, a bearer token (``dashboard.auth``). A request that
changes something (acknowledge, snooze, logout) made with a session cookie must carry the
session's CSRF token (header ``X-CSRF-Token`` or form field ``csrf_token``) and, when the
browser sends an ``Origin``, come from this site. Errors are JSON ``{"error": ...}`` with a
4xx status; nothing is changed by a refused request.

Logging: the access log names the route template (``/api/alerts/{alert_id}``), status,
duration and user, never a path with a patient or alert id, a query string or a body:
patient identifiers and clinical values stay out of the server's logs (uvicorn's own access
log is switched off by ``vitalstream dashboard``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alerting.care_actions import ActionPublisher, KafkaActionPublisher, take_care_action
from dashboard import views
from dashboard.auth import (
    ACT_ROLE,
    AUDIT_ROLE,
    BearerError,
    BearerVerifier,
    LoginThrottle,
    Principal,
    Role,
    SessionStore,
    UsersFile,
)
from dashboard.config import DashboardConfig
from dashboard.source import LiveFeed, WardReader, sse_frame
from stream.connections import async_redis_client, redis_client

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "vs_session"
LOGIN_CSRF_COOKIE = "vs_login_csrf"
KEEPALIVE_S = 15.0
FEED_BLOCK_MS = 2000
AUDIT_KEEP = 10_000

access_log = logging.getLogger("dashboard.access")
log = logging.getLogger("dashboard")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class NeedsLogin(Exception):
    """A page asked for without a session: go to the login page."""


# ------------------------------------------------------------------- ASGI middleware

class EdgeMiddleware:
    """Security headers on every response, and the access log (route templates only)."""

    CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
           "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 0}
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers", []))
                extra = {
                    b"content-security-policy": self.CSP.encode(),
                    b"x-content-type-options": b"nosniff",
                    b"x-frame-options": b"DENY",
                    b"referrer-policy": b"no-referrer",
                }
                if not static:
                    # Clinical data must not be kept by browsers or proxies.
                    extra[b"cache-control"] = b"no-store"
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in extra.items() if k not in present]
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or ("/static/*" if static else "(no route)")
            user = scope.get("state", {}).get("user", "-")
            access_log.info("%s %s %s %.1fms user=%s", scope["method"], template, status["code"] or "-",
                            (time.perf_counter() - started) * 1000, user)


# -------------------------------------------------------------------------- the app

class Dashboard:
    """The app's parts, built once: reader, live feed, sessions, users, publisher."""

    def __init__(self, config: DashboardConfig, *, publisher: ActionPublisher | None = None,
                 bearer: BearerVerifier | None = None, users: UsersFile | None = None) -> None:
        self.config = config
        self.client = redis_client(config.redis_url, config.redis_security)
        # The live feed blocks in XREAD for FEED_BLOCK_MS; redis-py's default socket timeout
        # (5 s) must stay above it, or a quiet ward would look like an outage. redis-py lets a
        # cancelled command finish first, so the block also bounds how long a shutdown waits.
        self.aclient = async_redis_client(config.redis_url, config.redis_security,
                                          socket_timeout=FEED_BLOCK_MS / 1000 + 10)
        self.reader = WardReader(self.client, config.redis_prefix)
        self.feed = LiveFeed(self.aclient, self.reader, block_ms=FEED_BLOCK_MS)
        self.sessions = SessionStore(self.client, config.redis_prefix, idle_s=config.session_idle_s,
                                     max_s=config.session_max_s)
        self.users = users if users is not None else UsersFile(config.users_file or None)
        self.throttle = LoginThrottle()
        self.own_publisher = publisher is None and bool(config.kafka_bootstrap)
        self.publisher: ActionPublisher | None = (
            publisher if publisher is not None
            else KafkaActionPublisher(config.kafka_bootstrap, security=config.kafka_security)
            if config.kafka_bootstrap else None)
        if bearer is None and config.oidc_enabled:
            bearer = BearerVerifier(config.oidc_issuer, config.oidc_audience, jwks_url=config.oidc_jwks_url,
                                    role_claim=config.oidc_role_claim)
        self.bearer = bearer
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.audit_key = f"{config.redis_prefix}:dashboard:audit"
        self._feed_task: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- lifecycle
    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._feed_task = asyncio.create_task(self.feed.run(), name="live-feed")
        try:
            yield
        finally:
            self.feed.stopping = True
            self._feed_task.cancel()
            # Bounded: a shutdown must not hang on a Redis connection mid-read.
            done, _ = await asyncio.wait({self._feed_task}, timeout=3)
            if not done:
                log.warning("the live feed did not stop within 3 s")
            if self.own_publisher and isinstance(self.publisher, KafkaActionPublisher):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.publisher.stop(), 5)
            try:
                await asyncio.wait_for(self.aclient.aclose(), 3)
            except TimeoutError:
                log.warning("the Redis connection of the live feed did not close within 3 s")
            self.client.close()

    # --------------------------------------------------------------------- auth
    async def principal(self, request: Request) -> Principal | None:
        auth = request.headers.get("authorization")
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, "unsupported Authorization header (expected: Bearer <token>)")
            if self.bearer is None:
                raise ApiError(401, "bearer tokens are not enabled on this dashboard (no OIDC issuer configured)")
            try:
                return await asyncio.to_thread(self.bearer.verify, token.strip())
            except BearerError as exc:
                raise ApiError(401, str(exc)) from None
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            return await asyncio.to_thread(self.sessions.load, token)
        return None

    async def require(self, request: Request, role: Role = Role.VIEWER, *, change: bool = False,
                      page: bool = False) -> Principal:
        try:
            who = await self.principal(request)
        except ApiError:
            if page:
                raise NeedsLogin() from None
            raise
        if who is None:
            if page:
                raise NeedsLogin()
            raise ApiError(401, "not logged in (no session, or it expired)")
        request.scope.setdefault("state", {})["user"] = who.username
        if change and who.via == "session":
            await self.check_csrf(request, who.csrf)
        if not who.may(role):
            await self.audit(who.username, "refused", request)
            raise ApiError(403, f"your role ({who.role.label}) may not do this; it needs {role.label}")
        return who

    async def check_csrf(self, request: Request, expected: str) -> None:
        origin = request.headers.get("origin")
        if origin is not None and not self.same_origin(request, origin):
            raise ApiError(403, "cross-site request refused (Origin does not match)")
        sent = request.headers.get("x-csrf-token", "")
        if not sent and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")):
            sent = str((await request.form()).get("csrf_token", ""))
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise ApiError(403, "missing or wrong CSRF token")

    @staticmethod
    def same_origin(request: Request, origin: str) -> bool:
        host = request.headers.get("host", "")
        parts = urlsplit(origin)
        return bool(parts.netloc) and parts.netloc == host

    async def audit(self, user: str, event: str, request: Request, detail: str = "") -> None:
        """The dashboard's own access audit (logins, logouts, refusals): Redis, capped."""
        entry = json.dumps({"t_ms": int(time.time() * 1000), "user": user, "event": event,
                            "client": request.client.host if request.client else "", "detail": detail})

        def write() -> None:
            pipe = self.client.pipeline(transaction=False)
            pipe.lpush(self.audit_key, entry)
            pipe.ltrim(self.audit_key, 0, AUDIT_KEEP - 1)
            pipe.execute()

        try:
            await asyncio.to_thread(write)
        except redis.RedisError:
            log.warning("could not write the access audit")

    def set_session_cookie(self, response: Response, token: str) -> None:
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", secure=self.config.secure_cookies,
                            path="/")

    # -------------------------------------------------------------------- pages
    def page(self, request: Request, name: str, who: Principal | None, status: int = 200,
             **context: Any) -> HTMLResponse:
        ctx = {"who": who, "csrf": who.csrf if who is not None else "", "ward": self.config.ward_name,
               "may_act": who is not None and who.may(ACT_ROLE), "may_audit": who is not None and who.may(AUDIT_ROLE),
               "broker": bool(self.publisher), **context}
        return self.templates.TemplateResponse(request, name, ctx, status_code=status)

    async def login_page(self, request: Request) -> Response:
        return self.login_form(request)

    def login_form(self, request: Request, error: str = "", status: int = 200) -> Response:
        csrf = secrets.token_urlsafe(24)
        nxt = self.safe_next(request.query_params.get("next", "/"))
        resp = self.page(request, "login.html", None, status=status, login_csrf=csrf, error=error, next=nxt,
                         oidc=self.config.oidc_enabled, no_users=len(self.users) == 0)
        resp.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="strict", secure=self.config.secure_cookies,
                        path="/login", max_age=3600)
        return resp

    @staticmethod
    def safe_next(nxt: str) -> str:
        """Only a path on this site (no open redirect)."""
        if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
            return "/"
        return nxt

    async def login(self, request: Request) -> Response:
        form = await request.form()
        username = str(form.get("username", ""))[:64]
        password = str(form.get("password", ""))[:1024]
        sent = str(form.get("csrf_token", ""))
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not sent or not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
            return self.login_form(request, "The login form expired; please try again.", status=403)
        client = request.client.host if request.client else ""
        keys = [f"user:{username.lower()}", f"client:{client}"]
        wait = self.throttle.retry_after(keys)
        if wait > 0:
            await self.audit(username, "login_throttled", request)
            resp = self.login_form(request, f"Too many failed logins; try again in {int(wait) + 1} s.", status=429)
            resp.headers["Retry-After"] = str(int(wait) + 1)
            return resp
        user = await asyncio.to_thread(self.users.authenticate, username, password)
        if user is None:
            self.throttle.failed(keys)
            await self.audit(username, "login_failed", request)
            return self.login_form(request, "Wrong user name or password.", status=401)
        self.throttle.succeeded(keys)
        token = await asyncio.to_thread(self.sessions.create, user)
        await self.audit(user.username, "login", request)
        resp = RedirectResponse(self.safe_next(str(form.get("next", "/"))), status_code=303)
        self.set_session_cookie(resp, token)
        resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return resp

    async def logout(self, request: Request) -> Response:
        who = await self.require(request, change=True)
        if who.via == "session":
            await asyncio.to_thread(self.sessions.end, who.session_hash)
        await self.audit(who.username, "logout", request)
        resp: Response
        if "application/json" in request.headers.get("accept", ""):
            resp = JSONResponse({"logged_out": True})
        else:
            resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    async def board_page(self, request: Request) -> Response:
        who = await self.require(request, page=True)
        return self.page(request, "board.html", who, page_name="board")

    async def alerts_page(self, request: Request) -> Response:
        who = await self.require(request, page=True)
        return self.page(request, "alerts.html", who, page_name="alerts")

    async def alert_page(self, request: Request) -> Response:
        who = await self.require(request, page=True)
        alert_id = views.check_alert_id(request.path_params["alert_id"])
        return self.page(request, "alert.html", who, page_name="alert", alert_id=alert_id,
                         max_snooze=self.config.max_snooze_minutes)

    async def device_alarm_page(self, request: Request) -> Response:
        who = await self.require(request, page=True)
        alarm_id = views.check_alarm_id(request.path_params["alarm_id"])
        return self.page(request, "device_alarm.html", who, page_name="device-alarm", alarm_id=alarm_id)

    async def patient_page(self, request: Request) -> Response:
        who = await self.require(request, page=True)
        patient_id = views.check_patient_id(request.path_params["patient_id"])
        return self.page(request, "patient.html", who, page_name="patient", patient_id=patient_id,
                         max_hours=self.config.trend_keep_h)

    # ---------------------------------------------------------------------- API
    async def me(self, request: Request) -> Response:
        who = await self.require(request)
        return JSONResponse({"user": who.username, "name": who.display, "role": who.role.label, "via": who.via,
                             "may_acknowledge": who.may(ACT_ROLE), "csrf": who.csrf})

    async def api_board(self, request: Request) -> Response:
        await self.require(request)
        return JSONResponse(await asyncio.to_thread(self.reader.board))

    async def api_alerts(self, request: Request) -> Response:
        await self.require(request)
        flag = request.query_params.get("all", "0")
        if flag not in ("0", "1", "true", "false"):
            raise ApiError(400, "all must be 0 or 1")
        alerts = await asyncio.to_thread(self.reader.alert_list, flag in ("1", "true"))
        return JSONResponse({"alerts": alerts})

    async def api_alert(self, request: Request) -> Response:
        await self.require(request)
        alert_id = views.check_alert_id(request.path_params["alert_id"])
        detail = await asyncio.to_thread(self.reader.alert_detail, alert_id)
        if detail is None:
            raise ApiError(404, "no such alert")
        return JSONResponse(detail)

    async def api_alert_strip(self, request: Request) -> Response:
        await self.require(request)
        alert_id = views.check_alert_id(request.path_params["alert_id"])
        strip = await asyncio.to_thread(self.reader.alert_strip, alert_id)
        if strip is None:
            raise ApiError(404, "no evidence strip for this alert (not a high-priority alert, or it expired)")
        return JSONResponse(strip)

    async def act(self, request: Request, kind: str) -> Response:
        who = await self.require(request, ACT_ROLE, change=True)
        alert_id = views.check_alert_id(request.path_params["alert_id"])
        minutes = None
        if kind == "snooze":
            minutes = views.check_minutes(await self.body_value(request, "minutes"), self.config.max_snooze_minutes)
        result = await take_care_action(self.reader.alerts, self.publisher, kind, alert_id, who.username, minutes)
        if result is None:
            raise ApiError(404, "no such alert")
        if not result.published and self.publisher is not None:
            log.warning("a care action reached Redis but not the worker (Kafka unavailable)")
        return JSONResponse({"changed": result.outcome.changed, "published": result.published,
                             "publish_error": result.publish_error, "by": who.username,
                             "alert": views.alert_view(result.outcome.alert)})

    async def ack(self, request: Request) -> Response:
        return await self.act(request, "ack")

    async def snooze(self, request: Request) -> Response:
        return await self.act(request, "snooze")

    @staticmethod
    async def body_value(request: Request, name: str) -> Any:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            try:
                body = json.loads(await request.body() or b"{}")
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ApiError(400, "body is not valid JSON") from None
            if not isinstance(body, dict):
                raise ApiError(400, "body must be a JSON object")
            return body.get(name)
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            return (await request.form()).get(name)
        return request.query_params.get(name)

    async def api_device_alarms(self, request: Request) -> Response:
        await self.require(request)
        patient = request.query_params.get("patient")
        if patient is not None:
            views.check_patient_id(patient)
        try:
            limit = int(request.query_params.get("limit", "200"))
        except ValueError:
            raise ApiError(400, "limit must be an integer") from None
        if not 1 <= limit <= 5000:
            raise ApiError(400, "limit must be in [1, 5000]")
        rows = await asyncio.to_thread(self.reader.device_alarms, patient, limit)
        return JSONResponse({"device_alarms": rows})

    async def api_device_alarm(self, request: Request) -> Response:
        await self.require(request)
        alarm_id = views.check_alarm_id(request.path_params["alarm_id"])
        found = await asyncio.to_thread(self.reader.device_alarm, alarm_id)
        if found is None:
            raise ApiError(404, "no such bedside alarm")
        return JSONResponse(found)

    async def api_patient(self, request: Request) -> Response:
        await self.require(request)
        patient_id = views.check_patient_id(request.path_params["patient_id"])
        found = await asyncio.to_thread(self.reader.patient, patient_id)
        if found is None:
            raise ApiError(404, "no such patient (no vitals or alerts in the store)")
        return JSONResponse(found)

    async def api_trends(self, request: Request) -> Response:
        await self.require(request)
        patient_id = views.check_patient_id(request.path_params["patient_id"])
        hours = views.check_hours(request.query_params.get("hours", "4"), self.config.trend_keep_h)
        return JSONResponse(await asyncio.to_thread(self.reader.trends, patient_id, hours))

    async def api_audit(self, request: Request) -> Response:
        await self.require(request, AUDIT_ROLE)
        rows = await asyncio.to_thread(self.client.lrange, self.audit_key, 0, 499)
        return JSONResponse({"audit": [json.loads(r) for r in rows]})

    async def health(self, request: Request) -> Response:
        try:
            ok = bool(await asyncio.to_thread(self.client.ping))
        except redis.RedisError:
            ok = False
        body = {"status": "ok" if ok and self.feed.ready.is_set() else "degraded", "redis": ok,
                "live_feed": self.feed.ready.is_set(), "browsers": self.feed.subscribers}
        return JSONResponse(body, status_code=200 if ok else 503)

    async def events(self, request: Request) -> Response:
        """Server-sent events: the board first, then every change (``alert``, ``tiles``,
        ``resync``); ``logout`` when the session ended."""
        who = await self.require(request)
        token = request.cookies.get(SESSION_COOKIE, "")
        queue = self.feed.subscribe()
        try:
            board = await asyncio.to_thread(self.reader.board)
        except BaseException:
            self.feed.unsubscribe(queue)
            raise

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 2000\n\n" + sse_frame("board", board)
                while True:
                    try:
                        frame = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        if who.via == "session" and await asyncio.to_thread(self.sessions.load, token) is None:
                            yield sse_frame("logout", {})
                            return
                        yield b": keep-alive\n\n"
                        continue
                    if frame is None:  # too slow: cut off (the browser reconnects)
                        return
                    yield frame
            finally:
                self.feed.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})


def create_app(config: DashboardConfig, *, publisher: ActionPublisher | None = None,
               bearer: BearerVerifier | None = None, users: UsersFile | None = None) -> Starlette:
    d = Dashboard(config, publisher=publisher, bearer=bearer, users=users)

    def guard(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except NeedsLogin:
                nxt = request.url.path
                return RedirectResponse(f"/login?next={nxt}" if nxt != "/" else "/login", status_code=303)
            except views.BadInput as exc:
                return error_response(request, 400, str(exc))
            except ApiError as exc:
                return error_response(request, exc.status, exc.message, exc.headers)
            except redis.RedisError as exc:
                log.error("Redis error on %s: %s", getattr(request.scope.get("route"), "path", "?"),
                          type(exc).__name__)
                return error_response(request, 503, "the alert store (Redis) is not available")
            except Exception as exc:
                # The type and route only: an exception's text may carry a patient id.
                log.error("internal error on %s: %s", getattr(request.scope.get("route"), "path", "?"),
                          type(exc).__name__)
                log.debug("internal error", exc_info=True)
                return error_response(request, 500, "internal error")

        return run

    def error_response(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        if request.url.path.startswith("/api/") or request.method != "GET":
            return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)
        return d.page(request, "error.html", None, status=status, status_code=status, message=message)

    routes = [
        Route("/healthz", guard(d.health)),
        Route("/login", guard(d.login_page), methods=["GET"]),
        Route("/login", guard(d.login), methods=["POST"]),
        Route("/logout", guard(d.logout), methods=["POST"]),
        Route("/", guard(d.board_page)),
        Route("/alerts", guard(d.alerts_page)),
        Route("/alerts/{alert_id}", guard(d.alert_page)),
        Route("/device-alarms/{alarm_id:path}", guard(d.device_alarm_page)),
        Route("/patients/{patient_id:path}", guard(d.patient_page)),
        Route("/api/me", guard(d.me)),
        Route("/api/board", guard(d.api_board)),
        Route("/api/events", guard(d.events)),
        Route("/api/alerts", guard(d.api_alerts)),
        Route("/api/alerts/{alert_id}", guard(d.api_alert)),
        Route("/api/alerts/{alert_id}/strip", guard(d.api_alert_strip)),
        Route("/api/alerts/{alert_id}/ack", guard(d.ack), methods=["POST"]),
        Route("/api/alerts/{alert_id}/snooze", guard(d.snooze), methods=["POST"]),
        Route("/api/device-alarms", guard(d.api_device_alarms)),
        Route("/api/device-alarms/{alarm_id:path}", guard(d.api_device_alarm)),
        Route("/api/patients/{patient_id:path}/trends", guard(d.api_trends)),
        Route("/api/patients/{patient_id:path}", guard(d.api_patient)),
        Route("/api/admin/audit", guard(d.api_audit)),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = exc.detail if isinstance(exc, HTTPException) else "internal error"
        if status >= 500:
            log.error("unhandled %s on %s", type(exc).__name__, request.method)
        return error_response(request, status, str(message))

    app = Starlette(routes=routes, lifespan=d.lifespan, exception_handlers={HTTPException: not_found,
                                                                          Exception: not_found})
    app.add_middleware(EdgeMiddleware)
    app.state.dashboard = d
    return app
