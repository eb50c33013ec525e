"""Dashboard fixtures: users, a seeded ward in real Redis (fresh prefix), the app."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from starlette.testclient import TestClient

from alerting.actions import CareAction
from alerting.store import RedisAlertStore
from dashboard.app import create_app
from dashboard.auth import UsersFile, hash_password
from dashboard.config import DashboardConfig
from tests.alerting.conftest import redis_client, redis_url  # noqa: F401 - shared fixtures
from tests.dashboard.ward_data import seed_ward

PASSWORDS = {"kim": "kim-nurse-pass-1", "vic": "vic-viewer-pass-1", "ada": "ada-admin-pass-1"}
ROLES = {"kim": "nurse", "vic": "viewer", "ada": "admin"}


@pytest.fixture(scope="session")
def users_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("users") / "users.toml"
    lines = []
    for user, password in PASSWORDS.items():
        lines += [f'[users.{user}]', f'role = "{ROLES[user]}"', f'name = "{user.title()} Test"',
                  f'password = "{hash_password(password)}"', ""]
    path.write_text("\n".join(lines))
    return path


class RecordingPublisher:
    """Stands in for the Kafka producer at the edge (the browser test uses the real one)."""

    def __init__(self) -> None:
        self.sent: list[CareAction] = []

    async def send(self, action: CareAction) -> None:
        self.sent.append(action)


class Dash:
    def __init__(self, client: TestClient, store: RedisAlertStore, ids: dict[str, str],
                 publisher: RecordingPublisher, redis_: redis.Redis) -> None:
        self.client = client
        self.store = store
        self.ids = ids
        self.publisher = publisher
        self.redis = redis_

    def login(self, user: str, password: str | None = None) -> str:
        """Log in through the form; returns the session's CSRF token."""
        page = self.client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        resp = self.client.post("/login", data={"username": user, "password": password or PASSWORDS[user],
                                                "csrf_token": token, "next": "/"}, follow_redirects=False)
        assert resp.status_code == 303, resp.text
        return str(self.client.get("/api/me").json()["csrf"])


@pytest.fixture
def dash(redis_url: str, users_path: Path) -> Iterator[Dash]:  # noqa: F811
    prefix = f"testdash{uuid.uuid4().hex[:8]}"
    client_redis = redis.Redis.from_url(redis_url)
    ids = seed_ward(client_redis, prefix)
    publisher = RecordingPublisher()
    config = DashboardConfig(redis_url=redis_url, redis_prefix=prefix, kafka_bootstrap="")
    app = create_app(config, publisher=publisher, users=UsersFile(users_path))
    store = RedisAlertStore(client_redis, prefix)
    try:
        with TestClient(app) as client:
            yield Dash(client, store, ids, publisher, client_redis)
    finally:
        store.delete_prefix()
        client_redis.close()
