"""An input message an agent took and has not finished with.

Either a Faust event or a message read again from the broker after Faust skipped it
(:mod:`stream.agents.recovery`). Whichever, it is begun in the app's commit account when
taken and finished once it was handled: for the vitals agent, once a published window
covers its chunk (or it was dead-lettered, or dropped with its patient); for the
aggregator, once its alerts are written. Its partition's offset is not committed past it
before (stream/commit_guard.py says why Faust's own commit point is not trusted here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from faust.types import TP, EventT

from stream.app import commit_guard
from stream.deadletter import DeadLetter
from stream.services import FetchedRecord


@dataclass(eq=False, slots=True)
class InHandMessage:
    tp: TP
    offset: int
    timestamp_s: float
    key: bytes | None
    value: bytes
    # The consumer generation it was read in: a rebalance since makes it none of the
    # commit account's business (its partition's offsets are read again from the commit).
    generation: int | None
    # None for a message read again from the broker: Faust already counts it as done.
    event: EventT | None = None
    holding: bool = False
    finished: bool = False

    @classmethod
    def of_event(cls, event: EventT) -> InHandMessage:
        msg = event.message
        return cls(msg.tp, msg.offset, msg.timestamp, msg.key, msg.value, msg.generation_id, event)

    @classmethod
    def recovered(cls, tp: TP, record: FetchedRecord, generation: int | None) -> InHandMessage:
        return cls(tp, record.offset, record.timestamp_s, record.key, record.value, generation)

    def dead_letter(self, reason: str, detail: str) -> DeadLetter:
        """This message set aside, as it arrived, with why."""
        return DeadLetter.wrap(reason=reason, detail=detail, topic=self.tp.topic, partition=self.tp.partition,
                               offset=self.offset, key=self.key, original=self.value,
                               received_ms=int(time.time() * 1000))

    def begin(self) -> None:
        commit_guard.begin(self.tp, self.offset, self.generation)

    def hold(self) -> None:
        """Keep it unfinished past its batch: its chunk waits in its patient's monitor."""
        if self.event is not None and not self.holding:
            self.event.message.incref()  # Faust acknowledges the event at our finish, not the batch's end
        self.holding = True

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        commit_guard.finish(self.tp, self.offset, self.generation)
        if self.holding and self.event is not None:
            self.event.ack()
