"""Faust's commit point of the sample partitions, taken from the agent's own account.

faust-streaming 0.15 can commit past a message the vitals agent is still analysing (see
:mod:`stream.commit_guard` for the two ways). Its consumer computes each partition's
commit point in ``Consumer._new_offset``; for the partitions a :class:`CommitGuard`
accounts for, :func:`install` makes that the guard's offset. Faust's own computation
still runs first, so its lists of acknowledged offsets keep draining, and its answer is
kept for every other topic.

Installed once, by the app module, on Faust's consumer class. The project pins
faust-streaming to the minor version whose ``_new_offset`` this was written against, and
a test checks that the method is still there and still patched.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Collection

from faust.transport.consumer import Consumer
from faust.types import TP

from stream.commit_guard import CommitGuard

_faust_new_offset: Callable[[Consumer, TP], int | None] = Consumer._new_offset


def install(guard: CommitGuard, topics: Collection[str]) -> None:
    """Partitions of ``topics`` commit where ``guard`` says (and nowhere else)."""
    guarded = frozenset(topics)

    def _new_offset(self: Consumer, tp: TP) -> int | None:
        faust_offset = _faust_new_offset(self, tp)
        if tp.topic not in guarded:
            return faust_offset
        offset = guard.committable(tp)
        if offset is not None:
            # Offsets below the commit point are done for good: their acknowledgements
            # can go (Faust drops the ones below its committed offset the same way).
            _forget_acked_below(self, tp, offset)
        return offset

    _new_offset.guard = guard  # type: ignore[attr-defined]
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]


def installed_guard() -> CommitGuard | None:
    return getattr(Consumer._new_offset, "guard", None)


def _forget_acked_below(consumer: Consumer, tp: TP, offset: int) -> None:
    acked = consumer._acked.get(tp)
    if not acked:
        return
    # Faust's computation, just before, sorted the list (it sorts whenever it is non-empty).
    done = bisect.bisect_left(acked, offset)
    consumer._acked_index[tp].difference_update(acked[:done])
    del acked[:done]
