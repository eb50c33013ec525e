"""`vitalstream services up|down|status`: the embedded broker and Redis for development."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

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
        state = services_up(Path(settings.state_dir))
        created = create_topics(state.endpoints.kafka_bootstrap, settings.partitions, settings.replication_factor)
    except ServiceError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    for s in state.started:
        console.print(f"started {s.name} pid {s.pid} on 127.0.0.1:{s.port} (log {s.log})")
    if created:
        console.print(f"created topics: {', '.join(created)} ({settings.partitions} partitions)")
    typer.echo(f"export KAFKA_BOOTSTRAP_SERVERS={state.endpoints.kafka_bootstrap}")
    typer.echo(f"export REDIS_URL={state.endpoints.redis_url}")


@app.command()
def down() -> None:
    """Stop the services that `services up` started."""
    stopped = services_down(_state_dir())
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@app.command()
def status() -> None:
    """Show where Kafka and Redis are and whether they answer."""
    state = ServiceState.load(_state_dir())
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or (state.endpoints.kafka_bootstrap if state else "")
    redis_url = os.environ.get("REDIS_URL") or (state.endpoints.redis_url if state else "")
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
        up_ = redis_reachable(redis_url)
        ok &= up_
        console.print(f"redis  {redis_url}  {'[green]up[/]' if up_ else '[red]down[/]'}")
    else:
        ok = False
        console.print("redis  [yellow]not configured[/] (run `vitalstream services up`)")
    raise typer.Exit(0 if ok else 1)
