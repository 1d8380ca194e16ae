"""Source-side Kafka plumbing on the real broker: positions survive, quarantine keeps the reason."""

from __future__ import annotations


import pytest

from connectors.kafka_io import KafkaTarget, PositionStore, Publisher
from tests.support.kafka import read_json
from tests.support.names import unique

pytestmark = pytest.mark.integration


@pytest.fixture
def target(kafka_bootstrap: str) -> KafkaTarget:
    return KafkaTarget(kafka_bootstrap, prefix=unique("io") + ".", partitions=3)


async def test_positions_are_read_back_by_a_new_store(target: KafkaTarget) -> None:
    first = PositionStore(target)
    await first.start()
    await first.save("salesforce:/data/ContactChangeEvent", {"replay_id": "00aa"})
    await first.save("salesforce:/data/ContactChangeEvent", {"replay_id": "00ab"})
    await first.save("tims:changes", {"cursor": "c1"})
    await first.stop()

    second = PositionStore(target)
    await second.start()
    try:
        assert await second.load() == {
            "salesforce:/data/ContactChangeEvent": {"replay_id": "00ab"},
            "tims:changes": {"cursor": "c1"},
        }
    finally:
        await second.stop()


async def test_empty_position_topic_loads_as_nothing(target: KafkaTarget) -> None:
    store = PositionStore(target)
    await store.start()
    try:
        assert await store.load() == {}
    finally:
        await store.stop()


async def test_quarantine_keeps_raw_input_and_reason(target: KafkaTarget) -> None:
    publisher = Publisher(target)
    await publisher.start()
    try:
        await publisher.quarantine("salesforce", "bad Avro payload: unexpected end of data", "AAEC", {"replay_id": "01"})
    finally:
        await publisher.stop()
    [entry] = await read_json(target.bootstrap, target.topic("quarantine.salesforce"), until=lambda vs: len(vs) >= 1)
    assert entry["reason"].startswith("bad Avro payload")
    assert entry["raw"] == "AAEC" and entry["context"] == {"replay_id": "01"}
