"""Sample messages are committed once a published window covered their chunk."""

from __future__ import annotations

from stream.awaiting_analysis import AwaitingAnalysis


def test_chunks_are_released_by_the_window_that_covers_their_end() -> None:
    a = AwaitingAnalysis[str]()
    for i, end in enumerate([447_000, 448_000, 449_000, 448_000.4, 450_000]):
        a.add("p1", end, f"m{i}", now_s=0.0)
    a.add("p2", 448_000, "other", now_s=0.0)
    # The window ending at 448 s covers the chunks ending by then (in any order), not later ones.
    assert a.analysed("p1", 448_000) == ["m0", "m1", "m3"]
    assert a.analysed("p1", 448_000) == []
    assert len(a) == 3
    assert a.analysed("p1", 450_000) == ["m2", "m4"]
    assert a.analysed("nobody", 10**13) == []
    assert list(a.patients()) == ["p2"]


def test_quiet_patients_moved_and_forgotten_ones() -> None:
    a = AwaitingAnalysis[tuple[str, int]]()
    a.add("gone", 1000, ("vitals.ecg", 0), now_s=0.0)
    a.add("live", 1000, ("vitals.ecg", 1), now_s=0.0)
    a.add("live", 2000, ("vitals.ppg", 1), now_s=9.0)
    # Only the patient whose newest chunk is old enough counts as quiet.
    assert a.quiet(now_s=10.0, quiet_s=8.0) == [("vitals.ecg", 0)]
    # Revoked partitions: those tokens leave, the others stay.
    assert a.pop_where(lambda tok: tok[0] == "vitals.ppg") == [("vitals.ppg", 1)]
    assert a.pop_patient("live") == [("vitals.ecg", 1)]
    assert len(a) == 0
