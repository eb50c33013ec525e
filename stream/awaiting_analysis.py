"""Which sample messages may be committed: those whose samples an analysed window covered.

A chunk pushed into its patient's monitor is not analysed yet: the window that covers its
last sample closes when data up to that window's end has arrived (one hop later, or at the
idle flush). If its offset were committed at once, a worker killed in between would leave
those samples to no one: the next owner starts reading after them, and its monitor's first
window starts after them too. The fault campaign measured exactly that: one hop (2 s) of
every moved patient's data never analysed per SIGKILL (docs/faults.md). So the vitals agent
keeps each chunk's message unacknowledged (an extra reference) until a published finding's
window ends at or after the chunk's end, and a worker that dies leaves those chunks to be
read again.

Pure bookkeeping: tokens (the agent's events) per patient, in the order they were added.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

# Timestamps are integer ms, chunk ends float: a chunk ending within this of a window's end
# is inside it.
END_TOLERANCE_MS = 1.0


@dataclass(slots=True)
class _Entry(Generic[T]):
    end_ms: float
    added_s: float
    token: T


class AwaitingAnalysis(Generic[T]):
    def __init__(self) -> None:
        self._by_patient: dict[str, deque[_Entry[T]]] = {}

    def __len__(self) -> int:
        return sum(len(q) for q in self._by_patient.values())

    def add(self, patient_id: str, end_ms: float, token: T, now_s: float) -> None:
        self._by_patient.setdefault(patient_id, deque()).append(_Entry(end_ms, now_s, token))

    def analysed(self, patient_id: str, through_ms: float) -> list[T]:
        """Tokens of the patient's chunks that end by ``through_ms`` (a window end). Chunks
        enter the monitor roughly in time order but not exactly (signals interleave, a late
        chunk is re-ordered), so the whole queue is scanned."""
        queue = self._by_patient.get(patient_id)
        if not queue:
            return []
        done = [e.token for e in queue if e.end_ms <= through_ms + END_TOLERANCE_MS]
        if done:
            kept = deque(e for e in queue if e.end_ms > through_ms + END_TOLERANCE_MS)
            if kept:
                self._by_patient[patient_id] = kept
            else:
                del self._by_patient[patient_id]
        return done

    def quiet(self, now_s: float, quiet_s: float) -> list[T]:
        """Tokens of patients nothing was added for in ``quiet_s``: their device stopped and
        the idle flush closed what it could (a stream shorter than a window never gets
        one); holding them longer would only hold back their partitions' commits."""
        out: list[T] = []
        for patient_id in [p for p, q in self._by_patient.items() if now_s - q[-1].added_s >= quiet_s]:
            out.extend(self.pop_patient(patient_id))
        return out

    def pop_patient(self, patient_id: str) -> list[T]:
        return [e.token for e in self._by_patient.pop(patient_id, ())]

    def pop_where(self, predicate: Callable[[T], bool]) -> list[T]:
        out: list[T] = []
        for patient_id in list(self._by_patient):
            queue = self._by_patient[patient_id]
            out.extend(e.token for e in queue if predicate(e.token))
            kept = deque(e for e in queue if not predicate(e.token))
            if kept:
                self._by_patient[patient_id] = kept
            else:
                del self._by_patient[patient_id]
        return out

    def patients(self) -> Iterator[str]:
        return iter(list(self._by_patient))
