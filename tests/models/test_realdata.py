from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models import data as md
from models import preprocess as pp
from models.runtime import ModelRuntime
from models.training import recording_crops, recording_rpeaks
from stream.monitor import RR_HISTORY_BEATS
from stream.window_analysis import WindowAnalysis

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def record_119(data_root: Path):
    mitdb = data_root / "mitdb"
    if not (mitdb / "119.hea").exists():
        pytest.skip("MIT-BIH data not present")
    ecg, pos, symbols = md.load_mitdb_ecg(mitdb, "119")
    is_beat = np.array([s in md.AAMI_MAP for s in symbols])
    labels = np.array([md.BEAT_CLASSES.index(md.AAMI_MAP[s]) for s in np.array(symbols)[is_beat]])
    return ecg, pos[is_beat], labels


def test_classifies_real_n_and_v_beats(runtime: ModelRuntime, record_119) -> None:
    ecg, r, labels = record_119
    beats = md.beats_from_signal(ecg, r[:400], labels[:400], "119")
    pred = runtime.predict_beats(beats.segments, beats.rr).argmax(axis=1)
    for cls in ("N", "V"):
        k = md.BEAT_CLASSES.index(cls)
        sel = beats.labels == k
        assert sel.sum() >= 20
        assert (pred[sel] == k).mean() >= 0.9, f"{cls} beats of record 119"


def _record_windows(patient: str, ecg: np.ndarray, r: np.ndarray, start_s: float, hops: int) -> list[WindowAnalysis]:
    """Consecutive 10-s windows (2-s hop) as the monitor hands them over, reference R peaks."""
    fs = pp.ECG_FS
    start0 = int(start_s * fs)
    windows, offered_until = [], 0
    for hop in range(hops):
        end = start0 + int((10 + 2 * hop) * fs)
        start = end - int(10 * fs)
        inside = (r >= start) & (r < end)
        before = r[r < start]
        windows.append(WindowAnalysis(
            patient_id=patient, t_ms=int(end / fs * 1000), window_s=10.0, ecg_fs=fs,
            ecg_window=ecg[start:end].astype(np.float32), beat_samples=r[inside] - start,
            beat_is_new=r[inside] >= offered_until,
            rr_history_ms=np.diff(before[-(RR_HISTORY_BEATS + 1):]) / fs * 1000))
        offered_until = end
    return windows


def test_runtime_counts_v_beats_in_real_windows(runtime: ModelRuntime, record_119) -> None:
    """Full analyse() path on consecutive 10-s windows (2-s hop) of record 119."""
    ecg, r, labels = record_119
    rt = ModelRuntime(runtime.beat_model, runtime.rhythm_model, runtime.vf_model,
                      runtime.beat_meta, runtime.rhythm_meta)
    counts: dict[str, int] = {}
    windows = _record_windows("119", ecg, r, start_s=60.0, hops=15)
    for w in windows:
        out = rt.analyse([w])[0]
        for k, v in out.beat_counts.items():
            counts[k] = counts.get(k, 0) + v
        assert out.rhythm is not None and out.vf_score is not None
    truth = {"N": 0, "V": 0}
    start0, offered_until = int(60 * pp.ECG_FS), int(windows[-1].t_ms * pp.ECG_FS / 1000)
    classified = (r >= start0) & (r < offered_until)
    for name in truth:
        truth[name] = int((labels[classified] == md.BEAT_CLASSES.index(name)).sum())
    assert truth["V"] > 5
    assert abs(counts.get("V", 0) - truth["V"]) <= max(2, 0.1 * truth["V"])
    assert sum(counts.values()) >= classified.sum() - 2


def test_window_outputs_do_not_depend_on_batching(runtime: ModelRuntime, data_root: Path) -> None:
    """Live, the agent batches one poll (often one window per patient); a replay may hand a
    whole record over at once. A window's outputs must not see beats that only a later
    window of the same batch classified (record 203: multiform V runs)."""
    mitdb = data_root / "mitdb"
    if not (mitdb / "203.hea").exists():
        pytest.skip("MIT-BIH data not present")
    ecg, pos, symbols = md.load_mitdb_ecg(mitdb, "203")
    r = pos[np.array([s in md.AAMI_MAP for s in symbols])]

    def fresh() -> ModelRuntime:
        return ModelRuntime(runtime.beat_model, runtime.rhythm_model, runtime.vf_model,
                            runtime.beat_meta, runtime.rhythm_meta, runtime.sveb_model)

    windows = _record_windows("203", ecg, r, start_s=0.0, hops=120)
    one_at_a_time = fresh()
    single = [one_at_a_time.analyse([w])[0] for w in windows]
    batched = fresh().analyse(windows)
    assert sum(o.v_run_length for o in single) > 0
    for a, b in zip(single, batched, strict=True):
        assert (a.beat_counts, a.v_run_length, a.v_run_rate_bpm) == (b.beat_counts, b.v_run_length, b.v_run_rate_bpm)
        assert a.rhythm == b.rhythm and a.vf_seconds == b.vf_seconds


def test_runtime_calls_real_atrial_premature_beats_s(runtime: ModelRuntime, data_root: Path) -> None:
    """analyse() on consecutive windows of record 220 (atrial premature beats in sinus
    rhythm), with the monitor's RR history: the S expert, fed the windows' rhythm
    probabilities, calls the S beats S and the normal ones N (in-sample for the expert,
    which was fitted on all 26 records: this checks the streaming path, not generalisation)."""
    mitdb = data_root / "mitdb"
    if not (mitdb / "220.hea").exists():
        pytest.skip("MIT-BIH data not present")
    ecg, pos, symbols = md.load_mitdb_ecg(mitdb, "220")
    is_beat = np.array([s in md.AAMI_MAP for s in symbols])
    r = pos[is_beat]
    labels = np.array([md.AAMI_MAP[s] for s in np.array(symbols)[is_beat]])
    windows = _record_windows("220", ecg, r, start_s=0.0, hops=300)  # 10 min
    rt = ModelRuntime(runtime.beat_model, runtime.rhythm_model, runtime.vf_model,
                      runtime.beat_meta, runtime.rhythm_meta, runtime.sveb_model)
    classified: dict[float, str] = {}  # the runtime keeps one window of history: read per hop
    for w in windows:
        rt.analyse([w])
        mem = rt._memory("220")
        classified.update(zip(mem.times.tolist(), mem.classes, strict=True))
    times = np.array(sorted(classified))
    classes = np.array([classified[t] for t in times])
    ref_ms = r / pp.ECG_FS * 1000
    nearest = np.clip(np.searchsorted(times, ref_ms), 1, times.size - 1)
    nearest = np.where(np.abs(times[nearest - 1] - ref_ms) < np.abs(times[nearest] - ref_ms),
                       nearest - 1, nearest)
    got = np.where(np.abs(times[nearest] - ref_ms) <= 40, classes[nearest], "")
    s_beats, n_beats = (got != "") & (labels == "S"), (got != "") & (labels == "N")
    assert s_beats.sum() >= 20 and n_beats.sum() >= 500
    assert (got[s_beats] == "S").mean() >= 0.8
    assert (got[n_beats] == "S").mean() <= 0.01


def test_classifies_real_cinc2017_recordings(runtime: ModelRuntime, data_root: Path) -> None:
    cinc = data_root / "cinc2017"
    if not (cinc / "REFERENCE.csv").exists():
        pytest.skip("CinC 2017 data not present")
    ref = dict(md.read_cinc2017_reference(cinc))
    chosen = {name: ref[name] for name in RHYTHM_CASES}
    correct = 0
    for name, label in chosen.items():
        x = md.load_cinc2017_ecg(cinc, name)
        probs = runtime.predict_rhythm(*recording_crops(x, recording_rpeaks([x])[0])).mean(axis=0)
        correct += md.RHYTHM_CLASSES[int(np.argmax(probs))] == label
    assert correct >= len(chosen) - 1


# Three normal-sinus and three AF recordings (the first of each label in REFERENCE.csv).
RHYTHM_CASES = ("A00003", "A00006", "A00011", "A00009", "A00054", "A00067")
