"""View models (dashboard/views.py): alert order, tiles, board, input checks, strips, trends."""

from __future__ import annotations

from dataclasses import replace

import pytest

from alerting.store import Alert
from alerting.ward import TrendPoint, VitalsSnapshot
from dashboard import views
from tests.dashboard.ward_data import vtach_strip


def alert(alert_id: str, priority: str, state: str = "raised", created: int = 0, patient: str = "bed-1",
          type_: str = "tachy") -> Alert:
    return Alert(alert_id=alert_id, patient_id=patient, type=type_, priority=priority, state=state, onset_ms=0,
                 raised_ms=created, updated_ms=created, resolved_ms=None, value=None, message="m", escalation_level=0,
                 acked_by=None, created_wall_ms=created)


def test_alerts_sort_by_priority_then_unacknowledged_then_longest_waiting() -> None:
    alerts = [alert("m-new", "medium", created=50), alert("h-acked", "high", "acknowledged", created=1),
              alert("l-old", "low", created=0), alert("h-new", "high", created=40), alert("h-old", "high", created=30),
              alert("m-old", "medium", "escalated", created=10)]
    assert [a.alert_id for a in views.sort_alerts(alerts)] == ["h-old", "h-new", "h-acked", "m-old", "m-new", "l-old"]
    assert views.alert_view(alerts[0])["order"] == [1, 0, 50, "m-new"]


def test_tile_rank_tone_and_technical_states() -> None:
    snap = VitalsSnapshot("bed-1", 1000, hr_bpm=130.0, lead_off=True, gaps="ppg")
    high = views.tile_view("bed-1", snap, 5, [alert("a", "high", type_="vtach"), alert("b", "low", type_="lead_off")])
    assert (high["rank"], high["tone"]) == (0, "high")
    assert high["technical"] == ["ECG lead off", "gap: ppg"]
    assert [a["alert_id"] for a in high["alerts"]] == ["a", "b"]
    acked = views.tile_view("bed-2", None, None, [alert("c", "high", "acknowledged", type_="vtach")])
    assert (acked["rank"], acked["tone"], acked["vitals"]) == (3, "acknowledged", None)
    tech = views.tile_view("bed-3", None, None, [alert("d", "low", type_="device_silent")])
    assert (tech["rank"], tech["tone"], tech["technical"]) == (4, "technical", ["device silent"])
    assert views.tile_view("bed-4", snap, None, [])["tone"] == "quiet"


def test_board_orders_tiles_and_counts_waiting_alarms() -> None:
    latest = {f"bed-{i}": (VitalsSnapshot(f"bed-{i}", 1), 1) for i in (1, 2, 10)}
    board = views.board_view(["bed-10", "bed-2", "bed-1"], latest,
                             [alert("x", "medium", patient="bed-10"), alert("y", "high", patient="bed-7",
                                                                             type_="asystole")], now_ms=99)
    assert [t["patient_id"] for t in board["tiles"]] == ["bed-7", "bed-10", "bed-1", "bed-2"]
    assert board["counts"] == {"high": 1, "medium": 1, "low": 0}
    assert [a["alert_id"] for a in board["alerts"]] == ["y", "x"]
    assert board["server_now_ms"] == 99


@pytest.mark.parametrize("bad", ["", "vtach", "vtach-0123", "VTACH-0123456789ab", "vtach-0123456789ab/../x",
                                 "x" * 60 + "-0123456789ab"])
def test_malformed_alert_ids_are_refused(bad: str) -> None:
    with pytest.raises(views.BadInput):
        views.check_alert_id(bad)


def test_id_and_number_checks() -> None:
    assert views.check_alert_id("extreme_tachy-0123456789ab")
    assert views.check_patient_id("bed 7 / ICU")
    for bad in ("", "a\nb", "x" * 65, "é" * 33):
        with pytest.raises(views.BadInput):
            views.check_patient_id(bad)
    assert views.check_alarm_id("bed-7:vtach:1764390000000")
    for bad in ("bed-7:vtach", "bed-7:vtach:abc", ":vtach:1", "bed\x00:vtach:1"):
        with pytest.raises(views.BadInput):
            views.check_alarm_id(bad)
    assert views.check_minutes("5", 120) == 5.0
    for bad in ("0", "-1", "121", "nan", "inf", "five", None):
        with pytest.raises(views.BadInput):
            views.check_minutes(bad, 120)
    for bad in ("0", "13", "x"):
        with pytest.raises(views.BadInput):
            views.check_hours(bad, 12)


def test_strip_view_gives_relative_times_and_physical_values() -> None:
    strip = vtach_strip("bed-1", "alert", "vtach-0123456789ab")
    view = views.strip_view(strip)
    ecg = view["traces"][0]
    assert ecg["signal"] == "ecg" and len(ecg["values"]) == 1250 and -1 < ecg["t0_ms"] < 10
    assert all(0 <= t <= 10_000 for t, _ in view["beats"]) and {c for _, c in view["beats"]} == {"V"}
    assert view["size_bytes"] == strip.size_bytes
    gap = replace(strip, traces=(replace(strip.traces[0], codes=b"\xff" * 1250),))
    assert views.strip_view(gap)["traces"][0]["values"][:3] == [None, None, None]


def test_trend_view_columns() -> None:
    view = views.trend_view([TrendPoint(0, 1, hr=60.0), TrendPoint(60_000, 2, hr=62.0, news2=3)])
    assert view["t_ms"] == [0, 60_000] and view["hr"] == [60.0, 62.0] and view["news2"] == [None, 3]
    assert views.natural_key("bed-2") < views.natural_key("bed-10")


def test_live_feed_waits_out_quiet_streams_without_reconnecting(redis_url: str) -> None:
    """A blocking read longer than the client's socket timeout would look like an outage;
    with the timeout above the block, quiet streams cost nothing."""
    import asyncio
    import uuid

    import redis
    import redis.asyncio as aioredis

    from dashboard.source import LiveFeed, WardReader

    async def run() -> int:
        client = aioredis.Redis.from_url(redis_url, socket_timeout=1.5)
        feed = LiveFeed(client, WardReader(redis.Redis.from_url(redis_url), f"testquiet{uuid.uuid4().hex[:6]}"),
                        block_ms=400)
        task = asyncio.create_task(feed.run())
        await asyncio.sleep(2.0)
        feed.stopping = True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
        return feed.counters.reconnects

    assert asyncio.run(run()) == 0
