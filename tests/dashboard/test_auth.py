"""Passwords, the users file, roles and login throttling (dashboard/auth.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dashboard.auth import LoginThrottle, Role, UsersFile, UsersFileError, hash_password, parse_users, verify_password
from stream.cli.main import app


def test_scrypt_hash_verifies_only_its_password() -> None:
    h = hash_password("correct horse battery")
    assert h.startswith("scrypt$32768$8$1$")
    assert verify_password("correct horse battery", h)
    assert not verify_password("correct horse batterx", h)
    assert hash_password("correct horse battery") != h  # salted
    for broken in ("", "scrypt$1$2", "bcrypt$x$y$z$a$b", "scrypt$x$8$1$AAAA$AAAA"):
        assert not verify_password("x", broken)
    with pytest.raises(ValueError, match="at least 10"):
        hash_password("short")


def test_users_file_rejects_plain_passwords_and_unknown_roles() -> None:
    ok = f'[users.kim]\nrole = "nurse"\npassword = "{hash_password("kim-password-1")}"\n'
    users = parse_users(ok)
    assert users["kim"].role is Role.NURSE and users["kim"].display == "kim"
    for bad, words in ((ok.replace("nurse", "janitor"), "unknown role"),
                       ('[users.kim]\nrole = "nurse"\npassword = "secret123456"\n', "never plain text"),
                       ("users = 3", "expected a [users"), ("[users", "not valid TOML"),
                       (ok.replace("users.kim", 'users."a b"'), "names are")):
        with pytest.raises(UsersFileError, match=re.escape(words)):
            parse_users(bad)
    assert Role.parse("Clinician") is Role.NURSE and Role.ADMIN > Role.NURSE > Role.VIEWER


def test_users_file_is_reread_when_it_changes_and_keeps_the_last_good_copy(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_text(f'[users.kim]\nrole = "viewer"\npassword = "{hash_password("kim-password-1")}"\n')
    users = UsersFile(path)
    assert users.authenticate("kim", "kim-password-1") is not None
    assert users.authenticate("kim", "wrong-password") is None and users.authenticate("nobody", "x" * 12) is None
    import os

    path.write_text(f'[users.kim]\nrole = "nurse"\npassword = "{hash_password("kim-password-2")}"\n')
    os.utime(path, (1, 1))
    assert users.get("kim").role is Role.NURSE  # type: ignore[union-attr]
    path.write_text("[broken")
    os.utime(path, (2, 2))
    assert users.get("kim") is not None and "TOML" in users.error
    with pytest.raises(UsersFileError):
        UsersFile(tmp_path / "missing.toml")


def test_throttle_locks_after_five_failures_for_the_window() -> None:
    now = [0.0]
    t = LoginThrottle(limit=5, window_s=300, clock=lambda: now[0])
    for _ in range(5):
        assert t.retry_after(["user:kim"]) == 0
        t.failed(["user:kim", "client:a"])
        now[0] += 1
    assert t.retry_after(["user:kim"]) == pytest.approx(295)  # first failure at 0 s, now 5 s
    assert t.retry_after(["user:vic", "client:a"]) > 0
    now[0] = 301.0
    assert t.retry_after(["user:kim"]) == 0
    t.failed(["user:kim"])
    t.succeeded(["user:kim"])
    assert t.retry_after(["user:kim"]) == 0


def test_cli_adds_users_and_hashes_passwords(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    runner = CliRunner()
    r = runner.invoke(app, ["dashboard", "add-user", "kim", "--role", "nurse", "--name", 'Kim "K" Lee',
                            "--users", str(path), "--stdin"], input="kim-password-1\n")
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["dashboard", "add-user", "vic", "--role", "viewer", "--users", str(path), "--stdin"],
                      input="vic-password-1\n")
    assert r.exit_code == 0, r.output
    users = UsersFile(path)
    assert users.authenticate("kim", "kim-password-1").name == 'Kim "K" Lee'  # type: ignore[union-attr]
    assert users.get("vic").role is Role.VIEWER  # type: ignore[union-attr]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    r = runner.invoke(app, ["dashboard", "hash-password", "--stdin"], input="another-password\n")
    assert r.exit_code == 0 and verify_password("another-password", r.output.strip())
    r = runner.invoke(app, ["dashboard", "add-user", "x", "--role", "boss", "--users", str(path), "--stdin"],
                      input="whatever-password\n")
    assert r.exit_code == 1 and "unknown role" in r.output
