"""Batched inference runtime: beat classes, V runs, rhythm and VF for many patients.

:meth:`ModelRuntime.analyse` takes the windows of one worker poll (all patients) and runs
one forward pass for all beats to classify and one for all rhythm windows. Beats are
classified once: a beat flagged ``beat_is_new`` whose post-RR or segment tail is not yet
in the window (the last beat of a window) is deferred and classified from the next
window of that patient; classes are cached by event time so V runs can be computed over
all beats of a window.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import preprocess as pp
from models.architecture import BeatNet, RhythmNet
from models.packaging import WEIGHTS_DIR, load_metadata, load_state
from models.sveb import SvebModel, rr_history_rows, sveb_features_from_history, sveb_labels
from models.vf import VfModel
from stream.window_analysis import WindowAnalysis

BEAT_CLASSES = ("N", "S", "V", "F", "Q")
RHYTHM_CLASSES = ("N", "A", "O", "~")
BEAT_VERSION = "beats-2.0.0"
RHYTHM_VERSION = "rhythm-1.1.0"

# The second ECG lead's beats are remembered under the patient id plus this suffix (a
# NUL, which stream.schema rejects in patient ids).
SECOND_LEAD_KEY = "\x00ecg2"
_MATCH_MS = 40.0  # the same beat seen in two windows (R position jitter of the detector)
_MAX_PATIENTS = 100_000  # LRU bound on the per-patient beat memory
_PREDICT_CHUNK = 4096


@dataclass(slots=True)
class ModelOutputs:
    beat_counts: dict[str, int] = field(default_factory=dict)
    v_run_length: int = 0
    v_run_rate_bpm: float | None = None
    rhythm: str | None = None
    rhythm_probs: dict[str, float] = field(default_factory=dict)
    vf_score: float | None = None
    vf_seconds: float = 0.0
    second_lead: ModelOutputs | None = None  # beats, V run and VF of the second lead


@dataclass(slots=True)
class _PatientBeats:
    """Recent beats of one patient: event times (ms) and classes, plus deferred beats."""

    times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    classes: list[str] = field(default_factory=list)
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def class_at(self, t: float) -> str | None:
        if self.times.size == 0:
            return None
        i = int(np.argmin(np.abs(self.times - t)))
        return self.classes[i] if abs(self.times[i] - t) <= _MATCH_MS else None

    def is_pending(self, t: float) -> bool:
        return bool(self.pending.size) and bool(np.min(np.abs(self.pending - t)) <= _MATCH_MS)

    def prune(self, older_than_ms: float) -> None:
        keep = self.times >= older_than_ms
        self.times = self.times[keep]
        self.classes = [c for c, k in zip(self.classes, keep, strict=True) if k]
        self.pending = self.pending[self.pending >= older_than_ms]


def beat_metadata(**extra: Any) -> dict[str, Any]:
    return {
        "version": BEAT_VERSION,
        "classes": list(BEAT_CLASSES),
        "architecture": "BeatNet: 4-layer 1D-CNN on the beat segment + RR-feature MLP",
        "input": {"segment": {"shape": [None, 1, pp.BEAT_LEN], "dtype": "float32",
                              "fs_hz": pp.ECG_FS, "samples_before_r": pp.BEAT_PRE,
                              "samples_after_r": pp.BEAT_POST,
                              "preprocessing": "0.5-40 Hz band-pass, minus segment median, "
                                               "divided by the local median QRS "
                                               "peak-to-peak amplitude"},
                  "rr": {"shape": [None, pp.N_CONTEXT_FEATURES],
                         "features": list(pp.CONTEXT_FEATURES),
                         "template": "median beat of the ~11 beats around the beat (runtime: "
                                     "of all beats in the window)",
                         "local_rr": f"median of the last {pp.LOCAL_RR_BEATS} RR intervals"}},
        **extra,
    }


def rhythm_metadata(**extra: Any) -> dict[str, Any]:
    with_rr = bool(extra.get("rr_features"))
    meta: dict[str, Any] = {
        "version": RHYTHM_VERSION,
        "classes": list(RHYTHM_CLASSES),
        "architecture": "RhythmNet: residual 1D-CNN (5 blocks), mean+max pooling"
                        + (", fused with an MLP on the window's RR features" if with_rr else ""),
        "input": {"shape": [None, 1, pp.RHYTHM_LEN], "dtype": "float32", "fs_hz": pp.ECG_FS,
                  "preprocessing": "0.5-40 Hz band-pass; per-window median removed and "
                                   "divided by the 99th percentile of |x| (done inside "
                                   "predict_rhythm)"},
        **extra,
    }
    if with_rr:
        meta["input"]["rr"] = {"shape": [None, pp.N_RHYTHM_RR_FEATURES], "dtype": "float32",
                               "features": list(pp.RHYTHM_RR_FEATURES),
                               "source": "R peaks inside the window from the pipeline's "
                                         "streaming detector (models.preprocess.rhythm_rr_features)"}
    return meta


def _check_array(name: str, x: Any, ndim: int, tail: tuple[int | None, ...]) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise ValueError(f"{name} must be float32, got {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {x.shape}")
    for axis, want in enumerate(tail, start=1):
        if want is not None and x.shape[axis] != want:
            raise ValueError(f"{name} dimension {axis} must be {want}, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


class ModelRuntime:
    def __init__(self, beat_model: BeatNet, rhythm_model: RhythmNet, vf_model: VfModel,
                 beat_meta: dict[str, Any], rhythm_meta: dict[str, Any],
                 sveb_model: SvebModel | None = None):
        self.beat_model = beat_model.eval()
        # Leads the beat model is given in the stream: a two-lead network may be shipped to
        # run on the primary lead alone (``runtime_leads`` in beats.json) when patient-wise
        # CV showed the second lead not to help (models/cards/beats.md).
        self.beat_leads = min(int(beat_meta.get("runtime_leads", beat_model.n_leads)),
                              beat_model.n_leads)
        self.sveb_model = sveb_model
        self.rhythm_model = rhythm_model.eval()
        self.vf_model = vf_model
        self.beat_meta = beat_meta
        self.rhythm_meta = rhythm_meta
        self._patients: OrderedDict[str, _PatientBeats] = OrderedDict()
        # Called per analysed window with the patient id, its beats' event times (ms) and
        # their classes (None: not classified yet), before the beat memory is pruned; the
        # worker's evidence strips draw them (stream.agents.care_feed).
        self.beat_observer: Callable[[str, np.ndarray, list[str | None]], None] | None = None

    @classmethod
    def load_default(cls, weights_dir: Path | None = None, with_sveb: bool = True) -> ModelRuntime:
        """Load the committed weights from ``models/weights`` (``with_sveb=False``: the beat
        CNN decides S alone, as when training the S expert)."""
        wd = Path(weights_dir or WEIGHTS_DIR)
        beat_meta = load_metadata(wd, "beats")
        beat = BeatNet(n_leads=int(beat_meta.get("n_leads", 1)))
        beat.load_state_dict(load_state(wd, "beats"))
        rhythm_meta = load_metadata(wd, "rhythm")
        rhythm = RhythmNet(n_rr=len(rhythm_meta.get("rr_features", [])))
        rhythm.load_state_dict(load_state(wd, "rhythm"))
        return cls(beat, rhythm, VfModel.load(wd / "vf.json"), beat_meta,
                   rhythm_meta, SvebModel.load(wd / "sveb.json") if with_sveb else None)

    @property
    def model_version(self) -> str:
        versions = [self.beat_meta["version"], self.rhythm_meta["version"], self.vf_model.version]
        if self.sveb_model is not None:
            versions.append(self.sveb_model.version)
        return "+".join(versions)

    # ---------------------------------------------------------------- batched forward
    def predict_beats(self, segments: np.ndarray, rr: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, 5)`` for normalised beat segments ``(n, 1, BEAT_LEN)``
        or ``(n, 2, BEAT_LEN)`` (see :func:`models.preprocess.beat_segments`; channel 1 a
        second lead at the same R positions, all zeros where there is none) and context
        features ``(n, 10)`` (:func:`models.preprocess.beat_context`: RR features, then
        morphology vs the local template beat, of the primary lead)."""
        _check_array("segments", segments, 3, (None, pp.BEAT_LEN))
        if segments.shape[1] not in (1, pp.N_LEADS):
            raise ValueError(f"segments must have 1 or {pp.N_LEADS} leads, got shape {segments.shape}")
        _check_array("rr", rr, 2, (pp.N_CONTEXT_FEATURES,))
        if rr.shape[0] != segments.shape[0]:
            raise ValueError(f"segments and rr disagree on n: {segments.shape[0]} vs {rr.shape[0]}")
        out = np.zeros((segments.shape[0], len(BEAT_CLASSES)), dtype=np.float32)
        with torch.inference_mode():
            for i in range(0, segments.shape[0], _PREDICT_CHUNK):
                logits = self.beat_model(torch.from_numpy(segments[i:i + _PREDICT_CHUNK]),
                                         torch.from_numpy(rr[i:i + _PREDICT_CHUNK]))
                out[i:i + _PREDICT_CHUNK] = torch.softmax(logits, dim=1).numpy()
        return out

    def predict_rhythm(self, x: np.ndarray, rr: np.ndarray | None = None) -> np.ndarray:
        """Rhythm probabilities ``(n, 4)`` for band-passed ECG windows ``(n, 1, L)`` at
        250 Hz (L = 2500 for 10 s; per-window normalisation is applied here).

        ``rr``: the windows' RR features ``(n, 8)`` (:func:`models.preprocess.rhythm_rr_features`
        of the R peaks inside each window), for a model trained with them. Without it they
        are computed from R peaks detected in each window alone, which misses beats in the
        detector's first second; streams and whole recordings should pass their own."""
        _check_array("x", x, 3, (1, None))
        if x.shape[2] < int(2 * pp.ECG_FS):
            raise ValueError(f"rhythm windows must be at least 2 s ({int(2 * pp.ECG_FS)} "
                             f"samples), got {x.shape[2]}")
        rr_t = None
        if self.rhythm_model.n_rr:
            if rr is None:
                from stream.dsp.rpeaks import ecg_rpeaks

                rr = np.stack([pp.rhythm_rr_features(ecg_rpeaks(row[0], pp.ECG_FS), x.shape[2])
                               for row in x]).astype(np.float32)
            _check_array("rr", rr, 2, (self.rhythm_model.n_rr,))
            if rr.shape[0] != x.shape[0]:
                raise ValueError(f"x and rr disagree on n: {x.shape[0]} vs {rr.shape[0]}")
            rr_t = torch.from_numpy(rr)
        xn = pp.rhythm_normalise(x)
        out = np.zeros((x.shape[0], len(RHYTHM_CLASSES)), dtype=np.float32)
        with torch.inference_mode():
            for i in range(0, x.shape[0], _PREDICT_CHUNK):
                rr_i = None if rr_t is None else rr_t[i:i + _PREDICT_CHUNK]
                logits = self.rhythm_model(torch.from_numpy(xn[i:i + _PREDICT_CHUNK]), rr_i)
                out[i:i + _PREDICT_CHUNK] = torch.softmax(logits, dim=1).numpy()
        return out

    def beat_labels(self, probs: np.ndarray, sveb_feats: np.ndarray | None) -> np.ndarray:
        """Class index per beat: the CNN's argmax, except that N against S is the S
        expert's decision (:mod:`models.sveb`) for beats the CNN calls N or S and whose
        expert features are known (a row of NaN, or no expert: the CNN decides)."""
        labels = np.asarray(probs).argmax(axis=1)
        if self.sveb_model is None or sveb_feats is None or labels.size == 0:
            return labels
        known = np.all(np.isfinite(sveb_feats), axis=1)
        if known.any():
            labels[known] = sveb_labels(labels[known], self.sveb_model.is_sveb(sveb_feats[known]))
        return labels

    def _sveb_features(self, parts: Sequence[tuple[int, np.ndarray, np.ndarray, np.ndarray,
                                                   np.ndarray]],
                       window_rhythm: dict[int, np.ndarray]) -> np.ndarray | None:
        """The S expert's features of every beat of this call, in one vectorised pass
        (rows of NaN for a window under 2 s, which has no rhythm estimate)."""
        if self.sveb_model is None or not parts:
            return None
        nan_rhythm = np.full(len(RHYTHM_CLASSES), np.nan)
        history = np.concatenate([rr_history_rows(seq, js) for _, seq, js, _, _ in parts])
        post = np.concatenate([p for _, _, _, p, _ in parts])
        morph = np.concatenate([m for _, _, _, _, m in parts])
        rhythm = np.concatenate([np.broadcast_to(window_rhythm.get(wi, nan_rhythm),
                                                 (js.size, len(RHYTHM_CLASSES)))
                                 for wi, _, js, _, _ in parts])
        return sveb_features_from_history(history, post, morph, rhythm)

    # ---------------------------------------------------------------- window analysis
    def forget(self, patient_id: str) -> None:
        """Drop a patient's beat memory (its DSP state was reset or moved to another worker)."""
        self._patients.pop(patient_id, None)
        self._patients.pop(patient_id + SECOND_LEAD_KEY, None)

    def _memory(self, patient_id: str) -> _PatientBeats:
        mem = self._patients.get(patient_id)
        if mem is None:
            mem = _PatientBeats()
            self._patients[patient_id] = mem
            if len(self._patients) > _MAX_PATIENTS:
                self._patients.popitem(last=False)
        else:
            self._patients.move_to_end(patient_id)
        return mem

    def analyse(self, windows: Sequence[WindowAnalysis]) -> list[ModelOutputs]:
        """Model outputs for each window (same order), batched across all windows. A window's
        second lead (``ecg2_input``) goes through the beat and VF models in the same batch,
        as a stand-in window with its own beat memory and no rhythm model; its outputs are
        the window's ``second_lead``."""
        stand_ins: list[WindowAnalysis] = []
        owners: list[int] = []
        for wi, w in enumerate(windows):
            lead = w.ecg2_input
            if lead is None:
                continue
            stand_ins.append(WindowAnalysis(
                patient_id=w.patient_id + SECOND_LEAD_KEY, t_ms=w.t_ms, window_s=w.window_s,
                ecg_fs=lead.fs, ecg_window=lead.window, beat_samples=lead.beat_samples,
                beat_is_new=lead.beat_is_new, rr_history_ms=lead.rr_history_ms,
                classify_rhythm=False))
            owners.append(wi)
        if not stand_ins:
            return self._analyse_leads(windows)
        outputs = self._analyse_leads([*windows, *stand_ins])
        first = outputs[: len(windows)]
        for wi, second in zip(owners, outputs[len(windows):], strict=True):
            first[wi].second_lead = second
        return first

    def _analyse_leads(self, windows: Sequence[WindowAnalysis]) -> list[ModelOutputs]:
        """Model outputs for each window, batched across all windows. A two-lead beat model
        sees the window's ``ecg2_input`` (if any) as its second channel; the second lead's
        own stand-in windows have none, so they are classified from their lead alone."""
        outputs = [ModelOutputs() for _ in windows]
        seg_parts: list[np.ndarray] = []
        rr_parts: list[np.ndarray] = []
        # Per window with beats to classify: (window index, RR sequence, pre-RR indices,
        # post-RRs, morphology features) for the S expert, which also needs the window's
        # rhythm probabilities and so runs after the rhythm pass.
        sveb_parts: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        owners: list[tuple[int, float]] = []  # (window index, beat time ms) per beat row
        rhythm_rows: list[np.ndarray] = []
        rhythm_rr: list[np.ndarray] = []
        rhythm_owner: list[int] = []
        prepared: list[tuple[int, np.ndarray, np.ndarray, float] | None] = []
        # Beats queued for classification in this call, per patient: a patient may have
        # several windows in one batch (catch-up, replay), and its memory only learns the
        # classes after the batched forward pass, so without this a beat offered by one
        # window and still pending in the next would be classified twice.
        queued: dict[str, list[float]] = {}
        # Band-pass every usable window in one batched call, before the per-window loop
        # (bit-identical to one call each; see pp.ecg_bandpass_many).
        usable = [wi for wi, w in enumerate(windows)
                  if w.ecg_window is not None and w.ecg_fs and len(w.ecg_window) >= int(w.ecg_fs)
                  and np.all(np.isfinite(np.asarray(w.ecg_window, dtype=np.float64)))]
        banded = dict(zip(usable, pp.ecg_bandpass_many(
            [pp.ecg_resample(np.asarray(windows[wi].ecg_window, dtype=np.float64), float(windows[wi].ecg_fs or 0))
             for wi in usable]), strict=True))
        vf_inputs: list[tuple[int, np.ndarray]] = []

        for wi, w in enumerate(windows):
            if wi not in banded:
                prepared.append(None)
                continue
            fs = float(w.ecg_fs or 0)
            x = banded[wi]
            r = np.round(np.asarray(w.beat_samples, dtype=np.float64) * pp.ECG_FS / fs)
            r = r.astype(np.int64)
            is_new = np.asarray(w.beat_is_new, dtype=bool)
            if is_new.size != r.size:
                raise ValueError(f"window {w.patient_id}@{w.t_ms}: beat_is_new has "
                                 f"{is_new.size} entries for {r.size} beats")
            start_ms = w.t_ms - w.window_s * 1000.0
            times = start_ms + r * 1000.0 / pp.ECG_FS
            prepared.append((wi, x, times, start_ms))
            mem = self._memory(w.patient_id)
            seq = np.concatenate([np.asarray(w.rr_history_ms, dtype=np.float64) / 1000.0,
                                  np.diff(r) / pp.ECG_FS])
            n_hist = len(w.rr_history_ms)
            todo = []
            for i in range(r.size):
                t = float(times[i])
                wanted = bool(is_new[i]) or mem.is_pending(t)
                if not wanted or mem.class_at(t) is not None:
                    continue
                if any(abs(q - t) <= _MATCH_MS for q in queued.get(w.patient_id, ())):
                    continue
                j = n_hist + i - 1  # index of this beat's pre-RR in seq
                # The tail (post-RR and the T wave) must be in the window; a missing head
                # only happens in a patient's first window and is edge-padded.
                ready = i + 1 < r.size and j >= 0 and r[i] + pp.BEAT_POST <= x.size
                if ready:
                    todo.append((i, j))
                elif is_new[i] and not mem.is_pending(t):
                    mem.pending = np.append(mem.pending, t)
            if todo:
                idx = np.array([i for i, _ in todo])
                js = np.array([j for _, j in todo])
                scale = pp.beat_scale(pp.qrs_amplitudes(x, r))
                local = np.array([np.median(seq[max(0, j - pp.LOCAL_RR_BEATS + 1): j + 1])
                                  for j in js])
                seg_all = pp.beat_segments(x, r, scale)
                template = np.broadcast_to(np.median(seg_all, axis=0),
                                           (idx.size, *seg_all.shape[1:]))
                seg = seg_all[idx]
                if self.beat_leads > 1:
                    second = second_lead_segments(w, r[idx])
                    seg_parts.append(np.concatenate([seg, second], axis=1))
                else:
                    seg_parts.append(seg)
                post = np.diff(r)[idx] / pp.ECG_FS
                context = pp.beat_context(seq[js], post, local, seg, template)
                rr_parts.append(context)
                sveb_parts.append((wi, seq, js, post, context[:, pp.N_RR_FEATURES:]))
                owners.extend((wi, float(times[i])) for i in idx)
                queued.setdefault(w.patient_id, []).extend(float(times[i]) for i in idx)
            crop = x[-pp.RHYTHM_LEN:] if x.size >= pp.RHYTHM_LEN else pp.fit_length(
                x, pp.RHYTHM_LEN)
            if x.size >= int(2 * pp.ECG_FS) and w.classify_rhythm:
                rhythm_rows.append(crop.astype(np.float32))
                # The window's own beats, shifted like the crop (end-aligned or centred).
                shift = (x.size - pp.RHYTHM_LEN if x.size >= pp.RHYTHM_LEN
                         else pp.fit_length_start(x.size, pp.RHYTHM_LEN))
                rhythm_rr.append(pp.rhythm_rr_features(r - shift))
                rhythm_owner.append(wi)
            vf_inputs.append((wi, x))
        # The VF detector on every window at once (bit-identical to one call each).
        for (wi, _), (score, seconds) in zip(vf_inputs, self.vf_model.analyse_many([x for _, x in vf_inputs]),
                                             strict=True):
            outputs[wi].vf_score, outputs[wi].vf_seconds = score, seconds

        # Beats classified in this call, per patient: event times and the index of the window
        # that classified each (converted to arrays once, below).
        classified_lists: dict[str, tuple[list[float], list[int]]] = {}
        window_rhythm: dict[int, np.ndarray] = {}
        if rhythm_rows:
            rprobs = self.predict_rhythm(np.stack(rhythm_rows)[:, None, :],
                                         np.stack(rhythm_rr).astype(np.float32))
            for wi, p in zip(rhythm_owner, rprobs, strict=True):
                window_rhythm[wi] = p
                outputs[wi].rhythm = RHYTHM_CLASSES[int(np.argmax(p))]
                outputs[wi].rhythm_probs = {c: round(float(v), 4)
                                            for c, v in zip(RHYTHM_CLASSES, p, strict=True)}

        if seg_parts:
            probs = self.predict_beats(np.concatenate(seg_parts), np.concatenate(rr_parts))
            labels = self.beat_labels(probs, self._sveb_features(sveb_parts, window_rhythm))
            for (wi, t), k in zip(owners, labels, strict=True):
                times_owners = classified_lists.setdefault(windows[wi].patient_id, ([], []))
                times_owners[0].append(t)
                times_owners[1].append(wi)
                cls = BEAT_CLASSES[int(k)]
                mem = self._memory(windows[wi].patient_id)
                mem.times = np.append(mem.times, t)
                mem.classes.append(cls)
                if mem.pending.size:
                    mem.pending = mem.pending[np.abs(mem.pending - t) > _MATCH_MS]
                counts = outputs[wi].beat_counts
                counts[cls] = counts.get(cls, 0) + 1

        classified_by = {p: (np.asarray(ts, dtype=np.float64), np.asarray(ws, dtype=np.int64))
                         for p, (ts, ws) in classified_lists.items()}
        no_beats = (np.zeros(0), np.zeros(0, dtype=np.int64))

        for item in prepared:
            if item is None:
                continue
            wi, _, times, start_ms = item
            mem = self._memory(windows[wi].patient_id)
            # A beat that a later window of this batch classified was not yet known when this
            # window closed: leaving it out makes the run length the same however the windows
            # were batched (one per poll live, a whole record at once in a replay).
            classes = [mem.class_at(float(t)) for t in times]
            batch_times, owners_of = classified_by.get(windows[wi].patient_id, no_beats)
            later = batch_times[owners_of > wi]
            if later.size and times.size:
                unknown = np.min(np.abs(times[:, None] - later[None, :]), axis=1) <= _MATCH_MS
                classes = [None if u else c for c, u in zip(classes, unknown, strict=True)]
            if self.beat_observer is not None:
                self.beat_observer(windows[wi].patient_id, times, classes)
            length, rate = _longest_v_run(times, classes)
            outputs[wi].v_run_length = length
            outputs[wi].v_run_rate_bpm = rate
            # Keep one window of history before this window for deferred/overlapping beats.
            mem.prune(start_ms - windows[wi].window_s * 1000.0)
        return outputs


def second_lead_segments(w: WindowAnalysis, r: np.ndarray) -> np.ndarray:
    """``(len(r), 1, BEAT_LEN)`` segments of the window's second lead (``ecg2_input``) at the
    primary lead's R positions ``r`` (samples at ECG_FS), scaled by the second lead's own
    median QRS amplitude over the window; zeros (= no second lead) when the window has none
    or it is unusable. Both leads' windows cover the same span of event time."""
    zeros = np.zeros((len(r), 1, pp.BEAT_LEN), dtype=np.float32)
    lead = w.ecg2_input
    if lead is None or not lead.fs or len(lead.window) < int(lead.fs) or len(r) == 0:
        return zeros
    x2 = np.asarray(lead.window, dtype=np.float64)
    if not np.all(np.isfinite(x2)):
        return zeros
    x2 = pp.ecg_bandpass(pp.ecg_resample(x2, float(lead.fs)))
    scale = pp.beat_scale(pp.qrs_amplitudes(x2, r))
    seg = pp.beat_segments(x2, r, scale)
    if not np.any(seg):
        return zeros
    return seg


def _longest_v_run(times_ms: np.ndarray, classes: Sequence[str | None]) -> tuple[int, float | None]:
    """Longest run of consecutive V beats and its mean rate (bpm)."""
    best, best_rate = 0, None
    i = 0
    n = len(classes)
    while i < n:
        if classes[i] != "V":
            i += 1
            continue
        j = i
        while j + 1 < n and classes[j + 1] == "V":
            j += 1
        length = j - i + 1
        if length > best:
            best = length
            span = (times_ms[j] - times_ms[i]) / 1000.0
            best_rate = round(60.0 * (length - 1) / span, 1) if length > 1 and span > 0 else None
        i = j + 1
    return best, best_rate
