"""Load recordings (PhysioNet WFDB, BIDMC CSV, simulator output) into one shape.

Pure and read-only: nothing here writes next to the recordings or talks to Kafka/Redis.

Every loader returns :class:`Recording` objects whose ``channels`` map a pipeline signal
(``ecg``/``ecg2``/``ppg``/``abp``/``resp``) to ``(samples float32, fs)``. Channel mapping:

* ECG: the first lead (``ecg``, the one the models classify) is lead II (or MLII, the
  modified lead II of MIT-BIH) because the pipeline's QRS detector and models are tuned
  on it; it is only passed over when its quality is clearly worse than another lead's
  (see :func:`ecg_lead_quality`). The best of the remaining leads, if any, is the second
  lead (``ecg2``), which corroborates the first one's pauses and rates.
* PPG: ``PLETH``. ABP: the arterial line (``ABP``, ``ART``). RESP: ``RESP`` (impedance
  pneumography). Everything else is ignored.

Missing samples (NaN; CinC 2015 has them) are handled by :func:`fill_short_gaps`: runs up
to :data:`MAX_INTERPOLATED_GAP_S` are linearly interpolated (a dropped sample or two of
the acquisition system, shorter than a QRS complex, so interpolation cannot hide or fake
a beat); longer runs stay NaN and the replayer sends no chunks for them, so the pipeline
sees a real gap (signal loss), exactly as it would from a device.

All annotation times are seconds from the start of the record.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal as sps

from stream.schema import SAMPLING_RATE_RANGE_HZ, Signal

# Runs of NaN up to this length are interpolated; longer ones are gaps (see module doc).
MAX_INTERPOLATED_GAP_S = 0.1
# Lead II is kept unless its quality is below this share of the best lead's.
PREFERRED_LEAD_MIN_SHARE = 0.6
PREFERRED_ECG_LEADS = ("II", "MLII")
ECG_LEAD_NAMES = {
    "I",
    "II",
    "III",
    "AVR",
    "AVL",
    "AVF",
    "V",
    "V1",
    "V2",
    "V3",
    "V4",
    "V5",
    "V6",
    "MLII",
    "MLI",
    "MLIII",
    "ML",
    "MCL",
    "MCL1",
    "MV2",
    "ECG",
    "ECG1",
    "ECG2",
    "D3",
}
PPG_NAMES = {"PLETH", "PPG", "PLETHYSMOGRAM"}
RESP_NAMES = {"RESP", "RESPIRATION", "IMPEDANCE"}
ABP_NAMES = {"ABP", "ART", "IBP", "ARTERIAL"}

SUITES = ("challenge2015", "mitdb", "bidmc", "cinc2017", "synthetic")


@dataclass(frozen=True)
class RhythmEpisode:
    label: str  # the annotation's label, e.g. "(AFIB", or an alert type for synthetic truth
    start_s: float
    end_s: float


@dataclass(frozen=True)
class AlarmLabel:
    """CinC 2015: the bedside monitor's alarm and whether reviewers judged it true."""

    alarm_type: str  # Asystole, Bradycardia, Tachycardia, Ventricular_Tachycardia, Ventricular_Flutter_Fib
    time_s: float
    is_true: bool


@dataclass
class Annotations:
    beat_times_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    beat_symbols: list[str] = field(default_factory=list)
    rhythm: list[RhythmEpisode] = field(default_factory=list)
    alarms: list[AlarmLabel] = field(default_factory=list)
    # One array of breath times per annotator (BIDMC has two).
    breaths_s: list[np.ndarray] = field(default_factory=list)
    # Ground-truth alert episodes (simulator): label is the alert type.
    episodes: list[RhythmEpisode] = field(default_factory=list)
    # Alert types a correct monitor may also raise during an episode (simulator "tolerated").
    tolerated: list[RhythmEpisode] = field(default_factory=list)
    label: str | None = None  # whole-record label (CinC 2017: N, A, O, ~)


@dataclass
class Recording:
    name: str
    patient_id: str
    channels: dict[Signal, tuple[np.ndarray, float]]
    annotations: Annotations = field(default_factory=Annotations)
    source: str = ""  # suite / database name
    channel_names: dict[Signal, str] = field(default_factory=dict)  # original channel per signal

    @property
    def duration_s(self) -> float:
        return max((len(x) / fs for x, fs in self.channels.values()), default=0.0)

    def truncated(self, end_s: float) -> Recording:
        """The first ``end_s`` seconds (a view, the samples are not copied)."""
        channels = {sig: (x[: math.ceil(end_s * fs)], fs) for sig, (x, fs) in self.channels.items()}
        return Recording(self.name, self.patient_id, channels, self.annotations, self.source, self.channel_names)


# ---------------------------------------------------------------- signal conditioning


def nan_runs(x: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index ranges of consecutive NaNs."""
    mask = np.isnan(x)
    if not mask.any():
        return []
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def fill_short_gaps(x: np.ndarray, fs: float, max_gap_s: float = MAX_INTERPOLATED_GAP_S) -> np.ndarray:
    """Linearly interpolate NaN runs of at most ``max_gap_s``; longer runs stay NaN."""
    runs = nan_runs(x)
    if not runs:
        return x
    out = np.array(x, dtype=np.float32, copy=True)
    limit = max(1, round(max_gap_s * fs))
    n = len(out)
    for start, end in runs:
        if end - start > limit:
            continue
        left = start - 1
        right = end
        if left < 0 and right >= n:
            continue
        if left < 0:
            out[start:end] = out[right]
        elif right >= n:
            out[start:end] = out[left]
        else:
            out[start:end] = np.linspace(out[left], out[right], end - start + 2, dtype=np.float32)[1:-1]
    return out


def resample_into_range(x: np.ndarray, fs: float, signal: Signal) -> tuple[np.ndarray, float]:
    """Pass through when the pipeline accepts ``fs``; otherwise polyphase-resample into range."""
    lo, hi = SAMPLING_RATE_RANGE_HZ[signal]
    if lo <= fs <= hi:
        return x, fs
    target = lo if fs < lo else hi
    # Rational approximation of target/fs; resample_poly applies the anti-alias filter.
    from fractions import Fraction

    frac = Fraction(target / fs).limit_denominator(100)
    filled = np.nan_to_num(x, nan=0.0)
    y = sps.resample_poly(filled, frac.numerator, frac.denominator).astype(np.float32)
    if np.isnan(x).any():
        # Keep gaps as gaps after resampling.
        mask = np.isnan(x).astype(np.float32)
        mask_r = sps.resample_poly(mask, frac.numerator, frac.denominator) > 0.01
        y[mask_r[: len(y)]] = np.nan
    return y, fs * frac.numerator / frac.denominator


def ecg_lead_quality(x: np.ndarray, fs: float) -> float:
    """0..1: share of usable 1-s segments times the QRS-band power share.

    A segment is unusable when it has NaNs or is flat (a disconnected lead). The QRS
    band (5-15 Hz) carries most QRS energy (Pan & Tompkins 1985); its share of 0.5-40 Hz
    power is low for leads dominated by baseline wander, noise or small QRS amplitude.
    """
    seg = int(fs)
    if len(x) < seg:
        return 0.0
    n_seg = len(x) // seg
    segments = x[: n_seg * seg].reshape(n_seg, seg)
    finite = np.isfinite(segments).all(axis=1)
    spread = np.zeros(n_seg)
    spread[finite] = np.ptp(segments[finite], axis=1)
    usable = finite & (spread > 1e-3)
    usable_share = float(usable.mean())
    if not usable.any():
        return 0.0
    data = segments[usable].ravel().astype(np.float64)
    f, pxx = sps.welch(data - data.mean(), fs=fs, nperseg=min(len(data), int(4 * fs)))
    total = pxx[(f >= 0.5) & (f <= 40)].sum()
    qrs = pxx[(f >= 5) & (f <= 15)].sum()
    ratio = float(qrs / total) if total > 0 else 0.0
    return usable_share * min(1.0, ratio / 0.5)


def rank_ecg_leads(leads: dict[str, tuple[np.ndarray, float]]) -> list[str]:
    """Lead names, the first lead first: lead II/MLII unless another lead is clearly better
    (see module doc); the others by quality, best first."""
    scores = {name: ecg_lead_quality(x, fs) for name, (x, fs) in leads.items()}
    ranked = sorted(scores, key=lambda k: -scores[k])
    preferred = next((n for n in leads if n.upper() in PREFERRED_ECG_LEADS), None)
    if preferred is not None and scores[preferred] >= PREFERRED_LEAD_MIN_SHARE * scores[ranked[0]]:
        ranked.remove(preferred)
        ranked.insert(0, preferred)
    return ranked


def map_channels(
    names: Sequence[str], columns: Sequence[np.ndarray], fs: float
) -> tuple[dict[Signal, tuple[np.ndarray, float]], dict[Signal, str]]:
    """Pick ECG/PPG/RESP among named channels; conditions NaNs and sampling rate."""
    ecg_leads: dict[str, tuple[np.ndarray, float]] = {}
    chosen: dict[Signal, str] = {}
    picked: dict[Signal, np.ndarray] = {}
    for name, col in zip(names, columns, strict=True):
        key = name.strip().upper()
        if key in ECG_LEAD_NAMES:
            ecg_leads[name.strip()] = (np.asarray(col, dtype=np.float32), fs)
        elif key in PPG_NAMES and Signal.PPG not in picked:
            picked[Signal.PPG] = np.asarray(col, dtype=np.float32)
            chosen[Signal.PPG] = name.strip()
        elif key in ABP_NAMES and Signal.ABP not in picked:
            picked[Signal.ABP] = np.asarray(col, dtype=np.float32)
            chosen[Signal.ABP] = name.strip()
        elif key in RESP_NAMES and Signal.RESP not in picked:
            picked[Signal.RESP] = np.asarray(col, dtype=np.float32)
            chosen[Signal.RESP] = name.strip()
    for sig, lead in zip((Signal.ECG, Signal.ECG2), rank_ecg_leads(ecg_leads), strict=False):
        picked[sig] = ecg_leads[lead][0]
        chosen[sig] = lead
    channels: dict[Signal, tuple[np.ndarray, float]] = {}
    for sig in (Signal.ECG, Signal.ECG2, Signal.PPG, Signal.ABP, Signal.RESP):
        if sig not in picked:
            continue
        x = fill_short_gaps(picked[sig], fs)
        if np.isnan(x).all():
            chosen.pop(sig)
            continue
        channels[sig] = resample_into_range(x, fs, sig)
    return channels, chosen


# ---------------------------------------------------------------- WFDB (PhysioNet)


def load_wfdb(record_path: str | Path, source: str = "", patient_id: str | None = None) -> Recording:
    """Any WFDB record; reads ``.atr`` beat/rhythm annotations when present."""
    import wfdb

    path = Path(record_path)
    stem = str(path.with_suffix("")) if path.suffix in (".hea", ".dat", ".mat") else str(path)
    rec = wfdb.rdrecord(stem)
    sig = rec.p_signal if rec.p_signal is not None else np.zeros((0, 0))
    columns = [sig[:, i] for i in range(sig.shape[1])]
    channels, chosen = map_channels(rec.sig_name, columns, float(rec.fs))
    name = Path(stem).name
    annotations = Annotations()
    if Path(stem + ".atr").exists():
        annotations = _wfdb_annotations(stem, float(rec.fs))
    return Recording(name, patient_id or name, channels, annotations, source, chosen)


def _wfdb_annotations(stem: str, fs: float) -> Annotations:
    import wfdb

    ann = wfdb.rdann(stem, "atr")
    samples = np.asarray(ann.sample, dtype=np.int64)
    symbols = list(ann.symbol)
    aux = list(ann.aux_note or [""] * len(symbols))
    beat_mask = np.array([s in BEAT_SYMBOLS for s in symbols], dtype=bool)
    times = samples / fs
    end_s = (samples.max() + 1) / fs if len(samples) else 0.0
    return Annotations(
        beat_times_s=times[beat_mask],
        beat_symbols=[s for s, b in zip(symbols, beat_mask, strict=True) if b],
        rhythm=rhythm_episodes(
            [(float(t), a.strip("\x00").strip()) for t, s, a in zip(times, symbols, aux, strict=True) if s == "+"],
            end_s,
        ),
    )


# MIT-BIH beat annotation codes (AAMI EC57 classes N S V F Q).
BEAT_SYMBOLS = set("NLRejAaJSVEFf/Q")


def rhythm_episodes(changes: Iterable[tuple[float, str]], end_s: float) -> list[RhythmEpisode]:
    """Rhythm-change annotations ``(time, "(AFIB")`` -> episodes lasting to the next change."""
    ordered = sorted((t, label) for t, label in changes if label.startswith("("))
    episodes = []
    for i, (t, label) in enumerate(ordered):
        stop = ordered[i + 1][0] if i + 1 < len(ordered) else end_s
        if stop > t:
            episodes.append(RhythmEpisode(label, t, stop))
    return episodes


def load_challenge2015(data_dir: str | Path, records: Sequence[str] | None = None, prefix: str = "") -> list[Recording]:
    """CinC 2015 records with their alarm label (the alarm fires at 5:00 = 300 s)."""
    root = Path(data_dir)
    labels = {}
    with open(root / "ALARMS") as f:
        for row in csv.reader(f):
            if len(row) >= 3:
                labels[row[0].strip()] = (row[1].strip(), row[2].strip() == "1")
    names = list(records) if records else _record_list(root)
    out = []
    for name in names:
        rec = load_wfdb(root / name, "challenge2015", f"{prefix}{name}")
        if name in labels:
            alarm_type, truth = labels[name]
            rec.annotations.alarms.append(AlarmLabel(alarm_type, CHALLENGE2015_ALARM_S, truth))
        out.append(rec)
    return out


CHALLENGE2015_ALARM_S = 300.0


def load_mitdb(data_dir: str | Path, records: Sequence[str] | None = None, prefix: str = "") -> list[Recording]:
    root = Path(data_dir)
    names = list(records) if records else _record_list(root)
    return [load_wfdb(root / n, "mitdb", f"{prefix}{n}") for n in names]


def load_cinc2017(data_dir: str | Path, records: Sequence[str] | None = None, prefix: str = "") -> list[Recording]:
    root = Path(data_dir)
    labels: dict[str, str] = {}
    ref = root / "REFERENCE.csv"
    if ref.exists():
        with open(ref) as f:
            labels = {row[0]: row[1] for row in csv.reader(f) if len(row) >= 2}
    names = list(records) if records else _record_list(root)
    out = []
    for n in names:
        # Single-lead ECG without a lead name: treat the one channel as the ECG.
        rec = load_wfdb(root / n, "cinc2017", f"{prefix}{n}")
        if Signal.ECG not in rec.channels:
            rec = _single_lead_wfdb(root / n, f"{prefix}{n}")
        rec.annotations.label = labels.get(n)
        out.append(rec)
    return out


def _single_lead_wfdb(stem: Path, patient_id: str) -> Recording:
    import wfdb

    r = wfdb.rdrecord(str(stem))
    x = fill_short_gaps(r.p_signal[:, 0].astype(np.float32), float(r.fs))
    ch = {Signal.ECG: resample_into_range(x, float(r.fs), Signal.ECG)}
    return Recording(stem.name, patient_id, ch, Annotations(), "cinc2017", {Signal.ECG: r.sig_name[0]})


def _record_list(root: Path) -> list[str]:
    rec_file = root / "RECORDS"
    if rec_file.exists():
        names = [line.strip() for line in rec_file.read_text().splitlines() if line.strip()]
        return [n for n in names if (root / f"{n}.hea").exists()]
    return sorted(p.stem for p in root.glob("*.hea"))


# ---------------------------------------------------------------- BIDMC (CSV)


def load_bidmc_csv(signals_path: str | Path, patient_id: str | None = None) -> Recording:
    """``bidmc_NN_Signals.csv(.gz)`` plus ``bidmc_NN_Breaths.csv(.gz)`` beside it when present."""
    path = Path(signals_path)
    header, data = _read_numeric_csv(path)
    names = [h.strip() for h in header]
    time_col = next((i for i, h in enumerate(names) if h.lower().startswith("time")), None)
    if time_col is not None and data.shape[0] > 1:
        # Times are printed with 2-3 decimals, so per-sample steps are too coarse: use the span.
        t = data[:, time_col]
        fs = float(round((len(t) - 1) / float(t[-1] - t[0]), 3))
    else:
        fs = 125.0
    keep = [i for i in range(len(names)) if i != time_col]
    channels, chosen = map_channels([names[i] for i in keep], [data[:, i] for i in keep], fs)
    base = path.name.split("_Signals")[0]
    name = base.replace("_", "")
    annotations = Annotations()
    breaths = _sibling(path, "_Breaths")
    if breaths is not None:
        _bh, bd = _read_numeric_csv(breaths)
        annotations.breaths_s = [np.sort(bd[:, i][np.isfinite(bd[:, i])]) / fs for i in range(bd.shape[1])]
    return Recording(name, patient_id or name, channels, annotations, "bidmc", chosen)


# PhysioNet ships BIDMC both ways: bidmc_csv/*.csv in the zip, *.csv.gz in the shared subset.
BIDMC_SUFFIXES = (".csv.gz", ".csv")


def bidmc_candidates(folder: Path, name: str, kind: str) -> list[Path]:
    """The files that may hold record ``name``'s ``kind`` (``Signals``, ``Breaths``,
    ``Numerics``): ``bidmc_01_Signals.csv.gz`` or ``bidmc_01_Signals.csv``."""
    return [Path(folder) / f"{name}_{kind}{suffix}" for suffix in BIDMC_SUFFIXES]


def bidmc_file(folder: Path, name: str, kind: str) -> Path:
    """The file of record ``name``'s ``kind``; FileNotFoundError naming every file looked for."""
    candidates = bidmc_candidates(folder, name, kind)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"no {kind} file for {name}: looked for {', '.join(str(p) for p in candidates)}")


def _sibling(signals_path: Path, kind: str) -> Path | None:
    name = signals_path.name.split("_Signals")[0]
    try:
        return bidmc_file(signals_path.parent, name, kind.lstrip("_"))
    except FileNotFoundError:
        return None


def _read_numeric_csv(path: Path) -> tuple[list[str], np.ndarray]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as f:  # type: ignore[operator]
        reader = csv.reader(f)
        header = next(reader)
        rows = [[_to_float(v) for v in row] for row in reader if row]
    width = len(header)
    arr = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        arr[i, : min(width, len(row))] = row[:width]
    return header, arr


def _to_float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return math.nan


def load_bidmc(data_dir: str | Path, records: Sequence[str] | None = None, prefix: str = "") -> list[Recording]:
    root = Path(data_dir)
    if records:
        wanted = [_bidmc_number(r) for r in records]
    else:
        listed = (root / "RECORDS").read_text().split() if (root / "RECORDS").exists() else []
        wanted = [_bidmc_number(r) for r in listed] or sorted(
            {p.name.split("_")[1] for p in root.glob("bidmc_*_Signals.csv*")}
        )
    out = []
    for num in wanted:
        rec = load_bidmc_csv(bidmc_file(root, f"bidmc_{num}", "Signals"))
        rec.patient_id = f"{prefix}{rec.name}"
        out.append(rec)
    return out


def _bidmc_number(name: str) -> str:
    digits = "".join(c for c in name if c.isdigit())
    return f"{int(digits):02d}"


# ---------------------------------------------------------------- simulator


def load_synthetic(data_dir: str | Path, records: Sequence[str] | None = None, prefix: str = "") -> list[Recording]:
    """The simulator's ``DIR/<patient>.npz`` + ``DIR/truth.jsonl`` via ``stream.simulator``."""
    from stream.simulator import load_simulated

    out = []
    for sim in load_simulated(Path(data_dir)):
        name = str(sim.patient_id)
        if records and name not in records:
            continue
        out.append(recording_from_simulated(sim, prefix))
    return out


def recording_from_simulated(sim: Any, prefix: str = "") -> Recording:
    """Adapt one ``stream.simulator.SimulatedRecording`` (truth rows to record seconds)."""
    name = str(sim.patient_id)
    start_ms = float(sim.start_ms)
    channels: dict[Signal, tuple[np.ndarray, float]] = {}
    for sig in Signal:
        x = getattr(sim, sig.value, None)
        if x is None or len(x) == 0:
            continue
        fs = float(sim.fs[sig.value])
        x = fill_short_gaps(np.asarray(x, dtype=np.float32), fs)
        channels[sig] = resample_into_range(x, fs, sig)

    def episodes(rows: Sequence[dict[str, Any]]) -> list[RhythmEpisode]:
        return [
            RhythmEpisode(
                str(r["type"]),
                (float(r["start_ms"]) - start_ms) / 1000.0,
                (float(r["end_ms"]) - start_ms) / 1000.0,
            )
            for r in rows
        ]

    annotations = Annotations(episodes=episodes(sim.episodes), tolerated=episodes(getattr(sim, "tolerated", [])))
    names = {s: s.value for s in channels}
    return Recording(name, f"{prefix}{name}", channels, annotations, "synthetic", names)


# ---------------------------------------------------------------- dispatch


def load_suite(
    suite: str, data_dir: str | Path, records: Sequence[str] | None = None, prefix: str = ""
) -> list[Recording]:
    loaders = {
        "challenge2015": load_challenge2015,
        "mitdb": load_mitdb,
        "bidmc": load_bidmc,
        "cinc2017": load_cinc2017,
        "synthetic": load_synthetic,
    }
    if suite not in loaders:
        raise ValueError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    return loaders[suite](data_dir, records, prefix)


def detect_suite(path: Path) -> str | None:
    """Guess the kind of a folder of recordings from the files in it."""
    if (path / "ALARMS").exists():
        return "challenge2015"
    if (path / "REFERENCE.csv").exists():
        return "cinc2017"
    if any(path.glob("bidmc_*_Signals.csv*")):
        return "bidmc"
    if (path / "truth.jsonl").exists() or any(path.glob("*.npz")):
        return "synthetic"
    if any(path.glob("*.atr")):
        return "mitdb"
    if any(path.glob("*.hea")):
        return "wfdb"
    return None


def load_paths(paths: Sequence[str | Path], records: Sequence[str] | None = None, prefix: str = "") -> list[Recording]:
    """Folders (suite detected from their contents) or single record files, in order."""
    out: list[Recording] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            kind = detect_suite(path)
            if kind is None:
                raise FileNotFoundError(
                    f"{path}: no recordings recognised (WFDB .hea, bidmc_*_Signals.csv, simulator .npz)"
                )
            if kind == "wfdb":
                names = list(records) if records else _record_list(path)
                out.extend(load_wfdb(path / n, "wfdb", f"{prefix}{n}") for n in names)
            else:
                out.extend(load_suite(kind, path, records, prefix))
        elif "_Signals.csv" in path.name:
            rec = load_bidmc_csv(path)
            rec.patient_id = f"{prefix}{rec.name}"
            out.append(rec)
        elif path.suffix in (".hea", ".dat", ".mat") or path.with_suffix(".hea").exists():
            stem = path.with_suffix("") if path.suffix else path
            out.append(load_wfdb(stem, "wfdb", f"{prefix}{stem.name}"))
        else:
            raise FileNotFoundError(f"{path}: not a recording or folder of recordings")
    return out
