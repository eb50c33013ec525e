"""`vitalstream alerts ...` smoke tests through typer's CliRunner, against real Redis."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from alerting.store import RedisAlertStore
from stream.cli.main import app
from tests.alerting.test_store import scenario

runner = CliRunner()


@pytest.fixture
def env(store: RedisAlertStore, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> RedisAlertStore:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("VITALSTREAM_REDIS_PREFIX", store.prefix)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("VITALSTREAM_STATE_DIR", "/nonexistent-vitalstream-state")
    monkeypatch.setenv("COLUMNS", "240")  # rich: room for the whole table
    return store


def test_list_ack_snooze_history(env: RedisAlertStore) -> None:
    env.apply(scenario())
    result = runner.invoke(app, ["alerts", "list"])
    assert result.exit_code == 0, result.output
    assert "asystole" in result.output and "tachy" not in result.output
    result = runner.invoke(app, ["alerts", "list", "--all", "--json"])
    rows = json.loads(result.output)
    assert [r["type"] for r in rows] == ["asystole", "tachy"]
    alert_id = rows[0]["alert_id"]

    result = runner.invoke(app, ["alerts", "ack", alert_id, "--by", "nurse.kim"])
    assert result.exit_code == 0, result.output
    assert "done" in result.output and "acknowledged" in result.output
    result = runner.invoke(app, ["alerts", "ack", alert_id, "--by", "nurse.kim", "--json"])
    assert json.loads(result.output)["changed"] is False
    result = runner.invoke(app, ["alerts", "snooze", alert_id, "--minutes", "5", "--by", "dr"])
    assert result.exit_code == 0 and "snoozed" in result.output
    result = runner.invoke(app, ["alerts", "list", "--patient", "p1", "--json"])
    assert json.loads(result.output)[0]["state"] == "snoozed"

    result = runner.invoke(app, ["alerts", "history", alert_id, "--json"])
    events = [(h["event"], h["by"]) for h in json.loads(result.output)]
    assert events[-2:] == [("acknowledged", "nurse.kim"), ("snoozed", "dr")]
    result = runner.invoke(app, ["alerts", "history", alert_id])
    assert result.exit_code == 0 and "nurse.kim" in result.output

    assert runner.invoke(app, ["alerts", "ack", "nope", "--by", "x"]).exit_code == 1


def test_tail_no_follow(env: RedisAlertStore) -> None:
    result = runner.invoke(app, ["alerts", "tail", "--group", "g1", "--no-follow"])
    assert result.exit_code == 0 and result.output.strip() == ""
    env.apply(scenario())
    result = runner.invoke(app, ["alerts", "tail", "--group", "g1", "--no-follow", "--json"])
    lines = [json.loads(x) for x in result.output.splitlines()]
    assert [(x["type"], x["last_event"]) for x in lines][:2] == [("asystole", "raised"),
                                                                ("asystole", "updated")]
    result = runner.invoke(app, ["alerts", "tail", "--group", "g2", "--from-start",
                                 "--priority", "medium", "--timeout", "0.3"])
    assert result.exit_code == 0
    assert "tachy" in result.output and "asystole" not in result.output


def test_device_alarms_lists_each_decision_with_its_reason(env: RedisAlertStore) -> None:
    from tests.alerting.test_verification import alarm, feed, tachy_windows

    _, confirmed = feed([*tachy_windows(6, 150.0), alarm("extreme_tachy", 5, label="HR HIGH")])
    _, suppressed = feed([*tachy_windows(6, 90.0), alarm("asystole", 5, label="ASYSTOLE")])
    env.apply(confirmed + suppressed)
    result = runner.invoke(app, ["alerts", "device-alarms", "--patient", "p1"])
    assert result.exit_code == 0, result.output
    assert "HR HIGH" in result.output and "confirmed" in result.output
    assert "ASYSTOLE" in result.output and "longest interval without a QRS" in result.output
    assert "p(true)" in result.output
    result = runner.invoke(app, ["alerts", "device-alarms", "--verdict", "suppressed", "--json"])
    rows = json.loads(result.output)
    assert [r["label"] for r in rows] == ["ASYSTOLE"] and rows[0]["alert_id"] == ""
