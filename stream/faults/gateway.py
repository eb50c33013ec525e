"""The campaign's device gateway: simulated patients published in real time, as a process
the campaign can burst and cut off.

    python -m stream.faults.gateway SPEC.json

SPEC (written by the campaign): ``bootstrap``, ``start_ms``, ``seed``, ``scenarios``
(``PatientScenario`` as dicts). The same scenarios, seed and start give the campaign the
same chunks for its reference run and ground truth.

SIGUSR1 asks for a burst of duplicate and out-of-order chunks, as a gateway's retry storm
or a flapping network delivers them: the last ``BURST_REPLAY_S`` seconds of chunks sent
again (every one a duplicate, shuffled, some older than the worker's re-order horizon),
then the next ``BURST_SHUFFLE_S`` seconds of new chunks sent in shuffled order (within
the horizon: the worker must put them back in order). Progress goes to stdout as JSON
lines (``{"event": ...}``).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from stream.gateway import GatewayPublisher, PacingStats, chunk_signals, merge_by_time, publish_paced
from stream.schema import SampleChunk, Signal
from stream.simulator import EpisodeSpec, PatientScenario, device_id_for, simulate_patient

GATEWAY_CLIENT_ID = "vitalstream-gateway"
BURST_REPLAY_S = 20.0
BURST_SHUFFLE_S = 2.0


def scenarios_from(spec: dict[str, Any]) -> list[PatientScenario]:
    out = []
    for s in spec["scenarios"]:
        episodes = tuple(EpisodeSpec(**e) for e in s.get("episodes", ()))
        out.append(PatientScenario(**{**s, "episodes": episodes}))
    return out


def campaign_chunks(scenarios: list[PatientScenario], start_ms: int, seed: int) -> list[SampleChunk]:
    """Every chunk of the campaign, in event-time order (what the gateway sends)."""
    streams = []
    for i, scenario in enumerate(scenarios):
        rec = simulate_patient(scenario, seed=seed + i, start_ms=start_ms)
        signals = {Signal(name): arrays for name, arrays in rec.signal_arrays().items()}
        streams.append(chunk_signals(rec.patient_id, device_id_for(rec.patient_id), signals, rec.start_ms))
    return list(merge_by_time(*streams))


class Bursts:
    """Wraps the chunk sequence; a burst request changes what comes next (see module doc)."""

    def __init__(self, chunks: Iterable[SampleChunk], seed: int) -> None:
        self.chunks = iter(chunks)
        self.recent: collections.deque[SampleChunk] = collections.deque()
        self.requested = 0
        self.rng = random.Random(seed)
        self.log: list[dict[str, Any]] = []

    def request(self) -> None:
        self.requested += 1

    async def __aiter__(self) -> AsyncIterator[SampleChunk]:
        for chunk in self.chunks:
            if self.requested:
                self.requested -= 1
                duplicates = list(self.recent)
                self.rng.shuffle(duplicates)
                shuffled = [chunk]
                for nxt in self.chunks:
                    shuffled.append(nxt)
                    if nxt.end_ms - chunk.end_ms >= BURST_SHUFFLE_S * 1000:
                        break
                self.rng.shuffle(shuffled)
                _emit({"event": "burst", "duplicates": len(duplicates), "shuffled": len(shuffled),
                       "wall_ms": int(time.time() * 1000)})
                for c in duplicates:
                    yield c
                for c in shuffled:
                    self._remember(c)
                    yield c
                continue
            self._remember(chunk)
            yield chunk

    def _remember(self, chunk: SampleChunk) -> None:
        self.recent.append(chunk)
        while self.recent and chunk.end_ms - self.recent[0].end_ms > BURST_REPLAY_S * 1000:
            self.recent.popleft()


def _emit(event: dict[str, Any]) -> None:
    print(json.dumps(event), flush=True)


async def run(spec: dict[str, Any]) -> PacingStats:
    chunks = campaign_chunks(scenarios_from(spec), int(spec["start_ms"]), int(spec["seed"]))
    bursts = Bursts(chunks, int(spec["seed"]))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, bursts.request)
    # Retries for as long as a network cut may last: a gateway buffers and re-sends rather
    # than drop a patient's samples (the worker drops any copy that did get through).
    publisher = GatewayPublisher(spec["bootstrap"], client_id=GATEWAY_CLIENT_ID,
                                 retries=int(spec.get("retries", 12)), retry_backoff_s=0.5)
    stats = PacingStats()
    async with publisher:
        # Pacing counts from the call: started at start_ms, every chunk leaves at its end
        # time on the wall clock (event time = wall time, as from a bedside device).
        wait_s = int(spec["start_ms"]) / 1000.0 - time.time()
        _emit({"event": "ready", "chunks": len(chunks), "wait_s": round(wait_s, 3)})
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        await publish_paced(publisher, bursts, speed=1.0, stats=stats, max_batch=200)
    _emit({"event": "done", **stats.as_dict(), "publisher": publisher.stats.as_dict()})
    return stats


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = json.loads(Path(sys.argv[1]).read_text())
    asyncio.run(run(spec))


if __name__ == "__main__":
    main()
