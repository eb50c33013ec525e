"""At-least-once delivery in, exactly-once alerts out (property-based).

Kafka redelivers: after a worker crash, a patient's findings are processed again from the
last committed offset, with the alert state restored from the table changelog -- which may
be ahead of the committed offset (duplicates) or lost entirely (state rebuilt from the
first finding). Patients' findings interleave arbitrarily. Whatever happens, the store
must end up exactly as after one clean, in-order pass.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerting.aggregator import PatientAlertState, process_finding
from alerting.episode import AlertEmission
from alerting.store import RedisAlertStore
from stream.findings import VitalsFinding
from tests.alerting.conftest import ecg, finding, resp
from tests.alerting.test_store import snapshot

SEGMENTS: dict[str, Callable[[int, str], VitalsFinding]] = {
    "normal": lambda i, p: finding(i, p),
    "asystole": lambda i, p: finding(i, p, ecg=ecg(max_pause_s=5.0 + (i % 3), n_beats=1,
                                                    hr_bpm=None)),
    "tachy": lambda i, p: finding(i, p, ecg=ecg(hr_bpm=128.0 + (i % 4))),
    "extreme_brady": lambda i, p: finding(i, p, ecg=ecg(hr_bpm=38.0, hr_min_5beats=34.0)),
    "poor": lambda i, p: finding(i, p, ecg=ecg(quality=0.2, usable=False, max_pause_s=4.5)),
    "gap": lambda i, p: finding(i, p, gaps=("ecg",)),
    "afib": lambda i, p: finding(i, p, ecg=ecg(rhythm="A", rhythm_probs={"A": 0.9})),
    "resp_high": lambda i, p: finding(i, p, resp=resp(rate_bpm=31.0)),
    "lead_off": lambda i, p: finding(i, p, ecg=ecg(lead_off=True, quality=0.0, usable=False,
                                                  max_pause_s=None, hr_bpm=None)),
}

segment = st.tuples(st.sampled_from([*SEGMENTS, "silence"]), st.integers(1, 10))
patient_script = st.lists(segment, min_size=1, max_size=6)


def build(patient: str, script: list[tuple[str, int]]) -> list[VitalsFinding]:
    out: list[VitalsFinding] = []
    i = 0
    for kind, length in script:
        if kind == "silence":
            i += 20 * length  # no findings for a while (device_silent is tick-driven)
            continue
        out += [SEGMENTS[kind](i + k, patient) for k in range(length)]
        i += length
    return out


def reference(findings: list[VitalsFinding]) -> tuple[list[PatientAlertState],
                                                      list[list[AlertEmission]]]:
    """One clean pass: states[k] = state after the first k findings; per-step emissions."""
    state = PatientAlertState.new(findings[0].patient_id)
    states, steps = [state], []
    for f in findings:
        state, out = process_finding(state, f)
        states.append(state)
        steps.append(out)
    return states, steps


def delivery_plan(n: int, rnd: random.Random, max_crashes: int) -> list[Any]:
    """Finding indices in processing order, with ("restore", s) where a crash restored the
    state saved after s findings and redelivery restarted at a committed offset <= s."""
    plan: list[Any] = []
    i, crashes = 0, 0
    while i < n:
        plan.append(i)
        i += 1
        if crashes < max_crashes and rnd.random() < 0.15:
            crashes += 1
            saved = 0 if rnd.random() < 0.25 else rnd.randint(0, i)  # 0: state lost entirely
            committed = rnd.randint(0, saved)
            plan.append(("restore", saved))
            i = committed
    return plan


def at_least_once(patients: dict[str, list[VitalsFinding]], rnd: random.Random,
                  max_crashes: int) -> list[AlertEmission]:
    """Emissions in the order a crashing, redelivering worker would write them."""
    queues: dict[str, list[Any]] = {}
    states: dict[str, PatientAlertState] = {}
    ref_states = {p: reference(fs)[0] for p, fs in patients.items()}
    for p, fs in patients.items():
        queues[p] = delivery_plan(len(fs), rnd, max_crashes)
        states[p] = PatientAlertState.new(p)
    written: list[AlertEmission] = []
    while any(queues.values()):
        p = rnd.choice([q for q, ops in queues.items() if ops])
        op = queues[p].pop(0)
        if isinstance(op, tuple):
            states[p] = ref_states[p][op[1]]
            continue
        states[p], out = process_finding(states[p], patients[p][op])
        written += out
    return written


@st.composite
def ward(draw: st.DrawFn) -> tuple[dict[str, list[VitalsFinding]], int]:
    n = draw(st.integers(1, 3))
    patients = {}
    for k in range(n):
        findings = build(f"bed-{k}", draw(patient_script))
        if findings:
            patients[f"bed-{k}"] = findings
    if not patients:
        patients["bed-0"] = build("bed-0", [("asystole", 3)])
    return patients, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=60, deadline=None)
@given(ward())
def test_redelivery_emits_nothing_new(case: tuple[dict[str, list[VitalsFinding]], int]) -> None:
    """Emission level: a redelivering worker re-emits only ids of the clean pass, with the
    same content, and every one of them at least once."""
    patients, seed = case
    clean = {e.emission_id: e for fs in patients.values() for step in reference(fs)[1]
             for e in step}
    noisy = at_least_once(patients, random.Random(seed), max_crashes=3)
    assert {e.emission_id for e in noisy} == set(clean)
    for e in noisy:
        assert e == clean[e.emission_id]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ward())
def test_store_ends_identical_under_redelivery_and_interleaving(
    redis_url: str, case: tuple[dict[str, list[VitalsFinding]], int]
) -> None:
    patients, seed = case
    client = redis.Redis.from_url(redis_url)
    clean_store = RedisAlertStore(client, f"test{uuid.uuid4().hex[:10]}")
    noisy_store = RedisAlertStore(client, f"test{uuid.uuid4().hex[:10]}")
    try:
        for fs in patients.values():
            for step in reference(fs)[1]:
                clean_store.apply(step)
        rnd = random.Random(seed)
        noisy = at_least_once(patients, rnd, max_crashes=3)
        # The worker writes per processed finding; here in random batches of 1..5.
        i = 0
        while i < len(noisy):
            k = rnd.randint(1, 5)
            noisy_store.apply(noisy[i:i + k])
            i += k
        assert snapshot(noisy_store) == snapshot(clean_store)
    finally:
        clean_store.delete_prefix()
        noisy_store.delete_prefix()
        client.close()
