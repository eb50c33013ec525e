"""The one Faust app, its topics and its table.

Created once, from one settings object. The worker command resolves the broker and Redis
first (environment, ``services up`` state, or embedded) and exports them, so importing
this module never starts anything.

Topics are created explicitly with equal partition counts before the worker starts
(:func:`stream.services.create_topics`): the vitals topics (one per signal), the findings topic,
the care-actions topic and the tables' changelogs are co-partitioned by patient id, so one
worker owns all of a patient's signals, its alert state and its trend state.
"""

from __future__ import annotations

import socket
from pathlib import Path

import faust

from stream import faust_commits
from stream.commit_guard import CommitGuard
from stream.connections import KafkaSecurity
from stream.device_alarm import DEVICE_ALARMS_TOPIC
from stream.privacy import PatientLogRef
from stream.services import ACTIONS_TOPIC, DEADLETTER_TOPIC, FINDINGS_TOPIC, VITALS_TOPICS
from stream.settings import Settings

settings = Settings.from_env()

KAFKA_BOOTSTRAP = settings.kafka_bootstrap_servers or "127.0.0.1:9092"
# TLS / SASL of every Kafka client of the worker: Faust's own and the agents' side clients
# (start offsets, recovery of skipped messages).
KAFKA_SECURITY = KafkaSecurity.from_settings(settings)
# Log lines name patients by this reference, never by id (stream.privacy).
patient_ref = PatientLogRef(settings.pseudonym_key)


def _advertised_host(bind: str) -> str:
    """The host name in the worker's canonical URL: the bound address, or this host's
    name when the server listens on every interface."""
    return socket.gethostname() if bind in ("0.0.0.0", "::", "") else bind


app = faust.App(
    settings.app_id,
    broker=[f"kafka://{server.strip()}" for server in KAFKA_BOOTSTRAP.split(",") if server.strip()],
    broker_credentials=KAFKA_SECURITY.faust_credentials(),
    store="memory://",
    autodiscover=False,
    origin="stream",
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    # Agents exchange our own encodings (binary samples, JSON findings): validation and
    # dead-lettering happen in our code, where a bad message cannot crash the stream.
    key_serializer="raw",
    value_serializer="raw",
    broker_session_timeout=settings.broker_session_timeout_s,
    broker_heartbeat_interval=max(1.0, settings.broker_session_timeout_s / 4),
    # Tansu and small clusters have no use for the leader-election topic.
    topic_disable_leader=True,
    web_port=settings.worker_web_port,
    # web_bind is the address the server listens on (Faust's default is 0.0.0.0, every
    # interface); web_host only names the worker in its canonical URL.
    web_bind=settings.worker_web_host,
    web_host=_advertised_host(settings.worker_web_host),
    datadir=str(Path(settings.state_dir) / "faust"),
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    stream_wait_empty=False,
    # The check compares offsets persisted by an on-disk store with the changelog's end.
    # The tables are in memory (nothing persisted), so all it compares is a standby's read
    # position with the end the broker reports, and it crashed a worker in the fault
    # campaign when Tansu, after a peer's SIGKILL, reported an end below an offset the
    # standby had already read (63 > 62). Nothing is inconsistent there to stop for.
    recovery_consistency_check=False,
    table_cleanup_interval=60.0,
)

vitals_topic = app.topic(*VITALS_TOPICS, partitions=settings.partitions)
findings_topic = app.topic(FINDINGS_TOPIC, partitions=settings.partitions)
actions_topic = app.topic(ACTIONS_TOPIC, partitions=settings.partitions)
alert_input_topic = app.topic(FINDINGS_TOPIC, ACTIONS_TOPIC, DEVICE_ALARMS_TOPIC, partitions=settings.partitions)
deadletter_topic = app.topic(DEADLETTER_TOPIC, partitions=settings.partitions)

# The agents' input partitions commit where the agents' own account says: never past a
# message they have not finished (stream/commit_guard.py says why Faust's offsets are not
# trusted). Each of these topics has exactly one agent reading it.
commit_guard = CommitGuard()
faust_commits.install(commit_guard, (*VITALS_TOPICS, FINDINGS_TOPIC, ACTIONS_TOPIC, DEVICE_ALARMS_TOPIC))


def patient_table(name: str, *, use_partitioner: bool = False) -> faust.Table:
    """A changelog-backed table of JSON bytes keyed by the patient id's bytes, co-partitioned
    with the topics. Read it with .get(): a table without a default raises KeyError for an
    unknown patient.

    Keys are raw bytes, exactly the gateway's message key: a ``str`` key would be stored
    JSON-quoted, and the producer's partitioner would then put a patient's changelog entry
    on another partition than its vitals, which the patient's new owner does not restore."""
    return app.Table(
        name,
        default=None,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        use_partitioner=use_partitioner,
    )


# Per-patient alert state (PatientAlertState.to_dict()), so a restarted or replacing
# worker resumes every open episode.
alert_state_table = patient_table("alert-state")

# Per-patient trend state (TrendTracker.to_dict()): hours of HR/breathing-rate history that
# a new owner after a rebalance or restart cannot rebuild from one window. Saved by the
# vitals agent after a batch, outside the patient's own event, so the key's partition
# comes from the producer's partitioner, the gateway's too: the same partition number as
# the patient's vitals.
trend_state_table = patient_table("trend-state", use_partitioner=True)
