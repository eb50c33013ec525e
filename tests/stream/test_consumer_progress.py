from __future__ import annotations

from stream.consumer_progress import ConsumerProgress

ECG, PPG, ECG2 = ("vitals.ecg", 3), ("vitals.ppg", 3), ("vitals.ecg2", 3)


def test_patient_is_caught_up_only_when_every_partition_of_its_data_is_read() -> None:
    progress = ConsumerProgress()
    for offset in range(10):
        progress.advance(ECG, offset)
    progress.advance(PPG, 4)
    progress.attach("p1", ECG)
    progress.attach("p1", PPG)
    marks = {ECG: 10, PPG: 7}
    assert not progress.caught_up("p1", marks.get)  # PPG offsets 5 and 6 not read yet
    progress.advance(PPG, 6)
    assert progress.caught_up("p1", marks.get)


def test_offsets_never_move_back_and_dead_lettered_messages_count_as_read() -> None:
    progress = ConsumerProgress()
    progress.advance(ECG, 8)
    progress.advance(ECG, 3)  # a redelivered older message
    progress.attach("p1", ECG)
    assert progress.caught_up("p1", {ECG: 9}.get)
    progress.advance(ECG, 9)  # say, a malformed message sent to the dead-letter topic
    assert progress.caught_up("p1", {ECG: 10}.get)


def test_unknown_highwater_or_unknown_patient_does_not_hold_a_flush_back() -> None:
    progress = ConsumerProgress()
    progress.attach("p1", ECG)
    assert progress.caught_up("p1", lambda _tp: None)
    assert progress.caught_up("never-seen", {ECG: 100}.get)
    progress.forget("p1")
    assert progress.caught_up("p1", {ECG: 100}.get)


def test_a_topic_read_less_far_by_produce_time_may_hold_unread_data() -> None:
    progress = ConsumerProgress()
    progress.advance(ECG, 40, produced_s=1000.0)
    progress.advance(PPG, 9, produced_s=980.0)  # the worker read PPG 20 s less far
    marks = {ECG: 41, PPG: 50}
    assert progress.unread_before(PPG, 1000.0, marks.get)
    assert not progress.unread_before(PPG, 980.0, marks.get)  # read that far
    # Read to the high-water mark: nothing more is waiting, whatever the produce time says
    # (the device's PPG really stopped).
    assert not progress.unread_before(PPG, 1000.0, {PPG: 10}.get)


def test_a_partition_not_read_yet_holds_data_past_its_start_offset() -> None:
    """A worker that just started (or took partitions over) reads its topics at different
    paces: a PPG topic whose first message is still on its way must hold the ECG back, or
    the patient's first windows close without PPG (seen in broker validation runs: the
    first 10 s of most records without ECG, read after their PPG)."""
    progress = ConsumerProgress()
    progress.advance(ECG, 0, produced_s=1000.0)
    progress.starts_at(PPG, 20)
    assert progress.unread_before(PPG, 1000.0, {PPG: 50}.get)  # 30 messages to read
    assert not progress.unread_before(PPG, 1000.0, {PPG: 20}.get)  # nothing new since
    progress.advance(PPG, 20, produced_s=1001.0)  # read: produce time decides from now on
    assert not progress.unread_before(PPG, 1000.0, {PPG: 50}.get)
    progress.new_assignment()  # start offsets are per assignment
    assert not progress.unread_before(ECG2, 1000.0, {ECG2: 5}.get)


def test_a_partition_without_start_or_highwater_counts_as_read() -> None:
    progress = ConsumerProgress()
    progress.advance(ECG, 0, produced_s=1000.0)
    assert not progress.unread_before(PPG, 1000.0, {PPG: 50}.get)  # start unknown
    progress.starts_at(PPG, 0)
    assert not progress.unread_before(PPG, 1000.0, lambda _tp: None)  # not fetched yet
    progress.advance(PPG, 0, produced_s=900.0)
    assert not progress.unread_before(PPG, 1000.0, lambda _tp: None)


def test_patients_off_a_new_assignment() -> None:
    """After a rebalance: the patients whose partitions moved to another worker."""
    progress = ConsumerProgress()
    for signal_topic in ("vitals.ecg", "vitals.ppg"):
        progress.attach("p3", (signal_topic, 3))
        progress.attach("p5", (signal_topic, 5))
    assert progress.patients_off({("vitals.ecg", 3), ("vitals.ppg", 3)}) == ["p5"]
    assert sorted(progress.patients_off(set())) == ["p3", "p5"]
    assert progress.patients_off({("vitals.ecg", 3), ("vitals.ecg", 5)}) == []


def test_a_rewound_message_makes_its_partition_unread_again() -> None:
    """A held chunk dropped at a revocation is read again if the partition comes back: until
    then the patient is not caught up (no idle flush) and the partition not read past it."""
    progress = ConsumerProgress()
    for offset, produced in enumerate((100.0, 101.0, 102.0, 103.0)):
        progress.advance(ECG, offset, produced)
    progress.attach("p1", ECG)
    marks = {ECG: 4}.get
    assert progress.caught_up("p1", marks)
    assert not progress.unread_before(ECG, 102.5, marks)
    progress.rewind(ECG, 2, 102.0)
    assert not progress.caught_up("p1", marks)
    assert progress.unread_before(ECG, 102.5, marks)
    progress.advance(ECG, 2, 102.0)
    progress.advance(ECG, 3, 103.0)
    assert progress.caught_up("p1", marks)
    progress.rewind(ECG, 5, 104.0)  # never moves a mark forward
    assert progress.caught_up("p1", marks)


def test_a_forward_jump_in_offsets_is_reported_as_skipped_messages() -> None:
    """Faust 0.15 can deliver offset 211 right after 209 following its post-assignment seek;
    210 then never reaches the worker. Re-deliveries (offsets going back) are not holes, and
    neither is the first offset after an assignment, which starts wherever the group
    committed."""
    progress = ConsumerProgress()
    assert list(progress.skipped_before(ECG, 41)) == []
    for offset in range(42, 210):
        assert not progress.skipped_before(ECG, offset)
    assert list(progress.skipped_before(ECG, 211)) == [210]
    assert not progress.skipped_before(ECG, 45)  # a seek back: re-delivery
    assert not progress.skipped_before(ECG, 212)
    progress.new_assignment()
    assert not progress.skipped_before(ECG, 500)
    assert list(progress.skipped_before(PPG, 7)) == []
    assert list(progress.skipped_before(PPG, 10)) == [8, 9]


def test_the_first_message_after_an_assignment_is_checked_against_the_start_offset() -> None:
    """A worker that knows where reading starts (the group's committed offset) notices a
    skip of the very first messages, which the offsets alone cannot show: a lost first
    message would only surface as a gap in the first window. A start learnt after messages
    were read changes nothing."""
    progress = ConsumerProgress()
    progress.starts_at(ECG, 100)
    assert list(progress.skipped_before(ECG, 102)) == [100, 101]
    assert not progress.skipped_before(ECG, 103)
    progress.starts_at(PPG, 50)
    assert not progress.skipped_before(PPG, 50)
    assert not progress.skipped_before(PPG, 51)
    progress.new_assignment()
    assert not progress.skipped_before(ECG, 90)  # read before its start was learnt
    progress.starts_at(ECG, 80)
    assert not progress.skipped_before(ECG, 91)
