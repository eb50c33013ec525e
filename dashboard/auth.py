"""Who may use the dashboard, and as what.

* **Users file** (TOML, ``VITALSTREAM_DASHBOARD_USERS``), re-read when it changes::

      [users.kim]
      role = "nurse"                      # viewer | nurse | admin
      name = "Kim Lee"                    # shown in the page; optional
      password = "scrypt$32768$8$1$..."   # `vitalstream dashboard hash-password`

  Passwords are stored as scrypt hashes (RFC 7914, :func:`hashlib.scrypt`; N=2^15, r=8,
  p=1, 16-byte salt, parameters kept in the hash so they can be raised later).
* **Roles**: ``viewer`` reads everything; ``nurse`` also acknowledges and snoozes;
  ``admin`` also reads the dashboard's access audit.
* **Sessions** (:class:`SessionStore`): a random 256-bit token in an HttpOnly,
  SameSite=Strict cookie; Redis keeps the session under the token's SHA-256 (a copy of
  Redis holds no usable token) with the user, role and CSRF token. It ends after
  ``idle_s`` unused and ``max_s`` after login whatever happens, and at logout.
* **Bearer tokens** (:class:`BearerVerifier`), when an OIDC issuer is configured: a JWT
  signed by a key of the issuer's JWKS, with the configured issuer and audience, not
  expired; the role comes from a claim (a name or a list of names; the highest counts).
* **Login throttling** (:class:`LoginThrottle`): 5 failed logins per user name or client
  address within 5 minutes lock further tries for the rest of those 5 minutes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import tomllib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from pathlib import Path
from typing import Any

import redis


class Role(IntEnum):
    """Ordered: each role may do what the ones below it may."""

    VIEWER = 1
    NURSE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        aliases = {"viewer": cls.VIEWER, "nurse": cls.NURSE, "clinician": cls.NURSE, "admin": cls.ADMIN}
        try:
            return aliases[name.strip().lower()]
        except (KeyError, AttributeError):
            raise ValueError(f"unknown role {name!r} (viewer, nurse, clinician or admin)") from None

    @property
    def label(self) -> str:
        return self.name.lower()


# Acknowledging and snoozing change what the care team is alerted to.
ACT_ROLE = Role.NURSE
AUDIT_ROLE = Role.ADMIN

# ----------------------------------------------------------------------------- passwords

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_SCRYPT_MAXMEM = 128 * 1024 * 1024
MIN_PASSWORD_LENGTH = 10


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s + "=" * (-len(s) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time comparison; False for a malformed hash (never raises)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=_SCRYPT_MAXMEM, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@cache
def _decoy_hash() -> str:
    """A hash of a random password, checked when the user name is unknown, so a failed
    login takes as long for a wrong user as for a wrong password (no user enumeration by
    timing)."""
    return hash_password(secrets.token_urlsafe(16))


# ---------------------------------------------------------------------------- users file

@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: Role
    name: str = ""
    password_hash: str = ""

    @property
    def display(self) -> str:
        return self.name or self.username


class UsersFileError(ValueError):
    pass


def parse_users(text: str) -> dict[str, User]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsersFileError(f"not valid TOML: {exc}") from None
    table = data.get("users")
    if not isinstance(table, dict):
        raise UsersFileError("expected a [users.<name>] table per user")
    users: dict[str, User] = {}
    for username, entry in table.items():
        if not isinstance(entry, dict):
            raise UsersFileError(f"user {username!r}: expected a table")
        if not username or len(username) > 64 or not username.replace(".", "").replace("-", "").replace(
                "_", "").isalnum():
            raise UsersFileError(f"user {username!r}: names are 1-64 letters, digits, '.', '-' or '_'")
        try:
            role = Role.parse(str(entry.get("role", "")))
        except ValueError as exc:
            raise UsersFileError(f"user {username!r}: {exc}") from None
        password = entry.get("password", "")
        if not isinstance(password, str) or not password.startswith("scrypt$"):
            raise UsersFileError(f"user {username!r}: password must be a scrypt hash "
                                 "(`vitalstream dashboard hash-password`), never plain text")
        users[username] = User(username, role, str(entry.get("name", "")), password)
    return users


class UsersFile:
    """The users file, re-read when its modification time changes (add a user without a
    restart). A file that became unreadable keeps the last good copy and says so."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._mtime: float | None = None
        self._users: dict[str, User] = {}
        self.error = ""
        if self.path is not None:
            self._load(first=True)

    def _load(self, first: bool = False) -> None:
        assert self.path is not None
        try:
            mtime = self.path.stat().st_mtime
            if mtime == self._mtime:
                return
            self._users = parse_users(self.path.read_text())
            self._mtime = mtime
            self.error = ""
        except (OSError, UsersFileError) as exc:
            if first:
                raise UsersFileError(f"{self.path}: {exc}") from None
            self.error = str(exc)

    def get(self, username: str) -> User | None:
        if self.path is not None:
            self._load()
        return self._users.get(username)

    def authenticate(self, username: str, password: str) -> User | None:
        user = self.get(username)
        ok = verify_password(password, user.password_hash if user else _decoy_hash())
        return user if ok and user is not None else None

    def __len__(self) -> int:
        return len(self._users)


# ------------------------------------------------------------------------------ throttle

class LoginThrottle:
    """Failed logins per key (a user name, a client address) in a sliding window."""

    def __init__(self, limit: int = 5, window_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._fails: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        q = self._fails.get(key)
        if q is None:
            return deque()
        cutoff = self.clock() - self.window_s
        while q and q[0] <= cutoff:
            q.popleft()
        if not q:
            del self._fails[key]
        return q

    def retry_after(self, keys: Sequence[str]) -> float:
        """Seconds until another try is allowed (0: now)."""
        wait = 0.0
        for key in keys:
            q = self._recent(key)
            if len(q) >= self.limit:
                wait = max(wait, q[0] + self.window_s - self.clock())
        return wait

    def failed(self, keys: Sequence[str]) -> None:
        now = self.clock()
        for key in keys:
            self._fails.setdefault(key, deque()).append(now)
        if len(self._fails) > 100_000:  # bounded under a spray of names
            for key in list(self._fails)[:50_000]:
                del self._fails[key]

    def succeeded(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._fails.pop(key, None)


# ------------------------------------------------------------------------------ sessions

@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes a request: ``via`` "session" (cookie; CSRF token required to change
    anything) or "bearer" (a token in the Authorization header)."""

    username: str
    role: Role
    display: str
    via: str
    csrf: str = ""
    session_hash: str = ""

    def may(self, role: Role) -> bool:
        return self.role >= role


class SessionStore:
    """Sessions in Redis under ``P:dashboard:session:<sha256(token)>``."""

    def __init__(self, client: redis.Redis, prefix: str, *, idle_s: float, max_s: float) -> None:
        self.client = client
        self.prefix = prefix
        self.idle_s = idle_s
        self.max_s = max_s

    @staticmethod
    def token_hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def _key(self, token_hash: str) -> str:
        return f"{self.prefix}:dashboard:session:{token_hash}"

    def create(self, user: User, now_ms: int | None = None) -> str:
        """A new session; returns the token for the cookie."""
        token = secrets.token_urlsafe(32)
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        key = self._key(self.token_hash(token))
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping={"user": user.username, "role": user.role.label, "display": user.display,
                                "csrf": secrets.token_urlsafe(32), "created_ms": str(now)})
        pipe.expire(key, max(1, round(min(self.idle_s, self.max_s))))
        pipe.execute()
        return token

    def load(self, token: str, now_ms: int | None = None) -> Principal | None:
        """The session's principal, its idle timer restarted; None if unknown or over."""
        if not token or len(token) > 256:
            return None
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        token_hash = self.token_hash(token)
        key = self._key(token_hash)
        raw = self.client.hgetall(key)
        if not raw:
            return None
        m = {k.decode(): v.decode() for k, v in raw.items()}
        try:
            created = int(m["created_ms"])
            role = Role.parse(m["role"])
        except (KeyError, ValueError):
            self.client.delete(key)
            return None
        left_s = self.max_s - (now - created) / 1000.0
        if left_s <= 0:
            self.client.delete(key)
            return None
        self.client.expire(key, max(1, round(min(self.idle_s, left_s))))
        return Principal(m["user"], role, m.get("display", m["user"]), "session", m.get("csrf", ""), token_hash)

    def end(self, token_hash: str) -> None:
        self.client.delete(self._key(token_hash))

    def end_all_of(self, username: str) -> int:
        """End every session of a user (e.g. removed from the users file)."""
        ended = 0
        for key in self.client.scan_iter(match=f"{self.prefix}:dashboard:session:*", count=1000):
            if self.client.hget(key, "user") == username.encode():
                ended += int(self.client.delete(key))
        return ended


# -------------------------------------------------------------------------- bearer (OIDC)

class BearerError(ValueError):
    pass


class BearerVerifier:
    """Validates OIDC/OAuth2 access tokens (JWT) against the issuer's JWKS.

    ``jwks`` is a callable returning the key set as a dict (fetched from ``jwks_url`` and
    cached by PyJWT's :class:`jwt.PyJWKClient` in production; tests give one directly)."""

    ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")

    def __init__(self, issuer: str, audience: str, *, jwks_url: str = "", role_claim: str = "roles",
                 jwks: Callable[[], dict[str, Any]] | None = None, leeway_s: float = 30.0) -> None:
        import jwt

        if not issuer or not audience:
            raise ValueError("OIDC needs an issuer and an audience")
        self.issuer = issuer
        self.audience = audience
        self.role_claim = role_claim
        self.leeway_s = leeway_s
        self._jwt = jwt
        self._client = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300) if jwks_url and jwks is None else None
        self._jwks = jwks
        if self._client is None and self._jwks is None:
            raise ValueError("OIDC needs a JWKS URL")

    def _key_for(self, token: str) -> Any:
        jwt = self._jwt
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        assert self._jwks is not None
        kid = jwt.get_unverified_header(token).get("kid")
        keys = jwt.PyJWKSet.from_dict(self._jwks()).keys
        for k in keys:
            if kid is None or k.key_id == kid:
                return k.key
        raise BearerError("no key of the issuer's JWKS signed this token")

    def verify(self, token: str) -> Principal:
        jwt = self._jwt
        try:
            key = self._key_for(token)
            claims = jwt.decode(token, key, algorithms=list(self.ALGORITHMS), audience=self.audience,
                                issuer=self.issuer, leeway=self.leeway_s,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except BearerError:
            raise
        except jwt.PyJWTError as exc:
            raise BearerError(f"invalid bearer token: {exc}") from None
        raw = claims.get(self.role_claim, [])
        names = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list) else []
        roles = []
        for name in names:
            try:
                roles.append(Role.parse(str(name)))
            except ValueError:
                continue
        if not roles:
            raise BearerError(f"the token's {self.role_claim!r} claim names no dashboard role")
        username = str(claims.get("preferred_username") or claims["sub"])
        return Principal(username, max(roles), str(claims.get("name") or username), "bearer")
