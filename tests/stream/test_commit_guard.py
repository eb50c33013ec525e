"""The commit point of a partition never passes a message still in hand."""

from __future__ import annotations

from stream.commit_guard import CommitGuard

P = ("vitals.ecg", 0)


def test_nothing_begun_commits_nothing() -> None:
    assert CommitGuard().committable(P) is None


def test_in_order_messages_commit_as_they_finish() -> None:
    guard = CommitGuard()
    for offset in (3, 4, 5):
        guard.begin(P, offset, 1)
    assert guard.committable(P) == 3
    guard.finish(P, 3, 1)
    guard.finish(P, 4, 1)
    assert guard.committable(P) == 5
    guard.finish(P, 5, 1)
    assert guard.committable(P) == 6


def test_a_message_in_hand_at_the_head_holds_the_commit_back() -> None:
    """faust-streaming #606: committed 5, 5 still analysed, 6 and 7 done; Faust commits 8."""
    guard = CommitGuard()
    for offset in (5, 6, 7):
        guard.begin(P, offset, 1)
    guard.finish(P, 6, 1)
    guard.finish(P, 7, 1)
    assert guard.committable(P) == 5
    guard.finish(P, 5, 1)
    assert guard.committable(P) == 8


def test_a_skip_at_the_start_is_not_committed_until_read_again_and_finished() -> None:
    guard = CommitGuard()
    guard.starts_at(P, 10, 1)
    guard.begin(P, 15, 1)  # the first message delivered; 10-14 were skipped by the consumer
    assert guard.committable(P) == 10
    guard.finish(P, 15, 1)
    assert guard.committable(P) == 10  # 10-14 not even begun
    guard.begin_range(P, range(10, 15), 1)
    for offset in range(10, 14):
        guard.finish(P, offset, 1)
    assert guard.committable(P) == 14
    guard.finish(P, 14, 1)
    assert guard.committable(P) == 16


def test_a_message_begun_twice_must_finish_twice() -> None:
    guard = CommitGuard()
    guard.begin(P, 7, 1)
    guard.begin(P, 7, 1)
    guard.finish(P, 7, 1)
    assert guard.committable(P) == 7
    guard.finish(P, 7, 1)
    assert guard.committable(P) == 8


def test_a_newer_generation_starts_a_new_account_and_an_older_one_is_ignored() -> None:
    guard = CommitGuard()
    guard.begin(P, 100, 1)  # dropped at a revocation: never finished in generation 1
    guard.begin(P, 101, 1)
    guard.finish(P, 101, 1)
    assert guard.committable(P) == 100  # the old account still answers, safely
    other = ("vitals.ppg", 0)
    guard.begin(other, 7, 2)  # the first message after the rebalance, on any partition
    assert guard.committable(P) is None  # P's reading restarts at its committed offset
    assert not guard.begin(P, 102, 1)  # an old-generation message still in the agent's hands
    guard.finish(P, 100, 1)
    assert guard.committable(P) is None
    guard.begin(P, 100, 2)
    assert guard.committable(P) == 100
    guard.finish(P, 100, 2)
    assert guard.committable(P) == 101
    assert guard.generation == 2


def test_unknown_partitions_and_unknown_offsets_finish_quietly() -> None:
    guard = CommitGuard()
    guard.finish(P, 3, None)
    guard.begin(P, 3, None)
    guard.finish(P, 99, None)
    assert guard.committable(P) == 3
    assert guard.in_hand(P) == 1
