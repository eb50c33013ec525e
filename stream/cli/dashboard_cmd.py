"""`vitalstream dashboard [hash-password|add-user]`: the care team's web central station.

`vitalstream dashboard` serves it (uvicorn) on ``VITALSTREAM_DASHBOARD_HOST``/``_PORT``,
reading the Redis the worker writes (``REDIS_URL``, else the one `vitalstream services up`
started) and publishing acknowledgements to the broker (``KAFKA_BOOTSTRAP_SERVERS``, idem).
Users and roles come from ``VITALSTREAM_DASHBOARD_USERS`` (TOML; see dashboard/README.md).
"""

from __future__ import annotations

import getpass
import logging
import sys
from pathlib import Path

import typer
from rich.console import Console

from stream.settings import Settings

app = typer.Typer(help="The care team's web dashboard (central station).", invoke_without_command=True,
                  no_args_is_help=False)
err = Console(stderr=True, highlight=False)


@app.callback()
def dashboard(
    ctx: typer.Context,
    host: str = typer.Option(None, help="Address to listen on (default: VITALSTREAM_DASHBOARD_HOST, 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default: VITALSTREAM_DASHBOARD_PORT, 8080)."),
    users: Path = typer.Option(None, help="Users file (default: VITALSTREAM_DASHBOARD_USERS)."),
    ward: str = typer.Option("Ward", help="Name shown in the title bar."),
) -> None:
    """Serve the dashboard (without a subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    serve(host, port, users, ward)


def serve(host: str | None, port: int | None, users: Path | None, ward: str) -> None:
    import uvicorn

    from dashboard.app import create_app
    from dashboard.auth import UsersFileError
    from dashboard.config import DashboardConfig
    from stream.cli.alerts_cmd import _endpoints

    settings = Settings.from_env()
    redis_url, kafka = _endpoints(settings)
    config = DashboardConfig.from_settings(settings, redis_url=redis_url, kafka_bootstrap=kafka)
    config = DashboardConfig(**{**config.__dict__, "ward_name": ward,
                                "users_file": str(users) if users else config.users_file})
    if not config.users_file and not config.oidc_enabled:
        err.print("[red]error:[/] no users: set VITALSTREAM_DASHBOARD_USERS (a TOML users file, see "
                  "`vitalstream dashboard add-user --help`) or an OIDC issuer (VITALSTREAM_OIDC_ISSUER)")
        raise typer.Exit(2)
    try:
        application = create_app(config)
    except (UsersFileError, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    host = host or settings.dashboard_host
    port = port or settings.dashboard_port
    level = settings.log_level.upper() if settings.log_level.upper() in logging.getLevelNamesMapping() else "INFO"
    actions = f"acknowledgements also to Kafka {kafka}" if kafka else "no Kafka: acknowledgements reach Redis only"
    err.print(f"dashboard on http://{host}:{port}/ (Redis {redis_url}, prefix {config.redis_prefix}; {actions})")
    # uvicorn's access log prints full paths (patient ids): ours logs route templates only.
    uvicorn.run(application, host=host, port=port, access_log=False, log_level=level.lower(),
                proxy_headers=True, server_header=False, log_config=log_config(level))


def log_config(level: str) -> dict[str, object]:
    """One format for uvicorn's and the dashboard's loggers, to standard error."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                                "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {"uvicorn": {"level": level}, "uvicorn.access": {"level": "WARNING"}},
    }


def _read_password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        err.print("[red]error:[/] the passwords differ")
        raise typer.Exit(1)
    return first


@app.command("hash-password")
def hash_password_cmd(
    stdin: bool = typer.Option(False, "--stdin", help="Read the password from standard input (one line)."),
) -> None:
    """Print the scrypt hash of a password, for the users file."""
    from dashboard.auth import hash_password

    try:
        print(hash_password(_read_password(stdin)))
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


@app.command("add-user")
def add_user(
    username: str = typer.Argument(..., help="Login name (letters, digits, '.', '-', '_')."),
    role: str = typer.Option(..., "--role", help="viewer | nurse | admin"),
    users: Path = typer.Option(..., "--users", help="Users file to add to (created if missing)."),
    name: str = typer.Option("", "--name", help="Full name shown in the page."),
    stdin: bool = typer.Option(False, "--stdin", help="Read the password from standard input (one line)."),
) -> None:
    """Add a user (or replace its entry) in a users file."""
    from dashboard.auth import Role, UsersFileError, hash_password, parse_users

    try:
        role_name = Role.parse(role).label
        text = users.read_text() if users.exists() else ""
        existing = parse_users(text) if text.strip() else {}
        entry = hash_password(_read_password(stdin))
    except (ValueError, UsersFileError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    lines = ["# vitalstream dashboard users (`vitalstream dashboard add-user`)", ""]
    for user in existing.values():
        if user.username == username:
            continue
        lines += _user_lines(user.username, user.role.label, user.name, user.password_hash)
    lines += _user_lines(username, role_name, name, entry)
    try:
        parse_users("\n".join(lines))
    except UsersFileError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    users.write_text("\n".join(lines))
    users.chmod(0o600)
    err.print(f"{username} ({role_name}) written to {users}")


def _user_lines(username: str, role: str, name: str, password_hash: str) -> list[str]:
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    out = [f"[users.{q(username)}]", f"role = {q(role)}"]
    if name:
        out.append(f"name = {q(name)}")
    return [*out, f"password = {q(password_hash)}", ""]
