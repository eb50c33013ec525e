"""`vitalstream publish` (one recording file as one patient) and `vitalstream simulate`."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

err = Console(stderr=True)
# How long a stopping publisher may take to deliver what it already accepted.
STOP_FLUSH_TIMEOUT_S = 10.0


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    )


# Options shared by `publish`, `publish-alarm` and `simulate`.
BootstrapOption = Annotated[
    str, typer.Option(help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS).")
]
CreateTopicsOption = Annotated[
    bool,
    typer.Option(
        "--create-topics/--no-create-topics",
        help="Create the pipeline topics first (VITALSTREAM_PARTITIONS partitions).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


def gateway_publisher(bootstrap: str) -> Any:
    """A GatewayPublisher as the settings configure it: the broker's TLS / SASL and, with
    VITALSTREAM_PSEUDONYM_KEY, patient ids replaced by their pseudonyms."""
    from stream.connections import KafkaSecurity
    from stream.gateway import GatewayPublisher
    from stream.privacy import pseudonymizer_for
    from stream.settings import Settings

    settings = Settings.from_env()
    return GatewayPublisher(bootstrap, security=KafkaSecurity.from_settings(settings),
                            pseudonymizer=pseudonymizer_for(settings.pseudonym_key))


def publish_target(explicit: str, create_topics: bool = True) -> str:
    """The broker to publish to; creates the pipeline's topics unless told not to."""
    from stream.connections import KafkaSecurity
    from stream.services import ServiceError, ServiceState
    from stream.services import create_topics as create
    from stream.settings import Settings

    settings = Settings.from_env()
    kafka = explicit or settings.kafka_bootstrap_servers
    if not kafka:
        state = ServiceState.load(Path(settings.state_dir))
        if state is not None and state.alive():
            kafka = state.endpoints.kafka_bootstrap
    if not kafka:
        err.print(
            "[red]no Kafka broker: pass --bootstrap, set KAFKA_BOOTSTRAP_SERVERS "
            "or run `vitalstream services up`[/]"
        )
        raise typer.Exit(2)
    if create_topics:
        # A broker would auto-create a missing topic with its default partition count,
        # breaking the co-partitioning of the vitals and findings topics.
        try:
            create(kafka, settings.partitions, settings.replication_factor,
                   security=KafkaSecurity.from_settings(settings))
        except ServiceError as exc:
            err.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
        except Exception as exc:  # the admin client's connection errors vary by version
            err.print(f"[red]cannot reach Kafka at {kafka}: {exc}[/]")
            raise typer.Exit(2) from None
    return kafka


async def _publish_stream(
    bootstrap: str,
    chunks: Iterable[Any] | AsyncIterator[Any],
    speed: float | None,
    on_progress: Any,
) -> dict[str, Any]:
    """Publish paced; SIGINT/SIGTERM stop it cleanly (deliver what was accepted, close)."""
    from stream.gateway import PacingStats, PublishError, publish_paced

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    publisher = gateway_publisher(bootstrap)
    stats = PacingStats()
    interrupted = False
    error = None
    started = time.monotonic()
    try:
        await publisher.start()
        await publish_paced(publisher, chunks, speed, on_progress, stats=stats)
    except asyncio.CancelledError:
        interrupted = True
    except PublishError as exc:
        error = str(exc)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        try:
            await asyncio.wait_for(publisher.stop(flush=True), STOP_FLUSH_TIMEOUT_S)
        except (PublishError, TimeoutError) as exc:
            error = error or str(exc)
    summary = {
        **stats.as_dict(),
        "wall_s": round(time.monotonic() - started, 3),
        "publisher": publisher.stats.as_dict(),
        "idempotent_producer": publisher.idempotent,
        "interrupted": interrupted,
        "error": error,
    }
    return summary


def publish(
    path: Annotated[Path, typer.Argument(help="A CSV file or a WFDB record (.hea).")],
    patient: Annotated[str, typer.Option("--patient", help="Patient id for every chunk.")],
    device: Annotated[
        str | None, typer.Option(help="Device id (default: file-<record name>).")
    ] = None,
    fs: Annotated[
        float | None,
        typer.Option(help="CSV sampling rate in Hz (default: inferred from the time column)."),
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option("--column", help="CSV column mapping NAME=ecg|ecg2|ppg|abp|resp (repeatable)."),
    ] = None,
    time_column: Annotated[str | None, typer.Option(help="CSV time column name.")] = None,
    speed: Annotated[
        float,
        typer.Option(help="Event time per wall time: 1 = real time; 0 = as fast as possible."),
    ] = 1.0,
    chunk_s: Annotated[float, typer.Option(help="Seconds of signal per chunk.")] = 1.0,
    start_ms: Annotated[
        int | None,
        typer.Option(
            help="Epoch ms of the first sample (default: now; as-fast-as-possible runs end now)."
        ),
    ] = None,
    bootstrap: BootstrapOption = "",
    create_topics: CreateTopicsOption = True,
    as_json: JsonOption = False,
) -> None:
    """Send one recording (CSV or WFDB) as one patient through the gateway SDK."""
    from stream.gateway import chunk_signals, now_ms
    from stream.sources import SourceError, load_source, parse_column_map

    try:
        source = load_source(
            path, fs=fs, columns=parse_column_map(column or []), time_column=time_column
        )
    except SourceError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    kafka = publish_target(bootstrap, create_topics)
    if start_ms is None:
        start_ms = now_ms() - (0 if speed else round(1000 * source.duration_s))
    device_id = device or f"file-{source.name}"[:64]
    chunks = chunk_signals(patient, device_id, source.channels, start_ms, chunk_s)
    mapping = ", ".join(
        f"{sig.value}<-{source.channel_names.get(sig, sig.value)} @{fs_:g} Hz"
        for sig, (_, fs_) in source.channels.items()
    )
    err.print(
        f"publishing {path.name} as patient {patient} (device {device_id}): {mapping}; "
        f"{source.duration_s:.1f} s, {len(chunks)} chunks to {kafka} "
        f"{'as fast as possible' if not speed else f'at {speed:g}x'}"
    )
    with _progress() as bar:
        task = bar.add_task("publish", total=source.duration_s)
        summary = asyncio.run(
            _publish_stream(
                kafka, chunks, speed or None, lambda s: bar.update(task, completed=s.event_s)
            )
        )
    summary = {
        "path": str(path),
        "patient_id": patient,
        "device_id": device_id,
        "chunks_total": len(chunks),
        "start_ms": start_ms,
        **summary,
    }
    _finish(summary, as_json)


def _finish(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        p = summary["publisher"]
        state = (
            "interrupted" if summary["interrupted"] else ("failed" if summary["error"] else "done")
        )
        err.print(
            f"{state}: {p['sent']} chunks delivered ({summary['samples']} samples, "
            f"{summary['event_s']} s of event time) in {summary['wall_s']} s; "
            f"retried {p['retried']}, failed {p['failed']}, invalid {p['invalid']}"
        )
        if summary["error"]:
            err.print(f"[red]{summary['error']}[/]")
    if summary["error"]:
        raise typer.Exit(1)
    if summary["interrupted"]:
        raise typer.Exit(130)


def simulate(
    patients: Annotated[int, typer.Option(help="Number of simulated patients (9 cover every episode type).")] = 9,
    duration: Annotated[
        float | None, typer.Option(help="Seconds to simulate (default: until stopped).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Cohort and signal seed (same seed, same data).")] = 0,
    speed: Annotated[
        float,
        typer.Option(help="Event time per wall time: 1 = real time; 0 = as fast as possible."),
    ] = 1.0,
    out: Annotated[
        Path | None,
        typer.Option(help="Also write DIR/<patient>.npz recordings and DIR/truth.jsonl."),
    ] = None,
    truth: Annotated[
        Path | None, typer.Option(help="Ground-truth JSON lines (default: <out>/truth.jsonl).")
    ] = None,
    no_publish: Annotated[
        bool, typer.Option("--no-publish", help="Only write the recordings (needs --out).")
    ] = False,
    chunk_s: Annotated[
        float,
        typer.Option(help="Seconds of signal per message. 2 halves the messages (and each worker's "
                          "per-message cost) but adds ~1 s to every alert's latency (docs/capacity.md)."),
    ] = 1.0,
    bootstrap: BootstrapOption = "",
    create_topics: CreateTopicsOption = True,
    as_json: JsonOption = False,
) -> None:
    """Simulate a ward (ECG, PPG, respiration with scripted episodes) and publish it live."""
    from stream import simulator
    from stream.gateway import aligned_now_ms

    if patients < 1:
        err.print("[red]--patients must be >= 1[/]")
        raise typer.Exit(2)
    if (out is not None or no_publish) and duration is None:
        err.print("[red]writing recordings (--out / --no-publish) needs --duration[/]")
        raise typer.Exit(2)
    if no_publish and out is None:
        err.print("[red]--no-publish needs --out[/]")
        raise typer.Exit(2)
    if not speed and duration is None:
        err.print("[red]--speed 0 (as fast as possible) needs --duration[/]")
        raise typer.Exit(2)
    truth_path = truth or (out / "truth.jsonl" if out is not None else None)
    cohort = simulator.default_cohort(patients, duration, seed)
    if no_publish:
        assert out is not None and duration is not None
        start = aligned_now_ms() - round(1000 * duration)
        started = time.monotonic()
        with _progress() as bar:
            task = bar.add_task("simulate", total=patients)
            recordings = []
            for scenario in cohort:
                recordings.append(simulator.simulate_patient(scenario, seed=seed, start_ms=start))
                bar.advance(task)
        simulator.save_simulated(out, recordings)
        if truth_path is not None and truth_path != out / "truth.jsonl":
            simulator.write_truth(truth_path, [r for rec in recordings for r in rec.truth_rows()])
        summary = {
            "patients": patients,
            "duration_s": duration,
            "out": str(out),
            "truth": str(truth_path),
            "episodes": sum(len(r.episodes) for r in recordings),
            "wall_s": round(time.monotonic() - started, 3),
        }
        if as_json:
            sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        else:
            err.print(
                f"wrote {patients} recordings of {duration:g} s and "
                f"{summary['episodes']} truth episodes to {out} in {summary['wall_s']} s"
            )
        return

    kafka = publish_target(bootstrap, create_topics)
    start = aligned_now_ms()
    if not speed and duration is not None:
        start -= round(1000 * duration)
    live = simulator.LiveWard(
        cohort, start_ms=start, seed=seed, truth_path=truth_path, keep=out is not None, chunk_s=chunk_s
    )
    err.print(
        f"simulating {patients} patients "
        f"({', '.join(f'{s.patient_id}:{s.profile}' for s in cohort)}) "
        f"{'until stopped' if duration is None else f'for {duration:g} s'} to {kafka} "
        f"{'as fast as possible' if not speed else f'at {speed:g}x'}; "
        f"truth in {truth_path or '(not written)'}"
    )
    with _progress() as bar:
        task = bar.add_task("simulate", total=duration)
        summary = asyncio.run(
            _publish_stream(
                kafka, live.chunks(), speed or None, lambda s: bar.update(task, completed=s.event_s)
            )
        )
    live.close()
    if out is not None:
        simulator.save_simulated(out, live.recordings())
    summary = {
        "patients": patients,
        "start_ms": start,
        "truth": str(truth_path),
        "truth_rows": len(live.truth_written),
        **summary,
    }
    _finish(summary, as_json)


def publish_alarm(
    patient: Annotated[str, typer.Option("--patient", help="Patient id (the key its samples use).")],
    alarm_type: Annotated[
        str, typer.Option("--type", help="asystole | vfib | vtach | extreme_brady | extreme_tachy")
    ],
    at_ms: Annotated[
        int | None, typer.Option(help="Event time the monitor raised it, epoch ms (default: now).")
    ] = None,
    device: Annotated[str, typer.Option(help="The bedside monitor's device id.")] = "",
    label: Annotated[str, typer.Option(help="The monitor's own name for the alarm, shown to the care team.")] = "",
    bootstrap: BootstrapOption = "",
    create_topics: CreateTopicsOption = True,
    as_json: JsonOption = False,
) -> None:
    """Forward one alarm the bedside monitor raised (what a gateway does for each), for the
    aggregator to confirm or suppress; see `vitalstream alerts device-alarms`."""
    from dataclasses import replace

    from stream.device_alarm import DeviceAlarm, InvalidDeviceAlarm
    from stream.gateway import PublishError, now_ms

    try:
        alarm = DeviceAlarm(patient, alarm_type, now_ms() if at_ms is None else at_ms, device, label)
    except InvalidDeviceAlarm as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    kafka = publish_target(bootstrap, create_topics)
    publisher = gateway_publisher(kafka)

    async def forward() -> None:
        async with publisher:
            await publisher.publish_device_alarm(alarm)

    try:
        asyncio.run(forward())
    except PublishError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    if publisher.pseudonymizer is not None:  # what was sent, and what Redis will show
        alarm = replace(alarm, patient_id=publisher.pseudonymizer(alarm.patient_id))
    if as_json:
        sys.stdout.write(json.dumps({"alarm_id": alarm.alarm_id, "topic": "vitals.device-alarms"}) + "\n")
    else:
        err.print(f"delivered {alarm.alarm_id} to vitals.device-alarms on {kafka}")


def pseudonym(
    patient_ids: Annotated[list[str], typer.Argument(help="Patient ids as the devices send them.")],
    log_ref: Annotated[bool, typer.Option("--log-ref", help="Also the reference worker logs use for them.")] = False,
    as_json: JsonOption = False,
) -> None:
    """The pseudonym each patient id travels under (VITALSTREAM_PSEUDONYM_KEY; see
    docs/security.md): what the alerts in Redis and the topics carry for that patient."""
    from stream.privacy import PatientLogRef, pseudonymizer_for
    from stream.settings import Settings

    settings = Settings.from_env()
    pseudonymizer = pseudonymizer_for(settings.pseudonym_key)
    if pseudonymizer is None:
        err.print("[red]VITALSTREAM_PSEUDONYM_KEY (or VITALSTREAM_PSEUDONYM_KEY_FILE) is not set: "
                  "patient ids travel unchanged[/]")
        raise typer.Exit(2)
    refs = PatientLogRef(settings.pseudonym_key)
    rows = []
    for patient_id in patient_ids:
        pseudonym_ = pseudonymizer(patient_id)
        # Worker logs see the id as it arrives, which is the pseudonym.
        rows.append({"patient_id": patient_id, "pseudonym": pseudonym_,
                     **({"log_ref": refs(pseudonym_)} if log_ref else {})})
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        for row in rows:
            typer.echo("\t".join(row.values()))
