"""How far a worker has read each patient's data: silence that is only the worker's own lag.

The vitals worker closes a patient's newest window once no data arrived for it for
``flush_idle_s`` (a device that stopped must not leave its last window waiting for
filter look-ahead that never comes). Silence means that only if the worker is not behind:
a worker lagging on a partition hears nothing from its patients while their data waits
in Kafka, and flushing them then would close windows early, with the look-ahead cut at a
load-dependent place. This tracker keeps the next offset to process per partition and
the partitions each patient's data came from (one per signal topic); a patient is caught
up when each of them is read up to the high-water mark of the consumer's last fetch.

Pure bookkeeping: partitions are any hashable (Faust's ``TP``), and the high-water marks
come from a function the caller passes in.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable


class ConsumerProgress:
    def __init__(self) -> None:
        self.next_offset: dict[Hashable, int] = {}
        self.partitions_of: dict[str, set[Hashable]] = {}

    def advance(self, partition: Hashable, offset: int) -> None:
        """A message at ``offset`` was processed (valid or dead-lettered). The mark never
        moves back: redelivered messages (at-least-once after a rebalance) were read before."""
        if offset + 1 > self.next_offset.get(partition, 0):
            self.next_offset[partition] = offset + 1

    def attach(self, patient_id: str, partition: Hashable) -> None:
        self.partitions_of.setdefault(patient_id, set()).add(partition)

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
