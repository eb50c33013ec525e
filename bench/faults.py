"""Fault campaign: simulated patients with scripted episodes through the broker, two
workers and Redis while faults are injected; prints what was lost and how long each fault
took to recover from (docs/faults.md).

Run: ``python bench/faults.py [--patients 9] [--duration 1200] [--spacing 75] [--out out/faults]``

Writes ``faults.json`` (every count, every fault with its recovery time, the episodes
missed or duplicated if any) and ``faults.png`` (each patient's finding lag and the
aggregator's consumer lag over time, faults shaded) to ``--out``. Needs about
``duration`` + 5 minutes; exit status 1 if anything was missed, duplicated or lost, a
worker exited without being killed (the campaign restarts it, as a supervisor would), the
stream did not drain at the end, or a fault was not recovered from within
``--recovery-limit`` seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream.faults.campaign import Campaign, CampaignConfig, Fault, default_schedule, recovery_times
from stream.faults.scoring import percentile

COLORS = {"kill_worker": "tab:red", "kill_in_rebalance": "tab:purple", "redis_outage": "tab:orange",
          "gateway_cut": "tab:blue", "duplicate_burst": "tab:green"}


def plot(result: dict[str, Any], observed: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = result["start_ms"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(14, 7), sharex=True)
    by_patient: dict[str, list[tuple[float, float]]] = {}
    for received, pid, t_ms in observed["findings"]:
        by_patient.setdefault(pid, []).append(((received - t0) / 1000, (received - t_ms) / 1000))
    for pid, pts in sorted(by_patient.items()):
        xs, ys = zip(*pts, strict=True)
        ax1.plot(xs, ys, ".", ms=2, label=pid)
    ax1.axhline(result["normal_finding_lag_s"], color="k", lw=0.8, ls="--", label="normal lag limit")
    ax1.set_ylabel("finding lag (s)\narrival - window end")
    ax1.set_yscale("symlog", linthresh=10)
    ax1.legend(ncol=6, fontsize=7, loc="upper right")
    lag = observed["group_lag"]
    if lag:
        ax2.plot([(t - t0) / 1000 for t, _ in lag], [v for _, v in lag], color="k", lw=1)
    ax2.axhline(result["normal_group_lag"], color="k", lw=0.8, ls="--")
    ax2.set_ylabel("aggregator consumer lag\n(uncommitted findings)")
    ax2.set_xlabel("campaign time (s)")
    for f in result["faults"]:
        start, end = (f["started_ms"] - t0) / 1000, (f["ended_ms"] - t0) / 1000
        for ax in (ax1, ax2):
            ax.axvspan(start, max(end, start + 2), color=COLORS[f["kind"]], alpha=0.25)
            if f["recovery_s"] is not None:
                ax.axvline(end + f["recovery_s"], color=COLORS[f["kind"]], lw=0.8)
        ax1.text(start, ax1.get_ylim()[1], f["kind"].replace("_", " "), rotation=90, va="top", fontsize=7)
    title = (f"{result['faults_injected']} faults: {result['episodes_missed']} episodes missed, "
             f"{result['duplicate_alerts']} duplicate alerts, {result['alerts_lost_worker_to_redis']} alerts lost, "
             f"{result['findings_lost']} findings lost; max recovery {result['recovery_s']['max']} s")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def summary(result: dict[str, Any]) -> str:
    lines = [
        f"faults injected: {result['faults_injected']}  "
        + ", ".join(f"{k} {v}" for k, v in result["faults_by_kind"].items()),
        f"episodes (expected, scripted): {result['episodes']}",
        f"  alerted once:                {result['episodes_alerted_once']}",
        f"  missed (fault-caused):       {result['episodes_missed']}",
        f"  duplicated:                  {result['episodes_duplicated']}",
        f"  not detected even without faults (reference run): {result['not_detected_without_faults']}",
        f"duplicate alerts:              {result['duplicate_alerts']}",
        f"alerts lost worker -> Redis:   {result['alerts_lost_worker_to_redis']} "
        f"(of {result['alerts_expected_from_findings']} the published findings called for; "
        f"{result['alerts_stored']} stored)",
        f"findings lost (data no finding analysed, hops): {result['findings_lost']}",
        f"worker exits not injected (restarted): {len(result.get('worker_exits_not_injected', []))} "
        + " ".join(f"worker{e['worker']}@{e['at_s']}s(code {e['code']})"
                   for e in result.get("worker_exits_not_injected", [])),
        f"drained at the end: {result['drained']}",
        f"re-raised episodes merged by the store: {result['reruns_merged_by_store']}; "
        f"finding copies read (redeliveries): {result['finding_copies']}",
        f"alerts not in the fault-free reference: {len(result['alerts_not_in_reference'])} "
        + ", ".join(sorted({a['type'] for a in result['alerts_not_in_reference']})),
        "normal lag (before the first fault): finding p50 "
        f"{result['baseline_finding_lag_p50_s']:.1f} s, p99 {result['baseline_finding_lag_p99_s']:.1f} s "
        f"-> healthy under {result['normal_finding_lag_s']:.1f} s, a finding at least every "
        f"{result.get('fresh_s', 6.0):.1f} s; "
        f"aggregator lag under {result['normal_group_lag']}",
        "recovery per fault (s after the fault ended):",
    ]
    for f in result["faults"]:
        lines.append(f"  t={f['at_s']:6.0f}  {f['kind']:18s} lasted {(f['ended_ms'] - f['started_ms']) / 1000:5.1f} s"
                     f"  recovered in {f['recovery_s']!s:>6} s  {json.dumps(f['detail'])}")
    lines.append(f"recovery: max {result['recovery_s']['max']} s, median {result['recovery_s']['median']} s")
    return "\n".join(lines)


def rescore(out: Path, recovery_limit: float) -> int:
    from stream.faults.scoring import FindingSeen

    result = json.loads((out / "faults.json").read_text())
    observed = json.loads((out / "observed.json").read_text())
    findings = sorted((FindingSeen(*f) for f in observed["findings"]), key=lambda f: f.received_ms)
    patients = sorted({f.patient_id for f in findings})
    rec = recovery_times(result["start_ms"], result["duration_s"], result["faults"], findings,
                         [tuple(x) for x in observed["group_lag"]], patients)
    for fault, seconds in zip(result["faults"], rec["recovery_s"], strict=True):
        fault["recovery_s"] = seconds
    done = [s for s in rec["recovery_s"] if s is not None]
    result["recovery_s"] = {"max": max(done, default=None), "median": percentile(done, 50),
                            "all_recovered": len(done) == len(result["faults"])}
    result.update(normal_finding_lag_s=rec["normal_finding_lag_ms"] / 1000, normal_group_lag=rec["normal_group_lag"],
                  fresh_s=rec["fresh_ms"] / 1000)
    (out / "faults.json").write_text(json.dumps(result, indent=2))
    plot(result, observed, out / "faults.png")
    print(summary(result))
    return _verdict(result, recovery_limit)


def _verdict(result: dict[str, Any], recovery_limit: float) -> int:
    bad = (result["episodes_missed"] or result["duplicate_alerts"] or result["alerts_lost_worker_to_redis"]
           or result["findings_lost"] or not result["recovery_s"]["all_recovered"]
           or result.get("worker_exits_not_injected") or not result["drained"]
           or (result["recovery_s"]["max"] or 0) > recovery_limit)
    return 1 if bad else 0


def parse_schedule(text: str) -> list[Fault]:
    faults = []
    for item in text.split(","):
        at, kind, *worker = item.strip().split(":")
        faults.append(Fault(float(at), kind, int(worker[0]) if worker else 0))
    return faults


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=9)
    parser.add_argument("--duration", type=float, default=1200.0)
    parser.add_argument("--first", type=float, default=75.0, help="first fault at (s)")
    parser.add_argument("--spacing", type=float, default=75.0, help="seconds between faults")
    parser.add_argument("--redis-outage", type=float, default=30.0)
    parser.add_argument("--cut", type=float, default=20.0, help="seconds the gateway's connection is cut")
    parser.add_argument("--schedule", default="",
                        help="instead of the default schedule: AT:KIND[:WORKER],... "
                        "e.g. 60:kill_worker,120:redis_outage")
    parser.add_argument("--recovery-limit", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=Path("out/faults"))
    parser.add_argument("--rescore", action="store_true",
                        help="recompute the recovery times of the run in --out (faults.json, observed.json) and plot")
    args = parser.parse_args()
    if args.rescore:
        return rescore(args.out, args.recovery_limit)
    config = CampaignConfig(out_dir=args.out, patients=args.patients, duration_s=args.duration,
                            faults=parse_schedule(args.schedule) if args.schedule
                            else default_schedule(args.duration, args.first, args.spacing),
                            redis_outage_s=args.redis_outage, cut_s=args.cut)
    result = Campaign(config).run()
    (args.out / "faults.json").write_text(json.dumps(result, indent=2))
    observed = json.loads((args.out / "observed.json").read_text())
    plot(result, observed, args.out / "faults.png")
    print(summary(result))
    print(f"written: {args.out / 'faults.json'}, {args.out / 'faults.png'}")
    return _verdict(result, args.recovery_limit)


if __name__ == "__main__":
    sys.exit(main())
