"""Worker counters, logged periodically and served on the worker's web port: as JSON on
``/stats/`` and, read at each scrape, in Prometheus's format on ``/metrics``
(:mod:`stream.metrics`, docs/metrics.md)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class WorkerStats:
    chunks_in: int = 0  # sample messages read (valid or dead-lettered)
    windows: int = 0  # windows analysed (each becomes one finding)
    findings_in: int = 0
    emissions: int = 0
    actions: int = 0
    device_alarms: int = 0  # bedside-monitor alarms read (each decided once)
    dead_letters: Counter[str] = field(default_factory=Counter)
    bad_findings: int = 0
    # Alert writes retried because Redis was unreachable (they wait; none is dropped).
    redis_retries: int = 0
    # Idle flushes held back because more of the patient's data already waited in Kafka
    # (the worker lags), and high-water marks the consumer could not give (no lag check).
    idle_flushes_held: int = 0
    highwater_unknown: int = 0
    # Messages of held chunks (PatientMonitor) acknowledged once their chunk was analysed.
    held_messages_acked: int = 0
    # Patients forgotten because a rebalance moved their partitions to another worker.
    patients_moved_away: int = 0
    # Patients put back on the aggregator's tick clock from the alert-state table after an
    # assignment (their devices sent nothing since; see clock_patients_from_table).
    clocks_from_table: int = 0
    # Messages the consumer jumped over (see ConsumerProgress.skipped_before), read again
    # from the broker, and those that could not be (lost to this worker: their data shows
    # as gaps). The newest holes lost as "topic:partition:from-to".
    transport_recovered: int = 0
    transport_skipped: int = 0
    transport_holes: list[str] = field(default_factory=list)
    # Alert changes written to Redis (already-applied redeliveries not counted), by
    # (event, type, priority), and bedside-alarm decisions written, by verdict.
    alert_changes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    device_alarm_verdicts: Counter[str] = field(default_factory=Counter)
    # The dashboard's feed (stream.agents.care_feed): evidence strips stored, strips wanted
    # whose samples had already left the recorder, vitals snapshots written, failures, and
    # the recorder's size.
    strips_written: int = 0
    strips_unavailable: int = 0
    vitals_snapshots_written: int = 0
    care_feed_errors: int = 0
    evidence_patients: int = 0
    evidence_bytes: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "chunks_in": self.chunks_in,
            "windows": self.windows,
            "findings_in": self.findings_in,
            "alert_emissions": self.emissions,
            "care_actions": self.actions,
            "device_alarms": self.device_alarms,
            "dead_letters": dict(self.dead_letters),
            "bad_findings": self.bad_findings,
            "redis_retries": self.redis_retries,
            "idle_flushes_held": self.idle_flushes_held,
            "highwater_unknown": self.highwater_unknown,
            "held_messages_acked": self.held_messages_acked,
            "patients_moved_away": self.patients_moved_away,
            "clocks_from_table": self.clocks_from_table,
            "transport_recovered": self.transport_recovered,
            "transport_skipped": self.transport_skipped,
            "transport_holes": list(self.transport_holes),
            "alert_changes": {"/".join(k): v for k, v in sorted(self.alert_changes.items())},
            "device_alarm_verdicts": dict(self.device_alarm_verdicts),
            "strips_written": self.strips_written,
            "strips_unavailable": self.strips_unavailable,
            "vitals_snapshots_written": self.vitals_snapshots_written,
            "care_feed_errors": self.care_feed_errors,
            "evidence_patients": self.evidence_patients,
            "evidence_bytes": self.evidence_bytes,
        }


worker_stats = WorkerStats()
