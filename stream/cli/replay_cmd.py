"""`vitalstream replay` and `vitalstream validate`: recordings through the production path."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

err = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=False,
    )


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


async def _cancellable(coro: Coroutine[Any, Any, Any]) -> bool:
    """Run ``coro``; Ctrl-C or SIGTERM cancel it cleanly. Returns False when interrupted."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
        return True
    except asyncio.CancelledError:
        return False
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def replay(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Record files or folders (WFDB, BIDMC CSV, simulator output)."),
    ],
    records: Annotated[
        list[str] | None,
        typer.Option("--records", "-r", help="Only these record names (repeatable)."),
    ] = None,
    speed: Annotated[float, typer.Option(help="Event time per wall time: 1 = real time, 10 = ten times faster.")] = 1.0,
    max_speed: Annotated[bool, typer.Option("--max-speed", help="As fast as possible (overrides --speed).")] = False,
    patient_prefix: Annotated[str, typer.Option(help="Patient id = PREFIX + record name.")] = "rp-",
    bootstrap: Annotated[
        str,
        typer.Option(help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS or `services up`)."),
    ] = "",
    limit_s: Annotated[float | None, typer.Option(help="Replay only the first N seconds of each record.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Publish recordings through the gateway SDK, one patient per record, all at once."""
    from stream.cli.gateway_cmd import publish_target
    from stream.connections import KafkaSecurity
    from stream.privacy import pseudonymizer_for
    from stream.replay.records import load_paths
    from stream.replay.replayer import prepare_replay, replay_to_kafka
    from stream.settings import Settings

    settings = Settings.from_env()

    # Same broker resolution as `publish` (option, environment, `services up`), and the
    # topics are created with the pipeline's partition count before anything is sent.
    kafka = publish_target(bootstrap)
    try:
        recordings = load_paths(paths, records, prefix=patient_prefix)
    except (FileNotFoundError, ValueError) as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    if not recordings:
        err.print("[red]no recordings found[/]")
        raise typer.Exit(2)
    chunks, stats = prepare_replay(recordings, end_s=limit_s)
    err.print(
        f"replaying {len(recordings)} records ({stats.record_seconds:.0f} s of signal, "
        f"{len(chunks)} chunks) "
        f"to {kafka} {'as fast as possible' if max_speed else f'at {speed:g}x'}; Ctrl-C stops"
    )
    with _progress() as bar:
        task = bar.add_task("replay", total=len(chunks))
        completed = asyncio.run(
            _cancellable(
                replay_to_kafka(
                    kafka,
                    chunks,
                    stats,
                    speed=None if max_speed else speed,
                    progress=lambda done: bar.update(task, completed=done),
                    security=KafkaSecurity.from_settings(settings),
                    pseudonymizer=pseudonymizer_for(settings.pseudonym_key),
                )
            )
        )
        stats.interrupted = stats.interrupted or not completed
    summary = stats.as_dict()
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        state = "interrupted" if stats.interrupted else "done"
        err.print(
            f"{state}: {summary['records']} records, "
            f"{summary['chunks_sent']}/{summary['chunks_total']} chunks, "
            f"{summary['samples_sent']} samples, {summary['signal_seconds_sent']} s of signal "
            f"in {summary['wall_s']} s "
            f"({summary['chunks_per_s']} chunks/s, {summary['samples_per_s']} samples/s, "
            f"{summary['times_real_time']}x real time)"
        )
    if stats.interrupted:
        raise typer.Exit(130)


def validate(
    suite: Annotated[str, typer.Argument(help="challenge2015 | mitdb | bidmc | synthetic")],
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of the suite's recordings (default: <data_dir>/<suite>; synthetic: generated)."),
    ] = None,
    records: Annotated[
        list[str] | None,
        typer.Option("--records", "-r", help="Only these record names (repeatable)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Where metrics.json, report.md and plots go.")] = Path("validation-out"),
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics.json to stdout.")] = False,
    in_process: Annotated[
        bool,
        typer.Option(
            "--in-process",
            help="Same stages without Kafka, Redis or a worker: a quick loop for tuning, not the figure of record.",
        ),
    ] = False,
    jobs: Annotated[int | None, typer.Option(help="Processes for --in-process (default: CPU count).")] = None,
    device_alarms: Annotated[
        bool,
        typer.Option(
            help="Replay the bedside monitors' own alarms (CinC 2015) for the aggregator to confirm or suppress; "
            "--no-device-alarms scores the pipeline's own detection alone.",
        ),
    ] = True,
    drain_timeout_s: Annotated[
        float,
        typer.Option(help="Through the broker: seconds to wait, after the replay, for the worker to finish "
                     "(a slow or shared machine needs more for the 292 CinC 2015 records)."),
    ] = 900.0,
) -> None:
    """Replay a suite through the real pipeline, score the alerts, write a report."""
    from stream.replay.validation import SUITES, run_validation
    from stream.services import ServiceError

    if suite not in SUITES:
        err.print(f"[red]unknown suite {suite!r}[/]; choose one of {', '.join(SUITES)}")
        raise typer.Exit(2)

    # Unwind like Ctrl-C so the worker, the services and the Redis prefix are cleaned up.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    with _progress() as bar:
        tasks: dict[str, int] = {}

        logged: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)
            if not err.is_terminal:
                # No live bar on a pipe or log file: one line per phase and per 10 %.
                step = 10 * done // max(1, total)
                if logged.get(phase, -1) < step:
                    logged[phase] = step
                    err.print(f"{phase}: {done}/{total}")

        try:
            metrics = run_validation(
                suite, data_dir, out, records, progress=progress, in_process=in_process, jobs=jobs,
                device_alarms=device_alarms, drain_timeout_s=drain_timeout_s,
            )
        except (ServiceError, FileNotFoundError, ValueError) as exc:
            err.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted; services and worker stopped, Redis prefix deleted[/]")
            raise typer.Exit(130) from None
    if as_json:
        sys.stdout.write(json.dumps(metrics, indent=2, default=str) + "\n")
    else:
        headline = {k: metrics.get(k) for k in ("suite", "records", "score", "false_alerts_per_hour", "latency_s")}
        err.print(json.dumps(headline, default=str))
        err.print(f"report: {out / 'report.md'}")
