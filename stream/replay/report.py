"""``report.md`` and PNG plots for a validation run (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stream.replay.outcome import RunOutput, SuiteResult
from stream.replay.records import Recording
from stream.schema import Signal

MAX_SNIPPETS = 20
SNIPPET_BEFORE_S = 15.0
SNIPPET_AFTER_S = 5.0
OUTCOME_COLOURS = {
    "TP": "#2a9d8f",
    "TN": "#8ab17d",
    "FP": "#e76f51",
    "FN": "#9b2226",
    "detected": "#2a9d8f",
    "missed": "#9b2226",
    "false alerts": "#e76f51",
}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_outcomes(outcomes: dict[str, dict[str, int]], path: Path, title: str) -> bool:
    if not outcomes:
        return False
    plt = _plt()
    types = list(outcomes)
    kinds = list(dict.fromkeys(k for c in outcomes.values() for k in c))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(types) + 2), 4))
    width = 0.8 / max(1, len(kinds))
    x = np.arange(len(types))
    for i, kind in enumerate(kinds):
        values = [outcomes[t].get(kind, 0) for t in types]
        bars = ax.bar(
            x + i * width - 0.4 + width / 2,
            values,
            width,
            label=kind,
            color=OUTCOME_COLOURS.get(kind),
        )
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(x, types, rotation=20)
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_learning_curve(points: Sequence[dict[str, Any]], path: Path, title: str) -> bool:
    """Held-out F1 (mean of N, A, O with its 95 % CI, and A) against training recordings."""
    if not points:
        return False
    plt = _plt()
    n = [p["training_recordings_per_fold"] for p in points]
    fig, ax = plt.subplots(figsize=(6, 4))
    mean = [p["f1_mean_nao"] for p in points]
    lo = [p["f1_mean_nao_ci95"][0] for p in points]
    hi = [p["f1_mean_nao_ci95"][1] for p in points]
    ax.plot(n, mean, "o-", label="mean F1 (N, A, O)")
    ax.fill_between(n, lo, hi, alpha=0.2)
    ax.plot(n, [p["f1"]["A"] for p in points], "s--", label="F1 (A)")
    ax.set_xlabel("training recordings per fold")
    ax.set_ylabel("held-out F1")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_distribution(values: Sequence[float], path: Path, title: str, xlabel: str) -> bool:
    if not values:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(values, bins=min(40, max(5, len(values) // 2)), color="#457b9d")
    p50, p95 = np.percentile(values, [50, 95])
    ax.axvline(p50, color="k", linestyle="--", label=f"p50 {p50:.1f}")
    ax.axvline(p95, color="r", linestyle=":", label=f"p95 {p95:.1f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def pick_snippets(
    false_events: Sequence[tuple[str, str, float]],
    missed_events: Sequence[tuple[str, str, float]],
    limit: int = MAX_SNIPPETS,
) -> list[tuple[str, str, str, float]]:
    """First event per (kind, type), then the rest in order, up to ``limit``."""
    events = [("false", *e) for e in false_events] + [("missed", *e) for e in missed_events]
    chosen: list[tuple[str, str, str, float]] = []
    seen: set[tuple[str, str]] = set()
    for e in events:
        if (e[0], e[2]) not in seen:
            seen.add((e[0], e[2]))
            chosen.append(e)
    for e in events:
        if len(chosen) >= limit:
            break
        if e not in chosen:
            chosen.append(e)
    return chosen[:limit]


def plot_snippet(
    recording: Recording,
    out: RunOutput,
    kind: str,
    alert_type: str,
    t_s: float,
    path: Path,
    *,
    before_s: float = SNIPPET_BEFORE_S,
    after_s: float = SNIPPET_AFTER_S,
) -> None:
    plt = _plt()
    lo, hi = max(0.0, t_s - before_s), t_s + after_s
    signals = [s for s in (Signal.ECG, Signal.ECG2, Signal.PPG, Signal.ABP, Signal.RESP) if s in recording.channels]
    fig, axes = plt.subplots(len(signals) or 1, 1, figsize=(10, 1.8 * max(1, len(signals)) + 0.6), sharex=True)
    axes = np.atleast_1d(axes)
    spans = out.alerts.get(recording.patient_id, [])
    for k, s in enumerate(x for x in spans if x.active_during(lo, hi)):
        # Name each alert on the top axis so overlapping shades can be told apart.
        axes[0].annotate(
            s.type,
            (max(lo, s.raised_s), 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -10 - 9 * (k % 3)),
            textcoords="offset points",
            fontsize=7,
            color="#9b2226" if s.type == alert_type else "#1d3557",
        )
    for ax, sig in zip(axes, signals, strict=False):
        x, fs = recording.channels[sig]
        a, b = int(lo * fs), min(len(x), int(hi * fs))
        t = np.arange(a, b) / fs
        ax.plot(t, x[a:b], lw=0.7, color="k")
        ax.set_ylabel(f"{sig.value}\n{recording.channel_names.get(sig, '')}", fontsize=8)
        for s in spans:
            if s.active_during(lo, hi):
                end = s.resolved_s if s.resolved_s is not None else hi
                colour = "#e76f51" if s.type == alert_type else "#a8dadc"
                ax.axvspan(max(lo, s.raised_s), min(hi, end), color=colour, alpha=0.25)
        for ep in recording.annotations.episodes + recording.annotations.rhythm:
            if ep.end_s >= lo and ep.start_s <= hi:
                ax.axvspan(max(lo, ep.start_s), min(hi, ep.end_s), ymax=0.08, color="#264653", alpha=0.6)
        ax.axvline(t_s, color="r", lw=1, ls="--")
    axes[-1].set_xlabel("record time (s)")
    active = ", ".join(sorted({s.type for s in spans if s.active_during(lo, hi)})) or "none"
    fig.suptitle(
        f"{recording.name}: {kind} {alert_type} at {t_s:.1f} s (shaded: alerts active [{active}]; "
        "red = this type; dark bar = annotated episode)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(
    out_dir: Path,
    metrics: dict[str, Any],
    recordings: Sequence[Recording],
    out: RunOutput,
    result: SuiteResult,
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    suite = metrics["suite"]
    figures: list[tuple[str, str]] = []
    if plot_outcomes(result.outcomes, out_dir / "outcomes.png", f"{suite}: outcomes per alert type"):
        figures.append(("Outcomes per type", "outcomes.png"))
    title, xlabel, values = result.distribution
    if plot_distribution(values, out_dir / "distribution.png", title, xlabel):
        figures.append((title, "distribution.png"))
    by_patient = {r.patient_id: r for r in recordings}
    snippets_dir = out_dir / "snippets"
    snippet_rows = []
    for i, (kind, pid, alert_type, t_s) in enumerate(pick_snippets(result.false_events, result.missed_events)):
        rec = by_patient.get(pid)
        if rec is None:
            continue
        snippets_dir.mkdir(exist_ok=True)
        name = f"{i:02d}_{kind}_{alert_type}_{rec.name}.png"
        if suite == "challenge2015":
            # Show the 10 s the decision was judged on, with context, and only what was sent.
            plot_snippet(rec, out, kind, alert_type, t_s, snippets_dir / name, before_s=20.0, after_s=2.0)
        else:
            plot_snippet(rec, out, kind, alert_type, t_s, snippets_dir / name)
        snippet_rows.append((kind, alert_type, rec.name, t_s, f"snippets/{name}"))

    lines = [f"# Validation report: {suite}", ""]
    route = (
        "the pipeline and aggregator stages in process, without Kafka or Redis (a tuning run, "
        "not the figure of record)"
        if metrics.get("path") == "in-process"
        else "the production path (gateway SDK -> Kafka -> worker -> alerts in Redis)"
    )
    lines.append(f"{metrics['records']} records replayed through {route} in {metrics.get('wall_s', 0):.0f} s.")
    lines.append("")
    headline = []
    if metrics.get("score") is not None:
        headline.append(f"**Challenge score: {metrics['score']:.2f} %** (best real-time entry of CinC 2015: 81.39)")
    if metrics.get("false_alerts_per_hour") is not None:
        headline.append(f"False alerts per patient-hour: {metrics['false_alerts_per_hour']}")
    lat = metrics.get("latency_s") or {}
    if lat.get("p50") is not None:
        headline.append(f"Latency p50 {lat['p50']} s, p95 {lat['p95']} s (n={lat.get('n')})")
    if "resp_rate" in metrics:
        rr = metrics["resp_rate"]
        headline.append(
            f"Breathing-rate MAE: {rr['mae_bpm']} breaths/min over {rr['n_compared']} findings ({rr['comparison']})"
        )
    lines += [f"- {h}" for h in headline] + [""]
    per_type = metrics.get("per_type") or {}
    if per_type:
        keys = [k for k in next(iter(per_type.values())) if not isinstance(next(iter(per_type.values()))[k], dict)]
        lines.append("| type | " + " | ".join(keys) + " |")
        lines.append("|---|" + "---|" * len(keys))
        for t, row in per_type.items():
            lines.append(f"| {t} | " + " | ".join(_fmt(row.get(k)) for k in keys) + " |")
        lines.append("")
    lines += _device_alarm_lines(metrics)
    replay = metrics.get("replay", {})
    # Per-record detail (metrics.json) would swamp the line; the totals are in it.
    drain = {k: v for k, v in metrics.get("drain", {}).items() if k != "missing_signal_by_record"}
    lines.append(
        f"Replay: {replay.get('chunks_sent')} chunks, {replay.get('samples_sent')} samples, "
        f"{replay.get('record_seconds')} s of recordings in {replay.get('wall_s')} s "
        f"({replay.get('times_real_time')}x real time). "
        f"Drain: {json.dumps(drain)}."
    )
    lines.append("")
    lines.append(f"Alerts raised by type: {json.dumps(metrics.get('alerts_by_type', {}))}")
    lines.append("")
    for caption, file in figures:
        lines += [f"## {caption}", "", f"![{caption}]({file})", ""]
    if snippet_rows:
        lines += [
            "## Waveforms around false and missed alerts",
            "",
            "Up to 20: the first per kind and type, then in order.",
            "",
        ]
        for kind, alert_type, name, t_s, file in snippet_rows:
            lines += [
                f"### {kind} {alert_type}: {name} at {t_s:.1f} s",
                "",
                f"![{name}]({file})",
                "",
            ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def _device_alarm_lines(metrics: dict[str, Any]) -> list[str]:
    """What the aggregator made of the bedside monitors' alarms: outcomes per verdict, and
    every true alarm it suppressed or could not verify with its reason (the safety review)."""
    table = metrics.get("device_alarms")
    if not table:
        return []
    lines = ["## Bedside-monitor alarms", "", "| verdict | TP | FP | TN | FN |", "|---|---|---|---|---|"]
    for verdict, row in sorted(table.items()):
        lines.append(f"| {verdict} | " + " | ".join(str(row.get(k, 0)) for k in ("TP", "FP", "TN", "FN")) + " |")
    missed = [d for d in metrics.get("decisions", []) if d.get("true_alarm") and d.get("device_alarm") != "confirmed"]
    if missed:
        lines += ["", "True alarms not confirmed:", ""]
        lines += [f"- {d['record']} {d['alarm']} ({d['outcome']}): {d['device_alarm']}, {d.get('reason', '')}"
                  + (f"; {d['note']}" if d.get("note") else "") for d in missed]
    return [*lines, ""]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
