"""Evaluation of the streaming DSP on real recordings (library side of ``vitalstream eval``).

* :func:`evaluate_peaks` — R-peak detection on MIT-BIH records fed in 1 s chunks through the
  streaming detector, scored beat by beat against the reference annotations.
* :func:`evaluate_resp` — breathing rate per 32 s window on BIDMC, from the RESP channel
  and from the PPG alone, against the manual breath annotations.

Records are read with ``wfdb`` / ``pandas`` read-only; nothing is written next to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from stream.dsp.rpeaks import StreamingRPeakDetector
from stream.replay.records import bidmc_file

# AAMI EC57 beat labels in MIT-BIH (N L R e j / A a J S / V E / F / / f Q). Rhythm, noise
# and other non-beat annotations ('+', '~', '|', 'x', '!', '[', ']' ...) are not beats.
BEAT_SYMBOLS = frozenset("NLRejAaJSVEF/fQ")
MATCH_WINDOW_S = 0.150

Progress = Callable[[str], None]


def list_records(data_dir: Path) -> list[str]:
    records_file = data_dir / "RECORDS"
    if records_file.is_file():
        names = [ln.strip() for ln in records_file.read_text().splitlines() if ln.strip()]
        if names:
            return names
    return sorted(p.stem for p in data_dir.glob("*.hea"))


def match_beats(ref: np.ndarray, det: np.ndarray, tolerance: int) -> tuple[int, int, int]:
    """One-to-one matching of reference and detected beat samples within ``tolerance``
    (each reference beat takes the nearest free detection). Returns (TP, FN, FP)."""
    ref = np.sort(np.asarray(ref, dtype=np.int64))
    det = np.sort(np.asarray(det, dtype=np.int64))
    used = np.zeros(det.size, dtype=bool)
    tp = 0
    j = 0
    for r in ref:
        while j < det.size and det[j] < r - tolerance:
            j += 1
        best = -1
        best_dist = tolerance + 1
        k = j
        while k < det.size and det[k] <= r + tolerance:
            if not used[k] and abs(int(det[k]) - int(r)) < best_dist:
                best, best_dist = k, abs(int(det[k]) - int(r))
            k += 1
        if best >= 0:
            used[best] = True
            tp += 1
    return tp, int(ref.size - tp), int(det.size - used.sum())


def _vf_intervals(symbols: Sequence[str], samples: np.ndarray) -> list[tuple[int, int]]:
    """Ventricular flutter/fibrillation episodes, '[' to ']'. AAMI EC57 excludes them from
    QRS-detection scoring: there are no QRS complexes to find."""
    out: list[tuple[int, int]] = []
    start: int | None = None
    for sym, s in zip(symbols, samples, strict=True):
        if sym == "[":
            start = int(s)
        elif sym == "]" and start is not None:
            out.append((start, int(s)))
            start = None
    if start is not None:
        out.append((start, int(samples[-1]) + 1))
    return out


def detect_record_beats(signal: np.ndarray, fs: float, chunk_s: float = 1.0) -> np.ndarray:
    det = StreamingRPeakDetector(fs)
    step = max(1, round(chunk_s * fs))
    beats = [det.process(signal[i : i + step]).beats for i in range(0, signal.size, step)]
    return np.concatenate(beats) if beats else np.zeros(0, dtype=np.int64)


def evaluate_peaks(
    data_dir: Path,
    records: Iterable[str] | None = None,
    chunk_s: float = 1.0,
    channel: int = 0,
    progress: Progress | None = None,
    monitor: bool = True,
    noise: str | None = None,
    snr_db: float = 6.0,
    noise_dir: Path | None = None,
) -> dict[str, object]:
    """Se and PPV (percent) of streaming R-peak detection over whole records.

    With ``monitor``, each record is also streamed through :class:`PatientMonitor` (1 s
    chunks, 10 s windows, 2 s hop) and each window's heart rate is compared with the rate
    from the reference beats in the same window (60 / median reference RR; windows that
    touch a VF episode or hold fewer than 3 reference beats are skipped).

    With ``noise`` ("ma" muscle artefact, "bw" baseline wander, "em" electrode motion if
    present) the MIT-BIH Noise Stress Test recording of that name (``noise_dir``, default
    ``<data_dir>/../nstdb``) is added to the whole record at ``snr_db``, SNR being the ratio
    of the powers of the 0.5–40 Hz band-passed ECG and of the noise."""
    import wfdb

    data_dir = Path(data_dir)
    names = list(records) if records else list_records(data_dir)
    per_record: dict[str, dict[str, float | int]] = {}
    tp_all = fn_all = fp_all = vf_all = 0
    hr_stats: list[tuple[bool, float | None]] = []
    for name in names:
        rec = wfdb.rdrecord(str(data_dir / name), channels=[channel])
        ann = wfdb.rdann(str(data_dir / name), "atr")
        fs = float(rec.fs)
        x = rec.p_signal[:, 0].astype(np.float64)
        x = np.nan_to_num(x)
        if noise:
            x = add_noise(
                x, fs, _noise_signal(noise_dir or data_dir.parent / "nstdb", noise), snr_db
            )
        det = detect_record_beats(x, fs, chunk_s)
        symbols = list(ann.symbol)
        samples = np.asarray(ann.sample, dtype=np.int64)
        ref = samples[np.isin(symbols, list(BEAT_SYMBOLS))]
        vf = _vf_intervals(symbols, samples)
        in_vf = np.zeros(det.size, dtype=bool)
        for a, b in vf:
            in_vf |= (det >= a) & (det <= b)
        tp, fn, fp = match_beats(ref, det[~in_vf], round(MATCH_WINDOW_S * fs))
        tp_all, fn_all, fp_all = tp_all + tp, fn_all + fn, fp_all + fp
        vf_all += int(in_vf.sum())
        per_record[name] = {
            "beats": int(ref.size),
            "tp": tp,
            "fn": fn,
            "fp": fp,
            "se": _pct(tp, tp + fn),
            "ppv": _pct(tp, tp + fp),
            "detections_in_vf": int(in_vf.sum()),
        }
        if monitor:
            stats = monitor_hr_errors(x, fs, ref, vf, chunk_s)
            per_record[name].update(_hr_summary(stats))
            hr_stats.extend(stats)
        if progress:
            progress(name)
    return {
        "records": len(names),
        "beats": tp_all + fn_all,
        "se": _pct(tp_all, tp_all + fn_all),
        "ppv": _pct(tp_all, tp_all + fp_all),
        "tp": tp_all,
        "fn": fn_all,
        "fp": fp_all,
        # AAMI EC57 leaves ventricular flutter/fibrillation episodes out of QRS scoring
        # (above); counting every detection inside them as a false positive instead:
        "detections_in_vf": vf_all,
        "ppv_including_vf": _pct(tp_all, tp_all + fp_all + vf_all),
        **({"monitor": _hr_summary(hr_stats)} if monitor else {}),
        **({"noise": noise, "snr_db": snr_db} if noise else {}),
        "chunk_s": chunk_s,
        "match_window_s": MATCH_WINDOW_S,
        "per_record": per_record,
    }


def _noise_signal(folder: Path, name: str) -> np.ndarray:
    import wfdb

    rec = wfdb.rdrecord(str(Path(folder) / name), channels=[0])
    return np.nan_to_num(rec.p_signal[:, 0].astype(np.float64))


def add_noise(x: np.ndarray, fs: float, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``x`` plus ``noise`` (tiled to length) scaled to ``snr_db`` (band-passed ECG power
    over noise power)."""
    from stream.dsp.filters import ecg_bandpass

    reps = int(np.ceil(x.size / noise.size))
    n = np.tile(noise, reps)[: x.size]
    n = n - n.mean()
    p_sig = float(np.mean(ecg_bandpass(x, fs)[int(fs) :] ** 2))
    p_noise = float(np.mean(n**2)) or 1.0
    return x + n * np.sqrt(p_sig / (p_noise * 10.0 ** (snr_db / 10.0)))


def monitor_hr_errors(
    x: np.ndarray,
    fs: float,
    ref: np.ndarray,
    vf: list[tuple[int, int]],
    chunk_s: float = 1.0,
) -> list[tuple[bool, float | None]]:
    """Per window of a :class:`PatientMonitor` run: (ECG usable, |HR - reference HR|)."""
    from stream.monitor import PatientMonitor
    from stream.schema import make_chunk

    t0 = 1_700_000_000_000
    mon = PatientMonitor("eval", window_s=10.0, hop_s=2.0)
    step = max(1, round(chunk_s * fs))
    out: list[tuple[bool, float | None]] = []
    for k, i in enumerate(range(0, x.size, step)):
        ts = t0 + round(1000.0 * i / fs)
        for w in mon.push(make_chunk("eval", "dev", "ecg", fs, ts, k, x[i : i + step])).windows:
            end = (w.t_ms - t0) / 1000.0 * fs
            start = end - w.window_s * fs
            if any(a < end and b > start for a, b in vf):
                continue
            beats = ref[(ref >= start) & (ref < end)]
            if beats.size < 3 or w.ecg is None:
                continue
            ref_hr = 60.0 * fs / float(np.median(np.diff(beats)))
            err = None if w.ecg.hr_bpm is None else abs(w.ecg.hr_bpm - ref_hr)
            out.append((bool(w.ecg.usable), err))
    return out


def _hr_summary(stats: list[tuple[bool, float | None]]) -> dict[str, object]:
    usable_errs = np.array([e for u, e in stats if u and e is not None])
    return {
        "windows": len(stats),
        "usable_pct": _pct(sum(u for u, _ in stats), len(stats)),
        "hr_mae_bpm": round(float(usable_errs.mean()), 3) if usable_errs.size else None,
        "hr_within_5bpm_pct": _pct(int((usable_errs <= 5).sum()), int(usable_errs.size)),
    }


def _pct(num: int, den: int) -> float:
    return round(100.0 * num / den, 3) if den else float("nan")


RESP_WINDOW_S = 32.0


def bidmc_names(data_dir: Path, records: Iterable[str] | None) -> list[str]:
    """BIDMC record names as in the files (``bidmc_01``); accepts ``01``, ``bidmc01``..."""
    if records:
        wanted = list(records)
    else:
        wanted = sorted(p.name.split("_Signals")[0] for p in data_dir.glob("bidmc_*_Signals.csv*"))
    out = []
    for name in wanted:
        digits = "".join(ch for ch in name if ch.isdigit())
        out.append(f"bidmc_{int(digits):02d}")
    return out


def _reference_rate(breaths: np.ndarray, lo: float, hi: float, fs: float) -> float | None:
    b = breaths[(breaths >= lo * fs) & (breaths < hi * fs)] / fs
    if b.size < 3:
        return None
    return 60.0 * (b.size - 1) / float(b[-1] - b[0])


def evaluate_resp(
    data_dir: Path,
    records: Iterable[str] | None = None,
    window_s: float = RESP_WINDOW_S,
    progress: Progress | None = None,
) -> dict[str, object]:
    """Breathing-rate error (breaths/min) per 32 s window on BIDMC, from the RESP channel,
    from the PPG alone and from the ECG (lead II) alone.

    Also streams each PPG through :class:`PatientMonitor` and compares each 10 s window's
    pulse rate with the bedside monitor's own 1 Hz ``PULSE`` numeric (median over the same
    10 s): a check of pulse detection, against a device reference rather than annotations.

    Reference per window: mean of the two annotators' rates (each 60 (n - 1) / span of the
    breaths they marked in the window); windows where neither annotator marked 3 breaths
    are skipped. Signals are processed causally, as the stream would, then cut into
    consecutive non-overlapping windows.
    """
    import pandas as pd

    from stream.dsp.filters import resp_filter
    from stream.dsp.ppg import StreamingPulseDetector
    from stream.dsp.resp import derived_resp_rate, resp_rate
    from stream.dsp.rpeaks import StreamingRPeakDetector

    data_dir = Path(data_dir)
    names = bidmc_names(data_dir, records)
    sources = ("resp", "ppg", "ecg")
    per_record: dict[str, dict[str, object]] = {}
    errors: dict[str, list[float]] = {k: [] for k in sources}
    missing = dict.fromkeys(sources, 0)
    all_pulse_errs: list[float] = []
    for name in names:
        sig = pd.read_csv(bidmc_file(data_dir, name, "Signals"))
        sig.columns = [c.strip() for c in sig.columns]
        br = pd.read_csv(bidmc_file(data_dir, name, "Breaths"))
        fs = 125.0

        def column(col: str, frame: pd.DataFrame = sig) -> np.ndarray:
            x = frame[col].to_numpy(dtype=np.float64)
            return np.nan_to_num(x, nan=float(np.nanmedian(x)))

        resp_f = resp_filter(fs).process(column("RESP"))
        ppg_raw = column("PLETH")
        pulses = StreamingPulseDetector(fs).process(ppg_raw)
        ecg_raw = column("II")
        ecg_det = StreamingRPeakDetector(fs).process(ecg_raw)
        r_idx = ecg_det.beats
        r_amp = ecg_det.bandpassed[r_idx]
        ann = [
            br.iloc[:, k].dropna().to_numpy(dtype=np.float64) for k in range(min(2, br.shape[1]))
        ]
        rows: list[dict[str, float | None]] = []
        for w in range(int(resp_f.size / fs // window_s)):
            lo, hi = w * window_s, (w + 1) * window_s
            refs = [r for r in (_reference_rate(a, lo, hi, fs) for a in ann) if r is not None]
            if not refs:
                continue
            a, b = int(lo * fs), int(hi * fs)
            p_in = (pulses.pulses >= a) & (pulses.pulses < b)
            p_idx = pulses.pulses[p_in]
            r_in = (r_idx >= a) & (r_idx < b)
            estimates = {
                "resp": resp_rate(resp_f[a:b], fs).rate_bpm,
                "ppg": derived_resp_rate(
                    p_idx / fs, pulses.amplitudes[p_in], ppg_raw[p_idx], window_s
                ).rate_bpm,
                "ecg": derived_resp_rate(
                    r_idx[r_in] / fs, r_amp[r_in], ecg_raw[r_idx[r_in]], window_s
                ).rate_bpm,
            }
            row: dict[str, float | None] = {"t_s": lo, "ref": round(float(np.mean(refs)), 2)}
            for k, est in estimates.items():
                row[k] = None if est is None else round(est, 2)
            rows.append(row)
        rec: dict[str, object] = {"windows": len(rows)}
        for k in sources:
            errs = [abs(r[k] - r["ref"]) for r in rows if r[k] is not None]  # type: ignore[operator]
            errors[k].extend(errs)
            n_missing = sum(r[k] is None for r in rows)
            missing[k] += n_missing
            rec[f"mae_{k}"] = round(float(np.mean(errs)), 3) if errs else None
            rec[f"no_estimate_{k}"] = n_missing
        pulse_ref = column(
            "PULSE",
            pd.read_csv(bidmc_file(data_dir, name, "Numerics")).rename(columns=lambda c: c.strip()),
        )
        pulse_errs = monitor_pulse_errors(ppg_raw, fs, pulse_ref)
        rec["pulse_rate_mae_bpm"] = round(float(np.mean(pulse_errs)), 3) if pulse_errs else None
        all_pulse_errs.extend(pulse_errs)
        per_record[name] = rec
        if progress:
            progress(name)
    result: dict[str, object] = {
        "records": len(names),
        "windows": sum(int(r["windows"]) for r in per_record.values()),  # type: ignore[call-overload]
        "window_s": window_s,
        "reference": "mean of annotators 1 and 2",
    }
    for k in sources:
        result[f"mae_{k}"] = round(float(np.mean(errors[k])), 3) if errors[k] else None
    for k in sources:
        result[f"no_estimate_{k}"] = missing[k]
    result["pulse_rate_mae_bpm"] = (
        round(float(np.mean(all_pulse_errs)), 3) if all_pulse_errs else None
    )
    result["pulse_rate_within_5bpm_pct"] = _pct(
        sum(e <= 5 for e in all_pulse_errs), len(all_pulse_errs)
    )
    result["per_record"] = per_record
    return result


def monitor_pulse_errors(ppg: np.ndarray, fs: float, pulse_1hz: np.ndarray) -> list[float]:
    """|pulse rate - reference| per :class:`PatientMonitor` window (PPG only, 1 s chunks)."""
    from stream.monitor import PatientMonitor
    from stream.schema import make_chunk

    t0 = 1_700_000_000_000
    mon = PatientMonitor("eval")
    step = round(fs)
    errs: list[float] = []
    for k, i in enumerate(range(0, ppg.size, step)):
        chunk = make_chunk("eval", "dev", "ppg", fs, t0 + 1000 * k, k, ppg[i : i + step])
        for w in mon.push(chunk).windows:
            end_s = (w.t_ms - t0) // 1000
            ref = pulse_1hz[max(0, end_s - 10) : end_s]
            ref = ref[np.isfinite(ref) & (ref > 0)]
            if w.ppg is None or w.ppg.pulse_rate_bpm is None or ref.size == 0:
                continue
            errs.append(abs(w.ppg.pulse_rate_bpm - float(np.median(ref))))
    return errs
