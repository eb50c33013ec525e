"""Dataset readers for model training and evaluation (MIT-BIH, SVDB, NSTDB noise, CinC 2017).

They read the original PhysioNet files from a data folder given by the caller and return
numpy arrays already passed through :mod:`models.preprocess`, so training, evaluation and
the runtime share one preprocessing path. Nothing here is imported by the runtime.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import wfdb

from models import preprocess as pp

BEAT_CLASSES = ("N", "S", "V", "F", "Q")
RHYTHM_CLASSES = ("N", "A", "O", "~")

# AAMI EC57 mapping of MIT-BIH beat symbols (data README).
AAMI_MAP: dict[str, str] = {
    **dict.fromkeys("NLRej", "N"),
    **dict.fromkeys("AaJS", "S"),
    **dict.fromkeys("VE", "V"),
    "F": "F",
    **dict.fromkeys("/fQ", "Q"),
}

MITDB_RECORDS = (
    "101", "102", "104", "106", "107", "108", "109", "112", "114", "115", "116", "118", "119",
    "122", "124", "201", "203", "205", "207", "208", "209", "215", "217", "220", "223", "230",
)
PACED_RECORDS = ("102", "104", "107", "217")
# MIT-BIH Supraventricular Arrhythmia Database (128 Hz, two leads "ECG1"/"ECG2"): training
# data for the beat classes only. Its records never enter a test fold of the MIT-BIH
# figures (models.training.record_folds with ``train_only``).
SVDB_PREFIX = "svdb"


@dataclass(slots=True)
class BeatSet:
    """Beats of one or more records, ready for the beat model."""

    segments: np.ndarray  # (n, N_LEADS, BEAT_LEN) float32; an absent second lead is zeros
    rr: np.ndarray  # (n, N_CONTEXT_FEATURES) float32: RR + morphology-vs-template
    labels: np.ndarray  # (n,) int64 index into BEAT_CLASSES
    records: np.ndarray  # (n,) str record name
    r_samples: np.ndarray  # (n,) int64 R positions at ECG_FS (for jitter augmentation)

    def subset(self, mask: np.ndarray) -> BeatSet:
        return BeatSet(self.segments[mask], self.rr[mask], self.labels[mask],
                       self.records[mask], self.r_samples[mask])

    @staticmethod
    def concat(parts: Sequence[BeatSet]) -> BeatSet:
        return BeatSet(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                         ("segments", "rr", "labels", "records", "r_samples")))


def list_mitdb_records(data_dir: Path) -> list[str]:
    return sorted(p.stem for p in Path(data_dir).glob("*.hea"))


def load_mitdb_ecg(data_dir: Path, record: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Lead MLII (by name; channel 0 in all records but 114) resampled to ECG_FS and band-passed, with all annotation
    positions (at ECG_FS) and symbols."""
    ecg, _, pos, symbols = load_two_lead_ecg(data_dir, record)
    return ecg, pos, symbols


def primary_channel(sig_names: Sequence[str]) -> int:
    """The lead the beat model sees first: MLII where the record has it (channel 0 in all
    MIT-BIH records but 114, whose leads are swapped), otherwise channel 0 (SVDB "ECG1",
    V5 in MIT-BIH 102 and 104)."""
    return list(sig_names).index("MLII") if "MLII" in sig_names else 0


def load_two_lead_ecg(data_dir: Path, record: str
                      ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, list[str]]:
    """(primary lead, second lead or None, annotation positions, symbols): both leads
    resampled from the record's rate (360 Hz MIT-BIH, 128 Hz SVDB) to ECG_FS and
    band-passed; positions converted to ECG_FS samples."""
    rec = wfdb.rdrecord(str(Path(data_dir) / record))
    ann = wfdb.rdann(str(Path(data_dir) / record), "atr")
    fs = float(rec.fs)
    first = primary_channel(rec.sig_name)
    leads = [first, *[c for c in range(rec.p_signal.shape[1]) if c != first][:1]]
    sigs = [pp.ecg_bandpass(pp.ecg_resample(np.nan_to_num(rec.p_signal[:, c]), fs))
            for c in leads]
    pos = np.round(np.asarray(ann.sample) * pp.ECG_FS / fs).astype(np.int64)
    return sigs[0], (sigs[1] if len(sigs) > 1 else None), pos, list(ann.symbol)


def rolling_median(x: np.ndarray, half: int) -> np.ndarray:
    out = np.empty_like(x, dtype=np.float64)
    for i in range(x.size):
        out[i] = np.median(x[max(0, i - half): i + half + 1])
    return out


def beats_from_signal(ecg: np.ndarray, r: np.ndarray, labels: np.ndarray, record: str,
                      jitter: int = 0, rng: np.random.Generator | None = None,
                      ecg2: np.ndarray | None = None) -> BeatSet:
    """Beat segments + RR features for all beats but the first and last of a record.

    The amplitude scale is the median QRS amplitude of the ~11 surrounding beats, which
    is what the runtime can compute over one 10-s window. ``ecg2``: the second lead (same
    rate and time base), cut at the same R positions and scaled by its own local QRS
    amplitude; the context features come from the primary lead only, so they are the same
    with or without it.
    """
    rr = np.diff(r) / pp.ECG_FS
    local = pp.local_rr(rr)
    keep = np.arange(1, r.size - 1)
    centres = r[keep].copy()
    if jitter and rng is not None:
        centres = centres + rng.integers(-jitter, jitter + 1, size=centres.size)
    amps = pp.qrs_amplitudes(ecg, r)
    scales = rolling_median(amps, pp.TEMPLATE_HALF_BEATS)
    seg_all = pp.beat_segments(ecg, r, scales)
    templates = pp.beat_templates(seg_all)[keep]
    seg = pp.beat_segments(ecg, centres, scales[keep]) if jitter else seg_all[keep]
    feats = pp.beat_context(rr[keep - 1], rr[keep], local[keep - 1], seg, templates)
    second = np.zeros_like(seg)
    if ecg2 is not None:
        scales2 = rolling_median(pp.qrs_amplitudes(ecg2, r), pp.TEMPLATE_HALF_BEATS)[keep]
        second = pp.beat_segments(ecg2, centres, scales2)
    return BeatSet(np.concatenate([seg, second], axis=1), feats, labels[keep],
                   np.full(keep.size, record), r[keep])


def annotated_beats(pos: np.ndarray, symbols: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """R positions and AAMI class indices of the annotations that are beats."""
    is_beat = np.array([s in AAMI_MAP for s in symbols], dtype=bool)
    labels = np.array([BEAT_CLASSES.index(AAMI_MAP[s]) for s in symbols if s in AAMI_MAP],
                      dtype=np.int64)
    return np.asarray(pos)[is_beat], labels


def _load_beats(data_dir: Path, records: Sequence[str], cache_dir: Path | None,
                tag: str, name_prefix: str) -> BeatSet:
    parts = []
    for record in records:
        name = f"{name_prefix}{record}"
        cache = Path(cache_dir) / f"{tag}_{record}.npz" if cache_dir else None
        if cache is not None and cache.exists():
            z = np.load(cache)
            parts.append(BeatSet(z["segments"], z["rr"], z["labels"], z["records"],
                                 z["r_samples"]))
            continue
        ecg, ecg2, pos, symbols = load_two_lead_ecg(data_dir, record)
        r, labels = annotated_beats(pos, symbols)
        bs = beats_from_signal(ecg, r, labels, name, ecg2=ecg2)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, segments=bs.segments, rr=bs.rr, labels=bs.labels,
                     records=bs.records, r_samples=bs.r_samples)
        parts.append(bs)
    return BeatSet.concat(parts)


def load_mitdb_beats(data_dir: Path, records: Sequence[str], cache_dir: Path | None = None,
                     ) -> BeatSet:
    """All AAMI-labelled beats of ``records`` (reference R positions, both leads), cached
    as .npz."""
    return _load_beats(data_dir, records, cache_dir, "mitdb_v4", "")


def svdb_record_name(record: str) -> str:
    """The name an SVDB record carries in a :class:`BeatSet` ("svdb800"): SVDB and MIT-BIH
    numbers do not collide today, but the prefix keeps "which database" explicit for the
    fold design."""
    return f"{SVDB_PREFIX}{record}"


def is_svdb(records: np.ndarray) -> np.ndarray:
    return np.char.startswith(np.asarray(records, dtype=str), SVDB_PREFIX)


def load_svdb_beats(data_dir: Path, records: Sequence[str] | None = None,
                    cache_dir: Path | None = None) -> BeatSet:
    """All AAMI-labelled beats of the SVDB records (128 Hz resampled to ECG_FS, both
    leads), record names prefixed ``svdb``."""
    recs = list(records) if records is not None else list_mitdb_records(data_dir)
    return _load_beats(data_dir, recs, cache_dir, "svdb_v1", SVDB_PREFIX)


def beat_record_source(name: str, mitdb_dir: Path, svdb_dir: Path | None) -> tuple[Path, str]:
    """(folder, record) of a :class:`BeatSet` record name: ``svdb800`` is SVDB's 800."""
    if name.startswith(SVDB_PREFIX):
        if svdb_dir is None:
            raise ValueError(f"{name} is an SVDB record but no SVDB folder was given")
        return Path(svdb_dir), name[len(SVDB_PREFIX):]
    return Path(mitdb_dir), name


def subsample_majority(beats: BeatSet, keep_share: float, seed: int) -> BeatSet:
    """Keep every non-N beat and ``keep_share`` of the N beats (a seeded random choice):
    SVDB is 88 % N beats, and its N beats add training time more than information. The
    features were computed on the full record first, so the RR and template context of a
    kept beat is unchanged."""
    if keep_share >= 1.0:
        return beats
    rng = np.random.default_rng(seed)
    keep = (beats.labels != BEAT_CLASSES.index("N")) | (rng.random(beats.labels.size) < keep_share)
    return beats.subset(keep)


def load_noise(nstdb_dir: Path) -> np.ndarray:
    """NSTDB baseline-wander and muscle-artefact noise (both channels), at ECG_FS,
    band-passed like the ECG and scaled to unit standard deviation; shape (4, n)."""
    rows = []
    for name in ("bw", "ma"):
        rec = wfdb.rdrecord(str(Path(nstdb_dir) / name))
        for ch in range(rec.p_signal.shape[1]):
            x = pp.ecg_bandpass(pp.ecg_resample(rec.p_signal[:, ch], float(rec.fs)))
            rows.append(x / (np.std(x) + 1e-9))
    n = min(r.size for r in rows)
    return np.stack([r[:n] for r in rows]).astype(np.float32)


def read_cinc2017_reference(data_dir: Path) -> list[tuple[str, str]]:
    with open(Path(data_dir) / "REFERENCE.csv", newline="") as fh:
        return [(row[0], row[1]) for row in csv.reader(fh) if row]


def load_cinc2017_ecg(data_dir: Path, record: str) -> np.ndarray:
    """One CinC 2017 recording at ECG_FS, band-passed (float32). The .mat holds ADC
    units (1000/mV); the rhythm model normalises scale per window anyway."""
    mat = scipy.io.loadmat(str(Path(data_dir) / f"{record}.mat"))
    x = np.asarray(mat["val"], dtype=np.float64).ravel() / 1000.0
    return pp.ecg_bandpass(pp.ecg_resample(x, 300.0)).astype(np.float32)


def load_cinc2017(data_dir: Path, records: Sequence[str] | None = None,
                  cache_dir: Path | None = None) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """(record names, signals at ECG_FS, label indices) for the listed or all records."""
    ref = read_cinc2017_reference(data_dir)
    if records is not None:
        wanted = set(records)
        ref = [r for r in ref if r[0] in wanted]
    cache = Path(cache_dir) / "cinc2017.npz" if cache_dir else None
    cached: dict[str, np.ndarray] = {}
    if cache is not None and cache.exists():
        z = np.load(cache, allow_pickle=False)
        cached = {k: z[k] for k in z.files}
    names, sigs, labels = [], [], []
    missing = False
    for name, label in ref:
        if name in cached:
            x = cached[name]
        else:
            x = load_cinc2017_ecg(data_dir, name)
            cached[name] = x
            missing = True
        names.append(name)
        sigs.append(x)
        labels.append(RHYTHM_CLASSES.index(label))
    if cache is not None and missing:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **cached)
    return names, sigs, np.array(labels, dtype=np.int64)


# MIT-BIH rhythm annotations (``aux_note``) as CinC 2017 classes: atrial fibrillation is A;
# sinus rhythm N; flutter, bigeminy, trigeminy, SVTA, VT, nodal, IVR, pre-excitation are
# "other rhythm" in the 2017 challenge's sense; paced rhythm and ventricular flutter have
# no CinC 2017 class and are left out.
MITDB_RHYTHM_CLASS: dict[str, str] = {
    "(AFIB": "A", "(N": "N", "(AFL": "O", "(B": "O", "(T": "O", "(SVTA": "O", "(VT": "O",
    "(NOD": "O", "(IVR": "O", "(PREX": "O",
}


def rhythm_episodes(pos: np.ndarray, aux: Sequence[str], n_samples: int
                    ) -> list[tuple[int, int, str]]:
    """(start, end, CinC 2017 class) of each annotated rhythm episode (an episode runs to
    the next rhythm annotation or the end of the record); unmapped rhythms are left out."""
    changes = [(int(p), a.strip("\x00").strip()) for p, a in zip(pos, aux, strict=True)
               if a.strip("\x00").strip().startswith("(")]
    out = []
    for k, (start, note) in enumerate(changes):
        end = changes[k + 1][0] if k + 1 < len(changes) else n_samples
        if note in MITDB_RHYTHM_CLASS and end > start:
            out.append((start, end, MITDB_RHYTHM_CLASS[note]))
    return out


def episode_chunks(episodes: Sequence[tuple[int, int, str]], chunk: int
                   ) -> list[tuple[int, int, str]]:
    """Non-overlapping ``chunk``-sample pieces of each episode (a remainder shorter than a
    chunk is dropped): recordings of a fixed length, like the CinC 2017 ones."""
    return [(s, s + chunk, c) for start, end, c in episodes
            for s in range(start, end - chunk + 1, chunk)]


def load_mitdb_rhythm_chunks(data_dir: Path, records: Sequence[str], seconds: float = 30.0
                             ) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """MIT-BIH rhythm episodes cut into ``seconds``-long recordings of the primary lead
    (band-passed, ECG_FS), labelled in CinC 2017 classes: extra training recordings for the
    rhythm model (names ``mitdb<record>_<start>``)."""
    names, sigs, labels = [], [], []
    for record in records:
        ecg, _, _, _ = load_two_lead_ecg(data_dir, record)
        ann = wfdb.rdann(str(Path(data_dir) / record), "atr")
        fs = float(wfdb.rdheader(str(Path(data_dir) / record)).fs)
        pos = np.round(np.asarray(ann.sample) * pp.ECG_FS / fs).astype(np.int64)
        for s, e, c in episode_chunks(rhythm_episodes(pos, ann.aux_note, ecg.size),
                                      int(seconds * pp.ECG_FS)):
            names.append(f"mitdb{record}_{s}")
            sigs.append(ecg[s:e].astype(np.float32))
            labels.append(RHYTHM_CLASSES.index(c))
    return names, sigs, np.array(labels, dtype=np.int64)
