"""`vitalstream alerts tail|list|ack|snooze|history`: the care team's view of the alerts.

Redis comes from ``REDIS_URL`` (else the Redis `vitalstream services up` started, else
``redis://127.0.0.1:6379/0``), keys from ``VITALSTREAM_REDIS_PREFIX``. Acknowledgements and
snoozes are written to Redis at once and also published to ``vitals.alert-actions`` (when
a broker is known) so the worker's state machine learns them.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from datetime import UTC, datetime
from pathlib import Path

import redis
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from alerting.care_actions import CareActionResult, KafkaActionPublisher, take_care_action
from alerting.store import Alert, RedisAlertStore
from alerting.subscriber import AlertSubscriber
from stream.connections import KafkaSecurity, RedisSecurity, redact_url, redis_client
from stream.privacy import pseudonymizer_for
from stream.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Follow, list, acknowledge and snooze alerts.")
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
PRIORITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan"}
STATE_STYLE = {"raised": "bold", "escalated": "bold magenta", "acknowledged": "green",
               "snoozed": "blue", "resolved": "dim"}


def _endpoints(settings: Settings) -> tuple[str, str]:
    """(redis url, kafka bootstrap or "")."""
    redis_url, kafka = settings.redis_url, settings.kafka_bootstrap_servers
    if not redis_url or not kafka:
        try:
            from stream.services import ServiceState

            state = ServiceState.load(Path(settings.state_dir))
            if state is not None and state.alive():
                redis_url = redis_url or state.endpoints.redis_url
                kafka = kafka or state.endpoints.kafka_bootstrap
        except Exception:  # no usable services state: fall back to the defaults
            pass
    return redis_url or DEFAULT_REDIS_URL, kafka


def _store() -> tuple[RedisAlertStore, str]:
    settings = Settings.from_env()
    redis_url, kafka = _endpoints(settings)
    client = redis_client(redis_url, RedisSecurity.from_settings(settings))
    try:
        client.ping()
    except redis.RedisError as exc:
        err.print(f"[red]error:[/] Redis at {redact_url(redis_url)} does not answer: {exc}")
        raise typer.Exit(1) from None
    return RedisAlertStore(client, settings.redis_prefix), kafka


def _patient_key(patient: str | None) -> str | None:
    """The id the alerts carry for ``patient``: its pseudonym when the gateways pseudonymise
    (VITALSTREAM_PSEUDONYM_KEY), so the care team can ask by the id it knows; a pseudonym
    given as such is kept."""
    if patient is None:
        return None
    pseudonymizer = pseudonymizer_for(Settings.from_env().pseudonym_key)
    return pseudonymizer(patient) if pseudonymizer is not None else patient


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _styled(text: str, style: str | None) -> str:
    return f"[{style}]{text}[/]" if style else text


def _line(alert: Alert) -> str:
    prio = _styled(f"{alert.priority.upper():6}", PRIORITY_STYLE.get(alert.priority))
    state = _styled(f"{alert.state:12}", STATE_STYLE.get(alert.state))
    event = alert.last_event or "-"
    esc = f" esc{alert.escalation_level}" if alert.escalation_level else ""
    who = f" by {escape(alert.acked_by)}" if alert.acked_by and event == "acknowledged" else ""
    return (f"{_time(alert.updated_ms)} {prio} {alert.type:19} {escape(alert.patient_id):12} "
            f"{state} {event:12}{esc}{who}  {escape(alert.message)}  "
            f"[dim]{escape(alert.alert_id)}[/]")


@app.command()
def tail(
    group: str = typer.Option("cli", "--group", "-g", help="Consumer group (one per application)."),
    consumer: str = typer.Option("cli-1", help="Consumer name within the group."),
    priority: list[str] = typer.Option(None, "--priority", "-p",
                                       help="Only these priorities (repeatable)."),
    follow: bool = typer.Option(True, "--follow/--no-follow",
                                help="Keep waiting for new alerts, or stop when caught up."),
    timeout: float = typer.Option(None, "--timeout", help="Stop after this many seconds."),
    from_start: bool = typer.Option(False, "--from-start",
                                    help="A new group reads the retained history first."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Print alert changes as they happen (raised, updated, acknowledged, escalated, ...)."""
    store, _ = _store()
    sub = AlertSubscriber(store.client, store.prefix, group, consumer,
                          priorities=priority or None, from_start=from_start)

    def show(alert: Alert) -> None:
        if as_json:
            print(json.dumps(alert.to_dict()), flush=True)
        else:
            out.print(_line(alert))

    try:
        if follow:
            for alert in sub.follow(timeout_s=timeout):
                show(alert)
        else:
            while batch := sub.poll(block_ms=50):
                for alert in batch:
                    show(alert)
    except KeyboardInterrupt:
        pass


@app.command("list")
def list_cmd(
    patient: str = typer.Option(None, "--patient", help="Only this patient."),
    include_resolved: bool = typer.Option(False, "--all", help="Include resolved alerts."),
    priority: str = typer.Option(None, "--priority", "-p", help="Only this priority."),
    as_json: bool = typer.Option(False, "--json", help="JSON array."),
) -> None:
    """Open alerts (or all with --all), oldest first."""
    store, _ = _store()
    alerts = store.list_alerts(_patient_key(patient), include_resolved, priority)
    if as_json:
        print(json.dumps([a.to_dict() for a in alerts], indent=2))
        return
    if not alerts:
        out.print("no alerts")
        return
    table = Table(show_lines=False)
    for col in ("raised", "priority", "type", "patient", "state", "esc", "acked by"):
        table.add_column(col, no_wrap=True)
    table.add_column("message", overflow="fold", ratio=1)
    table.add_column("id", no_wrap=True)
    for a in alerts:
        table.add_row(_time(a.raised_ms), _styled(a.priority, PRIORITY_STYLE.get(a.priority)),
                      a.type, escape(a.patient_id), _styled(a.state, STATE_STYLE.get(a.state)),
                      str(a.escalation_level or ""), escape(a.acked_by or ""),
                      escape(a.message), a.alert_id)
    out.print(table)


def _take(kind: str, alert_id: str, by: str, minutes: float | None, publish: bool,
          as_json: bool) -> None:
    """The care team's one path (alerting.care_actions): Redis, then the worker via Kafka."""
    store, kafka = _store()

    async def run() -> CareActionResult | None:
        if not (publish and kafka):
            return await take_care_action(store, None, kind, alert_id, by, minutes)
        security = KafkaSecurity.from_settings(Settings.from_env())
        async with KafkaActionPublisher(kafka, security=security) as publisher:
            return await take_care_action(store, publisher, kind, alert_id, by, minutes)

    try:
        result = asyncio.run(run())
    except Exception as exc:
        if isinstance(exc, ValueError | redis.RedisError):
            err.print(f"[red]error:[/] {escape(str(exc))}")
            raise typer.Exit(1) from None
        # The producer could not start: Redis was not written either, so try Redis alone.
        err.print(f"[yellow]warning:[/] could not reach Kafka ({escape(str(exc))})")
        result = asyncio.run(take_care_action(store, None, kind, alert_id, by, minutes))
        if result is not None:
            result = CareActionResult(result.outcome, False, str(exc))
    if result is None:
        err.print(f"[red]no alert {escape(alert_id)}[/]")
        raise typer.Exit(1)
    if as_json:
        print(json.dumps({"changed": result.outcome.changed, "published": result.published,
                          "action": result.outcome.action.to_dict(), "alert": result.outcome.alert.to_dict()}))
        return
    verb = "done" if result.outcome.changed else "no change (already in effect or resolved)"
    out.print(f"{verb}: {_line(result.outcome.alert)}")
    if publish and not kafka:
        err.print("[dim]not sent to the worker: no Kafka broker configured "
                  "(KAFKA_BOOTSTRAP_SERVERS or `vitalstream services up`)[/]")
    elif publish and not result.published:
        err.print(f"[yellow]warning:[/] could not publish to Kafka ({escape(result.publish_error)}); "
                  "Redis has the change and keeps it, but the worker was not told")


@app.command()
def ack(
    alert_id: str = typer.Argument(..., help="Alert id (from `alerts list`)."),
    by: str = typer.Option(..., "--by", help="Who acknowledges (recorded in the audit trail)."),
    publish: bool = typer.Option(True, "--publish/--no-publish",
                                 help="Also send the action to the worker via Kafka."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Acknowledge an alert (idempotent; stops escalation; audited)."""
    _take("ack", alert_id, by, None, publish, as_json)


@app.command()
def snooze(
    alert_id: str = typer.Argument(..., help="Alert id (from `alerts list`)."),
    minutes: float = typer.Option(..., "--minutes", "-m", min=0.1, max=120.0,
                                  help="How long to silence it."),
    by: str = typer.Option(None, "--by", help="Who snoozes (default: login name)."),
    publish: bool = typer.Option(True, "--publish/--no-publish",
                                 help="Also send the action to the worker via Kafka."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Silence an alert for a while; it comes back if still active when the time is up."""
    _take("snooze", alert_id, by or getpass.getuser(), minutes, publish, as_json)


@app.command()
def history(
    alert_id: str = typer.Argument(..., help="Alert id."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Audit trail of one alert: every change, who made it, when."""
    store, _ = _store()
    entries = store.history(alert_id)
    if as_json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    if not entries:
        err.print(f"[red]no history for {escape(alert_id)}[/]")
        raise typer.Exit(1)
    table = Table()
    for col in ("event time", "written", "event", "state", "by", "value", "detail"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(_time(e.t_ms), _time(e.written_ms), e.event,
                      _styled(e.state, STATE_STYLE.get(e.state)), escape(e.by or ""),
                      "" if e.value is None else f"{e.value:g}", escape(e.detail))
    out.print(table)


VERDICT_STYLE = {"confirmed": "bold red", "suppressed": "dim", "unverifiable": "cyan"}


@app.command("device-alarms")
def device_alarms(
    patient: str = typer.Option(None, "--patient", help="Only this patient."),
    verdict: str = typer.Option(None, "--verdict", help="Only confirmed, suppressed or unverifiable."),
    limit: int = typer.Option(200, "--limit", help="At most this many, newest."),
    as_json: bool = typer.Option(False, "--json", help="JSON array."),
) -> None:
    """The bedside monitors' own alarms and what the aggregator made of them: confirmed
    (raised as the alert shown), suppressed (the evidence, the verifier's p(true)) or
    unverifiable (raised too, saying it could not be verified)."""
    store, _ = _store()
    rows = [d for d in store.device_alarms(_patient_key(patient), limit)
            if verdict is None or d.get("verdict") == verdict]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        out.print("no device alarms")
        return
    table = Table()
    for col in ("alarm time", "patient", "alarm", "verdict", "p(true)"):
        table.add_column(col, no_wrap=True)
    table.add_column("reason", overflow="fold", ratio=1)
    table.add_column("alert", no_wrap=True)
    for d in rows:
        label = d.get("label") or d.get("alarm_type", "")
        table.add_row(_time(int(d["t_ms"])), escape(d.get("patient_id", "")), escape(label),
                      _styled(d.get("verdict", ""), VERDICT_STYLE.get(d.get("verdict", ""))),
                      d.get("p_true", ""),
                      escape(d.get("reason", "") + (f"; {d['note']}" if d.get("note") else "")),
                      d.get("alert_id", ""))
    out.print(table)
