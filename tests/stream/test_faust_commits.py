"""Faust's commit point for guarded topics comes from the CommitGuard; others keep Faust's."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

import stream.app
from stream import faust_commits
from stream.services import FINDINGS_TOPIC, VITALS_TOPICS


def faust_consumer_state(tp: TP, committed: int, acked: list[int]) -> SimpleNamespace:
    """The fields ``Consumer._new_offset`` reads, as Faust keeps them."""
    return SimpleNamespace(
        _acked=defaultdict(list, {tp: list(acked)}),
        _acked_index=defaultdict(set, {tp: set(acked)}),
        _gap=defaultdict(IntervalTree),
        _committed_offset=defaultdict(lambda: None, {tp: committed}),
    )


def test_the_app_installs_its_guard_on_faust_s_consumer() -> None:
    assert faust_commits.installed_guard() is stream.app.commit_guard


def test_faust_alone_commits_past_a_message_in_hand() -> None:
    """The bug the guard exists for (faust-streaming #606), on Faust's own method: offset
    5 is committed and still being analysed, 6 and 7 are done, and Faust commits 8."""
    tp = TP("unguarded", 0)
    state = faust_consumer_state(tp, committed=5, acked=[6, 7])
    assert faust_commits._faust_new_offset(state, tp) == 8  # type: ignore[arg-type]


def test_a_guarded_partition_commits_where_the_guard_says() -> None:
    guard = stream.app.commit_guard
    tp = TP(VITALS_TOPICS[0], 97)  # a partition no other test uses
    generation = guard.generation
    for offset in (5, 6, 7):
        guard.begin(tp, offset, generation)
    guard.finish(tp, 6, generation)
    guard.finish(tp, 7, generation)
    state = faust_consumer_state(tp, committed=5, acked=[6, 7])
    assert Consumer._new_offset(state, tp) == 5  # type: ignore[arg-type]
    guard.finish(tp, 5, generation)
    state._acked[tp].append(5)
    state._acked_index[tp].add(5)
    assert Consumer._new_offset(state, tp) == 8  # type: ignore[arg-type]
    assert state._acked[tp] == [] and not state._acked_index[tp]  # Faust's lists drained


def test_an_unguarded_topic_keeps_faust_s_answer() -> None:
    tp = TP("some.other.topic", 0)
    state = faust_consumer_state(tp, committed=10, acked=[10, 11])
    assert Consumer._new_offset(state, tp) == 12  # type: ignore[arg-type]


def test_the_alert_inputs_are_guarded_too() -> None:
    tp = TP(FINDINGS_TOPIC, 97)
    state = faust_consumer_state(tp, committed=3, acked=[4])
    assert Consumer._new_offset(state, tp) is None  # nothing of it begun: nothing to commit
