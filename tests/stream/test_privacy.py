"""Patient-id pseudonyms at the gateway and log lines that never name a patient."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from typing import Any

import pytest

from stream.device_alarm import DeviceAlarm
from stream.gateway import GatewayPublisher
from stream.privacy import (
    PSEUDONYM_RE,
    PatientLogRef,
    Pseudonymizer,
    exception_summary,
    log_failure,
    pseudonymizer_for,
)
from stream.schema import decode_chunk
from tests.stream.test_gateway import FakeProducer, _chunk

KEY = "0123456789abcdef0123456789abcdef-ward-7"


def test_pseudonyms_are_keyed_deterministic_hmacs() -> None:
    pseudonymize = Pseudonymizer(KEY)
    first = pseudonymize("MRN-000042")
    assert first == pseudonymize("MRN-000042") == Pseudonymizer(KEY)("MRN-000042")  # same id, same pseudonym
    expected = hmac.new(KEY.encode(), b"MRN-000042", hashlib.sha256).hexdigest()[:32]
    assert first == f"ps-{expected}" and PSEUDONYM_RE.fullmatch(first)
    assert Pseudonymizer(KEY + "x")("MRN-000042") != first  # another key, another mapping
    assert "000042" not in first
    # Already a pseudonym: kept, so tools can be given either form.
    assert pseudonymize(first) == first
    assert pseudonymizer_for("") is None
    assert KEY not in repr(pseudonymize)


def test_distinct_patients_keep_distinct_pseudonyms() -> None:
    pseudonymize = Pseudonymizer(KEY)
    ids = [f"MRN-{i:06d}" for i in range(20_000)]
    assert len({pseudonymize(i) for i in ids}) == len(ids)


class AlarmFakeProducer(FakeProducer):
    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, value, key))


def test_the_gateway_sends_only_pseudonyms() -> None:
    pseudonymize = Pseudonymizer(KEY)
    fake = AlarmFakeProducer([])

    async def run() -> None:
        publisher = GatewayPublisher("unused:9092", pseudonymizer=pseudonymize)
        publisher._make_producer = lambda idempotent: fake  # type: ignore[method-assign]
        async with publisher:
            await publisher.publish(_chunk(0, patient="MRN-000042"))
            await publisher.publish_many([_chunk(1, patient="MRN-000042"), _chunk(0, patient="MRN-000043")])
            await publisher.publish_device_alarm(DeviceAlarm("MRN-000042", "asystole", 1_764_390_000_000, "bed-3"))

    asyncio.run(run())
    sent = {(topic, key) for topic, _, key in fake.sent}
    assert sent == {("vitals.ppg", pseudonymize("MRN-000042").encode()),
                    ("vitals.ppg", pseudonymize("MRN-000043").encode()),
                    ("vitals.device-alarms", pseudonymize("MRN-000042").encode())}
    chunks = [decode_chunk(value) for topic, value, _ in fake.sent if topic == "vitals.ppg"]
    assert {c.patient_id for c in chunks} == {pseudonymize("MRN-000042"), pseudonymize("MRN-000043")}
    assert all(b"MRN-" not in value and b"MRN-" not in key for _, value, key in fake.sent)


def test_a_gateway_giving_up_on_a_chunk_does_not_log_the_patient(caplog: pytest.LogCaptureFixture) -> None:
    from aiokafka.errors import MessageSizeTooLargeError

    async def run() -> None:
        publisher = GatewayPublisher("unused:9092", retries=0)
        publisher._make_producer = lambda idempotent: FakeProducer([MessageSizeTooLargeError()])  # type: ignore[method-assign]
        await publisher.start()
        await publisher.publish(_chunk(0, patient="MRN-000042"))
        with pytest.raises(Exception, match="not delivered") as info:
            await publisher.flush()
        assert "MRN-000042" not in str(info.value)
        await publisher.stop(flush=False)

    with caplog.at_level(logging.DEBUG, logger="stream.gateway"):
        asyncio.run(run())
    assert "giving up on chunk vitals.ppg device d1 seq 0" in caplog.text
    assert "MRN-000042" not in caplog.text


def test_log_references_are_stable_under_a_key_and_reveal_nothing() -> None:
    refs = PatientLogRef(KEY)
    assert refs("MRN-000042") == PatientLogRef(KEY)("MRN-000042") == refs(b"MRN-000042")
    assert refs("MRN-000042").startswith("pt-") and len(refs("MRN-000042")) == 15
    assert refs("MRN-000042") != refs("MRN-000043")
    # Not the pseudonym, nor anything computable without the key.
    assert refs("MRN-000042")[3:] not in Pseudonymizer(KEY)("MRN-000042")
    assert PatientLogRef()("MRN-000042") != PatientLogRef()("MRN-000042")  # no key: per process only
    assert refs(None) == "pt-none"


def test_failures_are_logged_without_the_data_the_exception_quotes(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.privacy")

    def decode(patient: str) -> Any:
        raise ValueError(f"no trend state for {patient!r}")

    try:
        decode("MRN-000042")
    except ValueError as exc:
        with caplog.at_level(logging.INFO, logger="test.privacy"):
            log_failure(log, exc, "unreadable trend state of %s", PatientLogRef(KEY)("MRN-000042"))
        summary = exception_summary(exc)
    assert summary.startswith("ValueError at test_privacy.py:") and "decode" in summary
    assert "MRN-000042" not in caplog.text and "ValueError at test_privacy.py" in caplog.text
    assert [r.levelno for r in caplog.records] == [logging.ERROR]  # the traceback only at DEBUG
