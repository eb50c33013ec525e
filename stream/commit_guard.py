"""The offset a worker may commit on an agent's input partition: never past a message
still in hand.

A committed offset says "everything before this is done": the next owner of the
partition starts reading there. The vitals agent finishes its messages out of order on
purpose (a chunk is acknowledged once a window covering it was analysed, and a partition
carries many patients, see :mod:`stream.awaiting_analysis`), and faust-streaming 0.15
derives the offset from the acknowledged ones in a way that can pass an unfinished
message:

- its check for a hole at the head of the acknowledged offsets lets exactly one through:
  with offset N committed and N still in hand, acknowledged N+1, N+2 commit N+3
  (faust-streaming issue #606, fix unreleased);
- messages it skipped right after an assignment (see :mod:`stream.agents.recovery`)
  count as done the moment they are skipped, while the worker is still reading them
  again from the broker and analysing them.

The fault campaign measured the result: a worker killed after such a commit left data
that no one analysed. So the commit point of these partitions comes from the agent's own
account instead: the lowest offset it began and has not finished, or if none, the first
it has not begun. Everything below was analysed (or dead-lettered, or is reported lost);
everything from there on is read again by the next owner.

An account is valid for one consumer generation: a rebalance hands partitions out again,
reading restarts at the committed offsets, and messages of the old generation still in
the agent's hands neither begin nor finish anything in the new one. Until the new
generation's first message the old account still answers, and safely so: what it counts
as finished was finished, and what was dropped unfinished at the revocation still holds
its partition's commit back.

Pure bookkeeping: partitions are any hashable (Faust's ``TP``).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field


@dataclass(slots=True)
class _PartitionAccount:
    # Every offset in [start, begun_until) was begun in this generation.
    begun_until: int | None = None
    # Offsets begun past begun_until (a message revealing a skip is begun with the
    # skipped ones, in whichever order); merged in as the run reaches them.
    begun_ahead: set[int] = field(default_factory=set)
    # Offset -> how many times it was begun and not finished yet.
    in_hand: dict[int, int] = field(default_factory=dict)


class CommitGuard:
    def __init__(self) -> None:
        self.generation: int | None = None
        self._accounts: dict[Hashable, _PartitionAccount] = {}

    def _current(self, generation: int | None) -> bool:
        """Whether an account of ``generation`` is kept: a newer generation (the first
        message or start offset after a rebalance) replaces every account, since reading
        restarts at the committed offsets; an older one is ignored. Kafka's generation
        ids only grow, and the consumer's messages carry the one they were read in."""
        if generation == self.generation:
            return True
        if generation is None or (self.generation is not None and generation < self.generation):
            return False
        self.generation = generation
        self._accounts.clear()
        return True

    def starts_at(self, partition: Hashable, offset: int, generation: int | None) -> None:
        """Reading of ``partition`` starts at ``offset`` in ``generation`` (the group's
        committed offset): nothing past it counts as done until everything from it was
        begun, so a skip over the very first messages cannot be committed."""
        if not self._current(generation):
            return
        account = self._accounts.setdefault(partition, _PartitionAccount())
        if account.begun_until is None:
            account.begun_until = offset

    def begin(self, partition: Hashable, offset: int, generation: int | None) -> bool:
        """The agent took the message at ``offset``; False for a message of an older
        generation, which this account ignores (its finish is ignored too)."""
        if not self._current(generation):
            return False
        account = self._accounts.setdefault(partition, _PartitionAccount())
        account.in_hand[offset] = account.in_hand.get(offset, 0) + 1
        if account.begun_until is None:
            account.begun_until = offset
        if offset == account.begun_until:
            account.begun_until += 1
            while account.begun_until in account.begun_ahead:
                account.begun_ahead.discard(account.begun_until)
                account.begun_until += 1
        elif offset > account.begun_until:
            account.begun_ahead.add(offset)
        return True

    def begin_range(self, partition: Hashable, offsets: Iterable[int], generation: int | None) -> None:
        for offset in offsets:
            self.begin(partition, offset, generation)

    def finish(self, partition: Hashable, offset: int, generation: int | None) -> None:
        """The message at ``offset`` was analysed, dead-lettered or given up as lost."""
        if generation != self.generation:
            return
        account = self._accounts.get(partition)
        if account is None:
            return
        count = account.in_hand.get(offset, 0)
        if count > 1:
            account.in_hand[offset] = count - 1
        elif count == 1:
            del account.in_hand[offset]

    def committable(self, partition: Hashable) -> int | None:
        """The offset to commit: the lowest one in hand, else the first not begun; None
        when nothing of this partition was begun in this generation."""
        account = self._accounts.get(partition)
        if account is None or account.begun_until is None:
            return None
        if account.in_hand:
            return min(account.begun_until, min(account.in_hand))
        return account.begun_until

    def in_hand(self, partition: Hashable) -> int:
        account = self._accounts.get(partition)
        return sum(account.in_hand.values()) if account else 0
