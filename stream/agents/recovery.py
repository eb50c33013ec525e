"""Messages a worker's consumer skipped, read again from the broker.

Faust 0.15 can skip a message right after a partition assignment: records it fetched
before its seek to the committed offsets are delivered after it, it counts the offsets in
between as a "gap" (committed as processed) and drops them when they are fetched again.
The agents notice the jump in offsets (``ConsumerProgress.skipped_before``) and call
:func:`recover_skipped` before handling the message that revealed it. The skipped
offsets are begun in the app's commit account before the broker is asked, so that a
commit meanwhile cannot pass them (Faust's own commit point would: stream/commit_guard.py).
"""

from __future__ import annotations

import logging

from faust.types import TP

from stream.agents.in_hand import InHandMessage
from stream.app import KAFKA_BOOTSTRAP, KAFKA_SECURITY, commit_guard
from stream.services import fetch_offsets
from stream.stats import worker_stats

log = logging.getLogger(__name__)


async def recover_skipped(tp: TP, skipped: range, generation: int | None) -> list[InHandMessage]:
    """Messages the consumer jumped over (see ``ConsumerProgress.skipped_before``) in
    consumer ``generation``: Faust already counts them as processed and will not deliver
    them again, so they are read directly from the broker, begun in the commit account,
    and handled before the message that revealed the hole, in their place in the stream;
    the caller finishes each. What cannot be read is reported as lost (and finished: no
    one will read it again)."""
    commit_guard.begin_range(tp, skipped, generation)
    try:
        records = await fetch_offsets(KAFKA_BOOTSTRAP, tp.topic, tp.partition, skipped, security=KAFKA_SECURITY)
    except Exception:
        log.exception("could not read skipped offsets %d-%d of %s:%d", skipped.start, skipped.stop - 1,
                      tp.topic, tp.partition)
        records = []
    worker_stats.transport_recovered += len(records)
    got = {rec.offset for rec in records}
    lost = [offset for offset in skipped if offset not in got]
    if lost:
        note_transport_hole(tp, range(lost[0], lost[-1] + 1))
        for offset in lost:
            commit_guard.finish(tp, offset, generation)
    log.warning("consumer skipped %d message(s) of %s:%d (offsets %d-%d); %d recovered from the broker",
                len(skipped), tp.topic, tp.partition, skipped.start, skipped.stop - 1, len(records))
    return [InHandMessage.recovered(tp, rec, generation) for rec in records if rec.offset in skipped]


MAX_HOLES_SHOWN = 20


def note_transport_hole(tp: TP, lost: range) -> None:
    """Skipped messages that could not be read again either: their data is lost to this
    worker (gaps in the patients' windows). Shown on ``/stats/`` so the gaps are explained
    and an operator can replay the offsets."""
    worker_stats.transport_skipped += len(lost)
    holes = worker_stats.transport_holes
    holes.append(f"{tp.topic}:{tp.partition}:{lost.start}-{lost.stop - 1}")
    del holes[:-MAX_HOLES_SHOWN]
    log.error("%d message(s) of %s:%d (offsets %d-%d) are lost to this worker",
              len(lost), tp.topic, tp.partition, lost.start, lost.stop - 1)
