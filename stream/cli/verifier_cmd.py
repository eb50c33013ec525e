"""`vitalstream train verifier`: fit the bedside-alarm verifier on CinC 2015 records and
report its record-wise cross-validated figures beside the in-sample ones (thin wrapper over
:mod:`stream.replay.alarm_samples` and :mod:`models.verifier_training`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from stream.cli.models_cmd import _DEFAULT_CACHE, _data_root, _emit, _progress, _split_records


def train_verifier(
    data_dir: Path = typer.Option(None, help="CinC 2015 folder (default <data_dir>/challenge2015)."),
    out: Path = typer.Option(Path("models/weights"), help="Where verifier.json is written."),
    cv_folds: int = typer.Option(5, help="Record-wise folds."),
    repeats: int = typer.Option(5, help="Repetitions of the CV with other shuffles (the spread is reported)."),
    c: float = typer.Option(0.3, help="Inverse L2 strength of the logistic model."),
    seed: int = typer.Option(0),
    records: str = typer.Option(None, help="Comma-separated records (default: all)."),
    jobs: int = typer.Option(None, help="Processes for the in-process replay (default: CPU count)."),
    cache_dir: Path = typer.Option(_DEFAULT_CACHE, help="Replayed findings are cached here."),
    write: bool = typer.Option(True, "--write/--no-write", help="Write the model fitted on all records."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON only."),
) -> None:
    """Replay the records through the pipeline (cached), cross-validate the verifier
    record-wise (rules fixed; model and threshold fitted in the training folds only), then
    fit it on all records. Prints the out-of-fold challenge score, per-type TP/FP/TN/FN, the
    true alarms suppressed, and the in-sample figures with the gap."""
    from models.verifier_training import cross_validate, in_sample, nan_to_none, rules_only, type_counts
    from stream.replay.alarm_samples import alarm_samples
    from stream.replay.records import load_challenge2015

    t0 = time.time()
    data_dir = Path(data_dir or _data_root() / "challenge2015")
    recordings = load_challenge2015(data_dir, _split_records(records))
    with _progress("replaying records") as cb:
        samples = alarm_samples(recordings, jobs=jobs, cache_dir=cache_dir,
                                progress=lambda what, done, total: cb(done, total, what))
    with _progress("cross-validation folds") as cb:
        cv = cross_validate(samples, folds=cv_folds, repeats=repeats, c=c, seed=seed,
                            progress=lambda done, total: cb(done, total, ""))
    model, fitted = in_sample(samples, c=c, seed=seed)
    report: dict[str, Any] = {
        "records": len(recordings), "alarms": type_counts(samples),
        "cross_validated": {k: v for k, v in cv.items() if k != "decisions"},
        "rules_only": rules_only(samples),
        "in_sample": fitted,
        "gap_in_sample_minus_cv": (round(fitted["score"] - cv["score"], 2)
                                   if fitted["score"] is not None and cv["score"] is not None else None),
        "threshold": model.threshold,
        "version": model.version,
        "seconds": round(time.time() - t0, 1),
    }
    if write:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "verifier.json"
        doc = {**model.to_dict(), "data": f"{data_dir.name}: {len(recordings)} records",
               "records_used": sorted(r.name for r in recordings),
               "cv": report["cross_validated"], "in_sample": fitted, "rules_only": report["rules_only"]}
        path.write_text(json.dumps(nan_to_none(doc), indent=2) + "\n")
        report["weights"] = str(path)
    report["out_of_fold_decisions"] = cv["decisions"]
    _emit(nan_to_none(report), as_json)
