"""The episode state machine on its own."""

from __future__ import annotations

from alerting.episode import (
    Acknowledge,
    AlertEmission,
    AlertEpisode,
    ConditionCleared,
    EpisodeState,
    Observed,
    Snooze,
    Tick,
    episode_id,
    raise_episode,
    transition,
)

T = 1_764_390_000_000
TICK = Tick(escalate_after_s=120, escalation_repeat_s=60, max_escalation_level=2)


def raised(latching: bool = True) -> AlertEpisode:
    ep, out = raise_episode(patient_id="p1", alert_type="asystole", priority="high",
                            latching=latching, onset_ms=T - 2000, now_ms=T, value=5.0,
                            message="asystole: no QRS for 5.0 s")
    assert [e.event for e in out] == ["raised"]
    assert out[0].emission_id == f"{ep.alert_id}:raised"
    return ep


def test_ids_are_deterministic_and_distinct() -> None:
    assert episode_id("p1", "asystole", T) == episode_id("p1", "asystole", T)
    assert episode_id("p1", "asystole", T).startswith("asystole-")
    ids = {episode_id(p, t, o) for p in ("p1", "p2") for t in ("asystole", "vfib")
           for o in (T, T + 1)}
    assert len(ids) == 8
    assert raised().alert_id == episode_id("p1", "asystole", T - 2000)


def test_compact_dict_round_trip() -> None:
    ep = raised()
    d = ep.to_dict()
    assert "acked_by" not in d and "resolved_ms" not in d  # defaults left out
    assert AlertEpisode.from_dict(d) == ep
    emission = AlertEmission.from_json(
        transition(ep, Observed(T + 2000, 9.0, "worse", "high"), T + 2000)[1][0].to_json())
    assert emission.value == 9.0 and emission.event == "updated"


def test_update_only_when_materially_worse() -> None:
    ep = raised()
    same, out = transition(ep, Observed(T + 2000, 5.2, "m", "high"), T + 2000)
    assert out == [] and same == ep
    _lower, out = transition(ep, Observed(T + 2000, 4.0, "m", "high"), T + 2000)
    assert out == []
    worse, out = transition(ep, Observed(T + 2000, 6.0, "m", "high"), T + 2000)
    assert [e.event for e in out] == ["updated"] and worse.value == 6.0
    # For heart-rate-low alerts lower is worse.
    _brady, out = transition(ep, Observed(T + 2000, 4.0, "m", "high"), T + 2000,
                            lower_is_worse=True)
    assert [e.event for e in out] == ["updated"]


def test_full_lifecycle_latching() -> None:
    ep = raised()
    ep, out = transition(ep, TICK, T + 120_000)
    assert (ep.state, ep.escalation_level, [e.event for e in out]) == ("escalated", 1,
                                                                       ["escalated"])
    ep, out = transition(ep, TICK, T + 150_000)
    assert out == []
    ep, out = transition(ep, TICK, T + 180_000)
    assert ep.escalation_level == 2
    ep, out = transition(ep, TICK, T + 999_000)
    assert out == []  # capped at max_escalation_level
    ep, out = transition(ep, Snooze("s1", "dr", T + 200_000), T + 190_000)
    assert ep.state == "snoozed"
    ep, out = transition(ep, Snooze("s1", "dr", T + 200_000), T + 190_000)
    assert out == []  # the same snooze again
    ep, out = transition(ep, Acknowledge("a1", "nurse", T + 195_000), T + 195_000)
    assert (ep.state, ep.acked_by, ep.snoozed_until_ms) == ("acknowledged", "nurse", None)
    ep, out = transition(ep, ConditionCleared(T + 200_000, "over"), T + 200_000)
    assert ep.state == EpisodeState.RESOLVED and ep.resolved_ms == T + 200_000
    assert [e.emission_id for e in out] == [f"{ep.alert_id}:resolved"]
    for late in (Observed(T + 300_000, 9.0, "m", "high"), TICK,
                 Acknowledge("a2", "x", T), ConditionCleared(T, "")):
        assert transition(ep, late, T + 400_000) == (ep, [])


def test_non_latching_clears_without_ack() -> None:
    ep, out = transition(raised(latching=False), ConditionCleared(T + 10_000, "over"), T)
    assert ep.state == "resolved" and [e.event for e in out] == ["resolved"]


def test_expired_snooze_request_is_ignored() -> None:
    ep = raised()
    assert transition(ep, Snooze("s", "dr", T - 1), T) == (ep, [])
