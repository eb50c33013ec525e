"""Bedside-monitor alarms through the real broker: a true one reaches Redis as one alert, a
false one is suppressed with its reason recorded, a malformed one goes to the dead letters."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from typer.testing import CliRunner

from alerting.store import RedisAlertStore
from stream.cli.main import app
from stream.deadletter import DeadLetter
from stream.device_alarm import DEVICE_ALARMS_TOPIC, DeviceAlarm
from stream.gateway import publish_device_alarms
from stream.simulator import EpisodeSpec, PatientScenario
from tests.e2e.kafka_io import consume_until, produce
from tests.e2e.publish import publish_recordings, simulate
from tests.e2e.test_alerts_flow import wait_for

pytestmark = pytest.mark.e2e


def test_true_alarm_is_confirmed_once_and_false_alarm_suppressed(pipeline) -> None:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:6]
    tachy, calm = f"tachy-{tag}", f"calm-{tag}"
    # 150 bpm: an extreme tachycardia (> 140 bpm over 17 beats) on the ECG.
    episode = EpisodeSpec("tachy", start_s=10, duration_s=50, params={"hr_bpm": 150.0})
    recordings = simulate([PatientScenario(tachy, (episode,), duration_s=60), PatientScenario(calm, (), duration_s=60)])
    start = recordings[0].start_ms
    alarms = [DeviceAlarm(tachy, "extreme_tachy", start + 40_000, "mx-1", "HR HIGH"),
              DeviceAlarm(calm, "asystole", start + 40_000, "mx-2", "ASYSTOLE")]
    bootstrap = pipeline.endpoints.kafka_bootstrap
    # Gateways retry: the alarms arrive before the findings that cover them, and again after
    # (the second time through `vitalstream publish-alarm`).
    asyncio.run(publish_device_alarms(bootstrap, alarms))
    publish_recordings(bootstrap, recordings)
    for a in alarms:
        result = CliRunner().invoke(app, [
            "publish-alarm", "--patient", a.patient_id, "--type", a.alarm_type, "--at-ms", str(a.t_ms),
            "--device", a.device_id, "--label", a.label, "--bootstrap", bootstrap, "--no-create-topics", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["alarm_id"] == a.alarm_id
    store = RedisAlertStore(pipeline.redis, prefix=pipeline.prefix)

    def decided() -> list:
        found = store.device_alarms(tachy) + store.device_alarms(calm)
        return found if len(found) == 2 else []

    decisions = wait_for(decided, timeout_s=120)
    assert decisions, pipeline.worker.log_tail()
    by_patient = {d["patient_id"]: d for d in decisions}
    confirmed, suppressed = by_patient[tachy], by_patient[calm]
    assert confirmed["verdict"] == "confirmed", confirmed
    assert "highest 17-beat heart rate" in confirmed["reason"] and confirmed["verifier"].startswith("verifier-")
    # Carried by the one extreme-tachycardia alert: the pipeline's own, or the one the
    # confirmed alarm raised.
    alert = store.get(confirmed["alert_id"])
    assert alert is not None and alert.type == "extreme_tachy" and alert.priority == "high"
    assert suppressed["verdict"] == "suppressed" and suppressed["alert_id"] == ""
    assert suppressed["reason"].startswith("evidence it is false: the first ECG lead was clean throughout")
    assert "longest interval without a QRS" in suppressed["reason"]
    assert [a for a in store.list_alerts(calm, include_resolved=True) if a.type == "asystole"] == []
    assert len([a for a in store.list_alerts(tachy, include_resolved=True) if a.type == "extreme_tachy"]) == 1
    # Each alarm decided once although it was delivered twice.
    assert len([d for d in store.device_alarms() if d["patient_id"] in (tachy, calm)]) == 2


def test_malformed_device_alarm_goes_to_the_dead_letters(pipeline) -> None:  # type: ignore[no-untyped-def]
    patient = f"bad-{uuid.uuid4().hex[:6]}"
    raw = json.dumps({"patient_id": patient, "alarm_type": "sneeze", "t_ms": 1, "schema_version": 1}).encode()
    produce(pipeline.endpoints.kafka_bootstrap, [(DEVICE_ALARMS_TOPIC, patient.encode(), raw)])
    letters = consume_until(
        pipeline.endpoints.kafka_bootstrap, "vitals.deadletter", lambda kept: bool(kept), timeout_s=60,
        keep=lambda k, v: k == patient.encode(),
    )
    assert letters, pipeline.worker.log_tail()
    letter = DeadLetter.from_json(letters[0][1])
    assert letter.topic == DEVICE_ALARMS_TOPIC and letter.reason == "bad_alert_input"
    assert "alarm_type 'sneeze'" in letter.detail
