"""Bedside-monitor alarms: confirmed, suppressed (only on evidence) or delivered unverified."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.aggregator import (
    DEFAULT_CONFIG,
    Emission,
    PatientAlertState,
    process_device_alarm,
    process_finding,
    process_tick,
)
from alerting.catalogue import AlertConfig
from alerting.episode import AlertEmission
from alerting.store import RedisAlertStore
from alerting.verification import VERIFY_TIMEOUT_S, DeviceAlarmDecision, Verdict
from stream.device_alarm import DeviceAlarm, InvalidDeviceAlarm
from stream.findings import VitalsFinding
from tests.alerting.conftest import HOP_MS, T0, abp, ecg, finding, ppg


def alarm(kind: str, i: int, patient: str = "p1", label: str = "") -> DeviceAlarm:
    """The monitor's alarm at the end of window ``i``."""
    return DeviceAlarm(patient, kind, T0 + i * HOP_MS, "mx-1", label)


def feed(inputs: Iterable[VitalsFinding | DeviceAlarm], state: PatientAlertState | None = None,
         config: AlertConfig = DEFAULT_CONFIG) -> tuple[PatientAlertState, list[Emission]]:
    state = state or PatientAlertState.new("p1")
    out: list[Emission] = []
    for item in inputs:
        if isinstance(item, DeviceAlarm):
            state, ems = process_device_alarm(state, item, config)
        else:
            state, ems = process_finding(state, item, config)
        out += ems
    return state, out


def decisions(emissions: Sequence[Emission]) -> list[DeviceAlarmDecision]:
    return [e for e in emissions if isinstance(e, DeviceAlarmDecision)]


def raised(emissions: Sequence[Emission], kind: str | None = None) -> list[AlertEmission]:
    return [e for e in emissions if isinstance(e, AlertEmission) and e.event == "raised"
            and (kind is None or e.type == kind)]


def tachy_windows(n: int, hr17: float) -> list[VitalsFinding]:
    return [finding(i, ecg=ecg(hr_bpm=hr17, hr_max_17beats=hr17)) for i in range(n)]


RULES_ONLY = AlertConfig(learned_verifier=False)


# ---------------------------------------------------------------- the three verdicts


def test_an_alarm_a_lead_confirms_is_raised_at_its_own_priority() -> None:
    state, out = feed([*tachy_windows(9, 150.0), alarm("extreme_tachy", 8, label="HR HIGH")])
    [d] = decisions(out)
    assert d.verdict is Verdict.CONFIRMED
    [r] = raised(out, "extreme_tachy")  # the pipeline's own alert carries it: no second one
    assert r.priority == "high" and d.alert_id == r.alert_id
    assert "highest 17-beat heart rate 150 bpm (first ECG lead)" in d.reason
    assert d.verifier.startswith("verifier-") and d.p_true is not None
    assert state.device_alarms == {"confirmed": 1}


def test_a_clean_lead_at_a_normal_rate_is_evidence_the_alarm_is_false() -> None:
    _, out = feed([*tachy_windows(6, 95.0), alarm("extreme_tachy", 5)])
    [d] = decisions(out)
    assert d.verdict is Verdict.SUPPRESSED and d.alert_id is None
    assert raised(out) == []
    assert d.reason.startswith("evidence it is false: the first ECG lead was clean throughout and its "
                               "fastest 17 beats ran at 95 bpm")
    assert d.windows_judged == 6


def test_a_pulse_through_an_ecg_pause_suppresses_an_asystole_alarm() -> None:
    # The ECG "pause" is a fading lead; the arterial line kept pulsing throughout.
    windows = [finding(i, ecg=ecg(max_pause_s=5.0, n_beats=2, hr_bpm=None, usable=False), abp=abp())
               for i in range(5)]
    _, out = feed([*windows, alarm("asystole", 4)])
    [d] = decisions(out)
    assert d.verdict is Verdict.SUPPRESSED
    assert "the arterial line pulsed throughout at 70 bpm" in d.reason


def test_a_pulse_that_stops_during_the_lookback_is_no_evidence() -> None:
    # The arterial line pulsed, then lost its pulse in the last window: not "throughout".
    windows = [finding(i, ecg=ecg(max_pause_s=5.0, n_beats=2, hr_bpm=None, usable=False),
                       abp=abp() if i < 4 else abp(pulsatile=False, usable=False, max_pause_s=6.0))
               for i in range(5)]
    _, out = feed([*windows, alarm("asystole", 4)], config=RULES_ONLY)
    [d] = decisions(out)
    assert d.verdict is Verdict.CONFIRMED  # the ECG shows the 5-s pause
    assert len(raised(out, "asystole")) == 1


def test_a_pulse_wave_does_not_overrule_a_clean_clearly_slow_ecg() -> None:
    # CinC 2015: true bradycardia alarms at 35-40 bpm were suppressed because the arterial
    # line's pulse detector counted 75 "pulses" a minute.
    windows = [finding(i, ecg=ecg(hr_min_5beats=37.0, hr_bpm=38.0, max_pause_s=1.7),
                       ecg2=ecg(hr_min_5beats=37.5, hr_bpm=38.0, max_pause_s=1.7),
                       abp=abp(pulse_rate_bpm=75.0)) for i in range(6)]
    _, out = feed([*windows, alarm("extreme_brady", 5)])
    [d] = decisions(out)
    assert d.verdict is Verdict.CONFIRMED
    assert "lowest 5-beat heart rate 37 bpm (first ECG lead), 38 bpm (second ECG lead)" in d.reason


def test_an_alarm_on_unreadable_signals_still_reaches_the_care_team() -> None:
    # No ECG data at all (e.g. the gateway forwards the alarm but not the waveform): nothing
    # says it is false, so it is delivered at its own priority, saying it was not verified.
    _, out = feed([*[finding(i, ecg=None) for i in range(5)], alarm("extreme_tachy", 4, label="HR HIGH")])
    [d] = decisions(out)
    assert d.verdict is Verdict.UNVERIFIABLE
    [r] = raised(out, "extreme_tachy")
    assert r.priority == "high" and "bedside monitor HR HIGH alarm not verifiable" in r.message
    assert d.alert_id == r.alert_id
    # No data in the lookback at all.
    state, out = process_device_alarm(PatientAlertState.new("p1"), alarm("vfib", 0))
    state, out = process_tick(state, T0 + round(VERIFY_TIMEOUT_S * 1000) + 1)
    [d] = decisions(out)
    assert d.verdict is Verdict.UNVERIFIABLE and d.reason == "no data in the 10 s before the alarm"
    assert len(raised(out, "vfib")) == 1


def test_a_suppressed_alarm_names_the_pipelines_own_open_alert() -> None:
    # The pipeline raised extreme bradycardia 30 s ago; the rhythm recovered since.
    onset = [finding(i, ecg=ecg(hr_min_5beats=35.0, hr_bpm=36.0)) for i in range(3)]
    later = [finding(i, ecg=ecg(hr_min_5beats=62.0, hr_bpm=66.0)) for i in range(3, 18)]
    _, out = feed([*onset, *later, alarm("extreme_brady", 17)])
    [own] = raised(out, "extreme_brady")
    [d] = decisions(out)
    assert d.verdict is Verdict.SUPPRESSED and "slowest 5 beats ran at 62 bpm" in d.reason
    assert d.alert_id == own.alert_id and d.note.startswith(f"the pipeline's own extreme_brady alert {own.alert_id}")
    assert len(raised(out)) == 1  # no second alert


def test_ventricular_runs_on_both_leads_confirm_and_normal_beats_everywhere_suppress() -> None:
    run6 = ecg(v_run_length=6, v_run_rate_bpm=160.0, hr_max_5beats=160.0, beat_counts={"N": 6, "V": 6})
    _, out = feed([*[finding(i, ecg=run6, ecg2=run6) for i in range(5)], alarm("vtach", 4)])
    assert decisions(out)[0].verdict is Verdict.CONFIRMED
    # A 3-beat run at most on every lead, both leads clean: evidence it is false.
    run3 = ecg(v_run_length=3, v_run_rate_bpm=150.0, hr_max_5beats=120.0, beat_counts={"N": 9, "V": 3})
    _, out = feed([*[finding(i, ecg=run3, ecg2=ecg()) for i in range(5)], alarm("vtach", 4)])
    [d] = decisions(out)
    assert d.verdict is Verdict.SUPPRESSED and "no lead showed more than 3 consecutive ventricular beats" in d.reason


def test_a_run_on_a_noisy_lead_is_not_outvoted_by_a_clean_lead_at_a_fast_rate() -> None:
    # The second lead's quality fails during the run (its template breaks on wide beats);
    # the first lead is clean but fast: no rule may call that artefact.
    run = ecg(v_run_length=7, v_run_rate_bpm=170.0, hr_max_5beats=170.0, usable=False, quality=0.4,
              beat_counts={"N": 4, "V": 7})
    fast = ecg(hr_max_5beats=125.0, hr_bpm=105.0, beat_counts={"N": 11})
    _, out = feed([*[finding(i, ecg=fast, ecg2=run) for i in range(5)], alarm("vtach", 4)], config=RULES_ONLY)
    assert decisions(out)[0].verdict is Verdict.CONFIRMED


def test_only_the_lookback_before_the_alarm_counts() -> None:
    # A tachycardia that ended 20 s before the alarm does not confirm it.
    early = [finding(i, ecg=ecg(hr_max_17beats=150.0)) for i in range(5)]
    later = [finding(i) for i in range(5, 16)]
    _, out = feed([*early, *later, alarm("extreme_tachy", 15)])
    assert decisions(out)[0].verdict is Verdict.SUPPRESSED


def test_the_learned_verifier_suppresses_only_where_the_event_is_on_one_lead() -> None:
    from alerting.verification import default_verifier

    model = default_verifier()
    # A run on the first lead only, baseline wander on it, nothing the rules decide.
    noisy = ecg(v_run_length=5, v_run_rate_bpm=150.0, hr_max_5beats=150.0, usable=False, quality=0.45,
                template_corr=0.5, basqi=0.4, beat_counts={"N": 6, "V": 5})
    windows = [finding(i, ecg=noisy, ecg2=ecg(hr_max_5beats=105.0, template_corr=0.97, basqi=0.95))
               for i in range(5)]
    _, out = feed([*windows, alarm("vtach", 4)])
    [d] = decisions(out)
    assert d.p_true is not None and d.verifier == model.version
    if d.p_true < model.threshold:
        assert d.verdict is Verdict.SUPPRESSED and d.reason.startswith(f"verifier {model.version}: p(true)")
    else:
        assert d.verdict is Verdict.CONFIRMED
    # The same run on both leads: never the model's to suppress.
    _, out = feed([*[finding(i, ecg=noisy, ecg2=noisy) for i in range(5)], alarm("vtach", 4)])
    assert decisions(out)[0].verdict is Verdict.CONFIRMED


# ---------------------------------------------------------------- order, time, duplicates


def test_an_alarm_before_its_findings_waits_for_the_window_that_covers_it() -> None:
    windows = tachy_windows(8, 150.0)
    state, out = feed([*windows[:3], alarm("extreme_tachy", 5)])
    assert decisions(out) == [] and len(state.pending_alarms) == 1
    assert state.awaits_time()
    state, out = feed(windows[3:], state)
    [d] = decisions(out)
    assert d.verdict is Verdict.CONFIRMED and d.decided_ms == T0 + 5 * HOP_MS
    assert state.pending_alarms == ()


def test_an_alarm_no_finding_reaches_is_decided_by_a_tick_after_the_timeout() -> None:
    state, _ = feed([*tachy_windows(4, 150.0), alarm("extreme_tachy", 6)])
    assert len(state.pending_alarms) == 1
    t_alarm = T0 + 6 * HOP_MS
    state, out = process_tick(state, t_alarm + 1000)
    assert decisions(out) == []
    state, out = process_tick(state, t_alarm + round(VERIFY_TIMEOUT_S * 1000) + 3000)
    [d] = decisions(out)
    # The windows before the device stopped still show the tachycardia.
    assert d.verdict is Verdict.CONFIRMED and d.decided_ms == t_alarm + round(VERIFY_TIMEOUT_S * 1000)
    assert state.pending_alarms == ()


def test_a_redelivered_alarm_is_decided_once() -> None:
    a = alarm("extreme_tachy", 5)
    state, out = feed([*tachy_windows(6, 127.0), a, a])
    assert len(decisions(out)) == 1 and state.duplicates == 1
    # Also while it is still pending.
    state, out = feed([finding(0), a, a])
    assert len(state.pending_alarms) == 1 and decisions(out) == []


def test_alarm_for_another_patient_is_refused() -> None:
    with pytest.raises(ValueError):
        process_device_alarm(PatientAlertState.new("p1"), alarm("asystole", 0, patient="p2"))


def test_state_with_pending_alarms_and_checks_survives_json() -> None:
    state, _ = feed([*tachy_windows(3, 127.0), alarm("extreme_tachy", 5), alarm("asystole", 6)])
    again = PatientAlertState.from_json(state.to_json())
    assert again == state
    # Checks saved with another set of evidence fields (another version) are dropped, not misread.
    saved = json.loads(state.to_json())
    saved["checks"] = [[T0, "10", [1.0, 2.0]], [T0, [1.0, 2.0]]]
    assert PatientAlertState.from_dict(saved).checks == ()
    # Not measured travels as JSON null, never as NaN (not JSON).
    assert b"NaN" not in state.to_json() and b"null" in state.to_json()
    # Small enough for the table: checks are kept for 30 s only.
    state, _ = feed([finding(i, ecg2=ecg(), abp=abp(), ppg=ppg()) for i in range(200)])
    assert len(state.checks) <= 16 and len(state.to_json()) < 9000


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from(["extreme_tachy", "extreme_brady", "asystole", "vtach"]),
       st.integers(3, 9))
def test_the_decision_does_not_depend_on_when_the_alarm_arrives(seed: int, kind: str, at: int) -> None:
    """An alarm fed anywhere among the findings (before the covering window, after it,
    twice) gets the same verdict, reason and alert."""
    rnd = random.Random(seed)
    windows = [finding(i, ecg=ecg(hr_max_17beats=rnd.choice([90.0, 125.0, 150.0]),
                                  hr_min_5beats=rnd.choice([35.0, 48.0, 70.0]),
                                  max_pause_s=rnd.choice([1.0, 3.5, 4.5]),
                                  v_run_length=rnd.choice([0, 3, 6]), v_run_rate_bpm=150.0,
                                  quality=rnd.choice([0.9, 0.9, 0.2])))
               for i in range(12)]
    a = alarm(kind, at)
    results = set()
    for pos in (0, at, at + 1, 12):
        inputs: list[VitalsFinding | DeviceAlarm] = list(windows)
        inputs.insert(pos, a)
        if rnd.random() < 0.5:
            inputs.insert(min(len(inputs), pos + 2), a)
        _, out = feed(inputs)
        [d] = decisions(out)
        results.add((d.verdict, d.reason, d.decided_ms))
    assert len(results) == 1


# ---------------------------------------------------------------- message and store


def test_the_verifiable_alarm_types_are_the_catalogues_high_priority_ones() -> None:
    # The message contract lists them without importing alerting; the two must not drift.
    from alerting.catalogue import HIGH_PRIORITY_TYPES
    from stream.device_alarm import VERIFIABLE_ALARM_TYPES

    assert set(VERIFIABLE_ALARM_TYPES) == {t.value for t in HIGH_PRIORITY_TYPES}


def test_device_alarm_messages_are_validated_with_clear_reasons() -> None:
    good = alarm("vtach", 1, label="V-Tach")
    assert DeviceAlarm.from_json(good.to_json()) == good
    cases = {
        b"not json": "not JSON",
        b"[1]": "JSON object",
        json.dumps({"patient_id": "p", "alarm_type": "sneeze", "t_ms": 1, "schema_version": 1}).encode(): "alarm_type",
        json.dumps({"patient_id": "p", "alarm_type": "vtach", "t_ms": -5, "schema_version": 1}).encode(): "t_ms",
        json.dumps({"patient_id": 7, "alarm_type": "vtach", "t_ms": 1, "schema_version": 1}).encode(): "patient_id",
        json.dumps({"patient_id": "p", "alarm_type": ["vtach"], "t_ms": 1, "schema_version": 1}).encode(): "alarm_type",
        json.dumps({"patient_id": "p", "alarm_type": "vtach", "schema_version": 1}).encode(): "missing",
        json.dumps({"patient_id": "p", "alarm_type": "vtach", "t_ms": 1,
                    "schema_version": 9}).encode(): "schema_version",
        json.dumps({"patient_id": "p", "alarm_type": "vtach", "t_ms": 1, "schema_version": 1,
                    "volume": 11}).encode(): "unknown field",
    }
    for raw, reason in cases.items():
        with pytest.raises(InvalidDeviceAlarm, match=reason):
            DeviceAlarm.from_json(raw)


def test_publish_alarm_refuses_an_unknown_type_before_connecting() -> None:
    from typer.testing import CliRunner

    from stream.cli.main import app

    result = CliRunner().invoke(app, ["publish-alarm", "--patient", "p1", "--type", "sneeze",
                                      "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code == 2 and "alarm_type 'sneeze' is not one of" in result.output


def test_store_records_each_decision_once(store: RedisAlertStore) -> None:
    inputs = [*tachy_windows(6, 150.0), alarm("extreme_tachy", 5), *tachy_windows(3, 95.0)]
    _, out = feed(inputs)
    _, out2 = feed([*[finding(i, patient="p2", ecg=ecg(hr_max_17beats=90.0)) for i in range(6)],
                    alarm("extreme_tachy", 5, patient="p2")], PatientAlertState.new("p2"))
    assert store.apply(out + out2) >= 3
    assert store.apply(out + out2) == 0  # replayed: nothing new
    [mine] = store.device_alarms("p1")
    assert mine["verdict"] == "confirmed" and mine["alert_id"] == decisions(out)[0].alert_id
    assert store.get(mine["alert_id"]) is not None
    [other] = store.device_alarms("p2")
    assert other["verdict"] == "suppressed" and other["alert_id"] == ""
    assert [d["patient_id"] for d in store.device_alarms()] == ["p1", "p2"]



# Found by the fuzzers (docs/fuzzing.md): a RecursionError out of json.loads; and an alarm
# far in the future, which waited for a finding that never comes and stayed in the state.
@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b'{"patient_id": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
        (b'{"patient_id": "p", "alarm_type": "vtach", "t_ms": ' + b"7" * 5000 + b', "schema_version": 1}',
         "not JSON"),
        (json.dumps({"patient_id": "p", "alarm_type": "vtach", "t_ms": T0 + 10 * 24 * 3600 * 1000,
                     "schema_version": 1}).encode(), "out of range"),
        (json.dumps({"patient_id": "p", "alarm_type": "vtach", "t_ms": 5, "schema_version": 1}).encode(),
         "out of range"),
        (b'{"patient_id": "p\\ud800", "alarm_type": "vtach", "t_ms": 1, "schema_version": 1}', "surrogate"),
    ],
)
def test_device_alarm_fuzzer_findings_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(InvalidDeviceAlarm, match=match):
        DeviceAlarm.from_json(data, now_ms=T0)
