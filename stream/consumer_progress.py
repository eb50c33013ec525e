"""How far a worker has read each patient's data: silence that is only the worker's own lag.

The vitals worker closes a patient's newest window once no data arrived for it for
``flush_idle_s`` (a device that stopped must not leave its last window waiting for
filter look-ahead that never comes). Silence means that only if the worker is not behind:
a worker lagging on a partition hears nothing from its patients while their data waits
in Kafka, and flushing them then would close windows early, with the look-ahead cut at a
load-dependent place. This tracker keeps the next offset to process per partition and
the partitions each patient's data came from (one per signal topic); a patient is caught
up when each of them is read up to the high-water mark of the consumer's last fetch.

The same positions, kept in produce time too, say whether a signal topic may still hold
data from before a given chunk was produced (:meth:`ConsumerProgress.unread_before`): a
worker reading a backlog fetches each topic at its own pace, and the signal it has not
read yet must not look like a signal the device lost (see
:class:`stream.monitor.PatientMonitor`).

Pure bookkeeping: partitions are any hashable (Faust's ``TP``), and the high-water marks
come from a function the caller passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable


class ConsumerProgress:
    def __init__(self) -> None:
        self.next_offset: dict[Hashable, int] = {}
        self.read_until_s: dict[Hashable, float] = {}  # newest produce time processed
        self.partitions_of: dict[str, set[Hashable]] = {}
        # Offset each partition's next message should have, since the last rebalance.
        self.expected: dict[Hashable, int] = {}
        # Where reading of an assigned partition starts (the group's committed offset).
        self.start_offset: dict[Hashable, int] = {}

    def skipped_before(self, partition: Hashable, offset: int) -> range:
        """Offsets the consumer jumped over to deliver ``offset``: messages of this partition
        never handed to the worker since the last rebalance (:meth:`new_assignment`). Our
        topics are neither compacted nor transactional, so their offsets are contiguous and
        a forward jump is a lost message, not a gap in the log. Faust 0.15 can do this
        right after an assignment: records fetched before its seek to the committed offsets
        land after it, it registers the offsets in between as a "gap" (committed as
        processed) and drops them when they are fetched again. The first message after an
        assignment is checked against the partition's start offset when it is known
        (:meth:`starts_at`); otherwise it starts wherever the group committed."""
        expected = self.expected.get(partition)
        self.expected[partition] = max(offset + 1, expected or 0)
        if expected is None or offset <= expected:
            return range(0)
        return range(expected, offset)

    def new_assignment(self) -> None:
        """A rebalance: reading restarts from the committed offsets, which may lie anywhere."""
        self.expected.clear()
        self.start_offset.clear()

    def starts_at(self, partition: Hashable, offset: int) -> None:
        """Reading of ``partition`` starts at ``offset`` in this assignment (see
        :meth:`unread_before`), so its first message is expected there too
        (:meth:`skipped_before`): the skip after an assignment can hit that very message."""
        self.start_offset[partition] = offset
        self.expected.setdefault(partition, offset)

    def advance(self, partition: Hashable, offset: int, produced_s: float | None = None) -> None:
        """A message at ``offset`` (produced at ``produced_s``, epoch seconds) was processed
        (valid or dead-lettered). The marks never move back: redelivered messages
        (at-least-once after a rebalance) were read before."""
        if offset + 1 > self.next_offset.get(partition, 0):
            self.next_offset[partition] = offset + 1
        if produced_s is not None and produced_s > self.read_until_s.get(partition, -1.0):
            self.read_until_s[partition] = produced_s

    def rewind(self, partition: Hashable, offset: int, produced_s: float | None = None) -> None:
        """The message at ``offset`` (produced at ``produced_s``) will be read again and was
        not analysed: its chunk was held back when the partition was revoked (see the vitals
        agent). Until it is read again the partition is not caught up, and not read past
        that produce time, so neither the idle flush nor the alignment treats its data as
        seen."""
        if offset < self.next_offset.get(partition, offset + 1):
            self.next_offset[partition] = offset
        if produced_s is not None and partition in self.read_until_s:
            self.read_until_s[partition] = min(self.read_until_s[partition], produced_s - 1e-3)

    def unread_before(
        self, partition: Hashable, produced_s: float, highwater: Callable[[Hashable], int | None]
    ) -> bool:
        """Whether ``partition`` may still hold unread messages produced before ``produced_s``:
        it was read less far than that by produce time, and the broker held more at the last
        fetch. A partition not read yet holds such messages if the broker has any past its
        start offset (:meth:`starts_at`): the worker just started or took it over, and its
        other topics' first messages must not close windows without this one's signal. A
        partition whose start or high-water mark is unknown counts as read: the worker
        cannot tell, and holding data back for it could delay an alarm."""
        mark = highwater(partition)
        if mark is None:
            return False
        read_s = self.read_until_s.get(partition)
        if read_s is None:
            start = self.start_offset.get(partition)
            return start is not None and start < mark
        return read_s < produced_s and self.next_offset.get(partition, 0) < mark

    def attach(self, patient_id: str, partition: Hashable) -> None:
        self.partitions_of.setdefault(patient_id, set()).add(partition)

    def patients_on(self, partitions: set[Hashable]) -> list[str]:
        """Patients whose data came from any of ``partitions``."""
        return [p for p, parts in self.partitions_of.items() if parts & partitions]

    def patients_off(self, partitions: set[Hashable]) -> list[str]:
        """Patients none of whose data comes from ``partitions`` (e.g. this worker's new
        assignment after a rebalance)."""
        return [p for p, parts in self.partitions_of.items() if not parts & partitions]

    def forget(self, patient_id: str) -> None:
        self.partitions_of.pop(patient_id, None)

    def caught_up(self, patient_id: str, highwater: Callable[[Hashable], int | None]) -> bool:
        """Everything the broker held for this patient's partitions at the last fetch has
        been processed. A partition without a known high-water mark (not fetched yet, or
        no longer assigned) does not hold the patient back: the worker cannot tell, and
        an unnecessary wait would delay an end-of-stream alarm."""
        for partition in self.partitions_of.get(patient_id, ()):
            mark = highwater(partition)
            if mark is not None and self.next_offset.get(partition, 0) < mark:
                return False
        return True
