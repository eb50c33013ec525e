"""The fault campaign in short (bench/faults.py runs the full one, docs/faults.md): three
simulated patients through a broker, two workers and a durable Redis of the campaign's own,
while one worker is SIGKILLed (and restarted) and Redis is killed for 10 s. Nothing may be
missed, duplicated or lost, and each fault must be recovered from within 30 s."""

from __future__ import annotations

import json

import pytest

from stream.faults.campaign import Campaign, CampaignConfig, Fault

pytestmark = pytest.mark.e2e


def test_a_killed_worker_and_a_redis_outage_lose_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = CampaignConfig(
        out_dir=tmp_path,
        patients=3,
        duration_s=110.0,
        faults=[Fault(35, "kill_worker", worker=0), Fault(70, "redis_outage")],
        partitions=4,
        restart_after_s=2.0,
        redis_outage_s=10.0,
        progress=lambda line: None,
    )
    result = Campaign(config).run()
    shown = json.dumps({k: v for k, v in result.items() if k != "worker_stats"}, indent=1)[:6000]
    assert result["drained"], shown
    assert result["worker_exits_not_injected"] == [], shown
    assert result["faults_injected"] == 2
    assert result["episodes"] > 0 and result["episodes_alerted_once"] + result["not_detected_without_faults"] \
        >= result["episodes"], shown
    assert result["episodes_missed"] == 0, shown
    assert result["duplicate_alerts"] == 0, shown
    assert result["alerts_lost_worker_to_redis"] == 0, shown
    assert result["findings_lost"] == 0, shown
    assert result["recovery_s"]["all_recovered"] and result["recovery_s"]["max"] <= 30, shown
