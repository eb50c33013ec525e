from __future__ import annotations

import pytest

from stream.settings import Settings


def test_settings_from_environment() -> None:
    s = Settings.from_env(
        {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "REDIS_URL": "redis://r/1", "VITALSTREAM_PARTITIONS": "12",
         "VITALSTREAM_HOP_S": "1.5", "VITALSTREAM_REDIS_PREFIX": "ward7"}
    )
    assert (s.kafka_bootstrap_servers, s.redis_url, s.partitions, s.hop_s, s.redis_prefix) == (
        "k:9092", "redis://r/1", 12, 1.5, "ward7")
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VITALSTREAM_PARTITIONS": "many"}, "VITALSTREAM_PARTITIONS='many' is not a valid int"),
        ({"VITALSTREAM_PARTITIONS": "0"}, "PARTITIONS must be >= 1"),
        ({"VITALSTREAM_HOP_S": "20"}, "HOP_S"),
        ({"VITALSTREAM_REDIS_PREFIX": "a:b"}, "REDIS_PREFIX"),
        ({"VITALSTREAM_ALIGN_HOLD_S": "-1"}, "ALIGN_HOLD_S must be >= 0"),
    ],
)
def test_bad_settings_are_explained(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)
