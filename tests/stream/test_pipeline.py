"""The pure pipeline the worker, replay and benchmarks share: chunks in, findings out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.runtime import ModelRuntime
from models.trends import TrendTracker
from stream.findings import VitalsFinding
from stream.gateway import chunk_signals, merge_by_time
from stream.pipeline import VitalsPipeline
from stream.schema import Signal
from stream.simulator import EpisodeSpec, PatientScenario, simulate_patient

START_MS = 1_760_000_000_000


@pytest.fixture
def runtime() -> ModelRuntime:
    # A fresh runtime per test: it remembers each patient's classified beats.
    return ModelRuntime.load_default()


@pytest.fixture(scope="module")
def chunks() -> list:
    scenarios = [
        PatientScenario("p-brady", (EpisodeSpec("extreme_brady", 20, 30),), duration_s=60),
        PatientScenario("p-normal", (), duration_s=60),
    ]
    streams = []
    for i, s in enumerate(scenarios):
        rec = simulate_patient(s, seed=i, start_ms=START_MS)
        streams.append(
            chunk_signals(rec.patient_id, "dev", {Signal.ECG: (rec.ecg, 250.0), Signal.PPG: (rec.ppg, 125.0),
                                                  Signal.RESP: (rec.resp, 25.0)}, START_MS)
        )
    return list(merge_by_time(*streams))


def test_findings_per_patient_per_hop_with_plausible_rates(runtime: ModelRuntime, chunks: list) -> None:
    findings = VitalsPipeline(runtime).process(chunks)
    by_patient = {p: [f for f in findings if f.patient_id == p] for p in ("p-brady", "p-normal")}
    for items in by_patient.values():
        times = [f.t_ms for f in items]
        assert times == sorted(times) and len(set(np.diff(times))) == 1  # one per 2 s hop
        assert 20 <= len(items) <= 26
        assert all(f.model_version == runtime.model_version for f in items)
    normal_hr = [f.ecg.hr_bpm for f in by_patient["p-normal"] if f.ecg and f.ecg.usable]
    assert normal_hr and 60 <= float(np.median(normal_hr)) <= 85
    during = [f for f in by_patient["p-brady"] if START_MS + 35_000 <= f.t_ms <= START_MS + 50_000]
    assert during and all(f.ecg.hr_min_5beats < 40 for f in during)
    # Breathing rate needs ~20 s of respiration before the first estimate.
    assert all(f.resp and f.resp.rate_bpm and 8 <= f.resp.rate_bpm <= 25 for f in by_patient["p-normal"][6:])
    # The wire format carries everything the aggregator reads.
    assert VitalsFinding.from_json(findings[-1].to_json()) == findings[-1]
    # A field a newer worker added (rolling upgrade) does not make the finding unreadable.
    newer = json.loads(findings[-1].to_json())
    newer["ecg"]["st_deviation_mv"] = 0.12
    newer["future_signal"] = {"x": 1}
    assert VitalsFinding.from_dict(newer) == findings[-1]


def test_batching_across_patients_does_not_change_findings(runtime: ModelRuntime, chunks: list) -> None:
    whole = VitalsPipeline(runtime).process(chunks)
    one_by_one_pipe = VitalsPipeline(ModelRuntime.load_default())
    one_by_one = [f for c in chunks for f in one_by_one_pipe.process([c])]
    key = lambda f: (f.patient_id, f.t_ms)  # noqa: E731
    assert sorted(whole, key=key) == sorted(one_by_one, key=key)


def test_duplicate_chunks_are_counted_and_change_nothing(runtime: ModelRuntime, chunks: list) -> None:
    once = VitalsPipeline(runtime).process(chunks)
    pipe = VitalsPipeline(ModelRuntime.load_default())
    twice = pipe.process([c for c in chunks for _ in range(2)])
    assert twice == once
    assert pipe.counters.chunks["duplicate"] == len(chunks)


def test_flush_idle_only_flushes_patients_quiet_for_long_enough() -> None:
    import neurokit2 as nk

    from stream.schema import make_chunk

    now = [0.0]
    pipe = VitalsPipeline(ModelRuntime.load_default(), clock=lambda: now[0])
    ecg = nk.ecg_simulate(duration=20, sampling_rate=250, heart_rate=80, random_state=3)
    for k in range(20):
        pipe.push(make_chunk("quiet", "d", "ecg", 250, 1_700_000_000_000 + 1000 * k, k, ecg[k * 250 : (k + 1) * 250]))
    now[0] = 2.0
    assert pipe.flush_idle(3.0) == []
    now[0] = 3.5
    windows = pipe.flush_idle(3.0)
    assert [w.t_ms - 1_700_000_000_000 for w in windows] == [20_000]
    assert pipe.flush_idle(3.0) == []


def test_flush_idle_waits_for_a_patient_whose_data_the_worker_has_not_read_yet() -> None:
    import neurokit2 as nk

    from stream.consumer_progress import ConsumerProgress
    from stream.schema import make_chunk

    now = [0.0]
    pipe = VitalsPipeline(ModelRuntime.load_default(), clock=lambda: now[0])
    progress = ConsumerProgress()
    ecg = nk.ecg_simulate(duration=20, sampling_rate=250, heart_rate=80, random_state=3)
    for k in range(20):
        pipe.push(make_chunk("lagging", "d", "ecg", 250, 1_700_000_000_000 + 1000 * k, k, ecg[k * 250 : (k + 1) * 250]))
        progress.advance(("vitals.ecg", 0), k)
        progress.attach("lagging", ("vitals.ecg", 0))
    highwater = {("vitals.ecg", 0): 25}  # five more chunks wait in the partition
    now[0] = 10.0
    assert pipe.flush_idle(3.0, caught_up=lambda p: progress.caught_up(p, highwater.get)) == []
    highwater[("vitals.ecg", 0)] = 20  # the worker has read everything: the silence is real
    windows = pipe.flush_idle(3.0, caught_up=lambda p: progress.caught_up(p, highwater.get))
    assert [w.t_ms - 1_700_000_000_000 for w in windows] == [20_000]


def test_held_chunks_are_released_once_each_and_findings_match(runtime: ModelRuntime, chunks: list) -> None:
    """The worker reads the PPG topic 20 s behind the others. Every chunk held back is
    released exactly once (the worker acknowledges its message then), and the findings are
    those of the interleaved feed."""
    ref_pipe = VitalsPipeline(ModelRuntime.load_default())
    ref_windows = [w for c in chunks for w in ref_pipe.push(c)]
    ref_windows += [w for pid in ("p-brady", "p-normal") for w in ref_pipe.flush(pid)]
    reference = ref_pipe.assemble(ref_windows)
    released: list = []
    pipe = VitalsPipeline(runtime, on_release=released.append)
    ppg = [c for c in chunks if c.signal is Signal.PPG]
    others = [c for c in chunks if c.signal is not Signal.PPG]
    order = []  # ECG and RESP read 20 s ahead of the PPG
    for c in others:
        order.append(c)
        while ppg and ppg[0].end_ms <= c.end_ms - 20_000:
            order.append(ppg.pop(0))
    order += ppg
    # The PPG topic's position is known from the start (Faust's first round of reads takes a
    # message from every topic), but it advances 20 s of data behind the others.
    read_until: dict[Signal, float] = {Signal.PPG: START_MS / 1000.0}
    last_ppg_s = max(c.end_ms for c in chunks if c.signal is Signal.PPG) / 1000.0

    def unread(signal: Signal, produced_s: float) -> bool:
        read = read_until.get(signal)
        return signal is Signal.PPG and read is not None and read < min(produced_s, last_ppg_s)

    held: list = []
    windows = []
    for c in order:
        produced_s = c.end_ms / 1000.0
        read_until[c.signal] = max(read_until.get(c.signal, 0.0), produced_s)
        windows += pipe.push(c, produced_s, unread)
        if pipe.holds(c):
            held.append(c)
    for pid in ("p-brady", "p-normal"):
        windows += pipe.flush(pid)
    assert held and pipe.counters.held == len(held)
    # Every held chunk is released exactly once (so is any chunk that queued behind held ones).
    assert len(set(map(id, released))) == len(released) and set(map(id, held)) <= set(map(id, released))
    findings = pipe.assemble(windows)
    key = lambda f: (f.patient_id, f.t_ms)  # noqa: E731
    assert sorted(map(key, findings)) == sorted(map(key, reference))
    assert all(not f.gaps for f in findings)
    by_key = {key(f): f for f in reference}
    assert all(f.ecg.hr_bpm == by_key[key(f)].ecg.hr_bpm for f in findings)
    assert all(f.ppg == by_key[key(f)].ppg for f in findings)


def test_forgetting_a_patient_releases_its_held_chunks_and_a_revocation_drops_them() -> None:
    released: list = []
    pipe = VitalsPipeline(ModelRuntime.load_default(), on_release=released.append)
    rec = simulate_patient(PatientScenario("p", (), duration_s=20), start_ms=START_MS)
    ecg = list(chunk_signals("p", "dev", {Signal.ECG: (rec.ecg, 250.0)}, START_MS))
    ppg = list(chunk_signals("p", "dev", {Signal.PPG: (rec.ppg, 125.0)}, START_MS))
    pipe.push(ppg[0], 1.0)
    for c in ecg[2:8]:
        pipe.push(c, c.end_ms / 1000.0, lambda s, t: s is Signal.PPG)
        assert pipe.holds(c)
    assert pipe.counters.held_now == 6
    dropped = pipe.drop_held("p")  # revoked: nothing is released (the messages are read again)
    assert dropped == ecg[2:8] and released == [] and pipe.counters.held_now == 0
    for c in ecg[8:10]:
        pipe.push(c, c.end_ms / 1000.0, lambda s, t: s is Signal.PPG)
    pipe.forget("p")
    assert released == ecg[8:10] and pipe.counters.held_now == 0


class _DictTrendStore:
    def __init__(self) -> None:
        self.saved: dict[str, str] = {}

    def load(self, patient_id: str) -> TrendTracker | None:
        saved = self.saved.get(patient_id)
        return TrendTracker.from_dict(json.loads(saved)) if saved else None

    def save(self, patient_id: str, tracker: TrendTracker) -> None:
        self.saved[patient_id] = json.dumps(tracker.to_dict())

    def delete(self, patient_id: str) -> None:
        self.saved.pop(patient_id, None)


def test_trend_state_outlives_the_pipeline(runtime: ModelRuntime, chunks: list) -> None:
    """Hours of trend history cannot be rebuilt from one window: a worker saves it (at most
    once a minute of event time per patient) and the next owner of the patient starts from
    the saved copy instead of from nothing."""
    store = _DictTrendStore()
    half = len(chunks) // 2
    first = VitalsPipeline(runtime, trend_store=store, trend_lookup_s=0.0)  # new patients
    first.process(chunks[:half])
    assert sorted(store.saved) == ["p-brady", "p-normal"]
    assert first.counters.trends_saved == 2  # the first window; the next save is due 60 s later
    saved = {pid: json.loads(value) for pid, value in store.saved.items()}
    second = VitalsPipeline(ModelRuntime.load_default(), trend_store=store)  # a new owner
    second.process(chunks[half:])
    assert second.counters.trends_restored == 2
    for pid, snapshot in saved.items():
        tracker = second.trends[pid]
        assert tracker.last_t_ms is not None and tracker.last_t_ms > snapshot["last_t_ms"]
        for name, series in snapshot["series"].items():
            # The saved values of the current 5-minute bin, then the new owner's own.
            carried = tracker.series[name].current
            assert carried[: len(series["current"])] == series["current"]
            assert len(carried) > len(series["current"])


def _brady_patient_goes_quiet(runtime: ModelRuntime, chunks: list) -> tuple[VitalsPipeline, _DictTrendStore, list]:
    """A pipeline on a fake wall clock: p-brady sends its first half and stops at t=0 s,
    p-normal sends on until t=100 s; returns the pipeline, its store and the clock."""
    now = [0.0]
    store = _DictTrendStore()
    pipe = VitalsPipeline(runtime, trend_store=store, trend_lookup_s=0.0, clock=lambda: now[0])
    half = len(chunks) // 2
    pipe.process(chunks[:half])
    now[0] = 100.0
    pipe.process([c for c in chunks[half:] if c.patient_id == "p-normal"])
    return pipe, store, now


def test_a_patient_whose_device_left_is_forgotten_and_resumes_its_trends(runtime: ModelRuntime, chunks: list) -> None:
    """A worker must not keep every patient it ever saw: one silent for forget_idle_s is
    dropped from memory once flushed, its trend state saved first; when the device comes
    back the patient restarts from that copy."""
    pipe, store, now = _brady_patient_goes_quiet(runtime, chunks)
    assert pipe.forget_idle(600.0) == []  # nobody silent that long
    now[0] = 650.0
    assert pipe.forget_idle(600.0) == []  # p-brady is silent, but its last window is not flushed
    pipe.flush_idle(3.0)
    newest = pipe.trends["p-brady"].last_t_ms  # the flushed window's, not yet saved
    assert json.loads(store.saved["p-brady"])["last_t_ms"] < newest
    assert pipe.forget_idle(600.0) == ["p-brady"]
    assert set(pipe.monitors) == {"p-normal"} and set(pipe.trends) == {"p-normal"}
    assert pipe.counters.patients_left == 1
    saved = json.loads(store.saved["p-brady"])
    assert saved["last_t_ms"] == newest
    assert pipe.expire_departed_trends() == []  # gone for less than the 6-h history
    pipe.process([c for c in chunks[len(chunks) // 2 :] if c.patient_id == "p-brady"])
    assert pipe.counters.trends_restored == 1 and pipe.trends["p-brady"].last_t_ms > saved["last_t_ms"]
    assert pipe.departed == {}  # back: its copy is live again, never expired


def test_the_trend_copy_of_a_patient_gone_longer_than_its_history_is_deleted(
    runtime: ModelRuntime, chunks: list
) -> None:
    """A tracker older than its history would drop all its bins: the store must not keep
    one per patient ever discharged."""
    pipe, store, now = _brady_patient_goes_quiet(runtime, chunks)
    now[0] = 650.0
    pipe.flush_idle(3.0)
    assert pipe.forget_idle(600.0) == ["p-brady"] and "p-brady" in store.saved
    # The history is 6 h; here 10 s, so that the other patient's 30 s of data outlast it.
    assert pipe.expire_departed_trends(history_s=10.0) == ["p-brady"]
    assert "p-brady" not in store.saved and "p-normal" in store.saved
    assert pipe.counters.trends_expired == 1 and pipe.expire_departed_trends(history_s=10.0) == []


def test_a_new_owner_looks_the_trend_state_up_until_the_store_has_it(runtime: ModelRuntime, chunks: list) -> None:
    """A worker that just took a partition over may read the first windows before its table
    is restored: it keeps looking (and does not overwrite the copy with its fresh state)."""
    saved = _DictTrendStore()
    VitalsPipeline(runtime, trend_store=saved, trend_lookup_s=0.0).process(chunks[: len(chunks) // 2])

    class LateStore(_DictTrendStore):
        def __init__(self) -> None:
            super().__init__()
            self.loads = 0

        def load(self, patient_id: str) -> TrendTracker | None:
            self.loads += 1
            if self.loads <= 6:  # still restoring
                assert patient_id not in self.saved, "fresh state saved over the copy"
                return None
            self.saved.setdefault(patient_id, saved.saved[patient_id])
            return super().load(patient_id)

    late = LateStore()
    second = VitalsPipeline(ModelRuntime.load_default(), trend_store=late)
    second.process(chunks[len(chunks) // 2 :])
    assert second.counters.trends_restored == 2
    assert late.loads > 6


def test_deferred_spectral_indices_equal_the_monitors_own(chunks: list) -> None:
    """The pipeline's monitors leave pSQI, basSQI and the low band to complete_spectral (one
    batched call per poll); the windows must equal those a monitor completes on its own."""
    from stream.monitor import PatientMonitor, complete_spectral

    own: dict[str, PatientMonitor] = {}
    deferred: dict[str, PatientMonitor] = {}
    seen = []
    for c in chunks:
        a = own.setdefault(c.patient_id, PatientMonitor(c.patient_id)).push(c).windows
        b = deferred.setdefault(c.patient_id, PatientMonitor(c.patient_id, defer_spectral=True)).push(c).windows
        complete_spectral(b)
        assert [(w.ecg, w.ecg2) for w in b] == [(w.ecg, w.ecg2) for w in a]
        assert not any(w.spectral_pending for w in b)
        seen.extend(a)
    assert sum(w.ecg is not None and w.ecg.psqi is not None for w in seen) > 20
