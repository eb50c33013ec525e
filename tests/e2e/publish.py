"""Publish simulated patients through the real gateway SDK, as fast as possible."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from stream.gateway import GatewayPublisher, chunk_signals, merge_by_time
from stream.schema import Signal
from stream.simulator import PatientScenario, SimulatedRecording, device_id_for, simulate_patient
from tests.e2e.kafka_io import kafka_security


def simulate(scenarios: list[PatientScenario], start_ms: int | None = None) -> list[SimulatedRecording]:
    start = start_ms if start_ms is not None else int(time.time() * 1000) - 3_600_000
    return [simulate_patient(s, seed=i, start_ms=start) for i, s in enumerate(scenarios)]


def publish_recordings(
    bootstrap: str,
    recordings: list[SimulatedRecording],
    times: int = 1,
    extra: dict[str, dict[Signal, tuple[np.ndarray, float]]] | None = None,
    without: dict[str, set[Signal]] | None = None,
    span_s: tuple[float, float] = (0.0, float("inf")),
) -> int:
    """``extra``: more signals per patient id (e.g. an arterial line), same start time;
    ``without``: simulated signals not sent for a patient id; ``span_s``: only the chunks
    starting in [from, to) seconds of the recording (as a gateway sends them over time)."""
    streams = []
    for rec in recordings:
        signals = {Signal(name): arrays for name, arrays in rec.signal_arrays().items()}
        signals.update((extra or {}).get(rec.patient_id, {}))
        for signal in (without or {}).get(rec.patient_id, set()):
            signals.pop(signal)
        chunks_of = chunk_signals(rec.patient_id, device_id_for(rec.patient_id), signals, rec.start_ms)
        streams.append([c for c in chunks_of if span_s[0] <= (c.ts_ms - rec.start_ms) / 1000.0 < span_s[1]])
    chunks = list(merge_by_time(*streams))

    async def run() -> None:
        async with GatewayPublisher(bootstrap, security=kafka_security(bootstrap)) as publisher:
            for _ in range(times):
                await publisher.publish_many(chunks)
            await publisher.flush()

    asyncio.run(run())
    return len(chunks) * times
