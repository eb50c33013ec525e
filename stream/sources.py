"""Read one recording file for ``vitalstream publish``: a CSV or a WFDB record.

Pure and read-only. Channel mapping follows :mod:`stream.replay.records` (lead II/MLII
preferred as the first ECG lead, the best other lead as ``ecg2``; PLETH -> ppg; ABP/ART ->
abp; RESP -> resp), so a file published by hand reaches the pipeline exactly as the same
file replayed would.

CSV: a header row; an optional time column (``time``, ``t``, ``timestamp``,
``Time [s]``, ... in seconds, or milliseconds when its name says ``ms``) from which the
sampling rate is inferred, or an index column plus ``fs``; every other numeric column is a
channel, mapped by name or explicitly (``{"lead_ii": Signal.ECG}``). Gzipped CSV works.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream.replay.records import (
    fill_short_gaps,
    load_wfdb,
    map_channels,
    resample_into_range,
)
from stream.schema import Signal

TIME_COLUMN_NAMES = {
    "time",
    "t",
    "timestamp",
    "time_s",
    "times",
    "seconds",
    "sec",
    "elapsed_time",
    "time_ms",
    "t_ms",
    "timestamp_ms",
}
INDEX_COLUMN_NAMES = {"index", "sample", "samples", "n", "idx", "sample_index"}
WFDB_SUFFIXES = (".hea", ".dat", ".mat")


class SourceError(ValueError):
    """The file cannot be turned into pipeline signals; the message says why."""


@dataclass
class SourceRecording:
    name: str
    channels: dict[Signal, tuple[np.ndarray, float]]
    channel_names: dict[Signal, str] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return max((len(x) / fs for x, fs in self.channels.values()), default=0.0)


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def _time_scale(name: str) -> float:
    """Seconds per unit of a time column, from its name."""
    norm = _normalise(name)
    return 1e-3 if norm.endswith("ms") or "_ms_" in f"{norm}_" else 1.0


def load_csv(
    path: str | Path,
    *,
    fs: float | None = None,
    columns: Mapping[str, Signal | str] | None = None,
    time_column: str | None = None,
) -> SourceRecording:
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise SourceError(f"{path} has no rows")
    by_norm = {_normalise(c): c for c in frame.columns}
    tcol = None
    if time_column is not None:
        if time_column not in frame.columns:
            raise SourceError(f"time column {time_column!r} not in {list(frame.columns)}")
        tcol = time_column
    else:
        tcol = next(
            (by_norm[n] for n in by_norm if n in TIME_COLUMN_NAMES or n.startswith("time_")), None
        )
    skip = {tcol} | {by_norm[n] for n in by_norm if n in INDEX_COLUMN_NAMES}
    if fs is None:
        if tcol is None:
            raise SourceError(f"{path}: no time column; give the sampling rate (--fs)")
        t = pd.to_numeric(frame[tcol], errors="coerce").to_numpy(dtype=np.float64)
        t = t[np.isfinite(t)]
        span = float(t[-1] - t[0]) if t.size > 1 else 0.0
        if span <= 0 or np.any(np.diff(t) < 0):
            raise SourceError(f"{path}: time column {tcol!r} does not increase; give --fs")
        # Over the whole span, not the median step: exported timestamps are often rounded
        # (BIDMC prints 0.008 s steps at first, then 479.98, 479.99, ...).
        fs = (t.size - 1) / (span * _time_scale(tcol))
        if abs(fs - round(fs)) < 0.01 * fs:
            fs = float(round(fs))
    if not (math.isfinite(fs) and fs > 0):
        raise SourceError(f"bad sampling rate {fs}")
    data_columns = [c for c in frame.columns if c not in skip]
    if columns:
        channels: dict[Signal, tuple[np.ndarray, float]] = {}
        chosen: dict[Signal, str] = {}
        for col, sig in columns.items():
            if col not in frame.columns:
                raise SourceError(f"column {col!r} not in {list(frame.columns)}")
            signal = Signal(sig)
            x = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float32)
            channels[signal] = resample_into_range(fill_short_gaps(x, fs), fs, signal)
            chosen[signal] = col
    else:
        values = [
            pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float32)
            for c in data_columns
        ]
        channels, chosen = map_channels(data_columns, values, fs)
    if not channels:
        raise SourceError(
            f"{path}: no ECG/PPG/RESP column among {data_columns}; map them with "
            "--column NAME=ecg|ppg|resp"
        )
    return SourceRecording(_stem(path), channels, chosen)


def load_wfdb_record(path: str | Path) -> SourceRecording:
    try:
        rec = load_wfdb(path)
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot read WFDB record {path}: {exc}") from None
    if not rec.channels:
        raise SourceError(f"{path}: no ECG, PLETH or RESP channel")
    return SourceRecording(rec.name, rec.channels, rec.channel_names)


def load_source(
    path: str | Path,
    *,
    fs: float | None = None,
    columns: Mapping[str, Signal | str] | None = None,
    time_column: str | None = None,
) -> SourceRecording:
    """A CSV (``.csv``/``.csv.gz``) or a WFDB record (``.hea`` or the record path)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz", ".txt")):
        return load_csv(path, fs=fs, columns=columns, time_column=time_column)
    if (
        path.suffix in WFDB_SUFFIXES
        or path.with_suffix(".hea").exists()
        or Path(f"{path}.hea").exists()
    ):
        return load_wfdb_record(path)
    raise SourceError(f"{path}: not a CSV or a WFDB record (.hea)")


def parse_column_map(items: list[str]) -> dict[str, Signal]:
    """``["lead_ii=ecg", "pleth=ppg"]`` -> ``{"lead_ii": Signal.ECG, ...}``."""
    out: dict[str, Signal] = {}
    for item in items:
        col, sep, sig = item.rpartition("=")
        if not sep or not col:
            raise SourceError(f"--column {item!r}: expected NAME=ecg|ppg|resp")
        try:
            out[col.strip()] = Signal(sig.strip().lower())
        except ValueError:
            raise SourceError(f"--column {item!r}: signal must be ecg, ppg or resp") from None
    return out


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".csv", ".txt"):
        name = name.removesuffix(suffix)
    return name
