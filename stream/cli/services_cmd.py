"""`vitalstream services up|down|status`: the embedded broker and Redis for development."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from stream.connections import KafkaSecurity, RedisSecurity, redact_url
from stream.services import (
    ServiceError,
    ServiceState,
    create_topics,
    port_open,
    redis_reachable,
    services_down,
    services_up,
)
from stream.settings import Settings

app = typer.Typer(help="Start, stop and inspect the Kafka broker and Redis.", no_args_is_help=True)
console = Console(stderr=True)


def _state_dir() -> Path:
    return Path(Settings.from_env().state_dir)


@app.command()
def up() -> None:
    """Start what KAFKA_BOOTSTRAP_SERVERS / REDIS_URL do not provide, and create the topics."""
    settings = Settings.from_env()
    try:
        state = services_up(Path(settings.state_dir), redis_security=RedisSecurity.from_settings(settings))
        created = create_topics(state.endpoints.kafka_bootstrap, settings.partitions, settings.replication_factor,
                                security=KafkaSecurity.from_settings(settings))
    except ServiceError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    for s in state.started:
        console.print(f"started {s.name} pid {s.pid} on 127.0.0.1:{s.port} (log {s.log})")
    if created:
        console.print(f"created topics: {', '.join(created)} ({settings.partitions} partitions)")
    typer.echo(f"export KAFKA_BOOTSTRAP_SERVERS={state.endpoints.kafka_bootstrap}")
    typer.echo(f"export REDIS_URL={redact_url(state.endpoints.redis_url)}")


@app.command()
def down() -> None:
    """Stop the services that `services up` started."""
    stopped = services_down(_state_dir())
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@app.command()
def status() -> None:
    """Show where Kafka and Redis are and whether they answer."""
    settings = Settings.from_env()
    state = ServiceState.load(Path(settings.state_dir))
    kafka = settings.kafka_bootstrap_servers or (state.endpoints.kafka_bootstrap if state else "")
    redis_url = settings.redis_url or (state.endpoints.redis_url if state else "")
    ok = True
    if kafka:
        host, _, port = kafka.split(",")[0].rpartition(":")
        up_ = port_open(host or "127.0.0.1", int(port))
        ok &= up_
        console.print(f"kafka  {kafka}  {'[green]up[/]' if up_ else '[red]down[/]'}")
    else:
        ok = False
        console.print("kafka  [yellow]not configured[/] (run `vitalstream services up`)")
    if redis_url:
        up_ = redis_reachable(redis_url, security=RedisSecurity.from_settings(settings))
        ok &= up_
        console.print(f"redis  {redact_url(redis_url)}  {'[green]up[/]' if up_ else '[red]down[/]'}")
    else:
        ok = False
        console.print("redis  [yellow]not configured[/] (run `vitalstream services up`)")
    raise typer.Exit(0 if ok else 1)


@app.command("redis-acl")
def redis_acl(
    user: str = typer.Option("vitalstream", help="The Redis user the worker and the care-team tools log in as."),
    housekeeping: bool = typer.Option(
        False, "--housekeeping", help="Also SCAN and UNLINK (deleting a prefix: validation runs, tests)."),
) -> None:
    """Print the ACL file line of the application's Redis user: only the keys and channels
    under VITALSTREAM_REDIS_PREFIX and only the commands the alert store uses. The password
    is REDIS_PASSWORD (or REDIS_PASSWORD_FILE), written as its SHA-256."""
    import hashlib

    from alerting.store import acl_rules

    settings = Settings.from_env()
    if not settings.redis_password:
        console.print("[red]error:[/] set REDIS_PASSWORD or REDIS_PASSWORD_FILE to the user's password")
        raise typer.Exit(2)
    digest = hashlib.sha256(settings.redis_password.encode()).hexdigest()
    rules = acl_rules(settings.redis_prefix, digest, housekeeping=housekeeping)
    typer.echo(f"user {user} {' '.join(rules)}")
