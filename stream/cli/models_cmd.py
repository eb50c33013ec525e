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


def _beat_training_set(data_dir: Path, recs: list[str], svdb_dir: Path | None,
                       svdb_n_share: float, seed: int, cache_dir: Path) -> Any:
    """MIT-BIH beats of ``recs`` plus, with ``svdb_dir``, the SVDB beats (all S/V/F/Q, a
    seeded share of N): the SVDB records are train-only in every fold."""
    from models import data as md

    beats = md.load_mitdb_beats(data_dir, recs, cache_dir)
    if svdb_dir is None:
        return beats
    svdb = md.subsample_majority(md.load_svdb_beats(svdb_dir, None, cache_dir), svdb_n_share, seed)
    return md.BeatSet.concat([beats, svdb])


def train_beats(
    data_dir: Path = typer.Option(None, help="MIT-BIH folder (default <data_dir>/mitdb)."),
    noise_dir: Path = typer.Option(None, help="NSTDB folder (default: sibling 'nstdb')."),
    svdb_dir: Path = typer.Option(None, help="SVDB folder: its records join every training fold (never a test fold)."),
    svdb_n_share: float = typer.Option(0.35, help="Share of SVDB's N beats used (all S/V kept)."),
    out: Path = typer.Option(Path("models/weights"), help="Where beats.pt/.json are written."),
    seed: int = typer.Option(7),
    epochs: int = typer.Option(12),
    cv_folds: int = typer.Option(5, help="Patient-wise CV folds before the final fit; 0 skips."),
    records: str = typer.Option(None, help="Comma-separated records (default: all)."),
    class_weight_power: float = typer.Option(0.6, help="Class weights = (1/frequency)^power."),
    segment_dropout: float = typer.Option(0.0, help="Share of training beats with the waveform blanked."),
    n_leads: int = typer.Option(2, help="1: primary lead only (beats-1.0.0); 2: second lead where present."),
    lead_dropout: float = typer.Option(0.5, help="Share of training beats with the second lead blanked."),
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
    beats = _beat_training_set(data_dir, recs, svdb_dir, svdb_n_share, seed, cache_dir)
    noise = md.load_noise(noise_dir) if noise_dir.exists() else None
    cfg = BeatTrainConfig(epochs=epochs, class_weight_power=class_weight_power,
                          segment_dropout=segment_dropout, n_leads=n_leads,
                          lead_dropout=lead_dropout)
    svdb_info = {"svdb": svdb_dir is not None, "svdb_n_share": svdb_n_share if svdb_dir else None}
    report: dict[str, Any] = {}
    t0 = time.time()
    if cv_folds > 1:
        with _progress("beats CV") as cb:
            cv = cross_validate_beats(beats, noise, cv_folds, seed, cfg, cb)
        report = beat_metrics(cv.y_true, cv.y_pred, cv.records)
        report["one_lead"] = {k: v for k, v in beat_metrics(
            cv.y_true, cv.probs_one_lead.argmax(axis=1), cv.records).items() if k != "confusion"}
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        np.savez(_cnn_cv_cache(cache_dir, _cv_config(cfg, seed, cv_folds, noise is not None,
                                                     svdb_info)),
                 probs=cv.probs, labels=cv.y_true, records=cv.records,
                 probs_one_lead=cv.probs_one_lead)
        report["per_record_errors"] = {
            r: {"n": int((cv.records == r).sum()),
                "wrong": int(((cv.y_pred != cv.y_true) & (cv.records == r)).sum())}
            for r in sorted(set(cv.records.tolist()))}
        report["folds"] = {str(f): sorted(r for r, g in cv.folds.items() if g == f)
                           for f in range(cv_folds)}
        report["fold_design"] = (f"{cv_folds} folds of MIT-BIH records (patient-wise), greedy "
                                 "balancing of S/V beats across folds"
                                 + ("; SVDB records in every training fold, never scored"
                                    if svdb_dir else ""))
    with _progress("beats final") as cb:
        model = train_beat_model(beats, noise, seed, cfg, cb)
    meta = beat_metadata(n_leads=n_leads, seed=seed, epochs=epochs,
                         class_weight_power=class_weight_power,
                         segment_dropout=segment_dropout, lead_dropout=lead_dropout,
                         records=recs, noise=noise is not None, **svdb_info,
                         svdb_records=sorted({r for r in beats.records.tolist() if r.startswith(md.SVDB_PREFIX)}),
                         n_beats=int(beats.labels.size),
                         class_counts=np.bincount(beats.labels, minlength=5).tolist(),
                         cv=report, train_seconds=round(time.time() - t0, 1))
    path = save_model(model, out, "beats", meta)
    _emit({"weights": str(path), "cv": report, "records": len(recs)}, True)


def _cv_config(cfg: Any, seed: int, folds: int, noise: bool, svdb_info: dict[str, Any]
               ) -> dict[str, Any]:
    return {"epochs": cfg.epochs, "class_weight_power": cfg.class_weight_power,
            "segment_dropout": cfg.segment_dropout, "seed": seed, "folds": folds,
            "noise": noise, "n_leads": cfg.n_leads, "lead_dropout": cfg.lead_dropout,
            **({"svdb_n_share": svdb_info["svdb_n_share"]} if svdb_info.get("svdb") else {})}


def _sveb_inputs(data_dir: Path, beats: Any, runtime: Any, svdb_dir: Path | None = None,
                 cache_dir: Path | None = None) -> np.ndarray:
    """S-expert features of ``beats`` (MIT-BIH, and SVDB records from ``svdb_dir``), with the
    runtime's rhythm probabilities; cached per rhythm model and beat list."""
    import hashlib

    from models.training import beat_rhythm_probs, beatset_sveb_features

    cache = None
    if cache_dir is not None:
        key = hashlib.sha256(beats.records.astype(str).tobytes() + beats.r_samples.tobytes()
                             + runtime.rhythm_meta["version"].encode()).hexdigest()[:16]
        cache = Path(cache_dir) / f"sveb_rhythm_{key}.npy"
    if cache is not None and cache.exists():
        rhythm = np.load(cache)
    else:
        with _progress("rhythm context") as cb:
            rhythm = beat_rhythm_probs(data_dir, beats, runtime.predict_rhythm, cb, svdb_dir)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, rhythm)
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
    """Held-out CNN probabilities of the MIT-BIH ``beats`` under the shipped configuration
    (retrained per fold, with SVDB in every training fold when the shipped model was
    trained with it), reused from ``cache_dir`` when ``train beats``, ``train sveb`` or
    ``eval beats --cv`` already trained the same folds with the same code."""
    from models import data as md
    from models.training import beat_config_of, cross_validate_beats

    cfg = beat_config_of(runtime.beat_meta, epochs)
    seed = seed if seed is not None else int(runtime.beat_meta.get("seed", 7))
    noise_dir = Path(data_dir).parent / "nstdb"
    noise = md.load_noise(noise_dir) if noise_dir.exists() else None
    svdb_info = {"svdb": bool(runtime.beat_meta.get("svdb")),
                 "svdb_n_share": runtime.beat_meta.get("svdb_n_share")}
    config = _cv_config(cfg, seed, folds, noise is not None, svdb_info)
    cache = _cnn_cv_cache(cache_dir, config)
    if cache.exists():
        z = np.load(cache)
        if np.array_equal(z["labels"], beats.labels) and np.array_equal(z["records"], beats.records):
            return z["probs"], config
    train = beats
    if svdb_info["svdb"]:
        svdb = md.load_svdb_beats(Path(data_dir).parent / "svdb", None, cache_dir)
        train = md.BeatSet.concat([beats, md.subsample_majority(
            svdb, float(svdb_info["svdb_n_share"]), seed)])
    with _progress("beats CV") as cb:
        res = cross_validate_beats(train, noise, folds, seed, cfg, cb)
    if not (np.array_equal(res.y_true, beats.labels) and np.array_equal(res.records, beats.records)):
        raise RuntimeError("held-out beats do not line up with the MIT-BIH beats scored")
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    np.savez(cache, probs=res.probs, labels=beats.labels, records=beats.records,
             probs_one_lead=res.probs_one_lead)
    return res.probs, config


def _svdb_for_sveb(svdb_dir: Path | None, runtime: Any, data_dir: Path, cache_dir: Path
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """(features, labels) of every SVDB beat for the S expert's training folds (all its
    beats: the logistic fit is cheap), or None without an SVDB folder."""
    if svdb_dir is None:
        return None
    from models import data as md

    svdb = md.load_svdb_beats(svdb_dir, None, cache_dir)
    return _sveb_inputs(data_dir, svdb, runtime, svdb_dir, cache_dir), svdb.labels


def _sveb_cv(feats: np.ndarray, labels: np.ndarray, records: np.ndarray, cv_folds: int,
             extra: tuple[np.ndarray, np.ndarray] | None) -> Any:
    """Nested patient-wise CV of the S expert on the MIT-BIH beats, with ``extra`` (SVDB)
    beats in every training fold; results are for the MIT-BIH beats only."""
    from models.training import TRAIN_ONLY, beat_fold_of, cross_validate_sveb

    fold_of = beat_fold_of(records, labels, cv_folds)
    n = labels.size
    if extra is not None:
        feats = np.concatenate([feats, extra[0]])
        labels = np.concatenate([labels, extra[1]])
        fold_of = np.concatenate([fold_of, np.full(extra[1].size, TRAIN_ONLY)])
    res = cross_validate_sveb(feats, labels, fold_of)
    res.probs, res.is_s = res.probs[:n], res.is_s[:n]
    return res


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
    CNN, with N against S decided by the S expert as in the stream. With ``--cv``, MIT-BIH
    patients held out of training; SVDB (when the shipped models were trained with it) is
    in every training fold and never scored."""
    from models import data as md
    from models.evaluation import beat_metrics
    from models.packaging import WEIGHTS_DIR
    from models.runtime import ModelRuntime
    from models.sveb import sveb_labels

    _torch_threads(threads)
    data_dir = Path(data_dir or _data_root() / "mitdb")
    recs = _split_records(records) or md.list_mitdb_records(data_dir)
    beats = md.load_mitdb_beats(data_dir, recs, cache_dir)
    runtime = ModelRuntime.load_default()
    feats = _sveb_inputs(data_dir, beats, runtime, None, cache_dir)
    train_config: dict[str, Any] = {}
    one_lead: dict[str, Any] = {}
    if cv:
        probs, train_config = _cnn_cv_probs(beats, runtime, data_dir, cv_folds, seed, epochs,
                                            cache_dir)
        sveb_doc = json.loads((WEIGHTS_DIR / "sveb.json").read_text())
        svdb_dir = Path(data_dir).parent / "svdb" if sveb_doc.get("svdb") else None
        sveb_cv = _sveb_cv(feats, beats.labels, beats.records, cv_folds,
                           _svdb_for_sveb(svdb_dir, runtime, data_dir, cache_dir))
        cnn_pred = probs.argmax(axis=1)
        y_pred = sveb_labels(cnn_pred, sveb_cv.is_s)
        train_config["sveb_thresholds"] = {str(k): v for k, v in sveb_cv.thresholds.items()}
        train_config["sveb_svdb"] = svdb_dir is not None
        one_cache = _cnn_cv_cache(cache_dir, {k: v for k, v in train_config.items()
                                              if not k.startswith("sveb")})
        if one_cache.exists() and "probs_one_lead" in np.load(one_cache).files:
            one_probs = np.load(one_cache)["probs_one_lead"]
            # Both figures come from the same held-out models; the stream's is the one its
            # runtime feeds (runtime_leads), the other is reported beside it.
            other_probs, probs = ((probs, one_probs) if runtime.beat_leads == 1
                                  else (one_probs, probs))
            cnn_pred = probs.argmax(axis=1)
            y_pred = sveb_labels(cnn_pred, sveb_cv.is_s)
            m1 = beat_metrics(beats.labels, sveb_labels(other_probs.argmax(axis=1), sveb_cv.is_s),
                              beats.records)
            one_lead = {"leads": 2 if runtime.beat_leads == 1 else 1,
                        "classes": m1["classes"], "accuracy": m1["accuracy"]}
    else:
        cnn_probs = runtime.predict_beats(np.ascontiguousarray(beats.segments[:, :runtime.beat_leads]),
                                          beats.rr)
        cnn_pred = cnn_probs.argmax(axis=1)
        y_pred = runtime.beat_labels(cnn_probs, feats)
    m = beat_metrics(beats.labels, y_pred, beats.records)
    cnn_only = beat_metrics(beats.labels, cnn_pred, beats.records, n_boot=0)  # Se/PPV only
    per_record = {r: {c: {"n": int(((beats.records == r) & (beats.labels == i)).sum()),
                          "tp": int(((beats.records == r) & (beats.labels == i) & (y_pred == i)).sum()),
                          "fp": int(((beats.records == r) & (beats.labels != i) & (y_pred == i)).sum())}
                      for i, c in enumerate(md.BEAT_CLASSES) if c in ("S", "V")}
                  for r in sorted(set(beats.records.tolist()))}
    out = {"records": len(recs), "beats": int(beats.labels.size), "classes": m["classes"],
           "accuracy": m["accuracy"], "model_version": runtime.model_version,
           "mode": f"cv{cv_folds}" if cv else "shipped-weights",
           **({"train_config": train_config} if cv else {}),
           "runtime_leads": runtime.beat_leads,
           **({"other_lead_setting": one_lead} if one_lead else {}),
           "confusion": m["confusion"],
           "cnn_alone": {"classes": {c: {"se": v["se"], "ppv": v["ppv"]}
                                     for c, v in cnn_only["classes"].items()},
                         "accuracy": cnn_only["accuracy"]},
           "per_record_s_v": per_record}
    _emit(out, as_json)


def train_sveb(
    data_dir: Path = typer.Option(None, help="MIT-BIH folder (default <data_dir>/mitdb)."),
    svdb_dir: Path = typer.Option(None, help="SVDB folder: its beats join every training fold (never scored)."),
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

    _torch_threads(threads)
    t0 = time.time()
    data_dir = Path(data_dir or _data_root() / "mitdb")
    recs = md.list_mitdb_records(data_dir)
    beats = md.load_mitdb_beats(data_dir, recs, cache_dir)
    runtime = ModelRuntime.load_default(with_sveb=False)
    feats = _sveb_inputs(data_dir, beats, runtime, None, cache_dir)
    extra = _svdb_for_sveb(svdb_dir, runtime, data_dir, cache_dir)
    cv = _sveb_cv(feats, beats.labels, beats.records, cv_folds, extra)
    y = (beats.labels == md.BEAT_CLASSES.index("S")).astype(np.int64)
    cnn_probs, cnn_config = _cnn_cv_probs(beats, runtime, data_dir, cv_folds, None, None, cache_dir)
    cnn_pred = cnn_probs.argmax(axis=1)
    combined = beat_metrics(beats.labels, sveb_labels(cnn_pred, cv.is_s), beats.records)
    cnn_only = beat_metrics(beats.labels, cnn_pred, beats.records)
    alone_tp = int((cv.is_s & (y == 1)).sum())
    # The shipped threshold: best F1 on the held-out probabilities of the MIT-BIH beats.
    threshold = best_f1_threshold(cv.probs, y)
    all_feats, all_y = feats, y
    if extra is not None:
        all_feats = np.concatenate([feats, extra[0]])
        all_y = np.concatenate([y, (extra[1] == md.BEAT_CLASSES.index("S")).astype(np.int64)])
    model = SvebModel.fit(all_feats, all_y, threshold)
    report = {
        "fold_design": f"{cv_folds} folds grouped by MIT-BIH record, the beat model's "
                       "(models.training.beat_fold_of)"
                       + ("; SVDB beats in every training fold, never scored" if extra else ""),
        "nested_thresholds": {str(k): v for k, v in cv.thresholds.items()},
        "expert_alone_cv": {"s_se": round(100 * alone_tp / max(int(y.sum()), 1), 2),
                            "s_ppv": round(100 * alone_tp / max(int(cv.is_s.sum()), 1), 2)},
        "cnn_cv_config": cnn_config,
        "cnn_alone_cv": {"classes": cnn_only["classes"], "accuracy": cnn_only["accuracy"]},
        "combined_cv": {"classes": combined["classes"], "accuracy": combined["accuracy"],
                        "confusion": combined["confusion"]},
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    doc = {**model.to_dict(), "records": recs, "svdb": extra is not None,
           "n_beats": int(all_y.size), "n_s": int(all_y.sum()),
           "threshold_rule": "best F1 of S on the held-out CV probabilities of the MIT-BIH beats",
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
    mitdb_dir: Path = typer.Option(None, help="MIT-BIH folder: its rhythm episodes, as 30-s recordings, "
                                              "join every training fold (never scored)."),
    mitdb_n_share: float = typer.Option(0.1, help="Share of MIT-BIH sinus (N) pieces used (all A, O kept)."),
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
    extra = None
    extra_info: dict[str, Any] = {}
    if mitdb_dir is not None:
        _, x_sigs, x_labels = md.load_mitdb_rhythm_chunks(Path(mitdb_dir), md.list_mitdb_records(Path(mitdb_dir)))
        keep = (x_labels != 0) | (np.random.default_rng(seed).random(x_labels.size) < mitdb_n_share)
        x_sigs = [x for x, k in zip(x_sigs, keep, strict=True) if k]
        x_labels = x_labels[keep]
        extra = (x_sigs, x_labels, recording_rpeaks(x_sigs) if rr_features else None)
        extra_info = {"mitdb_rhythm_chunks": np.bincount(x_labels, minlength=4).tolist(),
                      "mitdb_n_share": mitdb_n_share}
    report: dict[str, Any] = {}
    t0 = time.time()
    if cv_folds > 1:
        with _progress("rhythm CV") as cb:
            folds, probs = cross_validate_rhythm(signals, labels, cv_folds, seed, cfg, cb, peaks,
                                                 extra)
        report = rhythm_metrics(labels, probs.argmax(axis=1))
        report["fold_design"] = (f"{cv_folds} folds stratified by label, one recording per "
                                 f"fold (seed {seed})")
        report["held_out_records"] = {str(f): [names[i] for i in np.flatnonzero(folds == f)]
                                      for f in range(cv_folds)}
    all_sigs, all_labels, all_peaks = list(signals), labels, peaks
    if extra is not None:
        all_sigs += list(extra[0])
        all_labels = np.concatenate([labels, extra[1]])
        all_peaks = None if peaks is None or extra[2] is None else [*peaks, *extra[2]]
    if cv_folds > 1:  # held-out probabilities kept for calibration / comparison runs
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        np.save(Path(cache_dir) / f"rhythm_cv_probs_{'mitdb' if extra else 'cinc'}_{seed}.npy", probs)
    with _progress("rhythm final") as cb:
        model = train_rhythm_model(all_sigs, all_labels, seed, cfg, cb, all_peaks)
    cv_summary = {k: v for k, v in report.items() if k != "held_out_records"}
    meta = rhythm_metadata(seed=seed, epochs=epochs, crops_per_record=crops_per_record, n_records=len(names),
                           **extra_info,
                           rr_features=list(pp.RHYTHM_RR_FEATURES) if rr_features else [],
                           class_counts=np.bincount(labels, minlength=4).tolist(),
                           cv=cv_summary, train_seconds=round(time.time() - t0, 1))
    path = save_model(model, out, "rhythm", meta)
    if report:
        (Path(out) / "rhythm_cv_folds.json").write_text(
            json.dumps(report["held_out_records"]) + "\n")
    _emit({"weights": str(path), "cv": cv_summary, "records": len(names)}, True)


def rhythm_curve(
    data_dir: Path = typer.Option(None, help="CinC 2017 folder (default <data_dir>/cinc2017)."),
    shares: str = typer.Option("0.25,0.5,1.0", help="Shares of each training fold to train on."),
    seed: int = typer.Option(7),
    epochs: int = typer.Option(25),
    cv_folds: int = typer.Option(5),
    crops_per_record: int = typer.Option(2),
    threads: int = typer.Option(2),
    out: Path = typer.Option(None, help="Also write rhythm_curve.json and rhythm_curve.png here."),
    cache_dir: Path = typer.Option(_DEFAULT_CACHE),
) -> None:
    """Learning curve of the rhythm model: the same held-out CV folds, each model trained on
    a share of its training fold (stratified, seeded), shipped settings otherwise. Prints
    F1 per share as JSON; if the curve still rises at share 1.0, more recordings would
    help."""
    from models import data as md
    from models.evaluation import rhythm_metrics
    from models.training import RhythmTrainConfig, cross_validate_rhythm, recording_rpeaks

    try:  # checked before minutes of loading, not after
        share_list = [float(x) for x in shares.split(",")]
    except ValueError as exc:
        raise typer.BadParameter(f"shares must be numbers separated by commas, got {shares!r}") from exc
    if not all(0.0 < x <= 1.0 for x in share_list):
        raise typer.BadParameter(f"each share must be in (0, 1], got {shares!r}")
    _torch_threads(threads)
    data_dir = Path(data_dir or _data_root() / "cinc2017")
    names, signals, labels = md.load_cinc2017(data_dir, cache_dir=cache_dir)
    peaks = recording_rpeaks(signals)
    cfg = RhythmTrainConfig(epochs=epochs, crops_per_record=crops_per_record)
    points: list[dict[str, Any]] = []
    t0 = time.time()
    for share in share_list:
        with _progress(f"rhythm CV, training share {share:g}") as cb:
            _, probs = cross_validate_rhythm(signals, labels, cv_folds, seed, cfg, cb, peaks, train_share=share)
        m = rhythm_metrics(labels, probs.argmax(axis=1))
        points.append({"train_share": share,
                       "training_recordings_per_fold": round(share * len(names) * (cv_folds - 1) / cv_folds),
                       "f1_mean_nao": m["f1_mean_nao"], "f1_mean_nao_ci95": m["f1_mean_nao_ci95"],
                       "f1": m["f1"], "f1_ci95": m["f1_ci95"]})
    report = {"how": (f"{cv_folds}-fold CV stratified by label (seed {seed}), the same held-out folds "
                      "for every share (cross-validated)"), "recordings": len(names), "points": points,
              "seconds": round(time.time() - t0, 1)}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "rhythm_curve.json").write_text(json.dumps(report, indent=2) + "\n")
        from stream.replay.report import plot_learning_curve

        plot_learning_curve(points, out / "rhythm_curve.png",
                            f"Rhythm model learning curve ({cv_folds}-fold CV, CinC 2017)")
    _emit(report, True)


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
