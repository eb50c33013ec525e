"""`vitalstream worker` (the Faust worker) and `vitalstream demo` (everything, for a newcomer)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from stream.connections import KafkaSecurity
from stream.services import ServiceError, create_topics, resolve_endpoints
from stream.settings import Settings

console = Console(stderr=True)


def worker(
    loglevel: str = typer.Option("", "--loglevel", "-l", help="Log level (default VITALSTREAM_LOG_LEVEL)."),
) -> None:
    """Run one Faust worker: vitals agent, aggregator agent and their timers.

    Start as many as the topics have partitions; they share the load as one consumer group.
    """
    settings = Settings.from_env()
    try:
        endpoints = resolve_endpoints(
            settings.kafka_bootstrap_servers, settings.redis_url, Path(settings.state_dir)
        )
        create_topics(endpoints.kafka_bootstrap, settings.partitions, settings.replication_factor,
                      security=KafkaSecurity.from_settings(settings))
    except ServiceError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    # The app reads its settings at import, so export the resolved endpoints first.
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = endpoints.kafka_bootstrap
    os.environ["REDIS_URL"] = endpoints.redis_url
    import torch

    # Before the models load; see Settings.torch_threads.
    torch.set_num_threads(max(1, settings.torch_threads))
    from stream.agents.registry import register_all

    app = register_all()
    # Faust's worker command sets web_bind and web_host again from its own options.
    sys.argv = [
        "vitalstream-worker",
        "worker",
        "--loglevel",
        loglevel or settings.log_level,
        "--web-port",
        str(settings.worker_web_port),
        "--web-bind",
        settings.worker_web_host,
        "--web-host",
        app.conf.web_host,
    ]
    app.main()


def demo(
    patients: int = typer.Option(
        9, help="Simulated patients (the cohort includes brady, AF and asystole; the 9th is an ICU bed)."
    ),
    duration: float = typer.Option(90.0, help="Seconds to run before stopping cleanly."),
    seed: int = typer.Option(7, help="Simulator seed."),
) -> None:
    """Start embedded services, a worker and simulated patients; print alerts as they land."""
    from stream.demo import run_demo

    try:
        run_demo(patients=patients, duration_s=duration, seed=seed, console=console)
    except ServiceError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
