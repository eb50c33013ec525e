"""`vitalstream train beats|rhythm` and `vitalstream eval beats|rhythm` (thin wrappers over
:mod:`models.training`, :mod:`models.evaluation` and :mod:`models.runtime`)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from stream.settings import Settings

_DEFAULT_CACHE = Path(tempfile.gettempdir()) / "vitalstream-model-cache"


def _data_root() -> Path:
    return Path(Settings().data_dir)


@contextmanager
def _progress(description: str) -> Iterator[Any]:
    """A rich progress bar on stderr; yields a callback (step, total, message)."""
    console = Console(file=sys.stderr)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[msg]}"),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        task = bar.add_task(description, total=1, msg="")

        def update(step: int, total: int, msg: str) -> None:
            bar.update(task, completed=step, total=total, msg=msg)

        yield update


def _emit(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(obj, indent=2) + "\n")
    else:
        Console().print_json(json.dumps(obj))


def _split_records(records: str | None) -> list[str] | None:
    if not records:
        return None
    return [r.strip() for r in records.replace(",", " ").split() if r.strip()]


def _torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def train_beats(
    data_dir: Path = typer.Option(None, help="MIT-BIH folder (default <data_dir>/mitdb)."),
    noise_dir: Path = typer.Option(None, help="NSTDB folder (default: sibling 'nstdb')."),
    out: Path = typer.Option(Path("models/weights"), help="Where beats.pt/.json are written."),
    seed: int = typer.Option(7),
    epochs: int = typer.Option(12),
    cv_folds: int = typer.Option(5, help="Patient-wise CV folds before the final fit; 0 skips."),
    records: str = typer.Option(None, help="Comma-separated records (default: all)."),
    class_weight_power: float = typer.Option(0.6, help="Class weights = (1/frequency)^power."),
    segment_dropout: float = typer.Option(0.0, help="Share of training beats with the waveform blanked."),
    threads: int = typer.Option(2),
    cache_dir: Path = typer.Option(_DEFAULT_CACHE),
) -> None:
    """Train the beat classifier (patient-wise CV report, then a final fit on all records)."""
    from models import data as md
    from models.evaluation import beat_metrics
    from models.packaging import save_model
    from models.runtime import beat_metadata
    from models.training import BeatTrainConfig, cross_validate_beats, train_beat_model

    _torch_threads(threads)
    data_dir = Path(data_dir or _data_root() / "mitdb")
    noise_dir = Path(noise_dir or data_dir.parent / "nstdb")
    recs = _split_records(records) or md.list_mitdb_records(data_dir)
    beats = md.load_mitdb_beats(data_dir, recs, cache_dir)
    noise = md.load_noise(noise_dir) if noise_dir.exists() else None
    cfg = BeatTrainConfig(epochs=epochs, class_weight_power=class_weight_power, segment_dropout=segment_dropout)
    report: dict[str, Any] = {}
    t0 = time.time()
    if cv_folds > 1:
        with _progress("beats CV") as cb:
            cv = cross_validate_beats(beats, noise, cv_folds, seed, cfg, cb)
        report = beat_metrics(cv.y_true, cv.y_pred, cv.records)
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        cv_config = {"epochs": cfg.epochs, "class_weight_power": cfg.class_weight_power,
                     "segment_dropout": cfg.segment_dropout, "seed": seed, "folds": cv_folds,
                     "noise": noise is not None}
        np.savez(_cnn_cv_cache(cache_dir, cv_config), probs=cv.probs, labels=cv.y_true,
                 records=cv.records)
        report["per_record_errors"] = {
            r: {"n": int((cv.records == r).sum()),
                "wrong": int(((cv.y_pred != cv.y_true) & (cv.records == r)).sum())}
            for r in sorted(set(cv.records.tolist()))}
        report["folds"] = {str(f): sorted(r for r, g in cv.folds.items() if g == f)
                           for f in range(cv_folds)}
        report["fold_design"] = (f"{cv_folds} folds grouped by record (patient-wise), greedy "
                                 "balancing of S/V beats across folds")
    with _progress("beats final") as cb:
        model = train_beat_model(beats, noise, seed, cfg, cb)
    meta = beat_metadata(seed=seed, epochs=epochs, class_weight_power=class_weight_power,
                         segment_dropout=segment_dropout,
                         records=recs, noise=noise is not None,
                         n_beats=int(beats.labels.size),
                         class_counts=np.bincount(beats.labels, minlength=5).tolist(),
                         cv=report, train_seconds=round(time.time() - t0, 1))
    path = save_model(model, out, "beats", meta)
    _emit({"weights": str(path), "cv": report, "records": len(recs)}, True)


def _sveb_inputs(data_dir: Path, beats: Any, runtime: Any) -> np.ndarray:
    from models.training import beat_rhythm_probs, beatset_sveb_features

    with _progress("rhythm context") as cb:
        rhythm = beat_rhythm_probs(data_dir, beats, runtime.predict_rhythm, cb)
    return beatset_sveb_features(beats, rhythm)


def _cnn_cv_cache(cache_dir: Path, config: dict[str, Any]) -> Path:
    """Where held-out CNN probabilities of ``config`` are kept: keyed by the training
    configuration and by the code that trains the folds, so a change to either retrains."""
    import hashlib

    from models import architecture, preprocess, training

    code = hashlib.sha256(b"".join(Path(str(m.__file__)).read_bytes()
                                   for m in (architecture, preprocess, training)))
    name = "_".join(f"{k}{v}" for k, v in config.items())
    return Path(cache_dir) / f"beats_cv_{name}_{code.hexdigest()[:12]}.npz"


def _cnn_cv_probs(beats: Any, runtime: Any, data_dir: Path, folds: int, seed: int | None,
                  epochs: int | None, cache_dir: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Held-out CNN probabilities of the shipped configuration (retrained per fold),
    reused from ``cache_dir`` when ``train beats``, ``train sveb`` or ``eval beats --cv``
    already trained the same folds with the same code."""
    from models import data as md
    from models.training import beat_config_of, cross_validate_beats

    cfg = beat_config_of(runtime.beat_meta, epochs)
    seed = seed if seed is not None else int(runtime.beat_meta.get("seed", 7))
    noise_dir = Path(data_dir).parent / "nstdb"
    noise = md.load_noise(noise_dir) if noise_dir.exists() else None
    config = {"epochs": cfg.epochs, "class_weight_power": cfg.class_weight_power,
              "segment_dropout": cfg.segment_dropout, "seed": seed, "folds": folds,
              "noise": noise is not None}
    cache = _cnn_cv_cache(cache_dir, config)
    if cache.exists():
        z = np.load(cache)
        if np.array_equal(z["labels"], beats.labels) and np.array_equal(z["records"], beats.records):
            return z["probs"], config
    with _progress("beats CV") as cb:
        res = cross_validate_beats(beats, noise, folds, seed, cfg, cb)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    np.savez(cache, probs=res.probs, labels=beats.labels, records=beats.records)
    return res.probs, config


def eval_beats(
    data_dir: Path = typer.Option(None, help="MIT-BIH folder (default <data_dir>/mitdb)."),
    records: str = typer.Option(None, help="Comma-separated records (default: all)."),
    as_json: bool = typer.Option(False, "--json"),
    cv: bool = typer.Option(False, "--cv", help="Patient-wise CV: retrain per held-out fold."),
    cv_folds: int = typer.Option(5),
    epochs: int = typer.Option(None, help="CV epochs (default: the shipped model's, from beats.json)."),
    seed: int = typer.Option(None, help="CV seed (default: the shipped model's)."),
    threads: int = typer.Option(2),
    cache_dir: Path = typer.Option(_DEFAULT_CACHE),
) -> None:
    """Score the beat classifier at the reference beat positions (Se/PPV in percent): the
    CNN, with N against S decided by the S expert as in the stream."""
    from models import data as md
    from models.evaluation import beat_metrics
    from models.runtime import ModelRuntime
    from models.sveb import sveb_labels
    from models.training import cross_validate_sveb, record_folds

    _torch_threads(threads)
    data_dir = Path(data_dir or _data_root() / "mitdb")
    recs = _split_records(records) or md.list_mitdb_records(data_dir)
    beats = md.load_mitdb_beats(data_dir, recs, cache_dir)
    runtime = ModelRuntime.load_default()
    feats = _sveb_inputs(data_dir, beats, runtime)
    train_config: dict[str, Any] = {}
    if cv:
        probs, train_config = _cnn_cv_probs(beats, runtime, data_dir, cv_folds, seed, epochs,
                                            cache_dir)
        folds = record_folds(beats.records, beats.labels, cv_folds)
        sveb_cv = cross_validate_sveb(feats, beats.labels,
                                      np.array([folds[r] for r in beats.records]))
        cnn_pred = probs.argmax(axis=1)
        y_pred = sveb_labels(cnn_pred, sveb_cv.is_s)
        train_config["sveb_thresholds"] = {str(k): v for k, v in sveb_cv.thresholds.items()}
    else:
        cnn_probs = runtime.predict_beats(beats.segments, beats.rr)
        cnn_pred = cnn_probs.argmax(axis=1)
        y_pred = runtime.beat_labels(cnn_probs, feats)
    m = beat_metrics(beats.labels, y_pred, beats.records)
    cnn_only = beat_metrics(beats.labels, cnn_pred, beats.records, n_boot=0)  # Se/PPV only
    out = {"records": len(recs), "beats": int(beats.labels.size), "classes": m["classes"],
           "accuracy": m["accuracy"], "model_version": runtime.model_version,
           "mode": f"cv{cv_folds}" if cv else "shipped-weights",
           **({"train_config": train_config} if cv else {}),
           "confusion": m["confusion"],
           "cnn_alone": {"classes": {c: {"se": v["se"], "ppv": v["ppv"]}
                                     for c, v in cnn_only["classes"].items()},
                         "accuracy": cnn_only["accuracy"]}}
    _emit(out, as_json)


def train_sveb(
    data_dir: Path = typer.Option(None, help="MIT-BIH folder (default <data_dir>/mitdb)."),
    out: Path = typer.Option(Path("models/weights"), help="Where sveb.json is written."),
    cv_folds: int = typer.Option(5, help="Patient-wise folds (the beat model's fold design)."),
    threads: int = typer.Option(2),
    cache_dir: Path = typer.Option(_DEFAULT_CACHE),
) -> None:
    """Train the S expert (N against S for the beats the CNN calls N or S): patient-wise CV
    with nested thresholds, then a final fit on all records. Deterministic (Newton fit)."""
    from models import data as md
    from models.evaluation import beat_metrics
    from models.runtime import ModelRuntime
    from models.sveb import SvebModel, best_f1_threshold, sveb_labels
    from models.training import cross_validate_sveb, record_folds

    _torch_threads(threads)
    t0 = time.time()
    data_dir = Path(data_dir or _data_root() / "mitdb")
    recs = md.list_mitdb_records(data_dir)
    beats = md.load_mitdb_beats(data_dir, recs, cache_dir)
    runtime = ModelRuntime.load_default(with_sveb=False)
    feats = _sveb_inputs(data_dir, beats, runtime)
    folds = record_folds(beats.records, beats.labels, cv_folds)
    fold_of = np.array([folds[r] for r in beats.records])
    cv = cross_validate_sveb(feats, beats.labels, fold_of)
    y = (beats.labels == md.BEAT_CLASSES.index("S")).astype(np.int64)
    cnn_probs, cnn_config = _cnn_cv_probs(beats, runtime, data_dir, cv_folds, None, None, cache_dir)
    cnn_pred = cnn_probs.argmax(axis=1)
    combined = beat_metrics(beats.labels, sveb_labels(cnn_pred, cv.is_s), beats.records)
    cnn_only = beat_metrics(beats.labels, cnn_pred, beats.records)
    alone_tp = int((cv.is_s & (y == 1)).sum())
    threshold = best_f1_threshold(cv.probs, y)
    model = SvebModel.fit(feats, y, threshold)
    report = {
        "fold_design": f"{cv_folds} folds grouped by record, the beat model's (models.training.record_folds)",
        "nested_thresholds": {str(k): v for k, v in cv.thresholds.items()},
        "expert_alone_cv": {"s_se": round(100 * alone_tp / max(int(y.sum()), 1), 2),
                            "s_ppv": round(100 * alone_tp / max(int(cv.is_s.sum()), 1), 2)},
        "cnn_cv_config": cnn_config,
        "cnn_alone_cv": {"classes": cnn_only["classes"], "accuracy": cnn_only["accuracy"]},
        "combined_cv": {"classes": combined["classes"], "accuracy": combined["accuracy"],
                        "confusion": combined["confusion"]},
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    doc = {**model.to_dict(), "records": recs, "n_beats": int(y.size), "n_s": int(y.sum()),
           "threshold_rule": "best F1 of S on the held-out CV probabilities",
           "rhythm_model": runtime.rhythm_meta["version"], "cv": report,
           "train_seconds": round(time.time() - t0, 1)}
    path = Path(out) / "sveb.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    _emit({"weights": str(path), "threshold": threshold, "cv": report}, True)


def train_rhythm(
    data_dir: Path = typer.Option(None, help="CinC 2017 folder (default <data_dir>/cinc2017)."),
    out: Path = typer.Option(Path("models/weights"), help="Where rhythm.pt/.json are written."),
    seed: int = typer.Option(7),
    epochs: int = typer.Option(25),
    cv_folds: int = typer.Option(5, help="Held-out CV folds before the final fit; 0 skips."),
    rr_features: bool = typer.Option(True, help="Give the network the window's RR-irregularity features."),
    crops_per_record: int = typer.Option(2, help="Random 10-s crops of each recording per epoch."),
    threads: int = typer.Option(2),
    cache_dir: Path = typer.Option(_DEFAULT_CACHE),
) -> None:
    """Train the rhythm classifier (CV report, then a final fit on all recordings)."""
    from models import data as md
    from models import preprocess as pp
    from models.evaluation import rhythm_metrics
    from models.packaging import save_model
    from models.runtime import rhythm_metadata
    from models.training import RhythmTrainConfig, cross_validate_rhythm, recording_rpeaks, train_rhythm_model

    _torch_threads(threads)
    data_dir = Path(data_dir or _data_root() / "cinc2017")
    names, signals, labels = md.load_cinc2017(data_dir, cache_dir=cache_dir)
    peaks = recording_rpeaks(signals) if rr_features else None
    cfg = RhythmTrainConfig(epochs=epochs, crops_per_record=crops_per_record)
    report: dict[str, Any] = {}
    t0 = time.time()
    if cv_folds > 1:
        with _progress("rhythm CV") as cb:
            folds, probs = cross_validate_rhythm(signals, labels, cv_folds, seed, cfg, cb, peaks)
        report = rhythm_metrics(labels, probs.argmax(axis=1))
        report["fold_design"] = (f"{cv_folds} folds stratified by label, one recording per "
                                 f"fold (seed {seed})")
        report["held_out_records"] = {str(f): [names[i] for i in np.flatnonzero(folds == f)]
                                      for f in range(cv_folds)}
    with _progress("rhythm final") as cb:
        model = train_rhythm_model(signals, labels, seed, cfg, cb, peaks)
    cv_summary = {k: v for k, v in report.items() if k != "held_out_records"}
    meta = rhythm_metadata(seed=seed, epochs=epochs, crops_per_record=crops_per_record, n_records=len(names),
                           rr_features=list(pp.RHYTHM_RR_FEATURES) if rr_features else [],
                           class_counts=np.bincount(labels, minlength=4).tolist(),
                           cv=cv_summary, train_seconds=round(time.time() - t0, 1))
    path = save_model(model, out, "rhythm", meta)
    if report:
        (Path(out) / "rhythm_cv_folds.json").write_text(
            json.dumps(report["held_out_records"]) + "\n")
    _emit({"weights": str(path), "cv": cv_summary, "records": len(names)}, True)


def eval_rhythm(
    data_dir: Path = typer.Option(None, help="CinC 2017 folder (default <data_dir>/cinc2017)."),
    records: str = typer.Option(None, help="Comma-separated records (default: all)."),
    as_json: bool = typer.Option(False, "--json"),
    cv: bool = typer.Option(False, "--cv", help="Held-out CV: retrain per fold."),
    cv_folds: int = typer.Option(5),
    epochs: int = typer.Option(None, help="CV epochs (default: the shipped model's, from rhythm.json)."),
    seed: int = typer.Option(None, help="CV seed (default: the shipped model's)."),
    threads: int = typer.Option(2),
    cache_dir: Path = typer.Option(_DEFAULT_CACHE),
) -> None:
    """Score the rhythm classifier per recording (crops averaged), F1 as in CinC 2017."""
    from models import data as md
    from models.evaluation import rhythm_metrics
    from models.runtime import ModelRuntime
    from models.training import cross_validate_rhythm, recording_crops, recording_rpeaks, rhythm_config_of

    _torch_threads(threads)
    data_dir = Path(data_dir or _data_root() / "cinc2017")
    recs = _split_records(records)
    names, signals, labels = md.load_cinc2017(data_dir, recs, cache_dir=cache_dir)
    runtime = ModelRuntime.load_default()
    peaks = recording_rpeaks(signals)
    train_config: dict[str, Any] = {}
    if cv:
        cfg = rhythm_config_of(runtime.rhythm_meta, epochs)
        seed = seed if seed is not None else int(runtime.rhythm_meta.get("seed", 7))
        train_config = {"epochs": cfg.epochs, "crops_per_record": cfg.crops_per_record, "seed": seed}
        with _progress("rhythm CV") as cb:
            _, probs = cross_validate_rhythm(signals, labels, cv_folds, seed, cfg, cb, peaks)
    else:
        probs = np.zeros((len(signals), 4), dtype=np.float32)
        with _progress("rhythm eval") as cb:
            for i, x in enumerate(signals):
                probs[i] = runtime.predict_rhythm(*recording_crops(x, peaks[i])).mean(axis=0)
                cb(i + 1, len(signals), "")
    m = rhythm_metrics(labels, probs.argmax(axis=1))
    out = {"records": len(names), "f1": m["f1"], "f1_mean_nao": m["f1_mean_nao"],
           "f1_ci95": m["f1_ci95"], "f1_mean_nao_ci95": m["f1_mean_nao_ci95"],
           "model_version": runtime.model_version,
           "mode": f"cv{cv_folds}" if cv else "shipped-weights",
           **({"train_config": train_config} if cv else {}), "confusion": m["confusion"]}
    _emit(out, as_json)
